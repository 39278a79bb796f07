"""Converters for the reductions the IR has no `reduce` function for, composed from one it has (sum, max) and
elementwise unary ops: ReduceMin = -max(-x), ReduceL1 = sum |x|, ReduceSumSquare = sum x^2, ReduceLogSum =
log(sum x), ReduceLogSumExp = m + log(sum exp(x - m)) with m the max (kept, so exp cannot overflow).
Registered in onnx_ops.CONVERTERS (ReduceSum / Mean / Max / L2 are onnx_ops.reduce)."""
from __future__ import annotations

from .onnx_elementwise import _Ops
from .onnx_ops import _axes, attrs, converts


def _reduce(o, x, fn, axes, keepdims, out=None):
    return o.emit("reduce", [x], out, fn=fn, axes=axes, keepdims=keepdims)


def _unary(o, x, fn, out=None, **params):
    return o.emit("unary", [x], out, fn=fn, params=params)


@converts("ReduceMin", "ReduceL1", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp")
def reduce_composed(fe, node):
    x, out = node.input[0], node.output[0]
    axes = _axes(fe, node, len(fe.shape(x)) + 1)
    if axes is None:        # noop_with_empty_axes: the elementwise part only
        axes = ()
    keep = bool(attrs(node).get("keepdims", 1))
    o = _Ops(fe, node)
    op = node.op_type
    if op == "ReduceMin":
        r = _unary(o, x, "neg")
        return _unary(o, _reduce(o, r, "max", axes, keep) if axes else r, "neg", out)
    if op == "ReduceL1":
        r = _unary(o, x, "abs", None if axes else out)
        return _reduce(o, r, "sum", axes, keep, out) if axes else r
    if op == "ReduceSumSquare":
        r = _unary(o, x, "pow", None if axes else out, p=2.0)
        return _reduce(o, r, "sum", axes, keep, out) if axes else r
    if op == "ReduceLogSum":
        return _unary(o, _reduce(o, x, "sum", axes, keep) if axes else x, "log", out)
    if not axes:
        return _unary(o, _unary(o, x, "exp"), "log", out)
    m = _reduce(o, x, "max", axes, True)
    s = _reduce(o, _unary(o, o.sub(x, m), "exp"), "sum", axes, True)
    y = o.add(m, _unary(o, s, "log"), out if keep else None)
    if not keep:
        shape = tuple(d for k, d in enumerate(fe.shape(x), 1) if k not in axes)
        fe.emit(node, "reshape", [y], out, shape=shape)
