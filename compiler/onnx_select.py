"""Converters that pick or rearrange an activation's values by position: Pad in reflect / edge / wrap mode and
Gather with an array of constant indices (one constant 0 / 1 matrix along the axis: a `linear` op, the axis
moved last by transposes around it, so each output is one input value), Compress by a constant condition (a
Gather of the kept positions), Tile (concatenations), DepthToSpace and SpaceToDepth (reshape, transpose,
reshape). Registered in onnx_ops.CONVERTERS; onnx_ops.pad and onnx_ops.gather hand
these forms over."""
from __future__ import annotations

import numpy as np

from ir import FrontendError

from .onnx_ops import _decode, _new_const, attrs, converts, label


def along_axis(fe, node, x, axis: int, M: np.ndarray, out: str) -> str:
    """y = x M along `axis` (numbered with the batch axis first): [.., n, ..] -> [.., m, ..] for M (n, m)."""
    rank = len(fe.shape(x)) + 1
    perm = list(range(rank))
    perm[axis], perm[-1] = perm[-1], perm[axis]
    last = axis == rank - 1
    t = x if last else fe.emit(node, "transpose", [x], f"{out}.in", perm=tuple(perm))
    t = fe.emit(node, "linear", [t, _new_const(fe, f"{node.name or out}.select{axis}", M)], out if last else f"{out}.sel")
    return t if last else fe.emit(node, "transpose", [t], out, perm=tuple(perm))


def picks(idx: np.ndarray, n: int) -> np.ndarray:
    """(n, len(idx)) 0 / 1 matrix whose column j takes input idx[j]."""
    M = np.zeros((n, len(idx)))
    M[idx, np.arange(len(idx))] = 1.0
    return M


def _source(mode: str, n: int, lo: int, hi: int) -> np.ndarray:
    """For each output position of an axis of n padded by (lo, hi): the input position it repeats."""
    p = np.arange(-lo, n + hi)
    if mode == "edge":
        return np.clip(p, 0, n - 1)
    if mode == "wrap":
        return p % n
    period = 2 * (n - 1)                # reflect: mirror about the end values, which are not repeated
    q = np.abs(p) % period if period else np.zeros_like(p)
    return np.where(q < n, q, period - q)


def pad_by_mode(fe, node, mode: str, pads: list[int]) -> None:
    """pads: (begin..., end...) per axis, batch first; reflect needs pads below the axis length."""
    x, out = node.input[0], node.output[0]
    rank = len(fe.shape(x)) + 1
    axes = [k for k in range(1, rank) if pads[k] or pads[rank + k]]
    if not axes:
        return fe.forward(out, x)
    for i, k in enumerate(axes):
        n = fe.shape(x)[k - 1]
        lo, hi = pads[k], pads[rank + k]
        if mode == "reflect" and max(lo, hi) >= n:
            raise FrontendError(f"node {label(node)} (Pad): reflect padding of {max(lo, hi)} on an axis of {n}")
        x = along_axis(fe, node, x, k, picks(_source(mode, n, lo, hi), n),
                       out if i == len(axes) - 1 else f"{out}.pad{k}")


def gather(fe, node, x, idx: np.ndarray, axis: int) -> None:
    shape = fe.shape(x)
    n = shape[axis - 1]
    flat = idx.reshape(-1).astype(np.int64)
    if flat.size == 0 or flat.min() < -n or flat.max() >= n:
        raise FrontendError(f"node {label(node)} (Gather): indices {idx.tolist()} do not fit an axis of {n}")
    out = node.output[0]
    y = along_axis(fe, node, x, axis, picks(flat % n, n), f"{out}.picked" if idx.ndim != 1 else out)
    if idx.ndim != 1:
        fe.emit(node, "reshape", [y], out, shape=shape[:axis - 1] + idx.shape + shape[axis:])


@converts("DepthToSpace", "SpaceToDepth")
def depth_space(fe, node):
    x, out = node.input[0], node.output[0]
    shape = fe.shape(x)
    if len(shape) != 3:
        raise FrontendError(f"node {label(node)} ({node.op_type}): needs an input [N, C, H, W]")
    c, h, w = shape
    b = int(attrs(node)["blocksize"])
    if node.op_type == "DepthToSpace":
        if c % (b * b):
            raise FrontendError(f"node {label(node)} (DepthToSpace): {c} channels do not split into {b}x{b} blocks")
        if _decode(attrs(node).get("mode", "DCR")) == "DCR":
            split, perm = (b, b, c // (b * b), h, w), (0, 3, 4, 1, 5, 2)
        else:
            split, perm = (c // (b * b), b, b, h, w), (0, 1, 4, 2, 5, 3)
        final = (c // (b * b), h * b, w * b)
    else:
        if h % b or w % b:
            raise FrontendError(f"node {label(node)} (SpaceToDepth): {h}x{w} does not split into {b}x{b} blocks")
        crd = _decode(attrs(node).get("mode", "DCR")) == "CRD"
        split, final = (c, h // b, b, w // b, b), (c * b * b, h // b, w // b)
        perm = (0, 1, 3, 5, 2, 4) if crd else (0, 3, 5, 1, 2, 4)
    y = fe.emit(node, "reshape", [x], f"{out}.split", shape=split)
    y = fe.emit(node, "transpose", [y], f"{out}.moved", perm=perm)
    fe.emit(node, "reshape", [y], out, shape=final)


@converts("Compress")
def compress(fe, node):
    """A constant condition along an axis within a sample: the positions it keeps, as a Gather."""
    x, cond = node.input
    a = attrs(node)
    rank = len(fe.shape(x)) + 1
    if fe.is_const(x) or not fe.is_const(cond):
        raise FrontendError(f"node {label(node)} (Compress): only an activation and a constant condition are supported")
    if "axis" not in a or a["axis"] % rank == 0:
        raise FrontendError(f"node {label(node)} (Compress): "
                            + ("without an axis it flattens the batch axis into the sample's" if "axis" not in a
                               else "selecting along the batch axis is not supported"))
    axis = a["axis"] % rank
    keep = np.flatnonzero(np.asarray(fe.value(cond)).reshape(-1)[:fe.shape(x)[axis - 1]])
    if not len(keep):
        raise FrontendError(f"node {label(node)} (Compress): the condition keeps nothing")
    gather(fe, node, x, keep, axis)


@converts("Tile")
def tile(fe, node):
    """Copies along the axes within a sample: the activation concatenated with itself along each repeated axis."""
    x, reps = node.input
    if not fe.is_const(reps):
        raise FrontendError(f"node {label(node)} (Tile): only constant repeats are supported")
    r = [int(v) for v in np.asarray(fe.value(reps)).reshape(-1)]
    if r and r[0] != 1:
        raise FrontendError(f"node {label(node)} (Tile): repeating the batch axis ({r[0]} times) is not supported")
    y, out = x, node.output[0]
    todo = [(k, n) for k, n in enumerate(r) if k and n != 1]
    if any(n < 1 for _, n in todo):
        raise FrontendError(f"node {label(node)} (Tile): repeats {r} would leave an empty output")
    for j, (k, n) in enumerate(todo):
        y = fe.emit(node, "concat", [y] * n, out if j == len(todo) - 1 else f"{out}.tile{k}", axis=k)
    if not todo:
        fe.forward(out, x)
