"""Graph IR: tensors, ops, the float evaluator."""
from .errors import CompileError, FrontendError
from .graph import Graph, Op, Tensor
