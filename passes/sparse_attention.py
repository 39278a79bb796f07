"""Sparse attention (the ASP-DAC'23 overview, sec. 4.2): a dynamic, unstructured mask on the attention scores.

Contract: with options["sparse_attention"] = "topk:K" or "threshold:T", every attention block that
AttentionPass left in the stored-K/V form (naive, or digital) gets a `topk` op in front of its softmax: per
query row it keeps the K largest pre-softmax scores (scaled and key-masked; ties: the lower key), or those
within T of the row's maximum, and sets the others to the float32 minimum, so softmax gives them exact
zeros. The products are marked for the PIM banks: Q K^T sparse="ip" (SDDMM, K stored), P V sparse="svm"
(SpMM, V stored); runtime/banks.py models their cycles and utilisation.

Where the mask comes from (options["sparse_mask"]):
- "predict" (default): a score predictor runs on the bank before the SDDMM, a low-bit filtering round in the
  manner of Energon (Zhou et al., IEEE TCAD 2023, arXiv 2110.09310; one round here, with the top-K /
  threshold rule instead of its mean-based one): a matmul marked sparse="predict" multiplies the top
  options["predict_bits"] bits of the same 8-bit Q and K codes (runtime/kernels.py's predicted_acc), its output
  goes through copies of the block's scale and key mask, and the topk takes its mask from that prediction
  and applies it to the exact scores. The bank charges the predictor for every score (dense VMM, b-bit
  operands) and the exact SDDMM only for the kept entries, which it can now know beforehand.
- "oracle": the mask is taken from the exact scores themselves (the topk's two inputs are the same); the
  SDDMM is still charged only for the kept entries, as if a free predictor had known them: a comparison.
The SpMM skips the probabilities whose 8-bit code is the zero point (exactly zero contributions), which
includes every masked one.

ReTransformer's reordering never forms K or V, so there is nothing for a bank to store: with sparse
attention AttentionPass keeps every block naive (options["attention"] = "retransformer" becomes naive; the
report says so). The pass runs after AttentionPass, before calibration.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ir import CompileError, Graph, Tensor

from .attention import find_blocks

NOTES = {"predict": "the mask comes from scores predicted on the bank with the top {bits} bits of the Q and K codes "
                    "(charged for every score); the exact SDDMM is charged for the kept entries only",
         "oracle": "oracle mask: scores are computed exactly and the mask is taken from them; the SDDMM is charged "
                   "only for the kept entries, as if a free predictor had given the mask"}


@dataclass
class SparseAttentionReport:
    rule: str = ""                  # "topk:K" | "threshold:T" | "" (off)
    mask: str = ""                  # "predict" | "oracle"
    predict_bits: int = 0
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
        how, bits = ctx.options.sparse_mask, ctx.options.predict_bits
        rep = SparseAttentionReport(rule=rule, mask=how, predict_bits=bits if how == "predict" else 0,
                                    attention="digital" if asked == "digital" else "naive",
                                    forced_naive=asked == "retransformer", note=NOTES[how].format(bits=bits))
        for b in find_blocks(g):
            if "written" in b.qk.attrs and b.qk.attrs["written"] != "K^T":
                raise CompileError(f"node {b.qk.name}: sparse attention needs the stored-K/V form, the block was "
                                   f"reordered (run AttentionPass with sparse_attention set)")
            x = b.softmax.inputs[0]
            rank = len(g.tensors[x].shape) + 1       # the softmax axis counts the batch axis
            if b.softmax.attrs.get("axis", -1) % rank != rank - 1:
                raise CompileError(f"node {b.softmax.name}: sparse attention needs the softmax over the keys "
                                   f"(last axis)")
            by, pred = (x, None) if how == "oracle" else _predictor(g, b, x, bits)
            y = g.unique(x + ".sparse")
            g.add_tensor(Tensor(y, g.tensors[x].shape))
            op = g.add_op("topk", g.unique(b.softmax.name + ".topk"), [x, by], [y], sddmm=b.qk.name, **attrs)
            b.softmax.inputs[0] = y
            b.qk.attrs["sparse"], b.pv.attrs["sparse"] = "ip", "svm"
            rep.blocks.append({"softmax": b.softmax.name, "mask": op.name, "sddmm": b.qk.name, "spmm": b.pv.name,
                               "predictor": pred,
                               "stored": "K^T, V" if b.qk.attrs.get("crossbar") else "none (digital operands)"})
        return rep


def _predictor(g: Graph, b, x: str, bits: int) -> tuple[str, str]:
    """The predicted scores in front of the block's softmax: a matmul marked sparse="predict" on Q K^T's inputs
    (in float the same product; quantised, the top `bits` bits of the same codes), then a copy of every op
    between Q K^T and the softmax (the constant scale, the additive key mask) on it. Returns (the predicted
    scores as the softmax would see them, the predictor's op name)."""
    chain, t = [], x
    while t != b.qk.outputs[0]:
        p = g.producer(t)
        chain.append(p)
        t = next(i for i in p.inputs if not g.tensors[i].is_const and (g.producer(i) is None or
                                                                        g.producer(i).kind != "maskfn"))
    src = b.qk.outputs[0]
    out = g.unique(src + ".pred")
    g.add_tensor(Tensor(out, g.tensors[src].shape))
    pred = g.add_op("matmul", g.unique(b.qk.name + ".predict"), list(b.qk.inputs), [out], sparse="predict",
                    predict_bits=bits, sddmm=b.qk.name)
    prev = src
    for p in reversed(chain):
        y = g.unique(p.outputs[0] + ".pred")
        g.add_tensor(Tensor(y, g.tensors[p.outputs[0]].shape))
        g.add_op(p.kind, g.unique(p.name + ".pred"), [out if i == prev else i for i in p.inputs], [y], **dict(p.attrs))
        prev, out = p.outputs[0], y
    return out, pred.name
