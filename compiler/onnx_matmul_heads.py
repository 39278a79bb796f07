"""MatMul of an activation [N, ..., m, k] by a constant with a leading axis of its own ([..., h, k, n]: one
weight per head, as an attention written with constant keys or values has): one `linear` op whose column
block g holds head g's weight. Where the activation has the h heads too, block g reads head g's k values (a
grouped linear, block-diagonal on the crossbars); where it has one (broadcast), every block reads the same
values. The head axis is moved next to the reduced one around the product (transpose, reshape)."""
from __future__ import annotations

import numpy as np

from ir import FrontendError

from .onnx_ops import _full, _new_const, label


def per_head(fe, node, A: str, B: str, W: np.ndarray) -> None:
    what = f"node {label(node)} (MatMul)"
    sa = fe.shape(A)                     # per sample: (*lead, m, k)
    lead = list(W.shape[:-2])
    while len(lead) > len(sa) - 2 and lead and lead[0] == 1:
        lead.pop(0)                      # the batch axis of a constant written with one
    lead = [1] * (len(sa) - 2 - len(lead)) + lead
    heads = [j for j, d in enumerate(lead) if d != 1]
    if len(lead) != len(sa) - 2 or len(heads) != 1 or sa[heads[0]] not in (1, lead[heads[0]]):
        raise FrontendError(f"{what}: constant right operand {B} of shape {list(W.shape)} for {A} {_full(fe, A)}; "
                            "only a 2-D weight, or one weight per index of one leading axis, is supported")
    j, h = heads[0], lead[heads[0]]
    k, n = W.shape[-2:]
    if sa[-1] != k:
        raise FrontendError(f"{what}: {A} {_full(fe, A)} times {B} of shape {list(W.shape)}: inner sizes {sa[-1]} "
                            f"and {k} differ")
    blocks = W.reshape(h, k, n).astype(np.float64)
    out = node.output[0]
    r = len(sa) + 1                     # axes with the batch; the head axis is j + 1
    order = [a for a in range(r) if a != j + 1]
    perm = tuple(order[:-1] + [j + 1, r - 1])           # [N, ..., m, a_h, k]
    x = fe.emit(node, "transpose", [A], f"{out}.heads_in", perm=perm) if perm != tuple(range(r)) else A
    rows = [sa[a - 1] for a in order[1:-1]]
    x = fe.emit(node, "reshape", [x], f"{out}.rows", shape=(*rows, sa[j] * k))
    w = np.concatenate(list(blocks), axis=1)           # (k, h n): column block g is head g's weight
    grouped = {"group": h} if sa[j] == h and h > 1 else {}
    y = fe.emit(node, "linear", [x, _new_const(fe, B, w)], f"{out}.per_head", **grouped)
    y = fe.emit(node, "reshape", [y], f"{out}.split", shape=(*rows, h, n))
    # [N, (lead but h), m, h, n] -> h back at axis j + 1
    inv = tuple(range(j + 1)) + (r - 2,) + tuple(range(j + 1, r - 2)) + (r - 1,)
    fe.emit(node, "transpose", [y], out, perm=inv) if inv != tuple(range(r)) else fe.forward(out, y)
