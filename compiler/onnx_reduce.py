"""Converters for the reductions the IR has no `reduce` function for, composed from one it has (sum, max) and
elementwise unary ops: ReduceMin = -max(-x), ReduceL1 = sum |x|, ReduceSumSquare = sum x^2, ReduceLogSum =
log(sum x), ReduceLogSumExp = m + log(sum exp(x - m)) with m the max (kept, so exp cannot overflow); and
LpPool, a windowed sum of |x|^p. Registered in onnx_ops.CONVERTERS (ReduceSum / Mean / Max / L2 / Prod are
onnx_ops.reduce)."""
from __future__ import annotations

import numpy as np
import onnx

from ir import FrontendError

from .onnx_elementwise import _Ops
from .onnx_ops import _axes, attrs, converts, label


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


@converts("LpPool")
def lp_pool(fe, node):
    """(sum over the window of |x|^p)^(1/p): |x|^p, an average pool counting the zero padding, times the window
    size, ^(1/p). Windows of 1, 2 or 3 axes, as AveragePool has them (onnx_windows1d, onnx_windows3d)."""
    from .onnx_ops import pool
    a = attrs(node)
    p = float(a.get("p", 2))
    if a.get("ceil_mode", 0):
        raise FrontendError(f"node {label(node)} (LpPool): ceil_mode is not supported (the windows past the end "
                            "hold fewer values than the kernel)")
    x, out = node.input[0], node.output[0]
    o = _Ops(fe, node)
    powered = _unary(o, _unary(o, x, "abs"), "pow", p=p)
    keep = {k: v for k, v in a.items() if k in ("kernel_shape", "strides", "pads", "dilations", "auto_pad")}
    pool(fe, onnx.helper.make_node("AveragePool", [powered], [f"{out}.mean"], name=node.name, count_include_pad=1,
                                   **keep))
    total = o.emit("mul", [f"{out}.mean", o.const(float(np.prod(a["kernel_shape"])))])
    _unary(o, total, "pow", out, p=1.0 / p)
