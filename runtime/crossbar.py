"""Crossbar arithmetic: cell levels from weights, and the bit-accurate sliced MVM.

A crossbar holds a block of a layer's weight matrix. Each filter stores offsets O = W - center, sliced into
weight slices (one physical column each, most significant first). Inputs are u8 codes fed as input slices.
For every (input slice, weight slice) pair the column sum is an exact integer (float32 BLAS is exact below
2^24), the ADC clips it to its range, flipped columns are corrected, and the shift-add accumulates in float64
(exact below 2^53). The compiler's passes import the helpers here so both sides encode weights identically.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from isa.target import row_groups

from . import noise as N
from . import parallel
from .kernels import out_hw

EXACT_F32 = 1 << 24
BLOCK_ELEMS = 1 << 22        # input-slice elements per BLAS call: bounds memory, keeps calls large
BLOCK_ROWS_ELEMS = 1 << 18   # x elements cast per block of the exact product (1 MiB of float32)
GEMM_BLOCK_ELEMS = 1 << 17   # column sums per block of the GEMM path: a block's sums stay in cache


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
    weights: np.ndarray         # (R, n) int16 (int64 where wider), the represented integer weights (0 off-block)
    pos: np.ndarray             # (n_slices, R, n) int16 levels of the adding devices
    neg: np.ndarray | None      # (n_slices, R, n) levels of the subtracting devices (2T2R), or None
    group: int = 0              # rows summed per conversion (partial wordline activation); 0: all R rows

    @property
    def groups(self) -> int:
        """Row groups activated in turn, each converting every column."""
        return row_groups(self.mask.shape[0], self.group)

    def row_group(self, a: int, b: int) -> "Crossbar":
        """Rows a:b as a crossbar of their own (views; the same centers and flips): one turn of a grouped read."""
        return Crossbar(self.layer, (self.rows[0] + a, self.rows[0] + b), self.cols, self.encoding, self.slices,
                        self.center, self.flip, self.mask[a:b], self.weights[a:b], self.pos[:, a:b],
                        None if self.neg is None else self.neg[:, a:b])

    @property
    def cells(self) -> int:
        return int(self.mask.sum()) * len(self.slices) * (1 if self.neg is None else 2)

    def levels(self) -> np.ndarray:
        return self.pos if self.neg is None else np.concatenate([self.pos, self.neg])


def program(layer, wm, rows, cols, kg, ng, encoding, center, slices, flip, group: int = 0) -> Crossbar:
    """Encode the block of layer matrix `wm` that this crossbar holds into cell levels; `group` rows are
    summed per conversion (0: all)."""
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
    # levels (0..255) and the 8-bit weights in int16: a 512 x 512 crossbar's state is 4x smaller than int64,
    # which is what bounds a large CNN's memory (every crossbar of the chip is held at once)
    offsets = offsets.astype(np.int16)
    if encoding == "unsigned":
        pos = np.stack(slice_values(offsets, slices))
        full = np.array([(1 << s) - 1 for s in slices], np.int16)[:, None, None]
        pos = np.where(flip[:, None, :], full - pos, pos) * mask
        neg = None
    else:
        pos = np.stack(slice_values(np.maximum(offsets, 0), slices)) * mask
        neg = np.stack(slice_values(np.maximum(-offsets, 0), slices)) * mask
    weights = np.where(mask, w, 0)
    if weights.min(initial=0) >= -(1 << 15) and weights.max(initial=0) < 1 << 15:
        weights = weights.astype(np.int16)
    return Crossbar(layer, tuple(rows), tuple(cols), encoding, tuple(slices), center, np.asarray(flip, bool),
                    mask, weights, pos, neg, group if group and group < mask.shape[0] else 0)


@dataclass
class MvmEvents:
    columns: int = 0               # physical column readouts (windows x columns): the unit of converts/column
    converts: int = 0              # ADC conversions, speculative and recovery
    saturated: int = 0             # conversions whose column sum lay outside the ADC range and were kept
    macs: int = 0
    dac_pulses: int = 0
    cell_reads: int = 0
    spec_converts: int = 0         # conversions of speculative input slices (speculation only)
    spec_failures: int = 0         # of those, the ones at an ADC bound, recovered bit by bit
    hist: np.ndarray | None = None


def pulses(x: np.ndarray, islices) -> np.ndarray:
    """Pulse-train DAC pulses of each u8 code in x: an input slice of value v is v pulses, so a code's pulses
    are the sum of its slice values (u8 arithmetic, no table gather; one bit per slice is a popcount)."""
    x = np.asarray(x, dtype=np.uint8)
    if set(islices) == {1} and hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    out, tmp = np.empty_like(x), np.empty_like(x)
    for k, (s, w) in enumerate(zip(slice_shifts(islices), islices)):      # in place: no temporaries
        v = out if k == 0 else tmp
        np.right_shift(x, np.uint8(s), out=v)
        if s + w < 8:
            np.bitwise_and(v, np.uint8((1 << w) - 1), out=v)
        if k:
            out += tmp
    return out


def code_pulses(islices) -> np.ndarray:
    """DAC pulses of each of the 256 codes."""
    return pulses(np.arange(256, dtype=np.uint8), islices)


PULSE_BLOCK = 1 << 20           # codes per block of row_pulses: bounds the slice arithmetic's temporaries


def row_pulses(x: np.ndarray, islices) -> np.ndarray:
    """DAC pulses per row over all of x (M, R) (summed over the first axis of any x). Blocks of rows are
    summed in uint16, as many rows as cannot overflow it (the reduction's cost is its casts), then in int64.
    One thread: the passes are too light for a second one to repay its start. Exact integer sums."""
    x = np.asarray(x)
    out = np.zeros(x.shape[1:], np.int64)
    step = max(1, min(0xFFFF // max(1, int(code_pulses(islices).max())), PULSE_BLOCK // max(1, out.size)))
    for m0 in range(0, len(x), step):
        out += np.add.reduce(pulses(x[m0:m0 + step], islices), axis=0, dtype=np.uint16)
    return out


def column_bounds(xb: Crossbar, islices) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest sum each physical column can produce in one conversion (of its row group),
    (n_slices, n) each."""
    imax = (1 << max(islices)) - 1
    if xb.group:
        bounds = [column_bounds(xb.row_group(a, a + xb.group), islices) for a in range(0, xb.mask.shape[0], xb.group)]
        return np.min([b[0] for b in bounds], axis=0), np.max([b[1] for b in bounds], axis=0)
    hi = xb.pos.sum(axis=1) * imax
    lo = -xb.neg.sum(axis=1) * imax if xb.neg is not None else np.zeros_like(hi)
    return lo, hi


def product_bound(w: np.ndarray) -> int:
    """Largest |x @ w| over u8 codes x: 255 times the largest column sum of |w|."""
    return 255 * int(np.abs(w).sum(axis=0).max(initial=0))


def product(x: np.ndarray, w: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Integer product x @ w through BLAS, added into `out` when given (the caller keeps a float32 `out`
    below 2^24). float32 when every sum stays below 2^24, float64 otherwise. Row blocks: each block's cast
    of the u8 codes stays in cache instead of a full-size float copy of x."""
    M, R = x.shape
    dt = np.float32 if product_bound(w) < EXACT_F32 else np.float64
    wd = w.astype(dt)
    add = out is not None
    assert not add or out.dtype == np.float64 or dt == np.float32, "a float32 sum of float64 products"
    if not add:
        out = np.empty((M, w.shape[1]), dt)
    step = max(64, BLOCK_ROWS_ELEMS // max(1, R))

    def part(lo, hi):
        buf = np.empty((min(step, hi - lo), R), dt)
        prod = np.empty((min(step, hi - lo), w.shape[1]), dt) if add else None
        for m0 in range(lo, hi, step):
            m1 = min(m0 + step, hi)
            b = buf[:m1 - m0]
            np.copyto(b, x[m0:m1], casting="unsafe")
            if add:
                out[m0:m1] += np.matmul(b, wd, out=prod[:m1 - m0])
            else:
                np.matmul(b, wd, out=out[m0:m1])

    parallel.rows(M, part, R, blas=True)
    return out


def window_product(x: np.ndarray, w: np.ndarray, r0: int, kernel, strides, pads, dilations, fill) -> np.ndarray:
    """product(im2col(x)[:, :, r0:r0 + len(w)], w) as (B * OH * OW, n), without the u8 im2col. Per block of
    images the windows are copied straight into a float buffer that stays in cache, in (ky, kx, c) order
    (whole channel vectors per copy, where im2col's (c, ky, kx) order moves single bytes), and w's rows are
    permuted to match. The sums are exact integers either way (float32 only below 2^24, as in product), so
    the row order changes nothing. x: (B, C, H, W) u8 codes, best channels-last in memory."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    B, C, H, W = x.shape
    t, l, b, r = pads
    OH, OW = out_hw(x, kernel, strides, pads, dilations)
    n = w.shape[1]
    dt = np.float32 if product_bound(w) < EXACT_F32 else np.float64
    full = np.zeros((C * kh * kw, n), dt)
    full[r0:r0 + len(w)] = w
    wd = np.ascontiguousarray(full.reshape(C, kh, kw, n).transpose(1, 2, 0, 3).reshape(-1, n))
    out = np.empty((B * OH * OW, n), dt)
    xt = x.transpose(0, 2, 3, 1)                                           # (B, H, W, C)
    step = max(1, BLOCK_ROWS_ELEMS // (OH * OW * C * kh * kw))             # images per block

    def part(lo, hi):
        nb = min(step, hi - lo)
        pad = np.full((nb, H + t + b, W + l + r, C), fill, dt)
        cols = np.empty((nb, OH, OW, kh, kw, C), dt)
        for b0 in range(lo, hi, step):
            b1 = min(b0 + step, hi)
            p, c = pad[:b1 - b0], cols[:b1 - b0]
            p[:, t:t + H, l:l + W] = xt[b0:b1]                               # the cast, pads keep the fill
            for ky in range(kh):
                if dw == 1:     # a window row's kw pixels are kw * C consecutive elements: one copy per ky
                    s0, s1, s2, s3 = p.strides
                    c.reshape(c.shape[:4] + (kw * C,))[:, :, :, ky] = as_strided(
                        p[:, ky * dh:], (len(p), OH, OW, kw * C), (s0, s1 * sh, s2 * sw, s3), writeable=False)
                    continue
                for kx in range(kw):
                    c[:, :, :, ky, kx] = p[:, ky * dh: ky * dh + (OH - 1) * sh + 1: sh,
                                           kx * dw: kx * dw + (OW - 1) * sw + 1: sw]
            np.matmul(c.reshape(-1, len(wd)), wd, out=out[b0 * OH * OW: b1 * OH * OW])

    parallel.rows(B, part, OH * OW * C * kh * kw, blas=True)
    return out


def depthwise_taps(w: np.ndarray, r0: int, C: int, taps: int) -> np.ndarray | None:
    """w's rows r0.. of a (C * taps, n) im2col weight matrix ((c, ky, kx) row order) as (taps, C, n // C)
    per-channel weights, where every filter reads one channel only: filter j reads channel j // (n // C).
    None where w is not of that form."""
    n = w.shape[1]
    if n % C:
        return None
    full = np.zeros((C * taps, n), w.dtype)
    full[r0:r0 + len(w)] = w
    g = full.reshape(C, taps, C, n // C)
    off = ~np.eye(C, dtype=bool)[:, None, :, None]
    if np.any(g * off):
        return None
    return np.ascontiguousarray(g[np.arange(C), :, np.arange(C)].transpose(1, 0, 2))     # (taps, C, ng)


def depthwise_window_product(x: np.ndarray, taps: np.ndarray, bound: int, kernel, strides, pads, dilations,
                             fill) -> np.ndarray:
    """A depthwise conv's product (taps from depthwise_taps) as (B * OH * OW, n): per kernel offset, the window
    pixels times their channel's weights, added up. Exact integers in float32 while bound (product_bound of
    the weights) < 2^24, as product: no partial sum is larger than the largest column sum. No im2col, and
    C times fewer MACs than one product with the block-diagonal weights."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    B, C, H, W = x.shape
    t, l, b, r = pads
    OH, OW = out_hw(x, kernel, strides, pads, dilations)
    ng = taps.shape[2]
    dt = np.float32 if bound < EXACT_F32 else np.float64
    wt = taps.astype(dt)
    step = max(1, BLOCK_ROWS_ELEMS // (OH * OW * C * ng * 4))     # a block's arrays: 256 KiB of float32
    xt = x.transpose(0, 2, 3, 1)
    # one output per channel (ng 1): a tap's window row (OW, C) is one run of memory at stride 1, and with its
    # weights tiled along OW the multiply-add loops over the whole run, not over a length-1 axis
    if ng == 1:
        wt, src, shape = np.ascontiguousarray(np.broadcast_to(wt[:, None, :, 0], (len(wt), OW, C))), xt, (OH, OW, C)
    else:
        src, shape = xt[..., None], (OH, OW, C, ng)
    out = np.empty((B,) + shape, dt)

    def part(lo, hi):
        nb = min(step, hi - lo)
        pad = np.full((nb, H + t + b, W + l + r) + src.shape[3:], fill, dt)
        tmp = np.empty((nb,) + shape, dt)
        for b0 in range(lo, hi, step):
            b1 = min(b0 + step, hi)
            p, o, q = pad[:b1 - b0], out[b0:b1], tmp[:b1 - b0]
            p[:, t:t + H, l:l + W] = src[b0:b1]
            for k in range(kh * kw):
                ky, kx = divmod(k, kw)
                v = p[:, ky * dh: ky * dh + (OH - 1) * sh + 1: sh, kx * dw: kx * dw + (OW - 1) * sw + 1: sw]
                np.multiply(v, wt[k], out=o if k == 0 else q)
                if k:
                    o += q

    parallel.rows(B, part, OH * OW * C * kh * kw)
    return out.reshape(B * OH * OW, C * ng)


def plain_weights(xbars, n: int) -> np.ndarray:
    """(rows, n) integers whose product with the input is the sum of these crossbars' plain products: each
    crossbar's represented weights at its rows and columns."""
    w = np.zeros((max(xb.rows[1] for xb in xbars), n), np.int64)
    for xb in xbars:
        w[xb.rows[0]:xb.rows[1], xb.cols[0]:xb.cols[1]] += xb.weights
    return w


def is_plain(xb: Crossbar, islices, adc_range, hist_range=None, sliced=False, noise=None, recover=0) -> bool:
    """Whether mvm's result is the plain integer product x @ weights, formed by one exact BLAS product: an
    ideal ADC, or one that no column sum can reach, and nothing that asks for every column's sums."""
    if sliced or hist_range is not None or noise is not None:
        return False
    if adc_range is None:
        return True
    return not _risky(xb, islices, adc_range, recover).any()


def _risky(xb, islices, adc_range, recover):
    """(n_slices, n): the physical columns whose sums can reach the ADC's bounds. Under speculation a sum
    that lands on a bound fails too, so only a strict margin is safe."""
    lo, hi = adc_range
    clo, chi = column_bounds(xb, islices)
    return (clo <= lo) | (chi >= hi) if recover else (clo < lo) | (chi > hi)


def mvm_events(xb: Crossbar, M: int, islices, pulses: np.ndarray, recover: int = 0) -> MvmEvents:
    """What an mvm of M input vectors costs, whatever its ADC does: column readouts, conversions (all
    speculative with `recover`; every row group converts every column), MACs, cell reads and the DAC pulses
    of its rows (`pulses`, per row)."""
    nI, nW, n = len(islices), len(xb.slices), xb.mask.shape[1]
    ev = MvmEvents(columns=M * nW * n, converts=nI * M * nW * n * xb.groups, macs=M * int(xb.mask.sum()),
                   cell_reads=nI * M * xb.cells, dac_pulses=int(pulses.sum()))
    if recover:
        ev.spec_converts = ev.converts
    return ev


@dataclass
class Noise:
    """RAELLA thesis sec. 7.3: a column sum is Normal(N+ - N-, (E * sqrt(N+ + N-))^2), then the ADC rounds it to its step. The
    draws are keyed (noise.py): `key` is the stream (seed, instruction, input part) and `row0` the global index
    of the first input row, so a row's draws are the same in whatever batch or chunk it runs."""
    e: float
    key: int
    row0: int = 0


def _subslices(width: int, recover: int) -> list[int]:
    """Widths of the recovery slices of one speculative input slice, most significant first."""
    return [recover] * (width // recover) + ([width % recover] if width % recover else [])


def use_kernel() -> bool:
    """Whether mvm runs the compiled kernel (xbar_kernels.py): unless PIMC_XBAR=numpy asks for the NumPy
    reference, or Numba is missing."""
    if os.environ.get("PIMC_XBAR", "").lower() == "numpy":
        return False
    try:
        from . import xbar_kernels  # noqa: F401
    except ImportError:
        return False
    return True


class _Columns:
    """The physical columns that go through the ADC model: their cell levels and how to sum them. A sum's
    noise draw is keyed by its global row, pass (input slice, then recovery slices) and physical column."""

    def __init__(self, xb: Crossbar, j_idx, n_idx, noise: Noise | None, npass: int):
        self.g = (xb.pos if xb.neg is None else xb.pos - xb.neg)[j_idx, :, n_idx].T.astype(np.float32)
        self.noise = noise
        self.mask = xb.mask
        self.phys = (j_idx * xb.mask.shape[1] + n_idx).astype(np.uint64)
        self.npass, self.nphys = npass, len(xb.slices) * xb.mask.shape[1]
        if noise is not None:                      # N+ and N- separately: the noise grows with both
            self.gp = xb.pos[j_idx, :, n_idx].T.astype(np.float32)
            self.gn = xb.neg[j_idx, :, n_idx].T.astype(np.float32) if xb.neg is not None else None

    def sums(self, xs: np.ndarray, rows: np.ndarray, passes: np.ndarray) -> np.ndarray:
        """Column sums of xs (k, R); row k is x's row rows[k] (chunk-local) in pass passes[k]."""
        if self.noise is None:
            return xs @ self.g                                             # exact integers
        p = xs @ self.gp
        q = xs @ self.gn if self.gn is not None else np.zeros_like(p)
        rows = np.asarray(rows, np.uint64) + np.uint64(self.noise.row0)
        ctr = (rows * np.uint64(self.npass) + np.asarray(passes, np.uint64))[:, None] * np.uint64(self.nphys) \
            + self.phys[None, :]
        z = N.normals(self.noise.key, ctr)
        s = p - q + np.float32(self.noise.e) * np.sqrt(p + q) * z
        return np.rint(s, out=s)


def mvm(xb: Crossbar, x: np.ndarray, islices, adc_range, hist_range=None, sliced=False, pulses=None,
        recover: int = 0, noise: Noise | None = None, out: np.ndarray | None = None):
    """x: (M, R) u8 codes for this crossbar's rows -> ((M, n) exact contribution as float, events).

    Every (input slice, weight slice) column sum that can reach an ADC bound is formed and clipped. A physical
    column that cannot (column_bounds), or any column under an ideal ADC (adc_range None), is linear end to
    end, so its shift-added result is the plain integer product, which one BLAS call gives for all such
    columns at once. `sliced`, a histogram request and noise form every column's sums anyway.
    With `recover` (speculation, RAELLA sec. 4.3) the input slices are speculative: a column sum at either ADC bound is recomputed from
    that slice's bits in `recover`-bit slices, converting only the failed columns; recovery keeps what its
    ADC gives. `pulses` gives row_pulses(x) when the caller has it. With `out` ((M, n) float) the result is
    added into it and returned; a float32 `out` only where is_plain holds and the sum stays below 2^24.
    The columns that go through the ADC run in the compiled kernel (xbar_kernels.py) or, with PIMC_XBAR=numpy,
    in the NumPy reference loop (_numpy_columns): the same outputs and events bit for bit.
    """
    M, R = x.shape
    n = xb.mask.shape[1]
    nI, nW = len(islices), len(xb.slices)
    ev = mvm_events(xb, M, islices, row_pulses(x, islices) if pulses is None else pulses, recover)
    if is_plain(xb, islices, adc_range, hist_range, sliced, noise, recover):
        return product(x, xb.weights, out), ev
    if xb.group:
        return _grouped(xb, x, islices, adc_range, hist_range, sliced, recover, noise, out, ev)
    lo, hi = adc_range if adc_range is not None else (-np.inf, np.inf)
    if sliced or hist_range is not None or noise is not None:
        risky = np.ones((nW, n), bool)
    else:
        risky = _risky(xb, islices, adc_range, recover)
    levels = (xb.pos if xb.neg is None else xb.pos - xb.neg).astype(np.float64)       # (nW, R, n)
    # after the ADC everything is linear: a flipped column reads (2^b - 1) * sum(x slice) - v, so per column
    # the weight-slice factor is +-2^shift, and the flip's input-sum term joins the center term as (X @ mask) * d
    wsh = np.array([1 << s for s in slice_shifts(xb.slices)], dtype=np.float64)[:, None]
    full = np.array([(1 << s) - 1 for s in xb.slices], dtype=np.float64)[:, None]
    coef = np.where(xb.flip, -wsh, wsh)                                   # (nW, n)
    d = (xb.flip * wsh * full).sum(axis=0)                                # (n,)
    # everything linear in one exact product: the slices of columns that cannot saturate, already combined,
    # plus the digital terms (center + flip correction) times the input sum of each filter's rows
    linear = np.einsum("jrn,jn->rn", levels, coef * ~risky) + xb.mask * (xb.center + d)[None, :]
    if out is None:
        out = np.zeros((M, n))
    out = product(x, np.rint(linear).astype(np.int64), out)
    j_idx, n_idx = np.nonzero(risky)
    if not len(j_idx):
        return out, ev
    npass = nI + (sum(len(_subslices(w, recover)) for w in islices) if recover else 0)
    cols = _Columns(xb, j_idx, n_idx, noise, npass)
    if hist_range is not None:
        ev.hist = np.zeros(hist_range[1] - hist_range[0] + 1, dtype=np.int64)
    run = _kernel_columns if use_kernel() and M else _numpy_columns
    run(x, cols, coef[j_idx, n_idx], n_idx, islices, recover, lo, hi, hist_range, out, ev)
    return out, ev


def _grouped(xb, x, islices, adc_range, hist_range, sliced, recover, noise, out, ev):
    """mvm of a crossbar read in row groups: each group is an mvm of its own, all adding into one output (every
    sum after the ADC is linear). Group k draws its noise from its own stream."""
    if out is None:
        out = np.zeros((len(x), xb.mask.shape[1]))
    if hist_range is not None:
        ev.hist = np.zeros(hist_range[1] - hist_range[0] + 1, dtype=np.int64)
    for k, a in enumerate(range(0, xb.mask.shape[0], xb.group)):
        sub = xb.row_group(a, a + xb.group)
        nz = None if noise is None else Noise(noise.e, (noise.key + k * 0x9E3779B97F4A7C15) % (1 << 64), noise.row0)
        _, e = mvm(sub, x[:, a:a + xb.group], islices, adc_range, hist_range, sliced, np.zeros(0, np.int64),
                   recover, nz, out)
        base = mvm_events(sub, len(x), islices, np.zeros(0, np.int64), recover)
        ev.saturated += e.saturated
        ev.spec_failures += e.spec_failures
        ev.converts += e.converts - base.converts          # the recovery conversions
        if e.hist is not None:
            ev.hist += e.hist
    return out, ev


def recovery_tables(islices, recover: int) -> tuple:
    """The kernels' view of speculation's recovery slices: per input slice the offset and count of its
    recovery slices, and per recovery slice its low bit, width and weight within its input slice (int64,
    int64, int64, int64, float32 arrays; empty without `recover`)."""
    subs = [_subslices(w, recover) if recover else [] for w in islices]
    i64 = lambda v: np.ascontiguousarray(v, np.int64)          # noqa: E731
    return (i64(np.cumsum([0] + [len(s) for s in subs])[:-1]), i64([len(s) for s in subs]),
            i64([l + sum(s[k + 1:]) for l, s in zip(slice_shifts(islices), subs) for k in range(len(s))]),
            i64([b for s in subs for b in s]),
            np.array([float(1 << sum(s[k + 1:])) for s in subs for k in range(len(s))], np.float32))


GEMM_DENSITY = 0.25         # a crossbar whose columns' rows are this full or more takes the GEMM path,
GEMM_MAX_SLICES = 4         # with this many input slices or fewer: eight 1-bit slices are mostly zero bits,
                            # which the bit planes skip (digits, --no-speculation: 1.7 s against 2.3 s of CPU)


def _kernel_columns(x, cols, coef, n_idx, islices, recover, lo, hi, hist_range, out, ev):
    """The compiled paths (xbar_kernels.py). A crossbar whose rows mostly reach its columns, fed in a few
    input slices, forms the slices' column sums in BLAS and runs the ADC in the compiled epilogue
    (_gemm_columns); a sparse, block-diagonal one (depthwise, grouped), or one fed bit by bit, adds each input
    bit's row into bit planes, skipping the empty blocks and zero bits (adc_columns). PIMC_XBAR=gemm or
    =planes forces one; both equal the NumPy reference bit for bit."""
    from . import xbar_kernels as XK
    shifts = slice_shifts(islices)
    sub = recovery_tables(islices, recover)
    noise = cols.noise if cols.noise is not None and cols.noise.e != 0 else None     # E 0: p - q exactly
    i64 = lambda v: np.ascontiguousarray(v, np.int64)          # noqa: E731
    counts = np.zeros(3, np.int64)
    hist = ev.hist if ev.hist is not None else np.zeros(0, np.int64)
    adc = (recover, float(lo), float(hi), hist_range[0] if hist_range is not None else 0, len(hist),
           np.float32(noise.e if noise else 0.0), np.uint64(noise.key if noise else 0))
    table = N.table() if noise else np.zeros(1, np.float32)
    # the kernels' signatures take writable u8 codes: a read-only array (a user's memmap) is copied
    x = x if x.dtype == np.uint8 and x.flags.writeable else np.array(x, np.uint8)
    mode = os.environ.get("PIMC_XBAR", "").lower()
    dense = cols.mask[:, n_idx].mean() >= GEMM_DENSITY if len(n_idx) else True
    if mode == "gemm" or (mode != "planes" and dense and len(islices) <= GEMM_MAX_SLICES):
        _gemm_columns(XK, x, cols, coef, n_idx, islices, shifts, sub, adc, noise, table, out, counts, hist)
    else:
        # columns filter-major, so that a block-diagonal crossbar's row reaches one run of them (cs:ce), from
        # its mask; every other row reaches them all
        order = np.lexsort((cols.phys, n_idx))
        g = np.ascontiguousarray((cols.g if noise is None else cols.gp)[:, order])
        gn = np.ascontiguousarray(cols.gn[:, order] if noise is not None and cols.gn is not None
                                  else np.zeros((0, 0), np.float32))
        nz = cols.mask[:, n_idx[order]]
        any_nz = nz.any(axis=1)
        cs = np.where(any_nz, nz.argmax(axis=1), 0)
        ce = np.where(any_nz, nz.shape[1] - nz[:, ::-1].argmax(axis=1), 0)
        XK.adc_columns(
            x, g, gn, i64(cs), i64(ce), i64(n_idx[order]), i64(cols.phys[order]),
            np.asarray(coef, np.float64)[order], np.array([2.0 ** s for s in shifts]), i64(shifts), i64(islices),
            *sub, *adc, int(noise.row0) if noise else 0, int(cols.npass), int(cols.nphys), table, out, counts, hist)
    ev.saturated += int(counts[0])
    ev.spec_failures += int(counts[1])
    ev.converts += int(counts[2])


def _gemm_columns(XK, x, cols, coef, n_idx, islices, shifts, sub, adc, noise, table, out, counts, hist):
    """Row blocks over the cores: each forms its input slices' column sums with single-threaded BLAS products
    (exact integers in float32; a slice that is zero on most of the crossbar's rows over the block, as the
    high slice of small codes is, multiplies only its nonzero rows), then runs the compiled ADC epilogue on
    them while they are in cache."""
    M, R = x.shape
    nI = len(islices)
    noisy = noise is not None
    g = np.ascontiguousarray(cols.gp if noisy else cols.g)
    gn = np.ascontiguousarray(cols.gn) if noisy and cols.gn is not None else None
    C = g.shape[1]
    none = np.zeros((0, 0), np.float32)
    GT, GTN = np.ascontiguousarray(g.T), np.ascontiguousarray(gn.T) if gn is not None else none
    i64 = lambda v: np.ascontiguousarray(v, np.int64)          # noqa: E731
    cargs = (i64(n_idx), np.asarray(coef, np.float64), i64(cols.phys), np.array([2.0 ** s for s in shifts]),
             i64(shifts), *sub, *adc)
    row0 = int(noise.row0) if noisy else 0
    step = max(8, GEMM_BLOCK_ELEMS // max(1, nI * max(C, R)))
    parts = []

    def part(a, b):
        k = min(step, b - a)
        xs = np.empty((nI, k, R), np.float32)
        S = np.empty((nI, k, C), np.float32)
        SQ = np.empty((nI, k, C) if gn is not None else (0, 0, 0), np.float32)
        cnt, hst = np.zeros(3, np.int64), np.zeros_like(hist)
        for m0 in range(a, b, step):
            m1 = min(b, m0 + step)
            xc, j = x[m0:m1], m1 - m0
            for i, (s, w) in enumerate(zip(shifts, islices)):
                v = (xc >> s) & ((1 << w) - 1)
                used = np.flatnonzero(v.any(axis=0))
                if len(used) * 4 < 3 * R:         # a high slice of small codes: only its nonzero rows
                    vu = v[:, used].astype(np.float32)
                    np.matmul(vu, g[used], out=S[i, :j])
                    if gn is not None:
                        np.matmul(vu, gn[used], out=SQ[i, :j])
                    continue
                np.copyto(xs[i, :j], v, casting="unsafe")
                np.matmul(xs[i, :j], g, out=S[i, :j])
                if gn is not None:
                    np.matmul(xs[i, :j], gn, out=SQ[i, :j])
            XK.adc_epilogue(S[:, :j], SQ[:, :j] if gn is not None else SQ, xc, g, gn if gn is not None else none, GT,
                            GTN, *cargs, row0 + m0, int(cols.npass), int(cols.nphys), table, out[m0:m1], cnt, hst)
        parts.append((cnt, hst))

    parallel.rows(M, part, R * C * nI, blas=True)
    for cnt, hst in parts:
        counts += cnt
        hist += hst


def _numpy_columns(x, cols, coef, n_idx, islices, recover, lo, hi, hist_range, out, ev):
    """The reference: slice tensors of row blocks through BLAS, then the ADC model in NumPy passes."""
    M, R = x.shape
    n = out.shape[1]
    nI = len(islices)
    fold = np.zeros((len(n_idx), n), dtype=np.float32)                    # risky column -> its filter, +-2^shift
    fold[np.arange(len(n_idx)), n_idx] = coef
    shifts = slice_shifts(islices)
    ish = np.array([2.0 ** s for s in shifts])
    step = max(1, BLOCK_ELEMS // max(1, nI * max(R, len(n_idx))))
    first_pass = np.cumsum([nI] + [len(_subslices(w, recover)) if recover else 0 for w in islices])
    for m0 in range(0, M, step):
        xc = x[m0:m0 + step]
        m = len(xc)
        xs = np.stack(slice_values(xc, islices)).astype(np.float32).reshape(nI * m, R)
        s = cols.sums(xs, np.tile(np.arange(m0, m0 + m), nI), np.repeat(np.arange(nI), m))
        if ev.hist is not None:
            idx = np.clip(s, *hist_range).astype(np.int64) - hist_range[0]
            ev.hist += np.bincount(idx.ravel(), minlength=ev.hist.size)
        if recover:
            s = s.reshape(nI, m, -1)
            for i, (l, w) in enumerate(zip(shifts, islices)):
                _recover(s[i], xc, m0, first_pass[i], l, w, recover, cols, lo, hi, ev)
            s = s.reshape(nI * m, -1)
        elif s.max(initial=0) > hi or s.min(initial=0) < lo:
            ev.saturated += int(np.count_nonzero(s > hi)) + int(np.count_nonzero(s < lo))
            np.clip(s, lo, hi, out=s)
        t = s @ fold                                                       # exact: |t| < 2^24
        out[m0:m0 + m] += np.tensordot(ish, t.reshape(nI, m, n).astype(np.float64), axes=1)


def _recover(s, xc, m0, pass0, l, w, recover, cols, lo, hi, ev):
    """In place on one speculative slice's sums s (m, columns): failed columns take their recovery value.
    xc's rows are rows m0.. of the mvm's input; the recovery slices are passes pass0.."""
    failed = (s <= lo) | (s >= hi)
    nf = int(np.count_nonzero(failed))
    ev.spec_failures += nf
    if not nf:
        return
    rows = np.nonzero(failed.any(axis=1))[0]
    sub = _subslices(w, recover)
    bits = [(xc[rows] >> (l + sum(sub[k + 1:]))) & ((1 << b) - 1) for k, b in enumerate(sub)]
    rec = np.zeros((len(rows), s.shape[1]), dtype=np.float32)
    f = failed[rows]
    for k, b in enumerate(sub):
        r = cols.sums(bits[k].astype(np.float32), rows + m0, np.full(len(rows), pass0 + k))
        ev.saturated += int(np.count_nonzero(((r > hi) | (r < lo)) & f))
        rec += np.clip(r, lo, hi) * float(1 << sum(sub[k + 1:]))
    ev.converts += nf * len(sub)
    s[rows] = np.where(f, rec, s[rows])      # a sum that did not fail lies strictly inside the range
