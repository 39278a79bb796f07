"""Sparse attention (the ASP-DAC'23 overview, sec. 4.2): a dynamic, unstructured mask on the attention scores.

Contract: with options["sparse_attention"] = "topk:K" or "threshold:T", every attention block that
AttentionPass left in the stored-K/V form (naive, or digital) gets a `topk` op in front of its softmax: per
query row it keeps the K largest pre-softmax scores (scaled and key-masked; ties: the lower key), or those
within T of the row's maximum, and sets the others to the float32 minimum, so softmax gives them exact
zeros. The mask is computed at run time from the scores themselves. The products are marked for the PIM
banks: Q K^T sparse="ip" (SDDMM, K stored), P V sparse="svm" (SpMM, V stored); runtime/banks.py models their
cycles and utilisation.

The approximation, stated plainly: the scores are computed exactly (all of them: the mask is taken from
them); the cost model charges the SDDMM only for the kept entries, as if a predictor had given the mask
before the product. The SpMM skips the probabilities whose 8-bit code is the zero point (exactly zero
contributions), which includes every masked one.

ReTransformer's reordering never forms K or V, so there is nothing for a bank to store: with sparse
attention AttentionPass keeps every block naive (options["attention"] = "retransformer" becomes naive; the
report says so). The pass runs after AttentionPass, before calibration.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ir import CompileError, Graph, Tensor

from .attention import find_blocks

APPROXIMATION = ("scores are computed exactly and the mask is taken from them; the SDDMM is charged only for "
                 "the kept entries, as if a predictor had given the mask")


@dataclass
class SparseAttentionReport:
    rule: str = ""                  # "topk:K" | "threshold:T" | "" (off)
    attention: str = ""             # the form the sparsified blocks are in
    forced_naive: bool = False      # retransformer was asked for; sparse attention needs stored K and V
    note: str = ""
    blocks: list = field(default_factory=list)


def parse_rule(rule: str) -> dict:
    """'topk:K' (K >= 1) or 'threshold:T' (T >= 0) -> the topk op's attributes."""
    kind, _, value = str(rule).partition(":")
    try:
        if kind == "topk" and int(value) >= 1:
            return {"k": int(value)}
        if kind == "threshold" and float(value) >= 0:
            return {"threshold": float(value)}
    except ValueError:
        pass
    raise CompileError(f"sparse attention rule '{rule}' is not topk:K (K >= 1) or threshold:T (T >= 0)")


class SparseAttention:
    name = "sparse_attention"

    def run(self, g: Graph, ctx) -> SparseAttentionReport:
        rule = ctx.options.sparse_attention
        if not rule:
            return SparseAttentionReport()
        attrs = parse_rule(rule)
        asked = ctx.options.attention
        rep = SparseAttentionReport(rule=rule, attention="digital" if asked == "digital" else "naive",
                                    forced_naive=asked == "retransformer", note=APPROXIMATION)
        for b in find_blocks(g):
            if "written" in b.qk.attrs and b.qk.attrs["written"] != "K^T":
                raise CompileError(f"node {b.qk.name}: sparse attention needs the stored-K/V form, the block was "
                                   f"reordered (run AttentionPass with sparse_attention set)")
            x = b.softmax.inputs[0]
            rank = len(g.tensors[x].shape) + 1       # the softmax axis counts the batch axis
            if b.softmax.attrs.get("axis", -1) % rank != rank - 1:
                raise CompileError(f"node {b.softmax.name}: sparse attention needs the softmax over the keys "
                                   f"(last axis)")
            y = g.unique(x + ".sparse")
            g.add_tensor(Tensor(y, g.tensors[x].shape))
            op = g.add_op("topk", g.unique(b.softmax.name + ".topk"), [x], [y], sddmm=b.qk.name, **attrs)
            b.softmax.inputs[0] = y
            b.qk.attrs["sparse"], b.pv.attrs["sparse"] = "ip", "svm"
            rep.blocks.append({"softmax": b.softmax.name, "mask": op.name, "sddmm": b.qk.name, "spmm": b.pv.name,
                               "stored": "K^T, V" if b.qk.attrs.get("crossbar") else "none (digital operands)"})
        return rep
