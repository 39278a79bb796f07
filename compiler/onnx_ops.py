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


def attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _decode(v):
    return v.decode() if isinstance(v, bytes) else v


def _spatial(fe, node, x_shape, kernel, a):
    """Resolve strides, dilations and pads (incl. auto_pad, ceil_mode) for a 2-D window op."""
    if len(kernel) != 2:
        raise FrontendError(f"node {node.name} ({node.op_type}): only 2-D windows are supported, got {len(kernel)}-D")
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
    if a.get("ceil_mode", 0):
        extra = []
        for i in range(2):
            span = hw[i] + pads[i] + pads[i + 2] - ((kernel[i] - 1) * dil[i] + 1)
            extra.append((-span) % strides[i] if span % strides[i] else 0)
        pads = (pads[0], pads[1], pads[2] + extra[0], pads[3] + extra[1])
    return dict(kernel=tuple(kernel), strides=strides, pads=pads, dilations=dil)


@converts("Conv")
def conv(fe, node):
    a = attrs(node)
    x, w = node.input[0], node.input[1]
    if not fe.is_const(w):
        raise FrontendError(f"node {node.name} (Conv): weights must be constant")
    W = fe.value(w).astype(np.float64)
    b = fe.value(node.input[2]).astype(np.float64) if len(node.input) > 2 and node.input[2] else None
    geo = _spatial(fe, node, fe.shape(x), W.shape[2:], a)
    wname = fe.g.unique(w)
    fe.set_const(wname, W)
    ins = [x, wname]
    if b is not None:
        bname = fe.g.unique(node.input[2])
        fe.set_const(bname, b)
        ins.append(bname)
    fe.emit(node, "conv", ins, node.output[0], group=a.get("group", 1), **geo)


@converts("Gemm")
def gemm(fe, node):
    a = attrs(node)
    A, B = node.input[0], node.input[1]
    if fe.is_const(A) or not fe.is_const(B) or a.get("transA", 0):
        raise FrontendError(f"node {node.name} (Gemm): only activation x constant weight (transA=0) is supported")
    W = fe.value(B).astype(np.float64)
    W = (W.T if a.get("transB", 0) else W) * a.get("alpha", 1.0)
    ins = [A, _new_const(fe, B, W)]
    if len(node.input) > 2 and node.input[2]:
        C = np.broadcast_to(fe.value(node.input[2]).astype(np.float64) * a.get("beta", 1.0), (W.shape[1],))
        ins.append(_new_const(fe, node.input[2], C.copy()))
    fe.emit(node, "linear", ins, node.output[0])


def _new_const(fe, base, value):
    name = fe.g.unique(base)
    while name in fe.consts:
        name = fe.g.unique(name + "_")
    fe.set_const(name, value)
    return name


@converts("MatMul")
def matmul(fe, node):
    A, B = node.input
    if fe.is_const(B) and fe.value(B).ndim == 2:
        fe.emit(node, "linear", [A, _new_const(fe, B, fe.value(B).astype(np.float64))], node.output[0])
    elif not fe.is_const(A) and not fe.is_const(B):
        fe.emit(node, "matmul", [A, B], node.output[0])
    else:
        raise FrontendError(f"node {node.name} (MatMul): a constant left operand is not supported")


@converts("BatchNormalization")
def batchnorm(fe, node):
    a = attrs(node)
    x, s, b, m, v = node.input[:5]
    scale = fe.value(s) / np.sqrt(fe.value(v) + a.get("epsilon", 1e-5))
    shift = fe.value(b) - fe.value(m) * scale
    prod = fe.g.producer(fe.name(x))
    if prod is not None and prod.kind == "conv" and len(fe.g.consumers(prod.outputs[0])) == 1 \
            and prod.outputs[0] not in fe.g.outputs:
        # fold into the conv: W' = W * scale, b' = b * scale + shift
        W = fe.g.tensors[prod.inputs[1]].data
        fe.g.tensors[prod.inputs[1]].data = W * scale.reshape(-1, 1, 1, 1)
        old_b = fe.g.tensors[prod.inputs[2]].data if len(prod.inputs) > 2 else 0.0
        bias = old_b * scale + shift
        if len(prod.inputs) > 2:
            fe.g.tensors[prod.inputs[2]].data = bias
        else:
            bname = _new_const(fe, node.name + ".bias", bias)
            fe.g.const(bname, bias)
            prod.inputs.append(bname)
        out = prod.outputs[0]
        fe.probe[out] = run_again(fe, prod)
        fe.forward(node.output[0], out)
        return
    rank = len(fe.shape(x))
    shp = (1, -1) + (1,) * (rank - 1)
    t = fe.emit(node, "mul", [x, _new_const(fe, s, scale.reshape(shp))], node.output[0] + ".scaled")
    fe.emit(node, "add", [t, _new_const(fe, b, shift.reshape(shp))], node.output[0])


def run_again(fe, op):
    from ir.float_eval import run_op
    args = [fe.g.tensors[n].data if fe.g.tensors[n].is_const else fe.probe[n] for n in op.inputs]
    return run_op(op, args)


@converts("Relu")
def relu(fe, node):
    fe.emit(node, "relu", [node.input[0]], node.output[0])


@converts("Clip")
def clip(fe, node):
    a = attrs(node)
    lo = float(fe.value(node.input[1])) if len(node.input) > 1 and node.input[1] else a.get("min", -np.inf)
    hi = float(fe.value(node.input[2])) if len(node.input) > 2 and node.input[2] else a.get("max", np.inf)
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
        raise FrontendError(f"node {node.name} (MaxPool): the Indices output is not supported")
    geo = _spatial(fe, node, fe.shape(node.input[0]), tuple(a["kernel_shape"]), a)
    if node.op_type == "MaxPool":
        fe.emit(node, "maxpool", [node.input[0]], node.output[0], **geo)
    else:
        if a.get("ceil_mode", 0) and a.get("count_include_pad", 0):
            raise FrontendError(f"node {node.name} (AveragePool): ceil_mode with count_include_pad is not supported")
        fe.emit(node, "avgpool", [node.input[0]], node.output[0], count_include_pad=a.get("count_include_pad", 0), **geo)


@converts("GlobalAveragePool")
def gap(fe, node):
    fe.emit(node, "gavgpool", [node.input[0]], node.output[0])


@converts("GlobalMaxPool")
def gmp(fe, node):
    fe.emit(node, "gmaxpool", [node.input[0]], node.output[0])


def _binary(fe, node, kind, transform=None):
    a, b = node.input
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
        raise FrontendError(f"node {node.name} (Div): division by a run-time value is not supported")
    _binary(fe, node, "mul", transform=lambda v: 1.0 / v)


@converts("Concat")
def concat(fe, node):
    axis = attrs(node)["axis"]
    rank = len(fe.shape(node.input[0])) + 1
    axis = axis % rank
    if axis == 0:
        raise FrontendError(f"node {node.name} (Concat): concatenation along the batch axis is not supported")
    ins = [i if not fe.is_const(i) else _new_const(fe, i, fe.value(i)) for i in node.input]
    fe.emit(node, "concat", ins, node.output[0], axis=axis)


def _reshape_to(fe, node, x, full_shape):
    """Reshape to a target that includes the batch axis in front."""
    full = [int(d) for d in full_shape]
    batchlike = {PROBE(), -1, 0} | ({fe.static_batch} if fe.static_batch else set())
    if not full or full[0] not in batchlike:
        raise FrontendError(f"node {node.name} ({node.op_type}): target shape {full} does not keep the batch axis first")
    src = fe.shape(x)
    per = [src[i - 1] if d == 0 and i - 1 < len(src) else d for i, d in enumerate(full)][1:]
    if -1 in per:
        known = int(np.prod([d for d in per if d != -1]))
        per[per.index(-1)] = int(np.prod(src)) // max(known, 1)
    if int(np.prod(per)) != int(np.prod(src)):
        raise FrontendError(f"node {node.name} ({node.op_type}): cannot reshape {list(src)} to {per} per sample")
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
    if axis % (len(src) + 1) != 1:
        raise FrontendError(f"node {node.name} (Flatten): only axis=1 keeps the batch axis")
    fe.emit(node, "reshape", [node.input[0]], node.output[0], shape=(int(np.prod(src)),))


@converts("Squeeze", "Unsqueeze")
def squeeze(fe, node):
    x = node.input[0]
    if fe.is_const(x):
        return fe._fold(node)
    out_shape = fe.value(x).shape
    a = attrs(node)
    axes = fe.value(node.input[1]).tolist() if len(node.input) > 1 and node.input[1] else a.get("axes")
    if node.op_type == "Squeeze":
        new = np.squeeze(fe.value(x), axis=tuple(axes) if axes is not None else None).shape
    else:
        new = np.expand_dims(fe.value(x), axis=tuple(axes)).shape
    if new[0] != out_shape[0]:
        raise FrontendError(f"node {node.name} ({node.op_type}): changes the batch axis")
    fe.emit(node, "reshape", [x], node.output[0], shape=tuple(new[1:]))


@converts("Transpose")
def transpose(fe, node):
    rank = len(fe.shape(node.input[0])) + 1
    perm = tuple(attrs(node).get("perm", tuple(reversed(range(rank)))))
    if perm[0] != 0:
        raise FrontendError(f"node {node.name} (Transpose): moving the batch axis is not supported")
    fe.emit(node, "transpose", [node.input[0]], node.output[0], perm=perm)


@converts("Softmax")
def softmax(fe, node):
    rank = len(fe.shape(node.input[0])) + 1
    axis = attrs(node).get("axis", -1) % rank
    if axis == 0:
        raise FrontendError(f"node {node.name} (Softmax): softmax over the batch axis is not supported")
    fe.emit(node, "softmax", [node.input[0]], node.output[0], axis=axis)


@converts("Dropout", "Identity")
def identity(fe, node):
    fe.forward(node.output[0], node.input[0])


@converts("LRN")
def lrn(fe, node):
    a = attrs(node)
    fe.emit(node, "lrn", [node.input[0]], node.output[0], size=a["size"], alpha=a.get("alpha", 1e-4),
            beta=a.get("beta", 0.75), bias=a.get("bias", 1.0))


@converts("Pad")
def pad(fe, node):
    a = attrs(node)
    mode = _decode(a.get("mode", "constant"))
    if mode != "constant":
        raise FrontendError(f"node {node.name} (Pad): mode '{mode}' is not supported")
    pads = [int(p) for p in (fe.value(node.input[1]) if len(node.input) > 1 else a["pads"])]
    value = float(fe.value(node.input[2])) if len(node.input) > 2 and node.input[2] else 0.0
    n = len(pads) // 2
    if pads[0] or pads[n]:
        raise FrontendError(f"node {node.name} (Pad): padding the batch axis is not supported")
    if any(p < 0 for p in pads):
        raise FrontendError(f"node {node.name} (Pad): negative pads are not supported")
    fe.emit(node, "pad", [node.input[0]], node.output[0], pads=tuple(pads[1:n] + pads[n + 1:]), value=value)


@converts("Cast")
def cast(fe, node):
    fe.forward(node.output[0], node.input[0])


# ---- models that are already quantised: QDQ and QLinear* --------------------------------------------

def _qparams(fe, scale, zero):
    s = np.asarray(fe.value(scale), dtype=np.float64)
    z = np.asarray(fe.value(zero)) if zero else np.zeros((), np.uint8)
    return s, z


@converts("QuantizeLinear")
def quantize_linear(fe, node):
    s, z = _qparams(fe, node.input[1], node.input[2] if len(node.input) > 2 else "")
    x = node.input[0]
    if fe.is_const(x):  # a constant quantised on the fly: fold, keep the integers
        return fe._fold(node)
    if s.size != 1:
        raise FrontendError(f"node {node.name} (QuantizeLinear): per-axis activation quantisation is not supported")
    fe.qhint[fe.name(x)] = {"scale": float(s), "zero": int(z) - (-128 if z.dtype == np.int8 else 0),
                            "signed": z.dtype == np.int8}
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
    W = (fe.value(w).astype(np.float64) - _per_out(fe.value(wz), 4)) * _per_out(fe.value(ws), 4)
    sx = float(fe.value(xs))
    wname = _new_const(fe, w, W)
    ins = [x, wname]
    if len(node.input) > 8 and node.input[8]:
        ins.append(_new_const(fe, node.input[8], fe.value(node.input[8]).astype(np.float64) * sx
                              * np.broadcast_to(fe.value(ws), (W.shape[0],))))
    a = attrs(node)
    geo = _spatial(fe, node, fe.shape(x), W.shape[2:], a)
    out = fe.emit(node, "conv", ins, node.output[0], group=a.get("group", 1), **geo)
    _hint_out(fe, out, ys, yz)


@converts("QLinearMatMul")
def qlinear_matmul(fe, node):
    a, as_, az, b, bs, bz, ys, yz = node.input
    if not fe.is_const(b):
        raise FrontendError(f"node {node.name} (QLinearMatMul): only constant weights are supported")
    W = (fe.value(b).astype(np.float64) - fe.value(bz)) * fe.value(bs)
    out = fe.emit(node, "linear", [a, _new_const(fe, b, W)], node.output[0])
    _hint_out(fe, out, ys, yz)


def _per_out(v, rank):
    v = np.asarray(v, dtype=np.float64)
    return v.reshape((-1,) + (1,) * (rank - 1)) if v.size > 1 else v


def _hint_out(fe, out, ys, yz):
    z = np.asarray(fe.value(yz))
    fe.qhint[out] = {"scale": float(fe.value(ys)), "zero": int(z) - (-128 if z.dtype == np.int8 else 0),
                     "signed": z.dtype == np.int8}
