"""Attention blocks and where their activation x activation products run (ReTransformer, ICCAD 2020).

Contract: finds every attention block (softmax(Q K^T * c + mask) V with Q, K, V reshaped / transposed out of
linear layers on one input X; layouts checked by pushing index arrays through the reshapes) and, by
options["attention"]:
- "digital": both products run on the vector unit (`vmatmul`), nothing is written at run time;
- "naive": both products run on crossbars whose weights are a run-time result: K^T for Q K^T, V for S V
  (op.attrs["crossbar"] = True on the matmul; the backend writes the operand before the MVM);
- "retransformer" (default): ReTransformer's reordering. Q K^T = (Q W_K^T) X^T + (Q b_K) 1^T and the last term adds a
  constant per row, which softmax ignores (the scale c and an additive key mask keep that true); S V =
  (S X) W_V + 1 b_V^T since softmax rows sum to 1. Q W_K^T and (S X) W_V are crossbar layers with constant
  weights (one group per head: block-diagonal), X^T and X are the only tensors written at run time, and X
  is known before Q, so its writes overlap stages 1-2.
A block whose form does not allow the reordering (no common X, a multiplicative mask, ...) stays naive and
the report says why. The graph's float meaning is unchanged (up to float rounding).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ir import Graph, Op, Tensor

MODES = ("retransformer", "naive", "digital")
LAYOUT_OPS = ("reshape", "transpose")


@dataclass
class Block:
    qk: Op
    pv: Op
    softmax: Op
    heads: int = 0
    d: int = 0
    q: Op | None = None
    k: Op | None = None
    v: Op | None = None
    out: str = ""            # the (S, H*d) context tensor after pv's layout ops
    why: str = ""            # why the reordering does not apply


@dataclass
class AttentionReport:
    mode: str = ""
    blocks: list = field(default_factory=list)


def _back(g: Graph, t: str):
    """Walk back through reshape / transpose: (source tensor, layout ops source-first)."""
    chain = []
    p = g.producer(t)
    while p is not None and p.kind in LAYOUT_OPS:
        chain.append(p)
        t = p.inputs[0]
        p = g.producer(t)
    return t, chain[::-1]


def _apply(chain, a: np.ndarray) -> np.ndarray:
    for op in chain:
        a = a.reshape((1,) + tuple(op.attrs["shape"])) if op.kind == "reshape" else a.transpose(op.attrs["perm"])
    return a[0]


def _heads_layout(g, src: str, chain, transposed: bool):
    """(H, d) if the chain turns src (S, H*d) into per-head (H, S, d) (or (H, d, S) when transposed)."""
    shape = g.tensors[src].shape
    if len(shape) != 2 or not chain:
        return None
    S, HD = shape
    idx = np.arange(S * HD).reshape((1, S, HD))
    out = _apply(chain, idx)
    if out.ndim != 3:
        return None
    H = out.shape[0]
    d = out.shape[2] if not transposed else out.shape[1]
    if H * d != HD:
        return None
    want = (np.arange(S)[None, :, None] * HD + np.arange(H)[:, None, None] * d + np.arange(d)[None, None, :])
    if transposed:
        want = want.transpose(0, 2, 1)
    return (H, d) if out.shape == want.shape and np.array_equal(out, want) else None


def _forward(g, t: str):
    """Follow single-consumer layout ops forward: (last tensor, ops)."""
    chain = []
    while True:
        cons = g.consumers(t)
        if len(cons) != 1 or cons[0].kind not in LAYOUT_OPS or t in g.outputs:
            return t, chain
        chain.append(cons[0])
        t = cons[0].outputs[0]


def find_blocks(g: Graph) -> list[Block]:
    blocks = []
    for sm in [op for op in g.topo() if op.kind == "softmax"]:
        cons = g.consumers(sm.outputs[0])
        pv = cons[0] if len(cons) == 1 and cons[0].kind == "matmul" and cons[0].inputs[0] == sm.outputs[0] else None
        # back from the softmax through a constant scale and an additive mask to Q K^T
        t, qk = sm.inputs[0], None
        while True:
            p = g.producer(t)
            if p is None:
                break
            if p.kind == "matmul":
                qk = p
                break
            run_time = [i for i in p.inputs if not g.tensors[i].is_const]
            if p.kind == "mul" and len(run_time) == 1:
                t = run_time[0]
            elif p.kind == "add" and len(run_time) == 2:
                mask = [i for i in run_time if (g.producer(i) and g.producer(i).kind == "maskfn")]
                if len(mask) != 1:
                    break
                t = next(i for i in run_time if i != mask[0])
            else:
                break
        if qk is None or pv is None:
            continue
        b = Block(qk, pv, sm)
        blocks.append(b)
        srcs = {}
        for role, tensor, transposed in (("q", qk.inputs[0], False), ("k", qk.inputs[1], True),
                                          ("v", pv.inputs[1], False)):
            src, chain = _back(g, tensor)
            prod = g.producer(src)
            hd = _heads_layout(g, src, chain, transposed)
            if prod is None or prod.kind != "linear" or hd is None or "act" in prod.attrs or len(prod.inputs) < 2:
                b.why = b.why or f"{role} is not a per-head layout of a linear layer's output"
                continue
            setattr(b, role, prod)
            srcs[role] = hd
        if b.why:
            continue
        if len({srcs[r] for r in srcs}) != 1:
            b.why = "q, k and v differ in heads or head width"
            continue
        b.heads, b.d = srcs["q"]
        if len({b.q.inputs[0], b.k.inputs[0], b.v.inputs[0]}) != 1:
            b.why = "q, k and v are not computed from one input"
            continue
        if len(g.consumers(b.k.outputs[0])) != 1 or len(g.consumers(b.v.outputs[0])) != 1:
            b.why = "k or v has other readers"
            continue
        out, chain = _forward(g, pv.outputs[0])
        shape = g.tensors[out].shape
        if len(shape) != 2 or shape[1] != b.heads * b.d or \
                not np.array_equal(_apply(chain, np.arange(np.prod(g.tensors[pv.outputs[0]].shape))
                                          .reshape((1,) + g.tensors[pv.outputs[0]].shape)),
                                   np.arange(b.heads * shape[0] * b.d).reshape(b.heads, shape[0], b.d)
                                   .transpose(1, 0, 2).reshape(shape)):
            b.why = "the context is not laid out back as (tokens, heads x d)"
            continue
        b.out = out
    return blocks


def _grouped(g: Graph, name: str, x: str, w: np.ndarray, groups: int, out_shape, bias=None) -> str:
    """A linear layer with one weight block per group (block-diagonal), reading x's groups in order."""
    y = g.unique(name + ".out")
    g.add_tensor(Tensor(y, tuple(out_shape)))
    ins = [x, g.const(g.unique(name + ".w"), w)]
    if bias is not None:
        ins.append(g.const(g.unique(name + ".b"), bias))
    g.add_op("linear", g.unique(name), ins, [y], group=groups)
    return y


def _layout(g: Graph, name: str, x: str, kind: str, arg, out_shape) -> str:
    y = g.unique(name + ".out")
    g.add_tensor(Tensor(y, tuple(out_shape)))
    g.add_op(kind, g.unique(name), [x], [y], **({"shape": tuple(arg)} if kind == "reshape" else {"perm": tuple(arg)}))
    return y


def reorder(g: Graph, b: Block) -> None:
    """ReTransformer's reordering of one block (see the module docstring)."""
    H, d = b.heads, b.d
    x = b.q.inputs[0]
    S, D = g.tensors[x].shape
    wk = g.tensors[b.k.inputs[1]].data              # (D, H*d)
    wv = g.tensors[b.v.inputs[1]].data
    bv = g.tensors[b.v.inputs[2]].data if len(b.v.inputs) > 2 else np.zeros(H * d)
    base = b.qk.name
    # stage 2: R = Q W_K^T per head, from the Q linear's (S, H*d) output; group h: W_K[:, h]^T (d x D)
    wr = np.concatenate([wk[:, h * d:(h + 1) * d].T for h in range(H)], axis=1)     # (d, H*D)
    r = _grouped(g, base + ".QWkT", b.q.outputs[0], wr, H, (S, H * D))
    r = _layout(g, base + ".R.heads", r, "reshape", (S, H, D), (S, H, D))
    r = _layout(g, base + ".R.hsd", r, "transpose", (0, 2, 1, 3), (H, S, D))
    # stage 3: scores = R X^T, X^T written into crossbars (one copy serves every head)
    xt = _layout(g, base + ".Xt", x, "transpose", (0, 2, 1), (D, S))
    xt = _layout(g, base + ".Xt.b", xt, "reshape", (1, D, S), (1, D, S))
    b.qk.inputs = [r, xt]
    # S V = (S X) W_V + b_V: T = S X with X written into crossbars, then one W_V block per head
    xs = _layout(g, base + ".X.b", x, "reshape", (1, S, D), (1, S, D))
    b.pv.inputs = [b.pv.inputs[0], xs]
    T = b.pv.outputs[0]
    g.tensors[T].shape = (H, S, D)
    t = _layout(g, base + ".SX.shd", T, "transpose", (0, 2, 1, 3), (S, H, D))
    t = _layout(g, base + ".SX.flat", t, "reshape", (S, H * D), (S, H * D))
    y = _grouped(g, base + ".SXWv", t, wv, H, (S, H * d), bias=bv)
    # the context is now y; the old layout ops and the K and V linears lose their readers (pruned)
    g.replace_uses(b.out, y)
    b.qk.attrs["crossbar"] = b.pv.attrs["crossbar"] = True
    b.qk.attrs["written"], b.pv.attrs["written"] = "X^T", "X"
    # X is known before Q: its writes run while stages 1-2 (Q, then Q W_K^T) compute, and X's second copy
    # also while the scores do
    stage2 = g.producer(g.producer(g.producer(r).inputs[0]).inputs[0])
    b.qk.attrs["overlap"] = (b.q.name, stage2.name)
    b.pv.attrs["overlap"] = (b.q.name, stage2.name, b.qk.name)


def dyn_rows(g: Graph, b: Block, t) -> int:
    """Rows per crossbar of a run-time operand: the head width, so K^T, V and X are all written in that many
    row steps on as many crossbars as they need (the same write parallelism in every mode)."""
    d = g.tensors[b.qk.inputs[0]].shape[-1] if not b.d else b.d
    return max(1, min(t.rows, d))


def _writes(g: Graph, b: Block, t, x_shape) -> dict:
    """Per inference, both placements side by side: values written into crossbars at run time, the cells they
    take (weight slices x the two devices of a pair), and the write time (each crossbar row by row, crossbars
    in parallel); the critical-path part comes from pimrun's stats (what the overlapping compute hides)."""
    size = lambda shape: int(np.prod(shape))                  # noqa: E731
    k_t, v = g.tensors[b.qk.inputs[1]].shape, g.tensors[b.pv.inputs[1]].shape
    cells = len(t.weight_slices) * 2
    r = dyn_rows(g, b, t) * t.write_row_ns
    out = {"naive": {"written": "K^T, V", "values": size(k_t) + size(v), "cells": (size(k_t) + size(v)) * cells,
                     "write_ns": 2 * r}}
    if x_shape is not None:
        out["retransformer"] = {"written": "X^T, X", "values": 2 * size(x_shape), "cells": 2 * size(x_shape) * cells,
                                "write_ns": 2 * r}
    return out


class AttentionPass:
    name = "attention"

    def run(self, g: Graph, ctx) -> AttentionReport:
        mode = ctx.options.attention
        rep = AttentionReport(mode=mode)
        for b in find_blocks(g):
            x_shape = g.tensors[b.q.inputs[0]].shape if not b.why else None
            writes = _writes(g, b, ctx.target, x_shape)
            b.qk.attrs["dyn_rows"] = b.pv.attrs["dyn_rows"] = dyn_rows(g, b, ctx.target)
            how = mode
            if mode == "retransformer" and ctx.options.sparse_attention:
                how = "naive"       # sparse attention's banks store K and V (passes/sparse_attention.py)
                b.why = b.why or "sparse attention stores K and V"
            if mode == "retransformer" and b.why:
                how = "naive"
            if how == "retransformer":
                reorder(g, b)
            elif how == "naive":
                b.qk.attrs["crossbar"] = b.pv.attrs["crossbar"] = True
                b.qk.attrs["written"], b.pv.attrs["written"] = "K^T", "V"
                # K^T is written once K is computed, before Q K^T can start; V's write can run under Q K^T
                b.qk.attrs["overlap"], b.pv.attrs["overlap"] = (), (b.qk.name,)
            rep.blocks.append({"softmax": b.softmax.name, "mode": how, "heads": b.heads, "head_dim": b.d,
                               "why_not_reordered": b.why or None, "writes": writes})
        g.prune()
        return rep
