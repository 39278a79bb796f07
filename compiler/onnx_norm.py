"""Converters for normalisations, from the IR's reduce, add, mul, div and unary ops (all on the float32 vector
unit, as a transformer's layernorm runs): LayerNormalization over other axes or with its Mean / InvStdDev
outputs, RMSNormalization, InstanceNormalization, MeanVarianceNormalization, LpNormalization and LogSoftmax.
The axes never include the batch axis. Registered in onnx_ops.CONVERTERS; a LayerNormalization over the last axis
that only gives Y stays one `layernorm` op (onnx_ops.layernorm_last)."""
from __future__ import annotations


import numpy as np

from ir import FrontendError

from .onnx_elementwise import _Ops
from .onnx_ops import attrs, converts, label, layernorm_last


def _trailing(fe, node, x, axis_default=-1) -> tuple[int, ...]:
    """The axes from `axis` to the last (batch-inclusive numbering); axis 0 is refused."""
    rank = len(fe.shape(x)) + 1
    axis = attrs(node).get("axis", axis_default) % rank
    if axis == 0:
        raise FrontendError(f"node {label(node)} ({node.op_type}): normalising over the batch axis (axis 0) is not "
                            "supported")
    return tuple(range(axis, rank))


def _param(fe, node, o, k, x):
    """Scale / bias input k as a constant (None when absent)."""
    if len(node.input) <= k or not node.input[k]:
        return None
    name = node.input[k]
    if not fe.is_const(name):
        raise FrontendError(f"node {label(node)} ({node.op_type}): {name} must be a constant")
    o.check(x, name)
    return name


def _stats(fe, node, o, x, axes, eps):
    """(x - mean, 1 / sqrt(var + eps), mean) over axes, kept as size-1 axes."""
    mean = o.emit("reduce", [x], fn="mean", axes=axes, keepdims=True)
    d = o.sub(x, mean)
    var = o.emit("reduce", [o.emit("unary", [d], fn="pow", params={"p": 2.0})], fn="mean", axes=axes, keepdims=True)
    inv = o.emit("unary", [o.add(var, o.const(eps))], fn="pow", params={"p": -0.5})
    return d, inv, mean


@converts("LayerNormalization")
def layernorm(fe, node):
    x = node.input[0]
    axes = _trailing(fe, node, x)
    extra = [o for o in node.output[1:] if o]
    if axes == (len(fe.shape(x)),) and not extra:
        return layernorm_last(fe, node)
    o = _Ops(fe, node)
    scale, bias = _param(fe, node, o, 1, x), _param(fe, node, o, 2, x)
    d, inv, mean = _stats(fe, node, o, x, axes, float(attrs(node).get("epsilon", 1e-5)))
    y = o.emit("mul", [d, inv], None if scale or bias else node.output[0])
    if scale:
        y = o.emit("mul", [y, scale], None if bias else node.output[0])
    if bias:
        o.add(y, bias, node.output[0])
    for out, v in zip(node.output[1:], (mean, inv)):
        if out:
            fe.forward(out, v)


@converts("RMSNormalization")
def rmsnorm(fe, node):
    x = node.input[0]
    axes = _trailing(fe, node, x)
    o = _Ops(fe, node)
    scale = _param(fe, node, o, 1, x)
    ms = o.emit("reduce", [o.emit("unary", [x], fn="pow", params={"p": 2.0})], fn="mean", axes=axes, keepdims=True)
    inv = o.emit("unary", [o.add(ms, o.const(float(attrs(node).get("epsilon", 1e-5))))], fn="pow", params={"p": -0.5})
    y = o.emit("mul", [x, inv], None if scale else node.output[0])
    if scale:
        o.emit("mul", [y, scale], node.output[0])


@converts("InstanceNormalization")
def instancenorm(fe, node):
    """Per sample and channel over the spatial axes, then a per-channel scale and bias."""
    x = node.input[0]
    rank = len(fe.shape(x)) + 1
    if rank < 3:
        raise FrontendError(f"node {label(node)} (InstanceNormalization): needs an input [N, C, ...]")
    o = _Ops(fe, node)
    d, inv, _ = _stats(fe, node, o, x, tuple(range(2, rank)), float(attrs(node).get("epsilon", 1e-5)))
    y = o.emit("mul", [d, inv])
    per_channel = (-1,) + (1,) * (rank - 2)
    scale, bias = [np.asarray(_per_channel(fe, node, node.input[k]), np.float64).reshape(per_channel) for k in (1, 2)]
    o.emit("add", [o.emit("mul", [y, o.const(scale)]), o.const(bias)], node.output[0])


def _per_channel(fe, node, name):
    if not fe.is_const(name):
        raise FrontendError(f"node {label(node)} (InstanceNormalization): {name} must be a constant")
    return fe.value(name)


@converts("MeanVarianceNormalization")
def mvn(fe, node):
    x = node.input[0]
    rank = len(fe.shape(x)) + 1
    axes = tuple(sorted(int(a) % rank for a in attrs(node).get("axes", (0, 2, 3))))
    if 0 in axes:
        raise FrontendError(f"node {label(node)} (MeanVarianceNormalization): axes {list(axes)} include the batch "
                            "axis; only axes within a sample are supported")
    o = _Ops(fe, node)
    d, inv, _ = _stats(fe, node, o, x, axes, 1e-9)
    o.emit("mul", [d, inv], node.output[0])


@converts("LpNormalization")
def lp_norm(fe, node):
    x = node.input[0]
    a = attrs(node)
    axes = (_trailing(fe, node, x)[0],)
    p = a.get("p", 2)
    if p not in (1, 2):
        raise FrontendError(f"node {label(node)} (LpNormalization): p = {p}; only 1 and 2 are defined")
    o = _Ops(fe, node)
    norm = o.emit("reduce", [x], fn="l2", axes=axes, keepdims=True) if p == 2 else \
        o.emit("reduce", [o.emit("unary", [x], fn="abs", params={})], fn="sum", axes=axes, keepdims=True)
    o.emit("div", [x, norm], node.output[0])


@converts("LogSoftmax")
def log_softmax(fe, node):
    """x - max - log(sum(exp(x - max))) along the axis."""
    x = node.input[0]
    axes = (_trailing(fe, node, x)[0],)
    o = _Ops(fe, node)
    d = o.sub(x, o.emit("reduce", [x], fn="max", axes=axes, keepdims=True))
    s = o.emit("reduce", [o.emit("unary", [d], fn="exp", params={})], fn="sum", axes=axes, keepdims=True)
    o.sub(d, o.emit("unary", [s], fn="log", params={}), node.output[0])
