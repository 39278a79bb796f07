"""The opset-23 Attention op, built from the IR's matmul, linear, softmax, reduce and elementwise ops: heads
split from 3-D inputs, past key / value caches concatenated (present_key / present_value), grouped-query
heads repeated, scale, softcap, an attention mask (a run-time additive one, or a constant boolean or
additive one), causal and sliding-window masks, and qk_matmul_output in its four modes.

Masks that forbid positions are one constant bias per sample (0 where allowed, -1e30 where not: finite, so
no 0 x infinity arises) added to the scores, followed by a softmax composed of reductions, so the graph takes
the float32 vector form (8-bit codes over a range reaching -1e30 would lose the scores); a row with no allowed
key gives zeros, as onnx's reference does. A constant key / value (weights) multiplies as a grouped linear
layer, one block per head. Registered in onnx_ops.CONVERTERS.
"""
from __future__ import annotations

import numpy as np

from ir import FrontendError

from .onnx_elementwise import _Ops
from .onnx_ops import attrs, converts, label

MASKED = -1e30


class _Attention:
    def __init__(self, fe, node):
        self.fe, self.node, self.o = fe, node, _Ops(fe, node)
        self.rank = len(fe.shape(node.input[0])) + 1

    def refuse(self, why):
        raise FrontendError(f"node {label(self.node)} (Attention): {why}")

    def per_sample(self, name) -> np.ndarray:
        """A constant operand without its batch axis (it must be the same for every sample)."""
        self.o.check(self.node.input[0], name)
        v = np.asarray(self.fe.value(name), np.float64)
        if not np.isfinite(v).all():
            self.refuse(f"constant {name} holds NaN or infinity")
        return v[0] if v.ndim == self.rank else v

    def shape(self, x):
        return x.shape if isinstance(x, np.ndarray) else self.fe.shape(x)

    def heads(self, name, n):
        """[S, n * D] (3-D input) -> [n, S, D]; a constant comes back as an array."""
        x = self.per_sample(name) if self.fe.is_const(name) else name
        if self.rank == 4:
            return x
        s, hidden = self.shape(x)
        if isinstance(x, np.ndarray):
            return x.reshape(s, n, hidden // n).transpose(1, 0, 2)
        y = self.o.emit("reshape", [x], shape=(s, n, hidden // n))
        return self.o.emit("transpose", [y], perm=(0, 2, 1, 3))

    def const(self, v):
        return self.o.const(v)

    def concat(self, past, x):
        if isinstance(past, np.ndarray) and isinstance(x, np.ndarray):
            return np.concatenate([past, x], axis=1)
        ins = [self.const(v) if isinstance(v, np.ndarray) else v for v in (past, x)]
        return self.o.emit("concat", ins, axis=2)

    def repeat(self, x, r):
        """Each head r times in a row ([h0, h0, h1, h1, ...], numpy.repeat on the head axis)."""
        if r == 1:
            return x
        if isinstance(x, np.ndarray):
            return np.repeat(x, r, axis=0)
        h, t, d = self.shape(x)
        y = self.o.emit("reshape", [x], shape=(h, 1, t, d))
        y = self.o.emit("expand", [y], shape=(h, r, t, d))
        return self.o.emit("reshape", [y], shape=(h * r, t, d))

    def bmm(self, a, b, out=None):
        """Per-head product of activation a [H, S, K] with b [H, K, N]: an activation (matmul) or a constant
        (a grouped linear layer on [S, H * K], one block per head)."""
        if not isinstance(b, np.ndarray):
            return self.o.emit("matmul", [a, b], out)
        h, s, k = self.shape(a)
        n = b.shape[-1]
        b = np.broadcast_to(b, (h, k, n))
        w = np.concatenate(list(b), axis=1)                     # (K, H * N): block g reads x's block g
        y = self.o.emit("reshape", [self.o.emit("transpose", [a], perm=(0, 2, 1, 3))], shape=(s, h * k))
        y = self.o.emit("linear", [y, self.const(w)], group=h)
        y = self.o.emit("reshape", [y], shape=(s, h, n))
        return self.o.emit("transpose", [y], out, perm=(0, 2, 1, 3))


def _bias(att, a, mask, s_len, t_len, past_len):
    """The constant bias [.., S, T] (0 allowed, -inf forbidden) from a constant mask, is_causal and the
    sliding window; None where nothing is forbidden or added."""
    bias = None
    if mask:
        m = np.asarray(att.fe.value(mask))
        m = m[0] if m.ndim == 4 and m.shape[0] == 1 else m
        att.o.check(att.node.input[0], mask)
        pad = t_len - m.shape[-1]
        if pad > 0:
            m = np.pad(m, [(0, 0)] * (m.ndim - 1) + [(0, pad)], constant_values=False if m.dtype == bool else -np.inf)
        bias = np.where(m, 0.0, -np.inf) if m.dtype == bool else m.astype(np.float64)
    i = np.arange(s_len)[:, None] + past_len
    j = np.arange(t_len)[None, :]
    allowed = np.ones((s_len, t_len), bool)
    if a.get("is_causal", 0):
        allowed &= j <= i
    left, right = a.get("left_window_size", -1), a.get("right_window_size", -1)
    if left >= 0:
        allowed &= i - j <= left
    if right >= 0:
        allowed &= j - i <= right
    if not allowed.all():
        bias = np.where(allowed, 0.0, -np.inf) + (0.0 if bias is None else bias)
    return bias


@converts("Attention")
def attention(fe, node):
    a = attrs(node)
    ins = list(node.input) + [""] * 7
    Q, K, V, mask, pk, pv, nonpad = ins[:7]
    outs = list(node.output) + [""] * 3
    att = _Attention(fe, node)
    if fe.is_const(Q):
        att.refuse(f"the query {Q} is a constant")
    if nonpad:
        att.refuse("nonpad_kv_seqlen (an external cache with per-sample lengths) is not supported")
    if att.rank not in (3, 4):
        att.refuse(f"query {Q} has {att.rank} axes; 3 or 4 are defined")
    o = att.o
    qh = a.get("q_num_heads") if att.rank == 3 else fe.shape(Q)[0]
    q = att.heads(Q, qh)
    kvh = a.get("kv_num_heads") if att.rank == 3 else att.shape(att.heads(K, None))[0]
    k, v = att.heads(K, kvh), att.heads(V, kvh)
    past_len = 0
    if pk or pv:
        if not (pk and pv):
            att.refuse("past_key and past_value come together")
        past = [att.per_sample(p) if fe.is_const(p) else p for p in (pk, pv)]
        past_len = att.shape(past[0])[1]
        k, v = att.concat(past[0], k), att.concat(past[1], v)
    for out, x in zip(outs[1:3], (k, v)):
        if out:
            if isinstance(x, np.ndarray):
                att.refuse(f"output {out} would be a constant")
            fe.forward(out, x)
    if qh % kvh:
        att.refuse(f"{qh} query heads cannot share {kvh} key / value heads")
    k, v = att.repeat(k, qh // kvh), att.repeat(v, qh // kvh)
    s_len, t_len = att.shape(q)[1], att.shape(k)[1]
    d = att.shape(q)[2]
    scale = float(a.get("scale", 1.0 / np.sqrt(d)))
    kt = k.transpose(0, 2, 1) if isinstance(k, np.ndarray) else o.emit("transpose", [k], perm=(0, 1, 3, 2))
    s = o.emit("mul", [att.bmm(q, kt), o.const(scale)])
    cap = float(a.get("softcap", 0.0))
    if cap > 0:
        s = o.emit("mul", [o.emit("unary", [o.emit("mul", [s, o.const(1.0 / cap)])], fn="tanh", params={}),
                           o.const(cap)])
    mode, qk_out = a.get("qk_matmul_output_mode", 0), outs[3]
    if qk_out and mode in (0, 1):
        fe.forward(qk_out, s)
    sb = s
    if mask and not fe.is_const(mask):
        if fe.shape(mask)[-1] != t_len:
            att.refuse(f"the run-time mask {mask} covers {fe.shape(mask)[-1]} of {t_len} keys")
        sb = o.add(sb, mask)
    bias = _bias(att, a, mask if mask and fe.is_const(mask) else "", s_len, t_len, past_len)
    forbids = bias is not None and np.isneginf(bias).any()
    if forbids and isinstance(v, np.ndarray):
        # keys no query may attend contribute nothing: their constant values are dropped (as zeros), so they
        # cannot set the 8-bit weight scale of the values that are used
        dead = np.isneginf(bias).reshape(-1, t_len).all(axis=0)
        v = np.where(dead[:, None], 0.0, v)
    if bias is not None:
        sb = o.add(sb, o.const(np.where(np.isneginf(bias), MASKED, bias)))
    if qk_out and mode == 2:
        fe.forward(qk_out, sb)
    if not forbids:
        p = o.emit("softmax", [sb], axis=3)
    else:
        m = o.emit("reduce", [sb], fn="max", axes=(3,), keepdims=True)
        e = o.emit("unary", [o.sub(sb, m)], fn="exp", params={})
        p = o.emit("div", [e, o.emit("reduce", [e], fn="sum", axes=(3,), keepdims=True)])
        dead = np.isneginf(bias).all(axis=-1, keepdims=True)
        if dead.any():
            p = o.emit("mul", [p, o.const(np.where(dead, 0.0, 1.0))])
    if qk_out and mode == 3:
        fe.forward(qk_out, p)
    if qk_out and mode not in (0, 1, 2, 3):
        att.refuse(f"qk_matmul_output_mode {mode} is not defined")
    if att.rank == 4:
        return att.bmm(p, v, outs[0])
    y = att.bmm(p, v)
    y = o.emit("transpose", [y], perm=(0, 2, 1, 3))
    o.emit("reshape", [y], outs[0], shape=(s_len, att.shape(y)[1] * att.shape(y)[2]))
