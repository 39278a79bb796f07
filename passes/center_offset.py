"""Center+Offset centers (PAPERS.md R1, R2; thesis 004 sec. 4.1).

Each weight filter in a crossbar stores signed offsets w - phi on a 2T2R pair and the digital side adds
phi * sum(inputs). The center is the integer that balances the positive and negative slice values of the
filter, eq. 4.2: phi* = argmin_phi sum_i 2^l_i * (sum_w D(h_i, l_i, w - phi))^4, phi within the filter's
weight range. All candidates and filters are evaluated at once in NumPy.
"""
from __future__ import annotations

import numpy as np

from runtime.crossbar import slice_shifts


def D(h: int, l: int, x):
    """Bits h..l of |x|, shifted down by l, with the sign of x."""
    x = np.asarray(x)
    return np.sign(x) * ((np.abs(x) >> l) & ((1 << (h - l + 1)) - 1))


def center_cost(w: np.ndarray, mask: np.ndarray, phis: np.ndarray, slices) -> np.ndarray:
    """(len(phis), n) cost of eq. 4.2 for each candidate center and filter (column of w, rows in mask).

    sum_w D(w - phi) depends only on how many weights take each value, so each slice's sums for all
    candidates are the filters' weight histograms times a (values x candidates) table of D: the cost does
    not grow with the number of rows.
    """
    n = w.shape[1]
    lo = int(min(w.min(initial=0), phis.min()))
    values = np.arange(lo, int(max(w.max(initial=0), phis.max())) + 1)
    idx = (w - lo) + len(values) * np.arange(n)[None, :]
    hist = np.bincount(idx[mask], minlength=len(values) * n).reshape(n, len(values)).astype(np.float64)
    cost = np.zeros((len(phis), n))
    for l, width in zip(slice_shifts(slices), slices):
        table = D(l + width - 1, l, values[:, None] - phis[None, :]).astype(np.float64)   # (values, P)
        cost += 2.0 ** l * (hist @ table).T ** 4
    return cost


def optimal_centers(w: np.ndarray, mask: np.ndarray, slices) -> np.ndarray:
    """Integer center per filter (column); w is the crossbar's (R, n) integer weights, mask its devices.
    Candidates span each filter's own weight range; ties go to the smallest center."""
    big = np.iinfo(np.int64).max
    lo = np.where(mask, w, big).min(axis=0)
    hi = np.where(mask, w, -big).max(axis=0)
    empty = lo > hi                                   # a filter with no devices here
    lo, hi = np.where(empty, 0, lo), np.where(empty, 0, hi)
    phis = np.arange(int(lo.min()), int(hi.max()) + 1)
    cost = center_cost(w, mask, phis, slices)
    cost[(phis[:, None] < lo[None]) | (phis[:, None] > hi[None])] = np.inf
    return phis[np.argmin(cost, axis=0)]
