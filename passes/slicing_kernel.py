"""Compiled (Numba) kernel of adaptive slicing's trials: one pass over a product's column sums that counts the
ADC's clips and adds each clip's correction into its slicing's accumulator.

slicing._apply_clips is the NumPy reference: the same counts and the same exact integers (every term is an
integer below 2^53, so the order of the additions changes nothing), tested bit for bit in
tests/passes/test_slicing.py.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)  # one thread (calls are short; a parallel launch costs more), without the GIL
def apply_clips(s, nI, lo, hi, ish, col_k, col_f, col_coef, corr, cnt):
    """s (nI * m, K) float32 column sums, input slice i's rows first; for each sum outside [lo, hi]: cnt[r, k]
    += 1 and corr[k, r, f] += coef x ish[i] x (clipped - sum), where column c belongs to slicing
    k = col_k[c], adds into filter f = col_f[c] with factor coef = col_coef[c]. corr (slicings, m, n) float64."""
    m = s.shape[0] // nI
    K = s.shape[1]
    for r in range(m):
        for i in range(nI):
            row = s[i * m + r]
            w = ish[i]
            for c in range(K):
                v = row[c]
                if v > hi or v < lo:
                    d = (hi if v > hi else lo) - np.float64(v)
                    k = col_k[c]
                    cnt[r, k] += 1
                    corr[k, r, col_f[c]] += col_coef[c] * w * d
