"""ONNX -> float graph IR.

The frontend walks the nodes in order with a concrete probe batch: every activation has a probe value, so
shapes are known and exporter shape arithmetic (Shape, Gather, Concat, ...) folds to constants on the way.
`Shape` of an activation reports PROBE_BATCH for the batch axis; a Reshape target whose first entry is that
value (or -1 / 0) keeps the batch axis. Constant subgraphs fold through onnx's reference evaluator.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from ir import FrontendError, Graph, Tensor
from ir.float_eval import run_op

from . import onnx_ops

PROBE_BATCH = 7
TARGET_OPSET = 17


class Frontend:
    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.g = Graph()
        self.consts: dict[str, np.ndarray] = {}     # folded values
        self.probe: dict[str, np.ndarray] = {}      # activation probe values (batch PROBE_BATCH)
        self.alias: dict[str, str] = {}             # onnx name -> IR tensor name
        self.qhint: dict[str, dict] = {}            # IR tensor -> quantisation given by the model
        self.static_batch: int | None = None

    # -- helpers used by the op converters ---------------------------------------------------------
    def name(self, onnx_name: str) -> str:
        while onnx_name in self.alias:
            onnx_name = self.alias[onnx_name]
        return onnx_name

    def is_const(self, onnx_name: str) -> bool:
        return onnx_name == "" or self.name(onnx_name) in self.consts

    def value(self, onnx_name: str):
        n = self.name(onnx_name)
        return self.consts[n] if n in self.consts else self.probe[n]

    def shape(self, onnx_name: str) -> tuple[int, ...]:
        """Per-sample shape of an activation."""
        return tuple(self.probe[self.name(onnx_name)].shape[1:])

    def set_const(self, onnx_name: str, value) -> None:
        self.consts[onnx_name] = np.asarray(value)

    def emit(self, node, kind: str, inputs: list[str], output: str, **attrs) -> str:
        """Add an IR op; constant inputs become IR constants. Returns the IR output name."""
        ins = []
        for i in inputs:
            n = self.name(i)
            if n in self.consts and n not in self.g.tensors:
                self.g.const(n, self.consts[n])
            ins.append(n)
        out = output if output not in self.g.tensors else self.g.unique(output)
        op = self.g.add_op(kind, self.g.unique(node.name or f"{node.op_type}_{len(self.g.ops)}"), ins, [out], **attrs)
        args = [self.g.tensors[n].data if self.g.tensors.get(n) is not None and self.g.tensors[n].is_const
                else self.probe[n] for n in ins]
        with np.errstate(all="ignore"):
            val = run_op(op, args)
        self.probe[out] = val
        self.g.add_tensor(Tensor(out, tuple(val.shape[1:])))
        if out != output:
            self.alias[output] = out
        return out

    def forward(self, onnx_out: str, onnx_in: str) -> None:
        """The output is the input (Identity, Dropout, Q/DQ pairs)."""
        self.alias[onnx_out] = self.name(onnx_in)

    # -- driver ------------------------------------------------------------------------------------
    def run(self) -> Graph:
        graph = self.model.graph
        for init in graph.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
        inits = set(self.consts)
        for vi in graph.input:
            if vi.name in inits:
                continue
            self._add_input(vi)
        unsupported = [(n.name or "<unnamed>", n.op_type) for n in graph.node
                       if n.op_type not in onnx_ops.CONVERTERS and n.op_type not in FOLD_ONLY]
        if unsupported:
            kinds = sorted({t for _, t in unsupported})
            raise FrontendError(f"unsupported op(s) {', '.join(kinds)} at node(s) "
                                + ", ".join(f"{n} ({t})" for n, t in unsupported))
        for node in graph.node:
            try:
                self._node(node)
            except FrontendError:
                raise
            except Exception as e:  # a converter met a form it does not handle
                raise FrontendError(f"node {node.name or '<unnamed>'} ({node.op_type}): {e}") from None
        for vo in graph.output:
            n = self.name(vo.name)
            if n in self.consts:
                raise FrontendError(f"output {vo.name} is a constant; nothing to compile")
            self.g.outputs.append(n)
            self.g.output_names.append(vo.name)
        for n, h in self.qhint.items():
            if n in self.g.tensors:
                self.g.tensors[n].qhint = h
        self.g.prune()
        return self.g

    def _add_input(self, vi) -> None:
        tt = vi.type.tensor_type
        if not tt.HasField("shape") or len(tt.shape.dim) == 0:
            raise FrontendError(f"input {vi.name} has no shape")
        dims = tt.shape.dim
        per_sample = []
        for d in dims[1:]:
            if not d.HasField("dim_value"):
                raise FrontendError(f"input {vi.name}: dimension '{d.dim_param}' is symbolic; only the batch may be")
            per_sample.append(d.dim_value)
        if dims[0].HasField("dim_value"):
            self.static_batch = dims[0].dim_value
        elem = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        self.g.add_tensor(Tensor(vi.name, tuple(per_sample), dtype="f32" if elem.kind == "f" else "i64"))
        self.g.inputs.append(vi.name)
        self.probe[vi.name] = np.zeros((PROBE_BATCH, *per_sample), dtype=np.float64 if elem.kind == "f" else np.int64)

    def _node(self, node) -> None:
        live = [i for i in node.input if i]
        if node.op_type == "Shape" and not self.is_const(node.input[0]):
            shape = (PROBE_BATCH,) + self.shape(node.input[0])
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            start, end = attrs.get("start", 0), attrs.get("end", None)
            self.set_const(node.output[0], np.array(shape[start:end], dtype=np.int64))
            return
        if all(self.is_const(i) for i in live) and node.op_type not in ("QuantizeLinear",):
            self._fold(node)
            return
        if node.op_type not in onnx_ops.CONVERTERS:
            raise FrontendError(f"node {node.name or '<unnamed>'} ({node.op_type}): only supported on constants, "
                                "here it takes a run-time value")
        onnx_ops.CONVERTERS[node.op_type](self, node)

    def _fold(self, node) -> None:
        if node.op_type == "Constant":
            self.set_const(node.output[0], _constant_value(node))
            return
        ins = [i for i in node.input if i]
        g = onnx.helper.make_graph(
            [node], "fold",
            [onnx.helper.make_tensor_value_info(i, onnx.TensorProto.UNDEFINED, None) for i in ins],
            [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o])
        m = onnx.helper.make_model(g, opset_imports=list(self.model.opset_import))
        outs = ReferenceEvaluator(m).run(None, {i: self.value(i) for i in ins})
        for o, v in zip([o for o in node.output if o], outs):
            self.set_const(o, v)


FOLD_ONLY = {"Constant", "Shape", "Range", "ConstantOfShape", "Equal", "Less", "Greater", "Not", "Floor", "Ceil",
             "Cast", "Gather", "Slice", "Squeeze", "Unsqueeze", "Expand", "Where", "ReduceProd", "Tile", "Size",
             "NonZero", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Div", "Sub"}


def _constant_value(node) -> np.ndarray:
    a = node.attribute[0]
    v = onnx.helper.get_attribute_value(a)
    if a.name == "value":
        return numpy_helper.to_array(v)
    if a.name in ("value_float", "value_int"):
        return np.array(v)
    if a.name in ("value_floats", "value_ints"):
        return np.array(list(v))
    raise FrontendError(f"node {node.name}: Constant with attribute {a.name} is not supported")


def load_onnx(path: str | Path) -> onnx.ModelProto:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise FrontendError(f"cannot read {path}: {e.strerror}") from None
    try:
        model = onnx.load_from_string(data)
    except Exception as e:
        raise FrontendError(f"{path} is not a valid ONNX model ({type(e).__name__}: {str(e)[:120]})") from None
    if not model.graph.node:
        raise FrontendError(f"{path} holds no graph nodes (truncated or not an ONNX model?)")
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise FrontendError(f"{path} fails the ONNX checker: {str(e).splitlines()[0][:200]}") from None
    return _upgrade(model, path)


def _upgrade(model: onnx.ModelProto, path) -> onnx.ModelProto:
    """Old opsets (attributes that later became inputs) are converted to TARGET_OPSET by onnx itself."""
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), TARGET_OPSET)
    if version >= 13:
        return model
    try:
        return onnx.version_converter.convert_version(model, TARGET_OPSET)
    except Exception as e:
        raise FrontendError(f"{path}: cannot convert opset {version} to {TARGET_OPSET}: {str(e)[:200]}") from None


def import_onnx(model_or_path) -> Graph:
    model = model_or_path if isinstance(model_or_path, onnx.ModelProto) else load_onnx(model_or_path)
    return Frontend(model).run()
