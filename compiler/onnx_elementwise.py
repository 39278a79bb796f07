"""Converters for elementwise ops between run-time values, built from the IR's add, mul, relu, clip and unary
ops: Max, Min, Mean, comparisons (a 0 / 1 float), Not, And, Or, Where (a blend by such a 0 / 1 condition),
CastLike and Mod (on the float32 vector unit). Registered in onnx_ops.CONVERTERS.

max(a, b) = a + relu(b - a) and min(a, b) = a - relu(a - b) are exact in float, and in the integer form each
step is quantised as any add or relu is; against a constant that is the same everywhere they are one clip.
A comparison is a step function of the difference, so a `unary` op (a code table in the integer form):
exact away from ties, which 8-bit codes cannot tell apart anyway; Equal is all ties, so a model holding one
runs on the float32 vector unit, where it is exact. And = a b, Or = a + b - a b. Where(c, a, b) = b + c (a - b).
"""
from __future__ import annotations

import numpy as np

from ir import FrontendError

from .onnx_ops import _binary, _new_const, attrs, converts, label, per_sample_const, same_rank


class _Ops:
    """Emits IR ops for one ONNX node, taking ONNX names (activations or constants) and returning IR names."""

    def __init__(self, fe, node):
        self.fe, self.node, self.k = fe, node, 0

    def _out(self, out):
        if out is not None:
            return out
        self.k += 1
        return f"{self.node.output[0]}.{self.node.op_type.lower()}{self.k}"

    def const(self, v) -> str:
        return _new_const(self.fe, f"{self.node.name or self.node.output[0]}.c", np.asarray(v, np.float64))

    def emit(self, kind, ins, out=None, **a):
        fe = self.fe
        live = [i for i in ins if not fe.is_const(i)]
        ins = [i if not fe.is_const(i) else _new_const(fe, i, fe.value(i).astype(np.float64)) for i in ins]
        if not live:
            raise FrontendError(f"node {label(self.node)} ({self.node.op_type}): every operand is a constant")
        return fe.emit(self.node, kind, ins, self._out(out), **a)

    def check(self, *names):
        live = [n for n in names if not self.fe.is_const(n)]
        same_rank(self.fe, self.node, live)
        for n in names:
            if self.fe.is_const(n):
                per_sample_const(self.fe, self.node, n, live[0])

    def neg(self, x, out=None):
        if self.fe.is_const(x):
            return self.const(-self.fe.value(x).astype(np.float64))
        return self.emit("unary", [x], out, fn="neg", params={})

    def add(self, a, b, out=None):
        return self.emit("add", [a, b], out)

    def sub(self, a, b, out=None):
        return self.add(a, self.neg(b), out)


def _uniform(fe, x):
    """The single value of a constant that is the same everywhere (None otherwise or for an activation)."""
    if not fe.is_const(x):
        return None
    v = np.asarray(fe.value(x), np.float64)
    return float(v.flat[0]) if v.size and np.all(v == v.flat[0]) else None


def _minmax(fe, node, a, b, out, is_max):
    o = _Ops(fe, node)
    if fe.is_const(a):
        a, b = b, a
    c = _uniform(fe, b)
    full = (1,) + fe.shape(a)
    if c is not None and np.broadcast_shapes(full, np.shape(fe.value(b))) == full:
        lo, hi = (c, float("inf")) if is_max else (float(np.finfo(np.float32).min), c)
        if is_max and c == 0:
            return fe.emit(node, "relu", [a], o._out(out))
        return fe.emit(node, "clip", [a], o._out(out), lo=lo, hi=hi)
    o.check(a, b)
    if is_max:      # a + relu(b - a)
        return o.add(a, o.emit("relu", [o.sub(b, a)]), out)
    return o.add(a, o.neg(o.emit("relu", [o.sub(a, b)])), out)      # a - relu(a - b)


@converts("Max", "Min")
def max_min(fe, node):
    ins = [i for i in node.input if i]
    if len(ins) == 1:
        return fe.forward(node.output[0], ins[0])
    live = [i for i in ins if not fe.is_const(i)]
    consts = [i for i in ins if fe.is_const(i)]
    acc = live[0]
    rest = live[1:] + consts     # activations first: two constants would fold, not convert
    for k, i in enumerate(rest):
        out = node.output[0] if k == len(rest) - 1 else f"{node.output[0]}.{k}"
        acc = _minmax(fe, node, acc, i, out, node.op_type == "Max")


@converts("Mean")
def mean(fe, node):
    ins = [i for i in node.input if i]
    o = _Ops(fe, node)
    o.check(*ins)
    live = [i for i in ins if not fe.is_const(i)]
    acc = live[0]
    for i in live[1:] + [i for i in ins if fe.is_const(i)]:
        acc = o.add(acc, i)
    o.emit("mul", [acc, o.const(1.0 / len(ins))], node.output[0])


# comparison -> (step function of x - y, its argument order)
_COMPARE = {"Greater": "greater", "Less": "less", "GreaterOrEqual": "greater_equal", "LessOrEqual": "less_equal",
            "Equal": "equal"}
_SWAPPED = {"greater": "less", "less": "greater", "greater_equal": "less_equal", "less_equal": "greater_equal",
            "equal": "equal"}


@converts(*_COMPARE)
def compare(fe, node):
    """x OP y as 0 / 1: a step at a constant scalar y, else at 0 of x - y."""
    a, b = node.input
    fn = _COMPARE[node.op_type]
    if fe.is_const(a):
        a, b, fn = b, a, _SWAPPED[fn]
    o = _Ops(fe, node)
    c = _uniform(fe, b)
    full = (1,) + fe.shape(a)
    if c is not None and np.broadcast_shapes(full, np.shape(fe.value(b))) == full:
        # a program's values are finite, an infinity stands as the float32 extreme (as a mask's -inf does)
        c = float(np.clip(c, np.finfo(np.float32).min, np.finfo(np.float32).max))
        return o.emit("unary", [a], node.output[0], fn=fn, params={"c": c})
    o.check(a, b)
    o.emit("unary", [o.sub(a, b)], node.output[0], fn=fn, params={"c": 0.0})


@converts("Mod")
def mod(fe, node):
    """The remainder with the dividend's sign (fmod = 1) or the divisor's (fmod = 0), on the float32 vector unit."""
    _binary(fe, node, "fmod" if attrs(node).get("fmod", 0) else "mod")


@converts("And")
def and_(fe, node):
    """a b of 0 / 1 values."""
    a, b = node.input
    o = _Ops(fe, node)
    o.check(a, b)
    o.emit("mul", [a, b], node.output[0])


@converts("Or")
def or_(fe, node):
    """a + b - a b of 0 / 1 values."""
    a, b = node.input
    o = _Ops(fe, node)
    o.check(a, b)
    o.sub(o.add(a, b), o.emit("mul", [a, b]), node.output[0])


@converts("Not")
def not_(fe, node):
    """1 - x of a 0 / 1 value."""
    o = _Ops(fe, node)
    o.add(o.neg(node.input[0]), o.const(1.0), node.output[0])


@converts("CastLike")
def cast_like(fe, node):
    """To float (the only run-time type here): the value itself; a constant is cast."""
    x, like = node.input
    dtype = np.asarray(fe.value(like)).dtype
    if fe.is_const(x):
        return fe.set_const(node.output[0], np.asarray(fe.value(x)).astype(dtype))
    if dtype.kind != "f":
        raise FrontendError(f"node {label(node)} (CastLike): casting the activation {x} to {dtype} is not supported")
    fe.forward(node.output[0], x)


@converts("Where")
def where(fe, node):
    """A constant condition that is the same everywhere picks its branch (if that branch already has the
    output's shape); any other condition (0 / 1: a comparison, a mask, a constant) blends b + c (a - b)."""
    cond, a, b = node.input
    c = _uniform(fe, cond)
    if c is not None:
        pick, other = (a, b) if c else (b, a)
        if not fe.is_const(pick):
            full = np.broadcast_shapes((1,) + fe.shape(pick), np.shape(fe.value(other)) if fe.is_const(other)
                                       else (1,) + fe.shape(other), np.shape(fe.value(cond)))
            if tuple(full[1:]) == fe.shape(pick):
                return fe.forward(node.output[0], pick)
    o = _Ops(fe, node)
    live = [i for i in (cond, a, b) if not fe.is_const(i)]
    if not live:
        raise FrontendError(f"node {label(node)} (Where): every operand is a constant")
    o.check(cond, a, b)
    for i in (a, b):
        if fe.is_const(i) and not np.isfinite(np.asarray(fe.value(i), np.float64)).all():
            raise FrontendError(f"node {label(node)} (Where): branch {i} holds an infinity; selecting it element by "
                                "element at run time is not supported (a token mask from integer inputs is)")
    if fe.is_const(a) and fe.is_const(b):
        d = o.const(np.asarray(fe.value(a), np.float64) - np.asarray(fe.value(b), np.float64))
    else:
        d = o.sub(a, b)
    if fe.is_const(cond):
        cond = o.const(np.asarray(fe.value(cond), np.float64))
    o.emit("add", [o.emit("mul", [cond, d]), b], node.output[0])
