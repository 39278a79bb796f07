"""Sparse attention's score predictor (passes/sparse_attention.py): what the bank computes before the SDDMM.

A low-bit filtering round in the manner of Energon (Zhou et al., arXiv 2110.09310): the predicted score of a
query and a key is the product of their 8-bit codes cut to the top `bits` bits, each taken at the middle of
the range its dropped bits span (so the cut is unbiased), minus the zero points as the exact product does:
    msb(c) = (c >> s) << s + 2^(s-1), s = 8 - bits (msb(c) = c at 8 bits)
    acc = (msb(q) - za) . (msb(k) - zb)
At bits = 8 the prediction is the exact score, and the mask the oracle's. Integers throughout; float64 holds
every sum exactly (|acc| < 2^16 x head width). The reference (passes/reference.py) and the runtime's `sdpred`
both call predicted_acc, so `--ideal` equals the reference bit for bit.
"""
from __future__ import annotations

import numpy as np


def msb(codes: np.ndarray, bits: int) -> np.ndarray:
    """u8 codes cut to their top `bits` bits, at the middle of the dropped range, as float64."""
    if not 1 <= bits <= 8:
        raise ValueError(f"predictor bits must lie in 1..8, got {bits}")
    c = np.asarray(codes).astype(np.int64)
    s = 8 - bits
    return (c if s == 0 else ((c >> s) << s) + (1 << (s - 1))).astype(np.float64)


def predicted_acc(a: np.ndarray, za: int, w: np.ndarray, zb: int, bits: int) -> np.ndarray:
    """The predicted integer accumulators (msb(a) - za) @ (msb(w) - zb), as float64."""
    return np.rint((msb(a, bits) - za) @ (msb(w, bits) - zb))
