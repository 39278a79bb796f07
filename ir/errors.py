"""User-facing errors of the compile side: the ONNX frontend and the compiler proper."""


class FrontendError(Exception):
    """The ONNX model cannot be read or holds something the frontend does not support."""


class CompileError(Exception):
    """A pass or the backend cannot compile the graph for the target (names the node)."""
