"""The quantised reference (verification ladder level 2): the quantised IR evaluated exactly in integers.

Crossbar ops are plain integer dot products here (no slicing, no ADC, computed in float64 BLAS, exact for
these ranges), written independently of the runtime's sliced crossbar path. Digital ops call the runtime's
kernels, which *define* the rounding of each digital instruction, so there is one definition of each.
"""
from __future__ import annotations

import numpy as np

from ir import CompileError, Graph
from ir.float_eval import grouped_matmul
from runtime import kernels as K
from runtime import vector as V

def _registrar(table: dict):
    """A decorator that files a function in `table` under each op kind it names."""
    def register(*kinds):
        def reg(fn):
            for k in kinds:
                table[k] = fn
            return fn
        return reg
    return register


REF = {}
ref = _registrar(REF)


def _finish(op, acc, g):
    q = op.attrs["q"]
    acc = acc + q["bias"]
    if "mult" not in q:                      # accumulator output
        return acc.astype(np.int64)
    return K.requant(acc, q["mult"], q["shift"], q["zy"], q["lo"], q["hi"])


@ref("conv")
def _conv(op, g, x, *_weights):
    y = _finish(op, np.moveaxis(_conv_acc(op, x), 1, -1).astype(np.int64), g)
    return np.moveaxis(y, -1, 1)


@ref("linear")
def _linear(op, g, x, *_weights):
    q = op.attrs["q"]
    acc = grouped_matmul(x.astype(np.float64) - q["zx"], q["w"].astype(np.float64), op.attrs.get("group", 1))
    return _finish(op, np.rint(acc).astype(np.int64), g)


@ref("add")
def _add(op, g, a, b):
    q = op.attrs["q"]
    return K.add(a, q["za"], q["ma"], b, q["zb"], q["mb"], q["shift"], q["zy"], q["lo"], q["hi"])


@ref("mul")
def _mul(op, g, a, b):
    q = op.attrs["q"]
    return K.mul(a, q["za"], b, q["zb"], q["mult"], q["shift"], q["zy"], q["lo"], q["hi"])


@ref("matmul")
def _matmul(op, g, a, b):
    q = op.attrs["q"]
    acc = np.rint((a.astype(np.float64) - q["za"]) @ (b.astype(np.float64) - q["zb"])).astype(np.int64)
    return K.requant(acc, q["mult"], q["shift"], q["zy"], q["lo"], q["hi"])


@ref("relu", "clip", "unary")
def _lut(op, g, x):
    return K.lut(x, op.attrs["q"]["table"])


@ref("maxpool")
def _maxpool(op, g, x):
    a = op.attrs
    return K.maxpool(x, a["kernel"], a["strides"], a["pads"], a["dilations"])


@ref("gmaxpool")
def _gmaxpool(op, g, x):
    return x.max(axis=(2, 3), keepdims=True)


@ref("avgpool")
def _avgpool(op, g, x):
    a, q = op.attrs, op.attrs["q"]
    return K.avgpool(x, q["zx"], a["kernel"], a["strides"], a["pads"], a["dilations"], a["count_include_pad"],
                     q["mult"], q["shift"], q["zy"], q["lo"], q["hi"])


@ref("gavgpool")
def _gavgpool(op, g, x):
    q = op.attrs["q"]
    return K.global_avgpool(x, q["zx"], q["mult"], q["shift"], q["zy"], q["lo"], q["hi"])


@ref("concat")
def _concat(op, g, *xs):
    q = op.attrs["q"]
    batch = max(x.shape[0] for x in xs)        # a constant part (a class token) holds one sample
    parts = [K.rescale(np.broadcast_to(x, (batch,) + x.shape[1:]), zx, m, s, q["zy"])
             for x, zx, m, s in zip(xs, q["zx"], q["mult"], q["shift"])]
    return np.concatenate(parts, axis=op.attrs["axis"])


@ref("reshape")
def _reshape(op, g, x):
    return x.reshape((x.shape[0],) + tuple(op.attrs["shape"]))


@ref("transpose")
def _transpose(op, g, x):
    return x.transpose(op.attrs["perm"])


@ref("slice")
def _slice(op, g, x):
    a = op.attrs
    return K.slice_axes(x, a["starts"], a["ends"], a["steps"])


@ref("upsample")
def _upsample(op, g, x):
    return K.upsample(x, op.attrs["factors"])


@ref("pad")
def _pad(op, g, x):
    p = op.attrs["pads"]
    n = len(p) // 2
    return np.pad(x, ((0, 0),) + tuple(zip(p[:n], p[n:])), constant_values=op.attrs["q"]["fill"])


@ref("softmax")
def _softmax(op, g, x):
    q = op.attrs["q"]
    return K.softmax(x, q["table"], op.attrs["axis"], q.get("mult", 255), q.get("zero", 0))


@ref("lrn")
def _lrn(op, g, x):
    a, q = op.attrs, op.attrs["q"]
    return K.lrn(x, q["zx"], q["sx"], a["size"], a["alpha"], a["beta"], a["bias"], q["sy"], q["zy"])


# ---- the float32 vector unit (passes/quantize_vector.py): ops whose output is f32 --------------------------

VREF = {}
vref = _registrar(VREF)


def _act(op, y):
    act = op.attrs["q"].get("act")
    return V.clamp(y, *act) if act else y


@vref("quant")
def _v_quant(op, g, x):
    q = op.attrs["q"]
    return V.quant(x, q["scale"], q["zero"], q.get("smooth"))


@vref("linear")
def _v_linear(op, g, x, *_weights):
    q = op.attrs["q"]
    acc = np.rint(grouped_matmul(x.astype(np.float64) - q["zx"], q["w"].astype(np.float64), op.attrs.get("group", 1)))
    return V.scale_acc(acc, q["bias"], q["oscale"], q.get("act"))


@vref("conv")
def _v_conv(op, g, x, *_weights):
    q = op.attrs["q"]
    acc = np.moveaxis(_conv_acc(op, x), 1, -1)
    return np.moveaxis(V.scale_acc(acc, q["bias"], q["oscale"], q.get("act")), -1, 1)


def _conv_acc(op, x):
    """The exact integer accumulator (B, cout, OH, OW) of a conv, in float64: per group, the unfolded input
    (positions x C/g*kh*kw) times the weights, one BLAS product per batch chunk (exact: every sum < 2^53)."""
    a, q = op.attrs, op.attrs["q"]
    w = q["w"].astype(np.float64)
    grp = a["group"]
    v = K.windows(x.astype(np.float64) - q["zx"], a["kernel"], a["strides"], a["pads"], a["dilations"], 0.0)
    B, C, OH, OW, kh, kw = v.shape
    cout, cg = w.shape[0], C // grp
    wg = w.reshape(grp, cout // grp, cg * kh * kw)
    acc = np.empty((B, grp, cout // grp, OH * OW))
    step = max(1, (1 << 23) // (C * kh * kw * OH * OW))        # unfold at most 64 MiB at a time
    for b0 in range(0, B, step):
        cols = np.ascontiguousarray(v[b0:b0 + step].transpose(0, 1, 4, 5, 2, 3))     # (b, C, kh, kw, OH, OW)
        np.matmul(wg, cols.reshape(-1, grp, cg * kh * kw, OH * OW), out=acc[b0:b0 + step])
    return np.rint(acc.reshape(B, cout, OH, OW))


@vref("matmul")
def _v_matmul(op, g, a, b):
    q = op.attrs["q"]
    if op.attrs.get("sparse") == "predict":      # sparse attention's score predictor: the codes' top bits
        acc = K.predicted_acc(a, q["za"], b, q["zb"], op.attrs["predict_bits"])
        return V.scale_acc(acc, 0, q["oscale"], q.get("act"))
    acc = np.rint((a.astype(np.float64) - q["za"]) @ (b.astype(np.float64) - q["zb"]))
    return V.scale_acc(acc, 0, q["oscale"], q.get("act"))


@vref("gather")
def _v_gather(op, g, ids, _table):
    return V.gather(ids, op.attrs["q"]["codes"], op.attrs["q"]["rowscale"])


@vref("maskfn")
def _v_maskfn(op, g, ids):
    a = op.attrs
    return V.maskfn(ids, a["mode"], a["shape"], a.get("on", 0.0), a.get("off", 0.0), a.get("table"))


@vref("layernorm")
def _v_layernorm(op, g, x, gamma, beta):
    return V.layernorm(x, gamma, beta, op.attrs["eps"])


@vref("add", "mul", "div", "pow", "fmod", "mod")
def _v_binary(op, g, a, b):
    return _act(op, V.binary(op.kind, a, b))


@vref("unary")
def _v_unary(op, g, x):
    params = op.attrs.get("params", {})
    return V.unary(op.attrs["fn"], x, float(next(iter(params.values()))) if len(params) == 1 else 0.0)


@vref("relu")
def _v_relu(op, g, x):
    return V.unary("relu", x)


@vref("clip")
def _v_clip(op, g, x):
    return V.unary("clip", x, lo=op.attrs["lo"], hi=op.attrs["hi"])


@vref("softmax")
def _v_softmax(op, g, x):
    return V.softmax(x, op.attrs["axis"])


@vref("hardmax")
def _v_hardmax(op, g, x):
    return V.hardmax(x, op.attrs["axis"])


@vref("concat")
def _v_concat(op, g, *xs):
    batch = max(np.shape(x)[0] for x in xs)
    return V.concat([np.broadcast_to(x, (batch,) + np.shape(x)[1:]) for x in xs], op.attrs["axis"])


@vref("pad")
def _v_pad(op, g, x):
    return V.pad(x, op.attrs["pads"], op.attrs["value"])


@vref("maxpool", "avgpool")
def _v_pool(op, g, x):
    a = op.attrs
    return V.pool(op.kind[:3], x, a["kernel"], a["strides"], a["pads"], a["dilations"],
                  bool(a.get("count_include_pad", False)))


@vref("reduce")
def _v_reduce(op, g, x):
    a = op.attrs
    return V.reduce(a["fn"], x, a["axes"], a["keepdims"])


@vref("expand")
def _v_expand(op, g, x):
    return V.expand(x, op.attrs["shape"])


@vref("topk")
def _v_topk(op, g, x, by):
    return V.topk(x, op.attrs.get("k"), op.attrs.get("threshold"), by)[0]


@vref("reshape")
def _v_reshape(op, g, x):
    return x.reshape((x.shape[0],) + tuple(op.attrs["shape"]))


@vref("slice")
def _v_slice(op, g, x):
    a = op.attrs
    return np.ascontiguousarray(K.slice_axes(x, a["starts"], a["ends"], a["steps"]))


@vref("upsample")
def _v_upsample(op, g, x):
    return K.upsample(x, op.attrs["factors"])


@vref("transpose")
def _v_transpose(op, g, x):
    return np.ascontiguousarray(x.transpose(op.attrs["perm"]))


def input_codes(t, x: np.ndarray) -> np.ndarray:
    """What the `input` instruction makes of a program input: u8 codes, float32, or int64 ids."""
    if t.dtype == "i64":
        return np.asarray(x).astype(np.int64)
    if t.dtype == "f32":
        return V.f32(x)
    return K.quantize(x, t.scale, t.zero)


def run_reference(g: Graph, feeds: dict[str, np.ndarray], keep_all: bool = False) -> dict[str, np.ndarray]:
    """Integer evaluation; returns each graph output (or with keep_all every tensor) as its integer codes
    (u8, or i32 accumulators), or as float32 where the vector unit computes it."""
    env = {}
    for name in g.inputs:
        env[name] = input_codes(g.tensors[name], feeds[name])
    for op in g.topo():
        args = [env[t] if t in env else g.tensors[t].data for t in op.inputs]
        vec = g.tensors[op.outputs[0]].dtype == "f32" or op.kind == "quant"
        try:
            env[op.outputs[0]] = (VREF if vec else REF)[op.kind](op, g, *args)
        except (FloatingPointError, RuntimeWarning) as e:      # NumPy's warnings, as the CLIs raise them
            raise CompileError(f"node {op.name} ({op.kind}): {e} when its compiled form (float32 vector unit or "
                               "integer codes) runs on these inputs") from None
    return env if keep_all else {n: env[n] for n in g.outputs}


def dequantize_outputs(g: Graph, codes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for name, onnx_name in zip(g.outputs, g.output_names):
        t = g.tensors[name]
        if t.dtype == "f32":
            out[onnx_name] = V.f32(codes[name])
            continue
        out[onnx_name] = K.dequantize(codes[name], t.scale, t.zero,
                                      axis=t.qaxis if t.dtype == "i32" or np.ndim(t.scale) else None)
    return out
