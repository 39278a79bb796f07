"""Lowering of the float32 vector unit's ops (passes/quantize_vector.py) to the v* instructions."""
from __future__ import annotations

import numpy as np

from ir import Op
from isa import Buf

VLOWER = {}


def vlower(*kinds):
    def reg(fn):
        for k in kinds:
            VLOWER[k] = fn
        return fn
    return reg


def operand(L, tensor: str):
    """A buffer, or a constant stored as float32."""
    t = L.g.tensors[tensor]
    if t.is_const:
        return L.p.add_const(f"c.{len(L.p.consts)}", np.asarray(t.data, dtype=np.float32))
    return L.b(tensor)


def bounds(lo=-np.inf, hi=np.inf) -> dict:
    """A clamp as attributes: only its finite ends (the text format has no infinities)."""
    return {k: float(v) for k, v in (("lo", lo), ("hi", hi)) if np.isfinite(v)}


def _act(op):
    act = op.attrs.get("q", {}).get("act")
    return bounds(*act) if act else {}


@vlower("quant")
def _quant(L, op: Op):
    q = op.attrs["q"]
    smooth = {"smooth": L.const(op, "smooth", q["smooth"])} if q.get("smooth") is not None else {}
    L.p.emit("quant", L.b(op.outputs[0]), L.b(op.inputs[0]), scale=q["scale"], zero=q["zero"], layer=op.name,
             **smooth)


@vlower("matmul")
def _matmul(L, op: Op):
    q = op.attrs["q"]
    if op.attrs.get("sparse"):
        return _sparse_matmul(L, op)
    if op.attrs.get("crossbar"):      # the right operand is written into crossbars, then read by an MVM
        w = Buf(f"{L.b(op.outputs[0]).name}.xb")
        islices, recover = op.attrs["islices"]
        L.p.emit("xbload", w, L.b(op.inputs[1]), zero=q["zb"], slices=op.attrs["slices"],
                 rows=op.attrs.get("dyn_rows", L.p.target.rows),
                 overlap=list(op.attrs.get("overlap", ())), layer=op.name, what=op.attrs.get("written", ""))
        L.p.emit("dmvm", L.b(op.outputs[0]), L.b(op.inputs[0]), w, za=q["za"], scale=q["oscale"], islices=islices,
                 layer=op.name, **({"recover": recover} if recover else {}), **_act(op))
        return
    L.p.emit("vmatmul", L.b(op.outputs[0]), L.b(op.inputs[0]), L.b(op.inputs[1]), za=q["za"], zb=q["zb"],
             scale=q["oscale"], layer=op.name, **_act(op))


@vlower("gather")
def _gather(L, op: Op):
    q = op.attrs["q"]
    L.p.emit("gather", L.b(op.outputs[0]), L.b(op.inputs[0]), table=L.const(op, "table", q["codes"]),
             rowscale=L.const(op, "rowscale", q["rowscale"]), layer=op.name)


@vlower("maskfn")
def _maskfn(L, op: Op):
    a = op.attrs
    extra = {"table": L.const(op, "table", np.asarray(a["table"], np.float32))} if a["mode"] == "count" else \
        {"on": a["on"], "off": a["off"]}
    L.p.emit("vmask", L.b(op.outputs[0]), L.b(op.inputs[0]), mode=a["mode"], shape=a["shape"], layer=op.name, **extra)


@vlower("layernorm")
def _layernorm(L, op: Op):
    L.p.emit("vlayernorm", L.b(op.outputs[0]), L.b(op.inputs[0]), gamma=operand(L, op.inputs[1]),
             beta=operand(L, op.inputs[2]), eps=op.attrs["eps"], layer=op.name)


@vlower("add", "mul", "div", "pow", "fmod", "mod")
def _binary(L, op: Op):
    L.p.emit("vbinary", L.b(op.outputs[0]), operand(L, op.inputs[0]), operand(L, op.inputs[1]), fn=op.kind,
             layer=op.name, **_act(op))


@vlower("unary", "relu", "clip")
def _unary(L, op: Op):
    a = op.attrs
    fn = a["fn"] if op.kind == "unary" else op.kind
    params = a.get("params", {})
    extra = {"p": float(next(iter(params.values())))} if len(params) == 1 else bounds(a["lo"], a["hi"]) \
        if fn == "clip" else {}
    L.p.emit("vunary", L.b(op.outputs[0]), L.b(op.inputs[0]), fn=fn, layer=op.name, **extra)


@vlower("softmax")
def _softmax(L, op: Op):
    L.p.emit("vsoftmax", L.b(op.outputs[0]), L.b(op.inputs[0]), axis=op.attrs["axis"], layer=op.name)


@vlower("hardmax")
def _hardmax(L, op: Op):
    L.p.emit("vhardmax", L.b(op.outputs[0]), L.b(op.inputs[0]), axis=op.attrs["axis"], layer=op.name)


@vlower("concat")
def _concat(L, op: Op):
    L.p.emit("vconcat", L.b(op.outputs[0]), *[operand(L, i) for i in op.inputs], axis=op.attrs["axis"],
             layer=op.name)


@vlower("pad")
def _pad(L, op: Op):
    L.p.emit("vpad", L.b(op.outputs[0]), L.b(op.inputs[0]), pads=op.attrs["pads"], value=float(op.attrs["value"]),
             layer=op.name)


@vlower("maxpool", "avgpool")
def _pool(L, op: Op):
    a = op.attrs
    L.p.emit("vpool", L.b(op.outputs[0]), L.b(op.inputs[0]), fn=op.kind[:3], kernel=a["kernel"],
             strides=a["strides"], pads=a["pads"], dilations=a["dilations"],
             count_include_pad=bool(a.get("count_include_pad", False)), layer=op.name)


@vlower("reduce")
def _reduce(L, op: Op):
    a = op.attrs
    L.p.emit("vreduce", L.b(op.outputs[0]), L.b(op.inputs[0]), fn=a["fn"], axes=a["axes"], keepdims=a["keepdims"],
             layer=op.name)


@vlower("expand")
def _expand(L, op: Op):
    L.p.emit("vexpand", L.b(op.outputs[0]), L.b(op.inputs[0]), shape=op.attrs["shape"], layer=op.name)


@vlower("reshape")
def _reshape(L, op: Op):
    L.p.emit("reshape", L.b(op.outputs[0]), L.b(op.inputs[0]), shape=op.attrs["shape"], layer=op.name)


@vlower("slice")
def _slice(L, op: Op):
    a = op.attrs
    L.p.emit("slice", L.b(op.outputs[0]), L.b(op.inputs[0]), starts=a["starts"], ends=a["ends"], steps=a["steps"],
             layer=op.name)


@vlower("upsample")
def _upsample(L, op: Op):
    L.p.emit("upsample", L.b(op.outputs[0]), L.b(op.inputs[0]), factors=op.attrs["factors"], layer=op.name)


@vlower("transpose")
def _transpose(L, op: Op):
    L.p.emit("transpose", L.b(op.outputs[0]), L.b(op.inputs[0]), perm=op.attrs["perm"], layer=op.name)


# ---- sparse attention on PIM banks (passes/sparse_attention.py, runtime/banks.py) -----------------------

def _sparse_matmul(L, op: Op):
    """Q K^T as `sddmm` (IP mode), P V as `spmm` (SVM mode), the score predictor as `sdpred`. In the naive form
    the stored operand (K^T, V) is first written into the bank (`xbload` counts the cells, pulses and
    latency); in the digital form the bank reads it from its buffer."""
    q = op.attrs["q"]
    if op.attrs["sparse"] == "predict":      # reads the bank that holds K^T (its sddmm's xbload writes it)
        L.p.emit("sdpred", L.b(op.outputs[0]), L.b(op.inputs[0]), L.b(op.inputs[1]), za=q["za"], zb=q["zb"],
                 scale=q["oscale"], bits=op.attrs["predict_bits"], layer=op.name, **_act(op))
        return
    stored = L.b(op.inputs[1])
    if op.attrs.get("crossbar"):
        stored = Buf(f"{L.b(op.outputs[0]).name}.xb")
        L.p.emit("xbload", stored, L.b(op.inputs[1]), zero=q["zb"], slices=op.attrs["slices"],
                 rows=op.attrs.get("dyn_rows", L.p.target.rows), overlap=list(op.attrs.get("overlap", ())),
                 layer=op.name, what=op.attrs.get("written", ""))
    kind = "sddmm" if op.attrs["sparse"] == "ip" else "spmm"
    L.p.emit(kind, L.b(op.outputs[0]), L.b(op.inputs[0]), stored, za=q["za"], zb=q["zb"], scale=q["oscale"],
             mode=op.attrs["sparse"], layer=op.name, **_act(op))


@vlower("topk")
def _topk(L, op: Op):
    a = op.attrs
    rule = {"k": a["k"]} if "k" in a else {"threshold": float(a["threshold"])}
    L.p.emit("vtopk", L.b(op.outputs[0]), L.b(op.inputs[0]), L.b(op.inputs[1]), **rule, sddmm=a["sddmm"],
             layer=op.name)
