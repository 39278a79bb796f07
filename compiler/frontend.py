"""ONNX -> float graph IR.

The frontend walks the nodes in order with a concrete probe batch: every activation has a probe value, so
shapes are known and exporter shape arithmetic (Shape, Gather, Concat, ...) folds to constants on the way.
A float input's probe is one sample (its values are never read, only shapes); integer inputs (token ids,
masks, whose arithmetic is evaluated on the probe) hold PROBE_BATCH samples. `Shape` of an activation reports
PROBE_BATCH for the batch axis whatever the probe holds; a Reshape target whose first entry is that value
(or -1 / 0) keeps the batch axis. Constant subgraphs fold through onnx's reference evaluator.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from ir import FrontendError, Graph, Tensor
from ir.float_eval import run_op

from . import batch_layout, masks, onnx_activations, onnx_attention, onnx_elementwise, onnx_hardmax, onnx_layout, onnx_norm, onnx_ops, onnx_reduce, onnx_select  # noqa: F401  (each registers converters)
from . import onnx_functions, onnx_qdq
from .onnx_ops import label

PROBE_BATCH = 7
SAME_TYPE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")    # type T for both operands in the ONNX spec
TARGET_OPSET = 17


class Frontend:
    def __init__(self, model: onnx.ModelProto, shapes: dict | None = None, data_shapes: dict | None = None):
        self.model = model
        self.input_shapes = input_shapes(model, shapes or {}, data_shapes or {})   # per-sample, every input
        self.g = Graph()
        self.consts: dict[str, np.ndarray] = {}     # folded values
        self.probe: dict[str, np.ndarray] = {}      # activation probe values (see the module doc)
        self.alias: dict[str, str] = {}             # onnx name -> IR tensor name
        self.qhint: dict[str, dict] = {}            # IR tensor -> quantisation given by the model
        self.origin: dict[str, str] = {}            # IR constant -> the onnx tensor it was made from
        self.static_batch: int | None = None
        self.batchnorms: list[tuple[str, str]] = []  # (scaled, shifted) IR tensors of each BatchNormalization
        self.layouts: dict[str, batch_layout.Layout] = {}   # IR tensor -> where the model has its batch axis

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

    def describe(self, node) -> str:
        """The node's inputs as the model has them: name and shape, N for the batch axis of an activation."""
        parts = []
        for i in node.input:
            if not i:
                continue
            if self.is_const(i):
                parts.append(f"{i} {list(np.shape(self.value(i)))} (constant)")
            elif self.name(i) in self.probe:
                parts.append(f"{i} [{', '.join(['N'] + [str(d) for d in self.shape(i)])}]")
            else:
                parts.append(i)
        return ", ".join(parts)

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
        if val.size == 0:
            raise FrontendError(f"node {label(node)} ({node.op_type}): its output {output} would be empty (shape "
                                f"[{', '.join(['N', *map(str, val.shape[1:])])}])")
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
        self.model = onnx_functions.expand(self.model, lambda n: op_key(n) in onnx_ops.CONVERTERS or
                                           op_key(n) in FOLD_ONLY or n.op_type == "Constant")
        graph = self.model.graph
        for init in graph.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
        inits = set(self.consts)
        for vi in graph.input:
            if vi.name in inits:
                continue
            self._add_input(vi)
        self.region = int_region(graph, set(self.consts), {i for i in self.g.inputs if self.g.tensors[i].dtype == "i64"})
        unsupported = self._unsupported()
        if unsupported:
            kinds = sorted({t for _, t, _ in unsupported})
            raise FrontendError(f"unsupported op(s) {', '.join(kinds)} at node(s) "
                                + ", ".join(f"{n} ({t}{why})" for n, t, why in unsupported))
        for node in graph.node:
            try:
                self._node(node)
            except (FrontendError, MemoryError):
                raise
            except Exception:  # a converter met a form it does not handle: say so in the model's terms
                raise FrontendError(f"node {label(node)} ({node.op_type}): this form is not supported (inputs "
                                    f"{self.describe(node)})") from None
        for vo in graph.output:
            n = self.name(vo.name)
            if n in self.consts:
                raise FrontendError(f"output {vo.name} is a constant; nothing to compile")
            if vo.name in self.region or n in self.g.inputs and self.g.tensors[n].dtype == "i64":
                raise FrontendError(f"output {vo.name} is computed from the integer inputs alone (an exporter's echo "
                                    "of its token ids or mask); a program's outputs come from its float part (leave "
                                    "it out: --outputs)")
            if n not in self.g.tensors:
                raise FrontendError(f"output {vo.name} is not computed by any node")
            if n in self.layouts:
                raise FrontendError(f"output {vo.name} has {self.layouts[n]}; a program's outputs keep the batch "
                                    "axis first and apart")
            self.g.outputs.append(n)
            self.g.output_names.append(vo.name)
        for n, h in self.qhint.items():
            if n in self.g.tensors:
                self.g.tensors[n].qhint = h
        onnx_qdq.attach(self)
        onnx_ops.fold_batchnorms(self)
        onnx_ops.fold_bias_adds(self)
        self.g.prune()
        onnx_ops.propagate_hints(self)
        return self.g

    def _add_input(self, vi) -> None:
        tt = vi.type.tensor_type
        per_sample = self.input_shapes[vi.name]
        if tt.shape.dim[0].HasField("dim_value"):
            n = tt.shape.dim[0].dim_value
            if self.static_batch is not None and n != self.static_batch:
                first = next(i.name for i in self.model.graph.input if i.type.tensor_type.shape.dim
                             and i.type.tensor_type.shape.dim[0].dim_value == self.static_batch)
                raise FrontendError(f"input {vi.name} has a first axis of {n} where {first} has "
                                    f"{self.static_batch}: the first axis of every input is the batch, one size for all")
            self.static_batch = n
        elem = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        self.g.add_tensor(Tensor(vi.name, tuple(per_sample), dtype="f32" if elem.kind == "f" else "i64"))
        self.g.inputs.append(vi.name)
        if elem.kind == "f":    # one sample of the model's own type: a float probe gives shapes only
            self.probe[vi.name] = np.zeros((1, *per_sample), dtype=elem)
        else:   # token ids / masks: valid indices of any table, and a mask with a valid first token
            v = np.random.default_rng(len(self.g.inputs)).integers(0, 2, (PROBE_BATCH, *per_sample))
            v.reshape(PROBE_BATCH, -1)[:, 0] = 1
            self.probe[vi.name] = v.astype(np.int64)

    def _unsupported(self) -> list[tuple[str, str, str]]:
        """(node, op, why) for every node that cannot be converted, found before converting any: a node whose
        inputs are all constants folds whatever its type; any other needs a converter."""
        const = set(self.consts)
        bad = []
        for n in self.model.graph.node:
            live = [i for i in n.input if i]
            if n.op_type in ("Constant", "Shape") and n.domain in ("", "ai.onnx") or all(i in const for i in live):
                const |= set(n.output)
            elif set(n.output) <= self.region:
                continue
            elif op_key(n) not in onnx_ops.CONVERTERS:
                why = ": supported on constants only" if op_key(n) in FOLD_ONLY else ""
                bad.append((label(n), op_key(n), why))
        return bad

    def _node(self, node) -> None:
        live = [i for i in node.input if i]
        if node.op_type == "Shape" and not self.is_const(node.input[0]):
            shape = batch_layout.full_shape(self, node.input[0], PROBE_BATCH)
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            start, end = attrs.get("start", 0), attrs.get("end", None)
            self.set_const(node.output[0], np.array(shape[start:end], dtype=np.int64))
            return
        if all(self.is_const(i) for i in live) and node.op_type not in ("QuantizeLinear",):
            self._fold(node)
            return
        if set(node.output) <= self.region:
            self._fold(node, into=self.probe)
            return
        for i in live:
            if i in self.region and self.name(i) not in self.g.tensors:
                masks.materialise(self, i)
        if node.op_type in SAME_TYPE_OPS:
            kinds = {i: np.asarray(self.value(i)).dtype for i in live[:2]}
            if len({d.kind == "f" for d in kinds.values()}) > 1:
                raise FrontendError(f"node {node.name or '<unnamed>'} ({node.op_type}): inputs of different types ("
                                    + ", ".join(f"{i} {d}" for i, d in kinds.items()) + "); ONNX (and onnxruntime) "
                                    "want one")
        if batch_layout.involved(self, node):
            return batch_layout.convert(self, node)
        onnx_ops.CONVERTERS[op_key(node)](self, node)

    def _fold(self, node, into=None) -> None:
        """Evaluate a node on known values: constants, or (into=self.probe) the probe values of the integer
        inputs' region, which masks.materialise turns into IR ops where the model's float part reads them."""
        if into is not None:
            ins = [i for i in node.input if i]
            for o, v in zip([o for o in node.output if o], evaluate_node(node, self.model, {i: self.value(i) for i in ins})):
                into[o] = np.asarray(v)
            return
        if node.op_type == "Constant":
            self.set_const(node.output[0], _constant_value(node))
            return
        if node.op_type in NUMPY_FOLD and node.domain in ("", "ai.onnx"):
            self.set_const(node.output[0], NUMPY_FOLD[node.op_type](node, *[self.value(i) if i else None
                                                                            for i in node.input]))
            return
        ins = [i for i in node.input if i]
        for o, v in zip([o for o in node.output if o], evaluate_node(node, self.model, {i: self.value(i) for i in ins})):
            self.set_const(o, v)


def input_names(model: onnx.ModelProto) -> list[str]:
    inits = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def input_shapes(model: onnx.ModelProto, shapes: dict, data_shapes: dict) -> dict[str, tuple[int, ...]]:
    """The per-sample shape (batch axis left out) of every graph input. A dimension the model leaves symbolic
    (a dim_param such as 'sequence_length', or none at all) takes its size from `shapes` (the user's, checked
    against the model's fixed dimensions), else from another input with the same dim_param, else from
    `data_shapes` (the calibration data's per-sample shapes, which pipeline.check_calib checks later)."""
    names = set(input_names(model))
    inputs = {vi.name: vi.type.tensor_type for vi in model.graph.input if vi.name in names}
    for name in shapes:
        if name not in inputs:
            raise FrontendError(f"a shape is given for '{name}', which is not an input of the model (inputs: "
                                f"{', '.join(inputs)})")
    params: dict[str, int] = {}
    out: dict[str, list] = {}
    for name, tt in inputs.items():
        if not tt.HasField("shape"):
            raise FrontendError(f"input {name} has no shape")
        if len(tt.shape.dim) == 0:      # e.g. silero-vad's sample rate `sr`
            raise FrontendError(f"input {name} is a scalar (rank 0); every input needs a batch axis first")
        dims, given = tt.shape.dim[1:], shapes.get(name)
        model_dims = "[" + ", ".join(["N"] + [str(d.dim_value) if d.HasField("dim_value") else d.dim_param or "?"
                                              for d in dims]) + "]"
        if given is not None and (len(given) != len(dims) or any(
                d.HasField("dim_value") and d.dim_value != v for d, v in zip(dims, given))):
            raise FrontendError(f"input {name}: the given shape [N, {', '.join(map(str, given))}] does not fit the "
                                f"model's {model_dims} (give the dimensions after the batch)")
        out[name] = [d.dim_value if d.HasField("dim_value") else None if given is None else int(given[k])
                     for k, d in enumerate(dims)]
        for d, v in zip(dims, out[name]):
            if v is not None and _shared(d) and params.setdefault(d.dim_param, v) != v:
                raise FrontendError(f"dimension '{d.dim_param}' is given as both {params[d.dim_param]} and {v}")
    for name, tt in inputs.items():
        data = data_shapes.get(name)
        fits = data is not None and len(data) == len(out[name])
        for k, d in enumerate(tt.shape.dim[1:]):
            v = out[name][k]
            if v is None:
                v = params[d.dim_param] if _shared(d) and d.dim_param in params else int(data[k]) if fits else None
            if v is None:
                raise FrontendError(f"input {name}: dimension {k + 1} ('{d.dim_param or '?'}') is symbolic; give its "
                                    f"size (pimc --shape {name}=...) or calibration data")
            if v < 1:
                raise FrontendError(f"input {name}: dimension {k + 1} has size {v}")
            out[name][k] = v
            if _shared(d):
                params.setdefault(d.dim_param, v)
    return {k: tuple(v) for k, v in out.items()}


def _shared(dim) -> bool:
    """A named symbolic dimension, the same size wherever the name appears; '?' (paddle2onnx writes it for
    every unknown size) names nothing."""
    return bool(dim.dim_param) and dim.dim_param != "?"


def evaluate_node(node, model, feeds: dict) -> list:
    """One ONNX node on concrete values, through onnx's reference evaluator."""
    g = onnx.helper.make_graph(
        [node], "fold",
        [onnx.helper.make_tensor_value_info(i, onnx.TensorProto.UNDEFINED, None) for i in feeds],
        [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o])
    m = onnx.helper.make_model(g, opset_imports=list(model.opset_import))
    return ReferenceEvaluator(m).run(None, feeds)


def int_region(graph, const: set, ints: set) -> set:
    """ONNX tensors computed from the integer inputs (token masks, ids) and constants only, other than through
    an embedding lookup (Gather from a constant table): the model's mask arithmetic. It is evaluated on the
    probe, never converted node by node; masks.materialise recognises what reaches the float part."""
    const, region = set(const), set(ints)
    for n in graph.node:
        live = [i for i in n.input if i]
        if n.op_type in ("Constant", "Shape") or all(i in const for i in live):
            const |= set(n.output)
        elif any(i in region for i in live) and all(i in region or i in const for i in live) \
                and not (n.op_type == "Gather" and live[0] in const):
            region |= set(n.output)
    return region - ints


FOLD_ONLY = {"Constant", "Shape", "Range", "ConstantOfShape", "Equal", "Less", "Greater", "Not", "Floor", "Ceil",
             "Cast", "Gather", "Slice", "Squeeze", "Unsqueeze", "Expand", "Where", "ReduceProd", "Tile", "Size",
             "NonZero", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Div", "Sub"}


def op_key(node) -> str:
    """The converter registry key: the op type, prefixed by its domain outside the standard one."""
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


def _qaxis(node, v, x) -> np.ndarray:
    """A per-axis scale / zero point shaped to broadcast against x."""
    v = np.asarray(v)
    if onnx_ops.attrs(node).get("block_size", 0):
        raise FrontendError(f"node {label(node)} ({node.op_type}): blocked quantisation is not supported")
    if v.ndim == 0 or v.size == 1:
        return v.reshape(())
    axis = onnx_ops.attrs(node).get("axis", 1) % x.ndim
    return v.reshape([-1 if d == axis else 1 for d in range(x.ndim)])


def _dequantize(node, x, s, z=None):
    z = np.zeros((), np.int64) if z is None else _qaxis(node, z, x).astype(np.int64)
    return ((x.astype(np.int64) - z) * _qaxis(node, s, x).astype(np.float64)).astype(np.asarray(s).dtype)


def _quantize(node, x, s, z=None):
    to = onnx_ops.attrs(node).get("output_dtype", 0)
    dtype = np.asarray(z).dtype if z is not None else onnx.helper.tensor_dtype_to_np_dtype(to) if to else np.uint8
    info = np.iinfo(dtype)
    zz = 0 if z is None else _qaxis(node, z, x).astype(np.int64)
    return np.clip(np.rint(x / _qaxis(node, s, x)) + zz, info.min, info.max).astype(dtype)


# Q / DQ folds in NumPy: onnx's reference evaluator has no kernel for every opset these ops come in
NUMPY_FOLD = {"DequantizeLinear": _dequantize, "QuantizeLinear": _quantize}


def _constant_value(node) -> np.ndarray:
    a = node.attribute[0]
    v = onnx.helper.get_attribute_value(a)
    if a.name == "value":
        return numpy_helper.to_array(v)
    if a.name in ("value_float", "value_int"):
        return np.array(v)
    if a.name in ("value_floats", "value_ints"):
        return np.array(list(v))
    raise FrontendError(f"node {label(node)}: Constant with attribute {a.name} is not supported")


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
    _load_external_data(model, path)
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise FrontendError(f"{path} fails the ONNX checker: {str(e).splitlines()[0][:200]}") from None
    return _upgrade(model, path)


def _load_external_data(model: onnx.ModelProto, path) -> None:
    """Tensors kept in files beside the model are read from the model's folder, never the current one (onnx
    refuses locations outside that folder and ranges past a file's end)."""
    from onnx.external_data_helper import load_external_data_for_model
    try:
        load_external_data_for_model(model, str(Path(path).resolve().parent))
    except Exception as e:
        raise FrontendError(f"{path}: cannot read its external tensor data: {str(e)[:200]}") from None


def _upgrade(model: onnx.ModelProto, path) -> onnx.ModelProto:
    """Old opsets (attributes that later became inputs) are converted to TARGET_OPSET by onnx itself."""
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), TARGET_OPSET)
    if version >= 13:
        return model
    listed = {i.name for i in model.graph.input}
    if any(i.name not in listed for i in model.graph.initializer):
        # IR 3 lists every initializer among the graph inputs and the converter holds an unlisted one undefined;
        # since IR 4 an initializer needs no listing, and a model that leaves one out means the same
        model = _copy(model)
        model.graph.input.extend(onnx.helper.make_tensor_value_info(i.name, i.data_type, list(i.dims))
                                 for i in model.graph.initializer if i.name not in listed)
    undefined = _undefined(model.graph)
    if undefined:
        node, name = undefined
        raise FrontendError(f"node {label(node)} ({node.op_type}) reads '{name}', which no graph input, initializer "
                            "or earlier node defines")
    try:
        return onnx.version_converter.convert_version(model, TARGET_OPSET)
    except Exception as e:      # its assertion text after its source location: "Gemm in opset version 6 ..."
        why = str(e).splitlines()[0].split(" failed: ")[-1][:200]
        raise FrontendError(f"{path}: onnx's version converter cannot bring opset {version} to {TARGET_OPSET} "
                            f"({why})") from None


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def _undefined(graph) -> tuple | None:
    """(node, tensor) of the first node input that nothing before it defines (None when all are defined)."""
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    for node in graph.node:
        for i in node.input:
            if i not in known:
                return node, i
        known.update(node.output)
    return None


def as_model(model_or_path) -> onnx.ModelProto:
    if isinstance(model_or_path, onnx.ModelProto):
        return _upgrade(model_or_path, model_or_path.graph.name or "<model>")
    return load_onnx(model_or_path)


def import_onnx(model_or_path, shapes: dict | None = None, data_shapes: dict | None = None) -> Graph:
    """shapes / data_shapes: per-sample input shapes for the model's symbolic dimensions (see input_shapes)."""
    return Frontend(as_model(model_or_path), shapes, data_shapes).run()
