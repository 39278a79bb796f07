"""Crossbar arithmetic: cell levels from weights, and the bit-accurate sliced MVM.

A crossbar holds a block of a layer's weight matrix. Each filter stores offsets O = W - center, sliced into
weight slices (one physical column each, most significant first). Inputs are u8 codes fed as input slices.
For every (input slice, weight slice) pair the column sum is an exact integer (float32 BLAS is exact below
2^24), the ADC clips it to its range, flipped columns are corrected, and the shift-add accumulates in float64
(exact below 2^53). The compiler's passes import the helpers here so both sides encode weights identically.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EXACT_F32 = 1 << 24
BLOCK_ELEMS = 1 << 22        # input-slice elements per BLAS call: bounds memory, keeps calls large


def slice_shifts(slices) -> list[int]:
    """Bit position of each slice, most significant slice first."""
    return [sum(slices[i + 1:]) for i in range(len(slices))]


def slice_values(o: np.ndarray, slices) -> list[np.ndarray]:
    return [(o >> s) & ((1 << w) - 1) for s, w in zip(slice_shifts(slices), slices)]


def block_mask(rows, cols, kg, ng) -> np.ndarray:
    """Which (row, filter) cells of a crossbar hold a weight: a row serves the filters of its own group."""
    r = np.arange(*rows) // kg
    c = np.arange(*cols) // ng
    return r[:, None] == c[None, :]


def block_weights(wm: np.ndarray, rows, cols, kg, ng) -> np.ndarray:
    """The crossbar's view of a (kg x N) layer matrix: row r, filter n -> W[r - group(n)*kg, n], 0 off-block."""
    r = np.arange(*rows)
    c = np.arange(*cols)
    local = r[:, None] - (c[None, :] // ng) * kg
    ok = (local >= 0) & (local < kg)
    return np.where(ok, wm[np.clip(local, 0, kg - 1), c[None, :]], 0).astype(np.int64)


def flip_flags(offsets: np.ndarray, mask: np.ndarray, slices) -> np.ndarray:
    """(n_slices, filters): store the complement where a column's slice values sum above half their max."""
    rows_used = mask.sum(axis=0)
    return np.stack([(v * mask).sum(axis=0) * 2 > rows_used * ((1 << w) - 1)
                     for v, w in zip(slice_values(offsets, slices), slices)])


@dataclass
class Crossbar:
    """A programmed crossbar: what its cells hold."""
    layer: str
    rows: tuple[int, int]
    cols: tuple[int, int]
    encoding: str
    slices: tuple[int, ...]
    center: np.ndarray          # (n,) per filter
    flip: np.ndarray            # (n_slices, n) bool
    mask: np.ndarray            # (R, n) bool
    weights: np.ndarray         # (R, n) int64, the represented integer weights (0 off-block)
    pos: np.ndarray             # (n_slices, R, n) levels of the adding devices
    neg: np.ndarray | None      # (n_slices, R, n) levels of the subtracting devices (2T2R), or None

    @property
    def cells(self) -> int:
        return int(self.mask.sum()) * len(self.slices) * (1 if self.neg is None else 2)

    def levels(self) -> np.ndarray:
        return self.pos if self.neg is None else np.concatenate([self.pos, self.neg])


def program(layer, wm, rows, cols, kg, ng, encoding, center, slices, flip) -> Crossbar:
    """Encode the block of layer matrix `wm` that this crossbar holds into cell levels."""
    mask = block_mask(rows, cols, kg, ng)
    w = block_weights(wm, rows, cols, kg, ng)
    n = w.shape[1]
    center = np.broadcast_to(np.asarray(center, dtype=np.int64), (n,)).copy()
    offsets = np.where(mask, w - center, 0)
    lo = 0 if encoding == "unsigned" else -255
    if offsets.min(initial=0) < lo or offsets.max(initial=0) > 255:
        raise ValueError(f"weights minus center span [{offsets.min()}, {offsets.max()}], outside the 8-bit "
                         f"{encoding} range [{lo}, 255]")
    if flip is None:
        flip = np.zeros((len(slices), n), dtype=bool)
    if encoding == "unsigned":
        pos = np.stack(slice_values(offsets, slices))
        full = np.array([(1 << s) - 1 for s in slices])[:, None, None]
        pos = np.where(flip[:, None, :], full - pos, pos) * mask
        neg = None
    else:
        pos = np.stack(slice_values(np.maximum(offsets, 0), slices)) * mask
        neg = np.stack(slice_values(np.maximum(-offsets, 0), slices)) * mask
    return Crossbar(layer, tuple(rows), tuple(cols), encoding, tuple(slices), center, np.asarray(flip, bool),
                    mask, np.where(mask, w, 0), pos, neg)


@dataclass
class MvmEvents:
    converts: int = 0
    saturated: int = 0
    macs: int = 0
    dac_pulses: int = 0
    cell_reads: int = 0
    hist: np.ndarray | None = None


def mvm(xb: Crossbar, x: np.ndarray, islices, adc_range, hist_range=None) -> tuple[np.ndarray, MvmEvents]:
    """x: (M, R) u8 codes for this crossbar's rows -> (M, n) float64 exact contribution, and the events.

    adc_range None is the ideal ADC: no clipping, so the slices need not be formed (the sum is the same).
    """
    M = x.shape[0]
    n = xb.mask.shape[1]
    nI, nW = len(islices), len(xb.slices)
    ev = MvmEvents(converts=nI * M * nW * n, macs=M * int(xb.mask.sum()))
    ev.cell_reads = nI * M * xb.cells
    xs_all = np.stack(slice_values(x, islices)) if nI else None
    ev.dac_pulses = int(xs_all.sum(dtype=np.int64))
    if adc_range is None:
        return x.astype(np.float64) @ xb.weights.astype(np.float64), ev
    lo, hi = adc_range
    g = (xb.pos if xb.neg is None else xb.pos - xb.neg).transpose(1, 0, 2).reshape(x.shape[1], nW * n)
    g = g.astype(np.float32)
    weights = np.array([[2.0 ** (si + sj) for sj in slice_shifts(xb.slices)] for si in slice_shifts(islices)])
    full = np.array([(1 << s) - 1 for s in xb.slices], dtype=np.float64)
    any_flip = bool(xb.flip.any())
    mask = xb.mask.astype(np.float32)
    out = np.empty((M, n), dtype=np.float64)
    step = max(1, BLOCK_ELEMS // max(1, nI * x.shape[1]))
    if hist_range is not None:
        ev.hist = np.zeros(hist_range[1] - hist_range[0] + 1, dtype=np.int64)
    for m0 in range(0, M, step):
        xs = xs_all[:, m0:m0 + step].astype(np.float32)            # (nI, m, R)
        m = xs.shape[1]
        s = (xs.reshape(nI * m, -1) @ g).reshape(nI, m, nW, n)
        if ev.hist is not None:
            idx = np.clip(s, *hist_range).astype(np.int64) - hist_range[0]
            ev.hist += np.bincount(idx.ravel(), minlength=ev.hist.size)
        ev.saturated += int(np.count_nonzero((s < lo) | (s > hi)))
        v = np.clip(s, lo, hi).astype(np.float64)
        if any_flip:
            xsum = (xs.reshape(nI * m, -1) @ mask).reshape(nI, m, 1, n).astype(np.float64)
            v = np.where(xb.flip[None, None], full[None, None, :, None] * xsum - v, v)
        out[m0:m0 + m] = np.einsum("imjn,ij->mn", v, weights, optimize=True)
    if xb.center.any():
        out += (x.astype(np.float64) @ xb.mask.astype(np.float64)) * xb.center[None, :]
    return out, ev
