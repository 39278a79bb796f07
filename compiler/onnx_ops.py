"""One converter per ONNX op type: ONNX node -> IR op(s), on per-sample shapes. Registry: CONVERTERS."""
from __future__ import annotations

import numpy as np
import onnx

from ir import FrontendError

CONVERTERS = {}


def converts(*op_types):
    def reg(fn):
        for t in op_types:
            CONVERTERS[t] = fn
        return fn
    return reg


def label(node) -> str:
    """How messages name a node: its name, or for an unnamed one the tensor it computes."""
    return node.name or f"computing '{node.output[0]}'"


def attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _decode(v):
    return v.decode() if isinstance(v, bytes) else v


def _spatial(fe, node, x_shape, kernel, a):
    """Resolve strides, dilations and pads (incl. auto_pad, ceil_mode) for a 2-D window op."""
    if len(kernel) != 2:
        raise FrontendError(f"node {label(node)} ({node.op_type}): only 2-D windows are supported, got {len(kernel)}-D")
    strides = tuple(a.get("strides", (1, 1)))
    dil = tuple(a.get("dilations", (1, 1)))
    pads = tuple(a.get("pads", (0, 0, 0, 0)))
    pads = (pads[0], pads[1], pads[2], pads[3])  # onnx: (t, l, b, r)
    auto = _decode(a.get("auto_pad", "NOTSET"))
    hw = x_shape[-2:]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        p = []
        for i in range(2):
            out = -(-hw[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - hw[i])
            lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
            p.append((lo, total - lo))
        pads = (p[0][0], p[1][0], p[0][1], p[1][1])
    elif auto == "VALID":
        pads = (0, 0, 0, 0)
    extra = [0, 0]
    if a.get("ceil_mode", 0):
        # output ceil((span) / stride) + 1, less a last window that would start in the end padding (what
        # onnxruntime and PyTorch compute); the extra end padding makes the floor formula give that count
        for i in range(2):
            eff = (kernel[i] - 1) * dil[i] + 1
            span = hw[i] + pads[i] + pads[i + 2] - eff
            out = -(-span // strides[i]) + 1
            if (out - 1) * strides[i] >= hw[i] + pads[i]:
                out -= 1
            extra[i] = max(0, (out - 1) * strides[i] + eff - (hw[i] + pads[i] + pads[i + 2]))
        pads = (pads[0], pads[1], pads[2] + extra[0], pads[3] + extra[1])
    return dict(kernel=tuple(kernel), strides=strides, pads=pads, dilations=dil), any(extra)


@converts("Conv")
def conv(fe, node):
    a = attrs(node)
    x, w = node.input[0], node.input[1]
    if not fe.is_const(w):
        raise FrontendError(f"node {label(node)} (Conv): weights must be constant")
    W = fe.value(w).astype(np.float64)
    if W.ndim == 3:
        from .onnx_windows1d import lift
        return lift(fe, node, conv)
    if W.ndim == 5:
        from .onnx_windows3d import conv3d
        return conv3d(fe, node, conv)
    geo, _ = _spatial(fe, node, fe.shape(x), W.shape[2:], a)
    g, c = a.get("group", 1), (fe.shape(x) or (None,))[0]
    if g < 1 or W.shape[0] % g or W.shape[1] * g != c:      # the float probe would broadcast past a mismatch
        raise FrontendError(f"node {label(node)} (Conv): weights {list(W.shape)} with group {g} do not fit an input "
                            f"of {c} channels")
    ins = [x, _new_const(fe, w, W)]      # a copy of its own: folding a BatchNormalization rewrites it
    if len(node.input) > 2 and node.input[2]:
        ins.append(_new_const(fe, node.input[2], fe.value(node.input[2]).astype(np.float64)))
    fe.emit(node, "conv", ins, node.output[0], group=a.get("group", 1), **geo)


@converts("Gemm")
def gemm(fe, node):
    a = attrs(node)
    A, B = node.input[0], node.input[1]
    if fe.is_const(A) or not fe.is_const(B) or a.get("transA", 0):
        raise FrontendError(f"node {label(node)} (Gemm): only activation x constant weight (transA=0) is supported")
    W = fe.value(B).astype(np.float64)
    W = (W.T if a.get("transB", 0) else W) * a.get("alpha", 1.0)
    ins = [A, _new_const(fe, B, W)]
    C = node.input[2] if len(node.input) > 2 and node.input[2] else ""
    if C and not fe.is_const(C):      # a run-time C (torch's addmm): the product, then + beta C
        same_rank(fe, node, [A, C])
        y = fe.emit(node, "linear", ins, node.output[0] + ".ab")
        if a.get("beta", 1.0) != 1.0:
            beta = _new_const(fe, node.output[0] + ".beta", np.float64(a["beta"]))
            _binary(fe, onnx.helper.make_node("Mul", [C, beta], [C + ".beta"], name=node.name), "mul")
            C = C + ".beta"
        return _binary(fe, onnx.helper.make_node("Add", [y, C], [node.output[0]], name=node.name), "add")
    if C:
        C = fe.value(node.input[2]).astype(np.float64) * a.get("beta", 1.0)
        if C.size not in (1, W.shape[1]) or C.ndim > 2 or C.ndim == 2 and C.shape[0] != 1:
            raise FrontendError(f"node {label(node)} (Gemm): bias of shape {list(C.shape)} varies per row")
        ins.append(_new_const(fe, node.input[2], np.broadcast_to(C.reshape(-1), (W.shape[1],)).copy()))
    fe.emit(node, "linear", ins, node.output[0])


def _new_const(fe, base, value):
    name = fe.g.unique(base)
    while name in fe.consts:
        name = fe.g.unique(name + "_")
    fe.set_const(name, value)
    fe.origin[name] = fe.name(base)
    return name


def _full(fe, x) -> str:
    return "[" + ", ".join(["N"] + [str(d) for d in fe.shape(x)]) + "]"


@converts("MatMul")
def matmul(fe, node):
    """activation x constant: a linear layer (a 1-D constant: one output column, then dropped; leading axes
    of size 1 dropped); activation x activation with the same number of axes, at least 3 with the batch: the
    per-sample matmul. The batch axis is never a matrix axis: a 1-D activation, or two activations of
    different ranks (ONNX would broadcast one's batch axis against the other's rows), are refused."""
    A, B = node.input
    what = f"node {label(node)} (MatMul)"
    for i in (A, B):
        if not fe.is_const(i) and not fe.shape(i):
            raise FrontendError(f"{what}: {i} is 1-D ({_full(fe, i)}): its only axis is the batch, which leaves no "
                                "vector to multiply")
    if fe.is_const(A):
        raise FrontendError(f"{what}: the left operand {A} is a constant (shape {list(fe.value(A).shape)}); only "
                            "activation x constant weight or activation x activation is supported")
    if fe.is_const(B):
        one_row_per_batch(fe, B, A)
        W = fe.value(B).astype(np.float64)
        k = fe.shape(A)[-1]
        if W.ndim == 1:
            if W.shape[0] != k:
                raise FrontendError(f"{what}: {A} {_full(fe, A)} times {B} of shape {list(W.shape)}: inner sizes "
                                    f"{k} and {W.shape[0]} differ")
            y = fe.emit(node, "linear", [A, _new_const(fe, B, W.reshape(-1, 1))], node.output[0] + ".col")
            return fe.emit(node, "reshape", [y], node.output[0], shape=fe.shape(A)[:-1])
        if W.ndim > 2 and (W.ndim > len(fe.shape(A)) + 1 or any(d != 1 for d in W.shape[:-2])):
            from .onnx_matmul_heads import per_head
            return per_head(fe, node, A, B, W)
        W = W.reshape(W.shape[-2:])
        if W.shape[0] != k:
            raise FrontendError(f"{what}: {A} {_full(fe, A)} times {B} of shape {list(W.shape)}: inner sizes "
                                f"{k} and {W.shape[0]} differ")
        return fe.emit(node, "linear", [A, _new_const(fe, B, W)], node.output[0])
    sa, sb = fe.shape(A), fe.shape(B)
    if len(sa) != len(sb) or len(sa) < 2 or sa[:-2] != sb[:-2] or sa[-1] != sb[-2]:
        raise FrontendError(f"{what}: {A} {_full(fe, A)} times {B} {_full(fe, B)}; two activations must have the "
                            "same number of axes (at least 3 with the batch), the same leading sizes and matching "
                            "inner sizes")
    fe.emit(node, "matmul", [A, B], node.output[0])


@converts("BatchNormalization")
def batchnorm(fe, node):
    """y = x * scale + shift per channel (axis 1); fold_batchnorms merges it into a conv / linear later."""
    a = attrs(node)
    x, s, b, m, v = node.input[:5]
    if not all(fe.is_const(i) for i in (s, b, m, v)) or a.get("training_mode", 0):
        raise FrontendError(f"node {label(node)} (BatchNormalization): only inference with constant statistics "
                            "is supported")
    scale = fe.value(s).astype(np.float64) / np.sqrt(fe.value(v).astype(np.float64) + a.get("epsilon", 1e-5))
    shift = fe.value(b).astype(np.float64) - fe.value(m).astype(np.float64) * scale
    shape = fe.shape(x)
    if not shape or scale.shape != (shape[0],) or shift.shape != (shape[0],):
        raise FrontendError(f"node {label(node)} (BatchNormalization): statistics of shape {list(scale.shape)} "
                            f"for input {list(shape)}; only per-channel (axis 1) statistics are supported")
    shp = (1, -1) + (1,) * (len(shape) - 1)
    # onnxruntime's float32 arithmetic (1 / sqrt(var + eps) * gain, bias - mean * that), for a BN kept between
    # two quantised tensors (passes/quantize.py fold_channel_affines)
    f32 = [fe.value(i).astype(np.float32) for i in (s, b, m, v)]
    k32 = np.float32(1) / np.sqrt(f32[3] + np.float32(a.get("epsilon", 1e-5))) * f32[0]
    t = fe.emit(node, "mul", [x, _new_const(fe, s, scale.reshape(shp))], node.output[0] + ".scaled",
                float32=(k32, f32[1] - f32[2] * k32))
    fe.batchnorms.append((t, fe.emit(node, "add", [t, _new_const(fe, b, shift.reshape(shp))], node.output[0])))


def fold_batchnorms(fe):
    """Merge each BatchNormalization into the conv / linear that feeds it, where that op's output feeds
    nothing else (run once the whole graph is built, so every consumer is known): W' = W * scale per output
    channel, b' = b * scale + shift. A quantised model's statement about the conv output (a Q/DQ pair between
    conv and BN) goes with that tensor: the folded op never produces it. A BN that stays (mul, add) on a
    tensor with the model's quantisation gets the bounds that range maps to, so a QDQ model compiles
    without calibration. A BN between two tensors whose codes the model states is not folded: onnxruntime
    requantises the conv's output before the BN, and folding would drop that rounding and the conv's codes."""
    g = fe.g
    for t, y in fe.batchnorms:
        mul, add = g.producer(t), g.producer(y)
        src = mul.inputs[0]
        prod = g.producer(src)
        scale, shift = g.tensors[mul.inputs[1]].data.reshape(-1), g.tensors[add.inputs[1]].data.reshape(-1)
        # a quantised model that states the codes on both sides keeps them: the BN stays, one per-channel
        # table from the conv's codes to its own (passes/quantize.py fold_channel_affines)
        after = g.consumers(y)
        stated = bool(g.tensors[src].qhint) and (bool(g.tensors[y].qhint) or len(after) == 1 and after[0].kind in
                                                 ("relu", "clip") and bool(g.tensors[after[0].outputs[0]].qhint))
        if prod is None or prod.kind not in ("conv", "linear") or src in g.outputs or stated \
                or len(g.consumers(src)) != 1 or len(g.consumers(t)) != 1 \
                or prod.kind == "linear" and len(g.tensors[src].shape) != 1:
            h = g.tensors[src].qhint
            if h:
                lo, hi = -h["zero"] * h["scale"], (255 - h["zero"]) * h["scale"]
                for name, (a, b) in ((t, (lo * scale, hi * scale)), (y, (lo * scale + shift, hi * scale + shift))):
                    if not g.tensors[name].qhint:
                        g.tensors[name].qhint = _bounds_hint(float(np.minimum(a, b).min()), float(np.maximum(a, b).max()))
            continue
        w = g.tensors[prod.inputs[1]]
        w.data = w.data * (scale.reshape(-1, 1, 1, 1) if prod.kind == "conv" else scale)
        if len(prod.inputs) > 2:
            g.tensors[prod.inputs[2]].data = g.tensors[prod.inputs[2]].data * scale + shift
        else:
            prod.inputs.append(g.const(g.unique(prod.name + ".bias"), shift))
        prod.outputs = [y]
        g.remove_op(mul.name)
        g.remove_op(add.name)
        del g.tensors[src], g.tensors[t]


def fold_bias_adds(fe):
    """An Add of a constant bias right after a conv / linear (MatMul + Add is how exporters write a Linear
    on 3-D inputs; some write a bias-less Conv + Add) becomes that op's bias, where the op's output feeds
    nothing else and the constant is one value per output channel (or a scalar)."""
    g = fe.g
    for add in [op for op in g.topo() if op.kind == "add"]:
        consts = [i for i in add.inputs if g.tensors[i].is_const]
        if len(consts) != 1:
            continue
        src = next(i for i in add.inputs if i != consts[0])
        prod, c = g.producer(src), g.tensors[consts[0]].data
        if prod is None or prod.kind not in ("conv", "linear") or src in g.outputs or len(g.consumers(src)) != 1:
            continue
        if g.tensors[src].qhint:    # a quantised model rounds the product to its codes before adding the bias
            continue
        full = (1,) + tuple(g.tensors[src].shape)
        n = full[1] if prod.kind == "conv" else full[-1]
        axis = 1 if prod.kind == "conv" else len(full) - 1
        lead = c.ndim - (len(full) - axis)       # the constant's axis that lines up with the channels
        if c.ndim > len(full) or np.broadcast_shapes(full, c.shape) != full or c.size not in (1, n) \
                or c.size == n > 1 and (lead < 0 or c.shape[lead] != n):
            continue
        bias = np.broadcast_to(c.reshape(-1), (n,)).astype(np.float64)
        if len(prod.inputs) > 2:
            g.tensors[prod.inputs[2]].data = g.tensors[prod.inputs[2]].data + bias
        else:
            prod.inputs.append(g.const(g.unique(prod.name + ".bias"), bias.copy()))
        prod.outputs = list(add.outputs)
        g.remove_op(add.name)
        del g.tensors[src]


VALUE_PRESERVING = ("reshape", "transpose", "maxpool", "gmaxpool", "pad", "slice", "upsample")


def propagate_hints(fe):
    """Across ops that only move or select values, one quantisation serves both sides: a quantised model
    that states it on one side (QOperator models leave Reshape / Transpose / MaxPool between QLinear ops in
    float) needs no calibration for the other. Forward to outputs, then back to single-consumer inputs."""
    g = fe.g
    ops = [op for op in g.topo() if op.kind in VALUE_PRESERVING]
    for op in ops:
        src, dst = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
        if src.qhint and not dst.qhint:
            dst.qhint = dict(src.qhint)
    for op in reversed(ops):
        src, dst = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
        if dst.qhint and not src.qhint and not src.is_const and len(g.consumers(src.name)) == 1:
            src.qhint = dict(dst.qhint)


def _bounds_hint(lo, hi) -> dict:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255 if hi > lo else 1.0
    return {"scale": scale, "zero": int(np.clip(round(-lo / scale), 0, 255)), "signed": False, "derived": True}


@converts("Relu")
def relu(fe, node):
    fe.emit(node, "relu", [node.input[0]], node.output[0])


@converts("Clip")
def clip(fe, node):
    a = attrs(node)
    lo = float(fe.value(node.input[1])) if len(node.input) > 1 and node.input[1] else a.get("min", -np.inf)
    hi = float(fe.value(node.input[2])) if len(node.input) > 2 and node.input[2] else a.get("max", np.inf)
    lo = min(lo, hi)        # ONNX: min above max sets every value to max
    if lo == 0 and hi == np.inf:
        fe.emit(node, "relu", [node.input[0]], node.output[0])
    else:
        fe.emit(node, "clip", [node.input[0]], node.output[0], lo=float(lo), hi=float(hi))


_UNARY = {"Sigmoid": ("sigmoid", {}), "Tanh": ("tanh", {}), "Exp": ("exp", {}), "Abs": ("abs", {}),
          "Neg": ("neg", {}), "Sqrt": ("sqrt", {}), "HardSwish": ("hard_swish", {})}


@converts(*_UNARY)
def unary(fe, node):
    fn, params = _UNARY[node.op_type]
    fe.emit(node, "unary", [node.input[0]], node.output[0], fn=fn, params=params)


@converts("LeakyRelu")
def leaky(fe, node):
    fe.emit(node, "unary", [node.input[0]], node.output[0], fn="leaky_relu",
            params={"alpha": attrs(node).get("alpha", 0.01)})


@converts("PRelu")
def prelu(fe, node):
    """A constant slope: one value is a leaky ReLU (a table lookup); one per channel (MTCNN, PP-OCR) is
    x + (slope - 1) * min(x, 0), a clip, a per-channel multiply and an add."""
    x, slope = node.input
    if not fe.is_const(slope):      # a run-time slope: x + (slope - 1) * min(x, 0)
        if len(fe.shape(slope)) != len(fe.shape(x)):
            raise FrontendError(f"node {label(node)} (PRelu): run-time slope {slope} {_full(fe, slope)} for input "
                                f"{_full(fe, x)}; it needs as many axes")
        neg = fe.emit(node, "clip", [x], node.output[0] + ".neg", lo=float(np.finfo(np.float32).min), hi=0.0)
        s1 = fe.emit(node, "add", [slope, _new_const(fe, node.name + ".minus1", np.array(-1.0))], node.output[0] + ".s1")
        scaled = fe.emit(node, "mul", [neg, s1], node.output[0] + ".scaled")
        return fe.emit(node, "add", [x, scaled], node.output[0])
    a = fe.value(slope).astype(np.float64)
    full = (1,) + fe.shape(x)
    if np.broadcast_shapes(full, a.shape) != full:
        raise FrontendError(f"node {label(node)} (PRelu): constant slope of shape {list(a.shape)} does not broadcast "
                            f"within a sample of {x} {_full(fe, x)}")
    if a.size == 1 or np.all(a == a.flat[0]):
        return fe.emit(node, "unary", [x], node.output[0], fn="leaky_relu", params={"alpha": float(a.flat[0])})
    neg = fe.emit(node, "clip", [x], node.output[0] + ".neg", lo=float(np.finfo(np.float32).min), hi=0.0)
    scaled = fe.emit(node, "mul", [neg, _new_const(fe, slope, a - 1.0)], node.output[0] + ".scaled")
    fe.emit(node, "add", [x, scaled], node.output[0])


@converts("Elu")
def elu(fe, node):
    fe.emit(node, "unary", [node.input[0]], node.output[0], fn="elu", params={"alpha": attrs(node).get("alpha", 1.0)})


@converts("HardSigmoid")
def hard_sigmoid(fe, node):
    a = attrs(node)
    fe.emit(node, "unary", [node.input[0]], node.output[0], fn="hard_sigmoid",
            params={"alpha": a.get("alpha", 0.2), "beta": a.get("beta", 0.5)})


@converts("MaxPool", "AveragePool")
def pool(fe, node):
    a = attrs(node)
    if len(node.output) > 1 and node.output[1]:
        raise FrontendError(f"node {label(node)} (MaxPool): the Indices output is not supported")
    if len(a["kernel_shape"]) == 1:
        from .onnx_windows1d import lift
        return lift(fe, node, pool)
    if len(a["kernel_shape"]) == 3:
        from .onnx_windows3d import pool3d
        return pool3d(fe, node, pool)
    geo, ceil_extra = _spatial(fe, node, fe.shape(node.input[0]), tuple(a["kernel_shape"]), a)
    if node.op_type == "MaxPool":
        fe.emit(node, "maxpool", [node.input[0]], node.output[0], **geo)
        return
    include = a.get("count_include_pad", 0)
    if include and ceil_extra:
        # the divisor counts the explicit pads but not the ceil-mode overhang: with no explicit pads that is
        # the in-image count (count_include_pad=0); otherwise the window op cannot express it
        if any(a.get("pads", (0, 0, 0, 0))) or _decode(a.get("auto_pad", "NOTSET")) not in ("NOTSET", "VALID"):
            raise FrontendError(f"node {label(node)} (AveragePool): ceil_mode with count_include_pad and padding "
                                "is not supported")
        include = 0
    fe.emit(node, "avgpool", [node.input[0]], node.output[0], count_include_pad=include, **geo)


@converts("GlobalAveragePool")
def gap(fe, node):
    fe.emit(node, "gavgpool", [node.input[0]], node.output[0])


@converts("GlobalMaxPool")
def gmp(fe, node):
    fe.emit(node, "gmaxpool", [node.input[0]], node.output[0])


def one_row_per_batch(fe, c: str, x: str) -> bool:
    """Whether constant c, with as many axes as activation x has with the batch, was expanded to the batch
    size that Shape reported and holds one row repeated; if so it is kept as that one row."""
    v, full = np.shape(fe.value(c)), (1,) + fe.shape(x)
    batches = {PROBE()} | ({fe.static_batch} if fe.static_batch else set())
    if len(v) == len(full) and v[0] in batches - {1}:
        rows = np.asarray(fe.value(c))
        if (rows == rows[:1]).all():
            fe.consts[fe.name(c)] = rows[:1].copy()
            return True
    return False


def same_rank(fe, node, live: list[str]) -> None:
    """Run-time operands combined element by element have one number of axes: ONNX would line a shorter
    one's batch axis up with a sample axis of the longer (one value per sample for some other axis)."""
    ranks = {len(fe.shape(i)) for i in live}
    if len(ranks) > 1:
        raise FrontendError(f"node {label(node)} ({node.op_type}): run-time operands "
                            + ", ".join(f"{i} {_full(fe, i)}" for i in live) + " have different numbers of axes; "
                            "broadcasting would line the batch axis of one up with a sample axis of another")


def per_sample_const(fe, node, c: str, x: str) -> None:
    """A constant combined element by element with activation x may vary within a sample only: a constant
    with as many axes as x has with the batch (or more) and a first axis longer than 1 would give each sample
    of the batch its own value, which a program (one copy of its constants for every sample) cannot hold.
    A constant expanded to the batch size that Shape reported (a class token or token-type ids broadcast with
    Expand(Shape(x)[0], ...)) holds one row repeated: it is kept as that one row."""
    if one_row_per_batch(fe, c, x):
        return
    v, full = np.shape(fe.value(c)), (1,) + fe.shape(x)
    if len(v) > len(full) or len(v) == len(full) and v[0] != 1:
        raise FrontendError(f"node {label(node)} ({node.op_type}): constant {c} of shape {list(v)} reaches the batch "
                            f"axis of {x} {_full(fe, x)} (one value per sample); only a "
                            "constant that is the same for every sample is supported")


def _binary(fe, node, kind, transform=None):
    a, b = node.input
    live = [i for i in (a, b) if not fe.is_const(i)]
    same_rank(fe, node, live)
    for i in (a, b):
        if fe.is_const(i):
            per_sample_const(fe, node, i, live[0])
    ins = []
    for i in (a, b):
        if fe.is_const(i):
            v = fe.value(i).astype(np.float64)
            ins.append(_new_const(fe, i, transform(v) if transform else v))
        else:
            ins.append(i)
    fe.emit(node, kind, ins, node.output[0])


@converts("Add")
def add(fe, node):
    _binary(fe, node, "add")


@converts("Sum")
def sum_(fe, node):
    """Variadic Add as a chain of adds."""
    ins = list(node.input)
    acc = ins[0]
    for k, i in enumerate(ins[1:], 1):
        out = node.output[0] if k == len(ins) - 1 else f"{node.output[0]}.{k}"
        _binary(fe, onnx.helper.make_node("Add", [acc, i], [out], name=node.name), "add")
        acc = out
    if len(ins) == 1:
        fe.forward(node.output[0], ins[0])


@converts("Mul")
def mul(fe, node):
    _binary(fe, node, "mul")


@converts("Sub")
def sub(fe, node):
    a, b = node.input
    if fe.is_const(b):
        _binary(fe, node, "add", transform=np.negative)
    else:
        neg = fe.emit(node, "unary", [b], node.output[0] + ".neg", fn="neg", params={})
        fe.emit(node, "add", [a, neg], node.output[0])


@converts("Div")
def div(fe, node):
    if not fe.is_const(node.input[1]):
        return _binary(fe, node, "div")
    _binary(fe, node, "mul", transform=lambda v: 1.0 / v)


@converts("Concat")
def concat(fe, node):
    axis = attrs(node)["axis"]
    live = [i for i in node.input if not fe.is_const(i)]
    empty = [i for i in node.input if fe.is_const(i) and np.size(fe.value(i)) == 0]
    if empty:       # parts with no values add nothing (an empty Split part)
        node = onnx.helper.make_node("Concat", [i for i in node.input if i not in empty], list(node.output),
                                     name=node.name, axis=axis)
        if len(node.input) == 1:
            return fe.forward(node.output[0], node.input[0])
    rank = len(fe.shape(live[0])) + 1
    axis = axis % rank
    if axis == 0:
        raise FrontendError(f"node {label(node)} (Concat): concatenation along the batch axis is not supported")
    for i in node.input:
        if fe.is_const(i):          # one copy, broadcast to the batch (a ViT's class token)
            per_sample_const(fe, node, i, live[0])
            v = np.asarray(fe.value(i))
            if v.ndim != rank:
                raise FrontendError(f"node {label(node)} (Concat): constant {i} of shape {list(v.shape)} has "
                                    f"{v.ndim} axes where the activations have {rank}")
    fe.emit(node, "concat", list(node.input), node.output[0], axis=axis)


def _reshape_to(fe, node, x, full_shape):
    """Reshape to a target that includes the batch axis in front; one that merges the batch with per-sample
    axes, or reads a tensor so merged, is compiler/batch_layout.py's."""
    full = [int(d) for d in full_shape]
    batchlike = {PROBE(), -1, 0} | ({fe.static_batch} if fe.static_batch else set())
    src = fe.shape(x)
    if not full:
        raise FrontendError(f"node {label(node)} ({node.op_type}): target shape {full} does not keep the batch axis first")
    per = [src[i - 1] if d == 0 and i - 1 < len(src) else d for i, d in enumerate(full)][1:]
    if -1 in per:
        known = int(np.prod([d for d in per if d != -1]))
        per[per.index(-1)] = int(np.prod(src)) // max(known, 1)
    if fe.name(x) in fe.layouts or full[0] not in batchlike or int(np.prod(per)) != int(np.prod(src)):
        from . import batch_layout
        return batch_layout.reshape(fe, node, x, full)
    fe.emit(node, "reshape", [x], node.output[0], shape=tuple(per))


def PROBE():
    from .frontend import PROBE_BATCH
    return PROBE_BATCH


@converts("Reshape")
def reshape(fe, node):
    _reshape_to(fe, node, node.input[0], fe.value(node.input[1]))


@converts("Flatten")
def flatten(fe, node):
    axis = attrs(node).get("axis", 1)
    src = fe.shape(node.input[0])
    if axis % (len(src) + 1) != 1:     # folds the batch with leading axes (opset-12 Softmax's upgrade writes it)
        from . import batch_layout
        return batch_layout.flatten(fe, node)
    fe.emit(node, "reshape", [node.input[0]], node.output[0], shape=(int(np.prod(src)),))


@converts("Squeeze", "Unsqueeze")
def squeeze(fe, node):
    """From the per-sample shape and the axes, not the probe's: the probe may hold a single sample."""
    x = node.input[0]
    if fe.is_const(x):
        return fe._fold(node)
    per = list(fe.shape(x))
    a = attrs(node)
    axes = fe.value(node.input[1]).tolist() if len(node.input) > 1 and node.input[1] else a.get("axes")
    if node.op_type == "Squeeze":
        rank = len(per) + 1
        drop = {i + 1 for i, d in enumerate(per) if d == 1} if axes is None else {int(i) % rank for i in axes}
        if any(i and per[i - 1] != 1 for i in drop):
            raise FrontendError(f"node {label(node)} (Squeeze): squeezes an axis whose size is not 1")
        new = [d for i, d in enumerate(per, 1) if i not in drop]
    else:
        rank = len(per) + 1 + len(axes)
        drop = {int(i) % rank for i in axes}
        rest = iter(per)
        new = [1 if i in drop else next(rest) for i in range(1, rank)]
    if 0 in drop:
        raise FrontendError(f"node {label(node)} ({node.op_type}): changes the batch axis")
    fe.emit(node, "reshape", [x], node.output[0], shape=tuple(new))


@converts("Transpose")
def transpose(fe, node):
    rank = len(fe.shape(node.input[0])) + 1
    perm = tuple(attrs(node).get("perm", tuple(reversed(range(rank)))))
    if perm[0] != 0:
        from . import batch_layout
        return batch_layout.transpose(fe, node)
    fe.emit(node, "transpose", [node.input[0]], node.output[0], perm=perm)


@converts("Softmax")
def softmax(fe, node):
    rank = len(fe.shape(node.input[0])) + 1
    axis = attrs(node).get("axis", -1) % rank
    if axis == 0:
        raise FrontendError(f"node {label(node)} (Softmax): softmax over the batch axis is not supported")
    fe.emit(node, "softmax", [node.input[0]], node.output[0], axis=axis)


@converts("Identity")
def identity(fe, node):
    fe.forward(node.output[0], node.input[0])


@converts("Dropout")
def dropout(fe, node):
    """Inference: the identity. Training mode (random zeroing and rescaling) is refused."""
    ins = list(node.input) + ["", ""]
    ratio = float(np.asarray(fe.value(ins[1])).reshape(())) if ins[1] and fe.is_const(ins[1]) \
        else attrs(node).get("ratio", 0.5)
    if ins[2]:
        if not fe.is_const(ins[2]):
            raise FrontendError(f"node {label(node)} (Dropout): training_mode is given at run time; only inference "
                                "(training_mode false) is supported")
        if bool(np.asarray(fe.value(ins[2])).reshape(())) and ratio > 0:
            raise FrontendError(f"node {label(node)} (Dropout): training_mode is true (random dropout, ratio "
                                f"{ratio:g}); only inference is supported")
    if len(node.output) > 1 and node.output[1]:
        fe.set_const(node.output[1], np.ones((1,) + fe.shape(node.input[0]), bool))
    fe.forward(node.output[0], node.input[0])


@converts("IsNaN", "IsInf")
def is_nan(fe, node):
    """Always false on an activation: a program's values are finite by construction (integer codes, and a
    vector unit whose softmax and divisions are guarded). Exporters emit these as guards, e.g. TorchScript's
    scaled_dot_product_attention writes Where(IsNaN(softmax), 0, softmax) for fully masked rows."""
    fe.set_const(node.output[0], np.zeros((), bool))


@converts("LRN")
def lrn(fe, node):
    a = attrs(node)
    fe.emit(node, "lrn", [node.input[0]], node.output[0], size=a["size"], alpha=a.get("alpha", 1e-4),
            beta=a.get("beta", 0.75), bias=a.get("bias", 1.0))


@converts("Pad")
def pad(fe, node):
    a = attrs(node)
    mode = _decode(a.get("mode", "constant"))
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise FrontendError(f"node {label(node)} (Pad): mode '{mode}' is not supported")
    rank = len(fe.shape(node.input[0])) + 1
    given = [int(p) for p in (fe.value(node.input[1]) if len(node.input) > 1 else a["pads"])]
    axes = [int(i) % rank for i in fe.value(node.input[3])] if len(node.input) > 3 and node.input[3] \
        else list(range(rank))
    pads = [0] * (2 * rank)
    for k, ax in enumerate(axes):                  # opset 18: pads for the listed axes only
        pads[ax], pads[rank + ax] = given[k], given[len(axes) + k]
    value = float(fe.value(node.input[2])) if len(node.input) > 2 and node.input[2] else float(a.get("value", 0.0))
    if pads[0] or pads[rank]:
        raise FrontendError(f"node {label(node)} (Pad): padding the batch axis is not supported")
    if any(p < 0 for p in pads):
        raise FrontendError(f"node {label(node)} (Pad): negative pads are not supported")
    if mode != "constant":
        from .onnx_select import pad_by_mode
        return pad_by_mode(fe, node, mode, pads)
    fe.emit(node, "pad", [node.input[0]], node.output[0], pads=tuple(pads[1:rank] + pads[rank + 1:]), value=value)


@converts("Cast")
def cast(fe, node):
    fe.forward(node.output[0], node.input[0])


# ---- models that are already quantised: QDQ and QLinear* --------------------------------------------

@converts("QuantizeLinear")
def quantize_linear(fe, node):
    x = node.input[0]
    if fe.is_const(x):  # a constant quantised on the fly: fold, keep the integers
        return fe._fold(node)
    fe.qhint[fe.name(x)] = _hint(fe, node, node.input[1], node.input[2] if len(node.input) > 2 else "")
    fe.forward(node.output[0], x)


@converts("DequantizeLinear")
def dequantize_linear(fe, node):
    x = node.input[0]
    if fe.is_const(x):
        return fe._fold(node)
    fe.forward(node.output[0], x)


@converts("QLinearConv")
def qlinear_conv(fe, node):
    x, xs, xz, w, ws, wz, ys, yz = node.input[:8]
    _hint_in(fe, node, x, xs, xz)
    W = (fe.value(w).astype(np.float64) - _per_out(fe.value(wz), 4)) * _per_out(fe.value(ws), 4)
    wname = _new_const(fe, w, W)
    ins = [x, wname]
    if len(node.input) > 8 and node.input[8]:
        ins.append(_new_const(fe, node.input[8], fe.value(node.input[8]).astype(np.float64) * float(fe.value(xs))
                              * np.broadcast_to(fe.value(ws), (W.shape[0],))))
    a = attrs(node)
    geo, _ = _spatial(fe, node, fe.shape(x), W.shape[2:], a)
    out = fe.emit(node, "conv", ins, node.output[0], group=a.get("group", 1), **geo)
    _hint_out(fe, node, out, ys, yz)


@converts("QLinearMatMul")
def qlinear_matmul(fe, node):
    a, as_, az, b, bs, bz, ys, yz = node.input
    if not fe.is_const(a) and not fe.is_const(b):      # activation x activation (attention's Q K^T, S V)
        _hint_in(fe, node, a, as_, az)
        _hint_in(fe, node, b, bs, bz)
        matmul(fe, onnx.helper.make_node("MatMul", [a, b], [node.output[0]], name=node.name))
        return _hint_out(fe, node, fe.name(node.output[0]), ys, yz)
    if not fe.is_const(b) or fe.value(b).ndim != 2:
        raise FrontendError(f"node {label(node)} (QLinearMatMul): only constant 2-D weights are supported")
    _hint_in(fe, node, a, as_, az)
    W = (fe.value(b).astype(np.float64) - fe.value(bz)) * fe.value(bs)
    out = fe.emit(node, "linear", [a, _new_const(fe, b, W)], node.output[0])
    _hint_out(fe, node, out, ys, yz)


@converts("com.microsoft.QGemm")
def qgemm(fe, node):
    """Y = alpha * A B' + C, C in int32 at scale a_scale * b_scale (how onnxruntime's quantiser writes it);
    without y_scale the output is float."""
    A, as_, az, B, bs, bz = node.input[:6]
    C, ys, yz = (list(node.input[6:]) + ["", "", ""])[:3]
    a = attrs(node)
    if not fe.is_const(B) or a.get("transA", 0):
        raise FrontendError(f"node {label(node)} (QGemm): only activation x constant weight (transA=0) is supported")
    _hint_in(fe, node, A, as_, az)
    Bq = fe.value(B).astype(np.float64)
    W = (Bq - _per_out(fe.value(bz), 2)) * _per_out(fe.value(bs), 2) if a.get("transB", 0) \
        else (Bq - fe.value(bz)) * fe.value(bs)
    W = (W.T if a.get("transB", 0) else W) * a.get("alpha", 1.0)
    ins = [A, _new_const(fe, B, W)]
    if C:
        scale = float(fe.value(as_)) * np.broadcast_to(np.asarray(fe.value(bs), np.float64).reshape(-1), (W.shape[1],))
        ins.append(_new_const(fe, C, np.broadcast_to(fe.value(C).astype(np.float64).reshape(-1), (W.shape[1],)) * scale))
    out = fe.emit(node, "linear", ins, node.output[0])
    if ys:
        _hint_out(fe, node, out, ys, yz)


# com.microsoft QLinear* ops that are a float op between quantised tensors: (float op, input positions; each
# input is followed by its scale and zero point, the output's scale and zero point come last)
_QLINEAR = {"QLinearAdd": ("Add", (0, 3)), "QLinearMul": ("Mul", (0, 3)), "QLinearSigmoid": ("Sigmoid", (0,)),
            "QLinearLeakyRelu": ("LeakyRelu", (0,)), "QLinearGlobalAveragePool": ("GlobalAveragePool", (0,)),
            "QLinearAveragePool": ("AveragePool", (0,)), "QLinearSoftmax": ("Softmax", (0,))}


@converts(*[f"com.microsoft.{k}" for k in _QLINEAR])
def qlinear_op(fe, node):
    op, pos = _QLINEAR[node.op_type]
    a = attrs(node)
    if a.pop("channels_last", 0):
        raise FrontendError(f"node {label(node)} ({node.op_type}): channels_last layout is not supported")
    if node.op_type == "QLinearSoftmax":
        a.pop("opset", None)
    ins = list(node.input) + [""] * 8
    xs = [_qin(fe, node, ins[p], ins[p + 1], ins[p + 2]) for p in pos]
    ys, yz = ins[pos[-1] + 3], ins[pos[-1] + 4]
    CONVERTERS[op](fe, onnx.helper.make_node(op, xs, [node.output[0]], name=node.name, **a))
    _hint_out(fe, node, fe.name(node.output[0]), ys, yz)


@converts("com.microsoft.QLinearConcat")
def qlinear_concat(fe, node):
    ys, yz, *rest = node.input
    xs = [_qin(fe, node, x, s, z) for x, s, z in zip(rest[0::3], rest[1::3], rest[2::3])]
    concat(fe, onnx.helper.make_node("Concat", xs, [node.output[0]], name=node.name, axis=attrs(node)["axis"]))
    _hint_out(fe, node, fe.name(node.output[0]), ys, yz)


def _per_out(v, rank):
    v = np.asarray(v, dtype=np.float64)
    return v.reshape((-1,) + (1,) * (rank - 1)) if v.size > 1 else v


def _hint(fe, node, scale, zero) -> dict:
    s = np.asarray(fe.value(scale))
    z = np.asarray(fe.value(zero)) if zero else np.zeros((), np.uint8)
    if s.size != 1 or z.size != 1:
        raise FrontendError(f"node {label(node)} ({node.op_type}): per-axis activation quantisation is not supported")
    if z.dtype not in (np.uint8, np.int8):
        raise FrontendError(f"node {label(node)} ({node.op_type}): {z.dtype} activations are not supported (8-bit only)")
    if not 1e-30 <= float(s.reshape(())) <= 1e30:      # also NaN
        raise FrontendError(f"node {label(node)} ({node.op_type}): scale {scale} is {float(s.reshape(())):g}; a "
                            "quantisation scale must be positive and finite")
    return {"scale": float(s.reshape(())), "zero": int(z.reshape(())) + (128 if z.dtype == np.int8 else 0),
            "signed": z.dtype == np.int8}


def _qin(fe, node, x, scale, zero) -> str:
    """A QLinear op's input: a run-time tensor (noting its quantisation), or a quantised constant, which
    is dequantised here since the IR holds real values."""
    if not fe.is_const(x):
        _hint_in(fe, node, x, scale, zero)
        return x
    z = fe.value(zero).astype(np.float64) if zero else 0.0
    return _new_const(fe, x, (fe.value(x).astype(np.float64) - z) * fe.value(scale).astype(np.float64))


def _hint_in(fe, node, x, scale, zero):
    """An input's quantisation as a QLinear op states it; the producer's own statement wins."""
    if not fe.is_const(x):
        fe.qhint.setdefault(fe.name(x), _hint(fe, node, scale, zero))


def _hint_out(fe, node, out, ys, yz):
    fe.qhint[out] = _hint(fe, node, ys, yz)


# ---- transformers ---------------------------------------------------------------------------------

@converts("Gather")
def gather(fe, node):
    """Embedding lookup: rows of a constant table picked by run-time integer ids."""
    data, idx = node.input
    axis = attrs(node).get("axis", 0)
    if not fe.is_const(data) and fe.is_const(idx):
        rank = len(fe.shape(data)) + 1
        if axis % rank == 0:
            raise FrontendError(f"node {label(node)} (Gather): picking along the batch axis is not supported")
        if fe.value(idx).ndim == 0:
            return _pick(fe, node, data, int(fe.value(idx)), axis)
        from .onnx_select import gather as gather_array
        return gather_array(fe, node, data, np.asarray(fe.value(idx)), axis % rank)
    if not fe.is_const(data) or fe.is_const(idx) or axis != 0 or fe.value(data).ndim != 2:
        raise FrontendError(f"node {label(node)} (Gather): only a lookup of run-time ids in a constant 2-D table "
                            "(axis 0) is supported")
    fe.emit(node, "gather", [idx, _new_const(fe, data, fe.value(data).astype(np.float64))], node.output[0])


def _pick(fe, node, x, index, axis):
    """One position along an axis of an activation (a BERT pooler's first token, x[:, 0]): x times a constant
    one-hot mask, summed over the axis, which is exact (the other terms are zeros)."""
    shape = fe.shape(x)
    axis %= len(shape) + 1
    if axis == 0:
        raise FrontendError(f"node {label(node)} (Gather): picking along the batch axis is not supported")
    n = shape[axis - 1]
    if not -n <= index < n:
        raise FrontendError(f"node {label(node)} (Gather): index {index} is outside an axis of size {n}")
    onehot = np.zeros((n,) + (1,) * (len(shape) - axis))
    onehot[index % n] = 1.0
    picked = fe.emit(node, "mul", [x, _new_const(fe, node.name + ".onehot", onehot)], node.output[0] + ".picked")
    fe.emit(node, "reduce", [picked], node.output[0], fn="sum", axes=(axis,), keepdims=False)


def layernorm_last(fe, node):
    """LayerNormalization over the last axis, Y only: one `layernorm` op (compiler/onnx_norm.py decides)."""
    a = attrs(node)
    x = node.input[0]
    n = fe.shape(x)[-1]
    ins = [x]
    for k, default in ((1, 1.0), (2, 0.0)):
        v = fe.value(node.input[k]) if len(node.input) > k and node.input[k] else np.full(n, default)
        if not (len(node.input) <= k or not node.input[k] or fe.is_const(node.input[k])):
            raise FrontendError(f"node {label(node)} (LayerNormalization): scale and bias must be constant")
        ins.append(_new_const(fe, node.input[k] or f"{node.name}.p{k}", np.broadcast_to(np.asarray(v, np.float64), (n,)).copy()))
    fe.emit(node, "layernorm", ins, node.output[0], eps=float(a.get("epsilon", 1e-5)))


@converts("Erf", "Reciprocal", "Log")
def erf(fe, node):
    fe.emit(node, "unary", [node.input[0]], node.output[0], fn=node.op_type.lower(), params={})


@converts("Gelu", "com.microsoft.Gelu", "com.microsoft.FastGelu", "com.microsoft.BiasGelu")
def gelu(fe, node):
    x = node.input[0]
    approx = _decode(attrs(node).get("approximate", "none"))
    fn = "gelu_tanh" if node.op_type == "FastGelu" or approx == "tanh" else "gelu_erf"
    if len(node.input) > 1 and node.input[1]:       # bias input (FastGelu, BiasGelu)
        x = fe.emit(node, "add", [x, _new_const(fe, node.input[1], fe.value(node.input[1]).astype(np.float64))],
                    node.output[0] + ".biased")
    fe.emit(node, "unary", [x], node.output[0], fn=fn, params={})


def _axes(fe, node, rank):
    a = attrs(node)
    axes = fe.value(node.input[1]).tolist() if len(node.input) > 1 and node.input[1] else a.get("axes")
    if axes is None or len(axes) == 0:
        if a.get("noop_with_empty_axes", 0):
            return None
        axes = list(range(rank))
    axes = sorted(int(x) % rank for x in axes)
    if 0 in axes:
        raise FrontendError(f"node {label(node)} ({node.op_type}): reducing over the batch axis is not supported")
    return tuple(axes)


@converts("ReduceSum", "ReduceMean", "ReduceMax", "ReduceL2", "ReduceProd")
def reduce(fe, node):
    rank = len(fe.shape(node.input[0])) + 1
    axes = _axes(fe, node, rank)
    if axes is None:
        return fe.forward(node.output[0], node.input[0])
    fe.emit(node, "reduce", [node.input[0]], node.output[0], fn=node.op_type[6:].lower(), axes=axes,
            keepdims=bool(attrs(node).get("keepdims", 1)))


@converts("Pow")
def pow_(fe, node):
    """A constant scalar exponent: a function of one input (a table in the integer form); any other exponent
    (per element, or computed at run time): x ** y on the float32 vector unit."""
    if fe.is_const(node.input[1]) and fe.value(node.input[1]).size == 1:
        e = float(fe.value(node.input[1]).reshape(()))
        return fe.emit(node, "unary", [node.input[0]], node.output[0], fn="pow", params={"p": e})
    _binary(fe, node, "pow")


@converts("Expand")
def expand(fe, node):
    """Broadcast within a sample: the target may not add axes in front of the batch axis nor widen it."""
    x, shape = node.input
    target = tuple(int(d) for d in fe.value(shape))
    rank = len(fe.shape(x)) + 1
    batchlike = {1, PROBE()} | ({fe.static_batch} if fe.static_batch else set())
    if len(target) > rank or len(target) == rank and target[0] not in batchlike:
        raise FrontendError(f"node {label(node)} (Expand): expanding {x} {_full(fe, x)} to {list(target)} would "
                            "change the batch axis; only broadcasting within a sample is supported")
    try:
        full = np.broadcast_shapes((1,) + fe.shape(x), (1,) + target[1:] if len(target) == rank else target)
    except ValueError:
        raise FrontendError(f"node {label(node)} (Expand): {x} {_full(fe, x)} does not broadcast to "
                            f"{list(target)}") from None
    fe.emit(node, "expand", [x], node.output[0], shape=tuple(full[1:]))
