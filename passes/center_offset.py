"""Center+Offset centers (RAELLA thesis sec. 4.1, eq. 4.1-4.2).

Each weight filter in a crossbar stores signed offsets w - phi on a 2T2R pair and the digital side adds
phi * sum(inputs). The center is the integer that balances the positive and negative slice values of the
filter, eq. 4.2: phi* = argmin_phi sum_i 2^l_i * (sum_w D(h_i, l_i, w - phi))^4, phi within the filter's
weight range. All candidates and filters are evaluated at once in NumPy.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from runtime.crossbar import product, slice_shifts


def D(h: int, l: int, x):
    """Bits h..l of |x|, shifted down by l, with the sign of x."""
    x = np.asarray(x)
    return np.sign(x) * ((np.abs(x) >> l) & ((1 << (h - l + 1)) - 1))


WEIGHTS = np.arange(-127, 128)          # symmetric int8 weights, and so the candidate centers
# code - zero of an already-quantised model's weights with a zero point (passes/quantize.py model_weights)
WIDE = np.arange(-255, 256)


def grid(w: np.ndarray) -> np.ndarray:
    """The weight values (and candidate centers) a block's weights take: symmetric int8, or the wider range."""
    return WEIGHTS if np.abs(w).max(initial=0) <= 127 else WIDE


@lru_cache(maxsize=64)
def _table(l: int, width: int, half: int = 127) -> np.ndarray:
    """D(h, l, w - phi) for every weight w (rows) and candidate center phi (columns) in [-half, half]."""
    v = np.arange(-half, half + 1)
    return D(l + width - 1, l, v[:, None] - v[None, :]).astype(np.float64)


def histograms(w: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(n, len(grid)): how many of each filter's devices hold each weight value."""
    n, vals = w.shape[1], grid(w)
    idx = (w - vals[0]) + len(vals) * np.arange(n)[None, :]
    return np.bincount(idx[mask], minlength=len(vals) * n).reshape(n, len(vals)).astype(np.float64)


def center_cost(w: np.ndarray, mask: np.ndarray, slices, hist: np.ndarray | None = None,
                terms: dict | None = None) -> np.ndarray:
    """(len(grid), n) cost of eq. 4.2 for every candidate center in the grid ([-127, 127], or [-255, 255]) and
    filter (column of w, rows in mask).

    sum_w D(w - phi) depends only on how many weights take each value, so each slice's sums for all
    candidates are the filters' weight histograms times a fixed (weights x candidates) table of D: the cost
    does not grow with the number of rows.
    """
    n, vals = w.shape[1], grid(w)
    if hist is None:
        hist = histograms(w, mask)
    cost = np.zeros((len(vals), n))
    for l, width in zip(slice_shifts(slices), slices):
        term = None if terms is None else terms.get((l, width))
        if term is None:      # one slice's term; a caller trying many slicings of a block keeps them in `terms`
            # an exact integer product (a sum is at most rows x 15, far below float32's 2^24) through the
            # runtime's product, which holds BLAS to one thread: on products this small BLAS's own threads
            # mostly wait for a core. The fourth power as two squares: exact (x^4 < 2^53), many times pow's speed
            s = product(hist, _table(l, width, int(vals[-1]))).astype(np.float64).T
            s *= s
            s *= s
            term = 2.0 ** l * s
            if terms is not None:
                terms[(l, width)] = term
        cost += term
    return cost


def optimal_centers(w: np.ndarray, mask: np.ndarray, slices, hist: np.ndarray | None = None,
                    terms: dict | None = None) -> np.ndarray:
    """Integer center per filter (column); w is the crossbar's (R, n) integer weights in [-127, 127] (or
    [-255, 255] for codes minus zero points, each filter spanning at most 255), mask its
    devices (hist, terms: its histograms and per-slice cost terms, kept by a caller trying several slicings of
    one block, which also keep the candidates outside each filter's range there). Candidates span each
    filter's own weight range; ties go to the smallest center."""
    outside = None if terms is None else terms.get("outside")
    if outside is None:
        if np.abs(w).max(initial=0) > 255:
            raise ValueError("Center+Offset expects 8-bit weights, or codes minus zero points, in [-255, 255]")
        big = 1 << 30
        lo = np.where(mask, w, big).min(axis=0)
        hi = np.where(mask, w, -big).max(axis=0)
        empty = lo > hi                                   # a filter with no devices here
        lo, hi = np.where(empty, 0, lo), np.where(empty, 0, hi)
        outside = (grid(w)[:, None] < lo[None]) | (grid(w)[:, None] > hi[None])
        if terms is not None:
            terms["outside"] = outside
    cost = center_cost(w, mask, slices, hist, terms)
    cost[outside] = np.inf
    return grid(w)[np.argmin(cost, axis=0)]
