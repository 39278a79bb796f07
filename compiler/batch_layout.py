"""Tensors whose batch axis is not where a program keeps it.

Exporters sometimes fold the batch into a per-sample axis or move it inward for a few ops: the dynamo
exporter's SDPA reshapes [batch, heads, seq, d] to [batch x heads, seq, d] around its matmuls, PaddleOCR's
SVTR transposes [batch, n, 3, heads, d] to [3, batch, heads, n, d] and slices q, k, v off the first axis. A
program keeps the batch axis first and whole (one program runs any batch), so the frontend keeps such a
tensor batch-first and records its layout: the model's axis that holds the batch and how many per-sample axes
are merged into it (physically, right after the batch). Ops that name axes are converted with the model's
axes mapped onto the physical ones, by the ordinary converters, until a Reshape or Transpose brings the
batch back in front. Anything else meeting such a tensor is one FrontendError naming the node.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from ir import FrontendError

from .onnx_ops import CONVERTERS, _new_const, attrs, label


@dataclass(frozen=True)
class Layout:
    pos: int = 0        # the model's axis that holds the batch
    merged: int = 0     # per-sample axes merged into it; physically axes 1..merged

    def __str__(self):
        if self.merged:
            return f"the batch axis merged with the {self.merged} axis(es) after it"
        return f"the batch axis moved to axis {self.pos}"


NORMAL = Layout()

# ops that combine their inputs element by element: they keep the layout; constants are re-laid out
ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Sum", "Max", "Min", "Mean", "Where", "Pow", "PRelu", "Equal", "Less",
               "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "CastLike", "Relu", "Clip",
               "LeakyRelu", "Elu", "HardSigmoid", "Erf", "Reciprocal", "Log", "Gelu", "Cast", "Identity",
               "Dropout", "IsNaN", "IsInf", "Sigmoid", "Tanh", "Exp", "Abs", "Neg", "Sqrt", "HardSwish",
               "Softplus", "Softsign", "Mish", "Selu", "Celu", "ThresholdedRelu", "Shrink", "Swish", "Sin", "Cos"}


def layout(fe, x: str) -> Layout:
    return fe.layouts.get(fe.name(x), NORMAL)


def involved(fe, node) -> bool:
    return any(i and not fe.is_const(i) and layout(fe, i) != NORMAL for i in node.input)


def full_shape(fe, x: str, batch: int) -> tuple[int, ...]:
    """The model's view of activation x, `batch` samples (what Shape reports)."""
    lay, per = layout(fe, x), list(fe.shape(x))
    rest = per[lay.merged:]
    group = batch * int(np.prod(per[:lay.merged]))
    return tuple(rest[:lay.pos] + [group] + rest[lay.pos:])


def _rank(fe, x) -> int:
    return len(fe.shape(x)) + 1 - layout(fe, x).merged


def _phys(lay: Layout, a: int) -> int:
    """Physical axis (batch first, then the merged axes) of the model's axis a, a != lay.pos."""
    return a + 1 + lay.merged if a < lay.pos else a + lay.merged


def _set(fe, outputs, lay: Layout) -> None:
    for o in outputs:
        if o:
            if lay == NORMAL:
                fe.layouts.pop(fe.name(o), None)
            else:
                fe.layouts[fe.name(o)] = lay


def _refuse(fe, node, x, what: str):
    raise FrontendError(f"node {label(node)} ({node.op_type}): {what} of {x} ({layout(fe, x)} by an earlier "
                        "Reshape / Transpose) is not supported")


def _node(node, inputs=None, **changed):
    """A copy of node with other inputs and attributes."""
    a = attrs(node)
    a.update(changed)
    return onnx.helper.make_node(node.op_type, list(node.input if inputs is None else inputs), list(node.output),
                                 name=node.name, domain=node.domain or None, **a)


def _axis(fe, node, x, a: int) -> int:
    """The model's axis a of x (negative counts from the end) as a physical axis; the batch's axis refused."""
    lay, r = layout(fe, x), _rank(fe, x)
    a %= r
    if a == lay.pos:
        _refuse(fe, node, x, f"axis {a}, the batch axis")
    return _phys(lay, a)


def _const_input(fe, node, k: int, value) -> list[str]:
    ins = list(node.input)
    ins[k] = _new_const(fe, f"{node.name or node.output[0]}.axes", np.asarray(value, np.int64))
    return ins


def convert(fe, node) -> None:
    """Convert a node that reads a tensor in another layout (called by the frontend instead of the op's
    converter) or that creates one (Transpose, Reshape: called by their converters)."""
    live = [i for i in node.input if i and not fe.is_const(i)]
    lays = {layout(fe, i) for i in live}
    op = node.op_type
    if len(lays) > 1:
        raise FrontendError(f"node {label(node)} ({op}): combines tensors whose batch axes are in different "
                            "places (" + ", ".join(f"{i}: {layout(fe, i)}" if layout(fe, i) != NORMAL else
                                                   f"{i}: batch first" for i in live) + ")")
    (lay,), x = lays, live[0]
    r = _rank(fe, x)
    if op in ELEMENTWISE:
        ins = [_relayout_const(fe, node, i, lay, r) if i and fe.is_const(i) else i for i in node.input]
        CONVERTERS[op](fe, _node(node, ins))
        return _set(fe, node.output, lay)
    handler = _HANDLERS.get(op)
    if handler is None:
        _refuse(fe, node, x, op)
    handler(fe, node, x, lay, r)


def _relayout_const(fe, node, c: str, lay: Layout, r: int) -> str:
    v = np.asarray(fe.value(c))
    if v.size == 1 or v.ndim == 0:
        return c
    if v.ndim > r:
        raise FrontendError(f"node {label(node)} ({node.op_type}): constant {c} of shape {list(v.shape)} has more axes "
                            f"than the activation it meets ({r})")
    v = v.reshape((1,) * (r - v.ndim) + v.shape)
    if v.shape[lay.pos] != 1:
        raise FrontendError(f"node {label(node)} ({node.op_type}): constant {c} of shape {list(v.shape)} varies along "
                            f"axis {lay.pos}, which holds the batch ({lay})")
    v = np.moveaxis(v, lay.pos, 0).reshape((1,) * (1 + lay.merged) + v.shape[:lay.pos] + v.shape[lay.pos + 1:])
    return _new_const(fe, c, v)


def _softmax(fe, node, x, lay, r):
    a = attrs(node).get("axis", -1)
    CONVERTERS[node.op_type](fe, _node(node, axis=_axis(fe, node, x, a)))
    _set(fe, node.output, lay)


def _layernorm(fe, node, x, lay, r):
    a = attrs(node).get("axis", -1) % r
    if a <= lay.pos:
        _refuse(fe, node, x, f"normalising from axis {a}, which holds the batch or comes before it,")
    CONVERTERS[node.op_type](fe, _node(node, axis=_phys(lay, a)))
    _set(fe, node.output, lay)


def _matmul(fe, node, x, lay, r):
    A, B = node.input
    if fe.is_const(A) or (fe.is_const(B) and np.ndim(fe.value(B)) > 2):
        _refuse(fe, node, x, "a matmul with a constant other than a 2-D right operand")
    if lay.pos >= r - 2:
        _refuse(fe, node, x, "a matmul over the batch axis")
    CONVERTERS["MatMul"](fe, node)
    _set(fe, node.output, lay)


def transpose(fe, node, x=None, lay=None, r=None):
    """Output axis j is input axis perm[j]; the batch follows. Physically only the other axes move."""
    x = node.input[0]
    lay, r = layout(fe, x), _rank(fe, x)
    perm = [int(p) % r for p in attrs(node).get("perm", range(r - 1, -1, -1))]
    out = Layout(perm.index(lay.pos), lay.merged)
    phys = list(range(1 + lay.merged)) + [_phys(lay, p) for p in perm if p != lay.pos]
    fe.emit(node, "transpose", [x], node.output[0], perm=tuple(phys))
    _set(fe, node.output, out)


def reshape(fe, node, x, full) -> None:
    """Reshape of the model's [batch (x merged axes), rest...] to [t0, rest'...]. t0 is the batch (-1 with
    rest' holding the whole sample, the probe's or the model's batch size, 0 for the same group as before)
    or the batch times a product M of leading per-sample axes (-1, or batch x M from Shape arithmetic)."""
    from .frontend import PROBE_BATCH
    lay, per = layout(fe, x), list(fe.shape(x))
    if lay.pos:
        _refuse(fe, node, x, "a reshape")
    n, k = int(np.prod(per)), lay.merged
    had = int(np.prod(per[:k]))
    rest, t0 = [int(d) for d in full[1:]], int(full[0])
    if not attrs(node).get("allowzero", 0):
        rest = [per[k + i] if d == 0 and k + i < len(per) else d for i, d in enumerate(rest)]
    batches = {PROBE_BATCH} | ({fe.static_batch} if fe.static_batch else set())
    if rest.count(-1) > 1 or any(d < -1 for d in rest):
        raise FrontendError(f"node {label(node)} ({node.op_type}): target shape {list(full)} is not a valid shape")
    known = int(np.prod([d for d in rest if d != -1]))
    group = None
    if t0 == 0:
        group = had
    elif t0 in batches:
        group = 1
    elif t0 == -1:
        group = None if -1 in rest else (n // known if known and n % known == 0 else 0)
    elif t0 > 0:
        group = next((t0 // b for b in sorted(batches, reverse=True) if t0 % b == 0), 0)
    if group is None:       # -1 twice: the batch takes one, so the per-sample -1 cannot be told
        raise FrontendError(f"node {label(node)} ({node.op_type}): target shape {list(full)} leaves both the batch "
                            "axis and a sample's axis to be inferred")
    if -1 in rest and group and n % (group * known) == 0:
        rest[rest.index(-1)] = n // (group * known)
    split = next((j for j in range(len(per) + 1) if int(np.prod(per[:j])) == group), None) if group else None
    if not group or group * int(np.prod(rest)) != n or split is None:
        if not k and t0 not in batches | {-1, 0}:
            raise FrontendError(f"node {label(node)} ({node.op_type}): target shape {list(full)} does not keep the "
                                "batch axis first")
        raise FrontendError(f"node {label(node)} ({node.op_type}): cannot reshape [N, {', '.join(map(str, per))}] "
                            f"to {list(full)}: the batch axis would take part of a sample's axis")
    fe.emit(node, "reshape", [x], node.output[0], shape=tuple(per[:split] + rest))
    _set(fe, node.output, Layout(0, split))


def flatten(fe, node, x=None, lay=None, r=None):
    """Flatten(axis) is the reshape to [-1, product of the axes from `axis` on]."""
    x = node.input[0]
    r = _rank(fe, x)
    a = attrs(node).get("axis", 1)
    a = a % r if a < r else r
    if a == 0:
        raise FrontendError(f"node {label(node)} (Flatten): axis 0 folds the batch axis into a sample's axis")
    reshape(fe, node, x, [-1, int(np.prod(full_shape(fe, x, 1)[a:]))])


def _reshape(fe, node, x, lay, r):
    reshape(fe, node, x, [int(d) for d in fe.value(node.input[1])])


def _gather(fe, node, x, lay, r):
    if node.input[0] != x or not fe.is_const(node.input[1]):
        _refuse(fe, node, x, "a Gather with run-time indices")
    a = attrs(node).get("axis", 0) % r
    nd = np.ndim(fe.value(node.input[1]))
    CONVERTERS["Gather"](fe, _node(node, axis=_axis(fe, node, x, a)))
    _set(fe, node.output, Layout(lay.pos if lay.pos < a else lay.pos - 1 + nd, lay.merged))


def _slice(fe, node, x, lay, r):
    from .frontend import PROBE_BATCH
    ins = list(node.input) + [""] * (5 - len(node.input))
    if not all(fe.is_const(i) for i in ins[1:] if i):
        _refuse(fe, node, x, "a Slice with run-time bounds")
    starts, ends = (fe.value(ins[k]).reshape(-1).astype(np.int64) for k in (1, 2))
    axes = [int(a) % r for a in fe.value(ins[3]).reshape(-1)] if ins[3] else list(range(len(starts)))
    steps = fe.value(ins[4]).reshape(-1).astype(np.int64) if ins[4] else np.ones(len(starts), np.int64)
    keep = [j for j, a in enumerate(axes) if a != lay.pos]
    for j, a in enumerate(axes):
        if a == lay.pos and not (starts[j] == 0 and steps[j] == 1 and ends[j] >= PROBE_BATCH * 2 ** 20):
            _refuse(fe, node, x, f"slicing axis {a}, the batch axis,")
    new = [ins[0], *(_new_const(fe, f"{node.name}.{w}", v[keep]) for w, v in
                     (("starts", starts), ("ends", ends), ("axes", np.array([_phys(lay, axes[j]) for j in range(len(axes))],
                                                                            np.int64)), ("steps", steps)))]
    CONVERTERS["Slice"](fe, _node(node, new))
    _set(fe, node.output, lay)


def _split(fe, node, x, lay, r):
    CONVERTERS["Split"](fe, _node(node, axis=_axis(fe, node, x, attrs(node).get("axis", 0))))
    _set(fe, node.output, lay)


def _concat(fe, node, x, lay, r):
    if any(fe.is_const(i) for i in node.input):
        _refuse(fe, node, x, "joining a constant to it")
    CONVERTERS["Concat"](fe, _node(node, axis=_axis(fe, node, x, attrs(node)["axis"])))
    _set(fe, node.output, lay)


def _given_axes(fe, node):
    if len(node.input) > 1 and node.input[1]:
        return [int(a) for a in fe.value(node.input[1]).reshape(-1)], True
    return attrs(node).get("axes"), False


def _squeeze(fe, node, x, lay, r):
    axes, as_input = _given_axes(fe, node)
    if node.op_type == "Squeeze":
        if axes is None:
            _refuse(fe, node, x, "a Squeeze without axes")
        drop = sorted({a % r for a in axes})
        phys = [_axis(fe, node, x, a) for a in drop]
        out = Layout(lay.pos - sum(a < lay.pos for a in drop), lay.merged)
    else:
        rank = r + len(axes)
        new = sorted({a % rank for a in axes})
        old = [j for j in range(rank) if j not in new]
        out = Layout(old[lay.pos], lay.merged)
        phys = [_phys(out, a) for a in new]
    n = _node(node, _const_input(fe, node, 1, phys)) if as_input else _node(node, axes=phys)
    CONVERTERS[node.op_type](fe, n)
    _set(fe, node.output, out)


def _reduce(fe, node, x, lay, r):
    axes, as_input = _given_axes(fe, node)
    if not axes:
        _refuse(fe, node, x, "a reduction over every axis")
    norm = sorted({a % r for a in axes})
    phys = [_axis(fe, node, x, a) for a in norm]
    n = _node(node, _const_input(fe, node, 1, phys)) if as_input else _node(node, axes=phys)
    CONVERTERS[node.op_type](fe, n)
    keep = attrs(node).get("keepdims", 1)
    _set(fe, node.output, Layout(lay.pos - (0 if keep else sum(a < lay.pos for a in norm)), lay.merged))


_HANDLERS = {"Softmax": _softmax, "LogSoftmax": _softmax, "Hardmax": _softmax, "LayerNormalization": _layernorm,
             "MatMul": _matmul, "Transpose": transpose, "Reshape": _reshape, "Flatten": flatten, "Gather": _gather, "Slice": _slice,
             "Split": _split, "Concat": _concat, "Squeeze": _squeeze, "Unsqueeze": _squeeze,
             **{f"Reduce{k}": _reduce for k in ("Sum", "Mean", "Max", "Min", "L2", "L1", "SumSquare", "LogSum",
                                                 "LogSumExp")}}
