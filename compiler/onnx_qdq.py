"""The weight and bias codes of an already-quantised model, kept for its crossbar layers.

A QDQ model's DequantizeLinear of a constant folds to real values, and QLinearConv / QLinearMatMul / QGemm
converters dequantise their weights, because the IR holds real values. This module states beside each
crossbar layer's weight (and bias) constant the integer codes the model gave it, with their scale and zero
point per output channel, in the IR layout (conv [O, I, kh, kw], linear [K, N]). passes/quantize.py keeps
them where the constant still equals those codes dequantised (a later rewrite, such as a folded
BatchNormalization, leaves a statement that no longer matches, and the layer is quantised afresh).
"""
from __future__ import annotations

import numpy as np

from .onnx_ops import attrs

# |real / scale - (code - zero)| allowed when matching a constant to its codes: float32 dequantisation is off
# by at most 255 * 2^-24 of a step; anything else that changed the values (a folded BatchNormalization) moves
# them by far more
MATCH = 1e-3


# QLinear* contrib op -> positions of its (x, scale, zero) input triples
QLINEAR_OPERANDS = {"QLinearAdd": (0, 3), "QLinearMul": (0, 3), "QLinearConcat": None}


def _record(fe, codes: str, scale: str, zero: str, axis: int | None) -> dict | None:
    q = np.asarray(fe.value(codes))
    if q.dtype.kind not in "iu" or not fe.is_const(scale) or zero and not fe.is_const(zero):
        return None
    s = np.asarray(fe.value(scale), np.float64)
    z = np.asarray(fe.value(zero)).astype(np.int64) if zero else np.zeros((), np.int64)
    if s.size > 1 and axis is None or not np.all((s > 0) & np.isfinite(s)):    # a bad scale: the frontend's
        return None                                                                # checks name it elsewhere
    info = np.iinfo(q.dtype)
    return {"codes": q.astype(np.int64), "scale": s, "zero": z, "axis": axis if s.size > 1 else None,
            "qmin": int(info.min), "qmax": int(info.max), "dtype": str(q.dtype)}


def model_statements(fe) -> dict[str, dict]:
    """ONNX constant name -> the codes it holds: the output of a DequantizeLinear of integer constants, a
    QLinearConv / QLinearMatMul / QGemm weight or bias input, or a constant operand of QLinearAdd / QLinearMul /
    QLinearConcat."""
    recs = {}
    for node in fe.model.graph.node:
        ins = list(node.input) + [""] * 9
        if node.domain not in ("", "ai.onnx", "com.microsoft"):
            continue
        if node.op_type == "DequantizeLinear" and fe.is_const(ins[0]) and node.output[0] in fe.consts:
            codes = np.asarray(fe.value(ins[0]))
            rec = _record(fe, ins[0], ins[1], ins[2], attrs(node).get("axis", 1) % max(codes.ndim, 1))
        elif node.op_type == "QLinearConv":
            rec = _record(fe, ins[3], ins[4], ins[5], 0)
            if rec and ins[8]:
                recs[ins[8]] = _bias(fe, ins[8], ins[1], ins[4])
        elif node.op_type == "QLinearMatMul":
            rec = _record(fe, ins[3], ins[4], ins[5], 1)
        elif node.op_type == "QGemm":
            rec = _record(fe, ins[3], ins[4], ins[5], 0 if attrs(node).get("transB", 0) else 1)
            if rec and ins[6] and attrs(node).get("alpha", 1.0) == 1.0:
                recs[ins[6]] = _bias(fe, ins[6], ins[1], ins[4])
        elif node.op_type in QLINEAR_OPERANDS:     # constant operands of onnxruntime's QLinear* contrib ops
            triples = QLINEAR_OPERANDS[node.op_type]
            if triples is None:                     # QLinearConcat: y_scale, y_zero, then (x, scale, zero)*
                triples = tuple(range(2, len(node.input), 3))
            for k in triples:
                if ins[k] and fe.is_const(ins[k]):
                    r = _record(fe, ins[k], ins[k + 1], ins[k + 2], None)
                    if r is not None:
                        recs[ins[k]] = r
            continue
        else:
            continue
        if rec is not None:
            recs[node.output[0] if node.op_type == "DequantizeLinear" else ins[3]] = rec
    return {k: v for k, v in recs.items() if v is not None}


def _bias(fe, codes, xs, ws) -> dict | None:
    """A QLinear op's int32 bias: codes on the accumulator's scale xs * ws."""
    if not all(fe.is_const(i) for i in (codes, xs, ws)):
        return None
    q = np.asarray(fe.value(codes))
    if q.dtype.kind not in "iu":
        return None
    return {"codes": q.astype(np.int64).reshape(-1)}


def _oriented(rec: dict, shape: tuple, out_axis: int) -> list:
    """Candidate (codes, scale, zero) laid out as the IR constant of `shape`, whose output channels lie on
    out_axis: a conv's codes as they are; a linear's as they are (reshaped; channels on the model's last axis)
    or transposed (a Gemm with transB: channels on its first axis)."""
    q, axis = rec["codes"], rec["axis"]
    n = shape[out_axis]
    if rec["scale"].size not in (1, n) or rec["zero"].size not in (1, n) or q.size != int(np.prod(shape)):
        return []
    cands = []
    if out_axis == 0 and q.shape == tuple(shape) and axis in (None, 0):
        cands.append(q)
    if out_axis == 1 and q.shape[-1:] == (n,) and axis in (None, q.ndim - 1):
        cands.append(q.reshape(shape))
    if out_axis == 1 and q.ndim == 2 and q.T.shape == tuple(shape) and axis in (None, 0):
        cands.append(q.T)
    s = np.broadcast_to(rec["scale"].reshape(-1), (n,)).astype(np.float64)
    z = np.broadcast_to(rec["zero"].reshape(-1), (n,)).astype(np.int64)
    return [(c, s, z) for c in cands]


def _source(fe, recs: dict, name: str) -> dict | None:
    """The statement about the onnx tensor an IR constant was made from, through converters that made it from
    another constant in turn (a QLinearAdd's dequantised operand, then the Add's copy of it)."""
    seen = set()
    while name not in recs and name in fe.origin and name not in seen:
        seen.add(name)
        name = fe.origin[name]
    return recs.get(name)


def attach(fe) -> None:
    """Put the model's codes on the weight and bias constants of every conv / linear whose values they give."""
    recs = model_statements(fe)
    if not recs:
        return
    g = fe.g
    crossbar = {i for op in g.ops.values() if op.kind in ("conv", "linear") for i in op.inputs[1:]}
    for name, t in g.tensors.items():      # operands of digital ops (an Add's bias): per-tensor codes
        rec = _source(fe, recs, name)
        if name not in crossbar and t.is_const and rec is not None and "scale" in rec and rec["scale"].size == 1 and rec["zero"].size == 1 \
                and rec["codes"].size == t.data.size and rec["qmax"] <= 255:
            codes = rec["codes"].reshape(t.data.shape)
            s, z = float(rec["scale"].reshape(())), int(rec["zero"].reshape(()))
            if np.all(np.abs(t.data / s - (codes - z)) <= MATCH):
                t.qhint = {"codes": codes, "scale": s, "zero": z, "dtype": rec["dtype"]}
    for op in g.ops.values():
        if op.kind not in ("conv", "linear"):
            continue
        w = g.tensors[op.inputs[1]]
        rec = _source(fe, recs, op.inputs[1])
        if rec is None or "scale" not in rec or w.qhint:
            continue
        out_axis = 0 if op.kind == "conv" else 1
        for codes, s, z in _oriented(rec, w.data.shape, out_axis):
            shaped = (-1,) + (1,) * (codes.ndim - 1) if out_axis == 0 else (1, -1)
            if np.all(np.abs(w.data / s.reshape(shaped) - (codes - z.reshape(shaped))) <= MATCH):
                w.qhint = {"codes": codes, "scale": s, "zero": z, "qmin": rec["qmin"], "qmax": rec["qmax"],
                           "dtype": rec["dtype"], "per_channel": rec["axis"] is not None}
                break
        if w.qhint and len(op.inputs) > 2:
            b = _source(fe, recs, op.inputs[2])
            n = len(w.qhint["scale"])
            if b is not None and b["codes"].size in (1, n):
                g.tensors[op.inputs[2]].qhint = {"codes": np.broadcast_to(b["codes"].reshape(-1), (n,)).copy()}
