"""Crossbars written at run time: an activation (K^T, V, or ReTransformer's X) as the weights of an MVM.

Every sample writes its own operand, so the weights are batched: w (B, ..., K, N). The cells hold the
operand's codes minus their zero point in Zero+Offset form (RAELLA sec. 4.1: the magnitude on the device of its sign in a
2T2R pair), sliced as the target slices static weights; the compiler has no time to optimise a center for a
run-time value. Inputs run as positive and negative parts in the target's input slices, with speculation and
recovery as for static crossbars (RAELLA sec. 4.3). Each crossbar of `rows` rows converts its own partial column sums: for
every (input part, input slice, weight slice, row block) the sum is an exact integer in float32 BLAS, then
the ADC (a signed ADC reads pos - neg on one column; an unsigned one converts the two devices' columns
apart). With an ideal ADC the result is the plain integer product. The ADC runs in the compiled epilogue of
the static crossbars' GEMM path (xbar_kernels.adc_epilogue), one written operand at a time; PIMC_XBAR=numpy
runs the NumPy reference below instead (_numpy_adc), bit for bit the same.
"""
from __future__ import annotations

import numpy as np

from . import parallel
from .crossbar import pulses as code_pulses_of
from .crossbar import MvmEvents, recovery_tables, slice_shifts, slice_values, use_kernel


def levels(w: np.ndarray, zero: int, slices) -> np.ndarray:
    """Cell levels of the written operand: (2 devices, n slices, B, ..., K, N)."""
    v = w.astype(np.int16) - zero
    return np.stack([np.stack(slice_values(np.maximum(s * v, 0), slices)) for s in (1, -1)])


def write_events(w: np.ndarray, zero: int, slices, previous: np.ndarray | None):
    """(cells changed, pulses) of writing each sample's operand over what the crossbar held before: the previous
    sample's operand (one inference at a time), or, for the first, `previous` (or reset cells)."""
    lv = levels(w, zero, slices).astype(np.int16)
    B = w.shape[0]
    flat = lv.reshape(lv.shape[0], lv.shape[1], B, -1)
    before = np.concatenate([np.zeros_like(flat[:, :, :1]) if previous is None else previous[:, :, None],
                             flat[:, :, :-1]], axis=2)
    diff = np.abs(flat - before)
    return int(np.count_nonzero(diff)), int(diff.sum()), flat[:, :, -1]


def dynamic_mvm(a: np.ndarray, za: int, w: np.ndarray, zw: int, islices, wslices, rows: int, adc_range,
                signed_adc: bool, recover: int = 0):
    """(a - za) @ (w - zw) as the crossbars compute it: (result float64, MvmEvents). a (B, ..., M, K) u8,
    w (B, ..., K, N) u8 (broadcast over a's middle axes)."""
    if a.ndim > 3 and w.ndim == a.ndim and all(d == 1 for d in w.shape[1:-2]):
        # one operand serves every head: stack the heads' rows, one product per sample instead of per head
        y, ev = dynamic_mvm(a.reshape(a.shape[0], -1, a.shape[-1]), za, w.reshape(w.shape[0], *w.shape[-2:]), zw,
                            islices, wslices, rows, adc_range, signed_adc, recover)
        return y.reshape(a.shape[:-1] + (w.shape[-1],)), ev
    K, N = w.shape[-2], w.shape[-1]
    M = a.shape[-2]
    lead = np.broadcast_shapes(a.shape[:-2], w.shape[:-2])
    outer = int(np.prod(lead))
    ev = MvmEvents(macs=outer * M * K * N)
    v = a.astype(np.int16) - za
    parts = [(1, np.maximum(v, 0).astype(np.uint8))] + ([(-1, np.maximum(-v, 0).astype(np.uint8))] if za else [])
    nblocks = -(-K // rows)
    cols_per_value = len(wslices) * (1 if signed_adc else 2)
    # DAC pulses: every input row drives its row of each crossbar holding a column block of the operand
    col_blocks = max(1, -(-(N * cols_per_value) // max(1, rows)))
    ev.dac_pulses = sum(int(code_pulses_of(p, islices).sum(dtype=np.int64)) for _, p in parts) * col_blocks * \
        (outer // int(np.prod(a.shape[:-2])))
    ev.cell_reads = ev.macs * len(wslices) * 2 * len(parts)
    ev.columns = outer * M * N * cols_per_value * nblocks * len(parts)
    ev.converts = ev.columns * len(islices)
    if adc_range is None:                        # ideal: linear end to end
        return np.matmul(v.astype(np.float64), w.astype(np.float64) - zw), ev
    lo, hi = adc_range
    lv = levels(w, zw, wslices).astype(np.float32)             # (2, nW, B, ..., K, N)
    if recover:
        ev.spec_converts = ev.converts
    if use_kernel():
        out = _compiled(parts, lv, lead, M, K, N, islices, wslices, rows, lo, hi, signed_adc, recover, ev)
        return out, ev
    return _numpy_adc(parts, lv, lead, M, K, N, islices, wslices, rows, lo, hi, signed_adc, recover, ev), ev


def _compiled(parts, lv, lead, M, K, N, islices, wslices, rows, lo, hi, signed_adc, recover, ev):
    """The ADC-modelled product through the compiled epilogue: per written operand (sample, head) and input
    part, each crossbar's row block forms its input slices' column sums in BLAS, then the epilogue converts,
    recovers and shift-adds them. Operands spread over the cores."""
    from . import xbar_kernels as XK
    nW = len(wslices)
    outer = int(np.prod(lead))
    # every operand's columns: per weight slice, the signed column (pos - neg) or the two devices' columns
    dev = [lv[0] - lv[1]] if signed_adc else [lv[0], lv[1]]
    cols = np.stack(dev, axis=1)                                                # (nW, ndev, B, ..., K, N)
    cols = np.broadcast_to(cols, cols.shape[:2] + lead + (K, N)).reshape(nW, len(dev), outer, K, N)
    G = np.ascontiguousarray(cols.transpose(2, 3, 0, 1, 4).reshape(outer, K, nW * len(dev) * N))
    wsh = np.array([2.0 ** s for s in slice_shifts(wslices)])
    dsign = np.array([1.0] if signed_adc else [1.0, -1.0])
    coef = (wsh[:, None, None] * dsign[None, :, None] * np.ones(N)).ravel()        # (nW * ndev * N,)
    col_n = np.ascontiguousarray(np.tile(np.arange(N), nW * len(dev)), np.int64)
    shifts = slice_shifts(islices)
    fixed = (np.array([2.0 ** s for s in shifts]), np.array(shifts, np.int64), *recovery_tables(islices, recover),
             recover, float(lo), float(hi), 0, 0, np.float32(0.0), np.uint64(0), 0, 1, 1, np.zeros(1, np.float32))
    xs = [(sign, np.broadcast_to(x, lead + (M, K)).reshape(outer, M, K)) for sign, x in parts]
    out = np.zeros((outer, M, N))
    nI, C = len(islices), G.shape[2]
    empty, none, nohist = np.zeros((0, 0, 0), np.float32), np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    counts = []

    def part(a, b):
        cnt = np.zeros(3, np.int64)
        S = np.empty((nI, M, C), np.float32)
        for o in range(a, b):
            for r0 in range(0, K, rows):        # each block of `rows` rows is a crossbar of its own
                g = np.ascontiguousarray(G[o, r0:r0 + rows])
                gt = np.ascontiguousarray(g.T)
                for sign, x in xs:
                    xb = x[o, :, r0:r0 + rows].copy()          # writable: x may be a broadcast view
                    for i, (s, w) in enumerate(zip(shifts, islices)):
                        np.matmul(((xb >> s) & ((1 << w) - 1)).astype(np.float32), g, out=S[i])
                    XK.adc_epilogue(S, empty, xb, g, none, gt, none, col_n, sign * coef, col_n, *fixed, out[o], cnt,
                                    nohist)
        counts.append(cnt)

    parallel.rows(outer, part, M * K * C * nI, blas=True)
    cnt = sum(counts)
    ev.saturated += int(cnt[0])
    ev.spec_failures += int(cnt[1])
    ev.converts += int(cnt[2])
    return out.reshape(lead + (M, N))


def _numpy_adc(parts, lv, lead, M, K, N, islices, wslices, rows, lo, hi, signed_adc, recover, ev):
    """The reference: per (input part, weight slice, device column, row block, input slice) one batched
    float32 product, then the ADC model in NumPy passes."""
    wsh = slice_shifts(wslices)
    ish = slice_shifts(islices)
    out = np.zeros(lead + (M, N))
    for sign, x in parts:
        xs = slice_values(x, islices)
        for j, sw in enumerate(wsh):
            cells = [lv[0, j], lv[1, j]] if not signed_adc else [lv[0, j] - lv[1, j]]
            for c, cw in enumerate(cells):
                csign = -1.0 if (not signed_adc and c == 1) else 1.0
                for r0 in range(0, K, rows):
                    wb = cw[..., r0:r0 + rows, :]
                    for i, si in enumerate(ish):
                        s = np.matmul(xs[i][..., r0:r0 + rows].astype(np.float32), wb)
                        s = _adc(s, x[..., r0:r0 + rows], wb, ish[i], islices[i], recover, lo, hi, ev)
                        out += (sign * csign * 2.0 ** (si + sw)) * s
    return out


def _adc(s, x, wb, shift, width, recover, lo, hi, ev):
    """Convert one slice's column sums; with speculation, sums at a bound are recomputed in `recover`-bit
    slices of that input slice (each of those converted and clipped in turn)."""
    if not recover:
        bad = (s > hi) | (s < lo)
        n = int(np.count_nonzero(bad))
        if n:
            ev.saturated += n
            s = np.clip(s, lo, hi)
        return s
    failed = (s <= lo) | (s >= hi)
    nf = int(np.count_nonzero(failed))
    ev.spec_failures += nf
    if not nf:
        return s
    sub = [recover] * (width // recover) + ([width % recover] if width % recover else [])
    rec = np.zeros_like(s)
    for k, b in enumerate(sub):
        low = shift + sum(sub[k + 1:])
        bits = ((x >> low) & ((1 << b) - 1)).astype(np.float32)
        r = np.matmul(bits, wb)
        ev.saturated += int(np.count_nonzero(((r > hi) | (r < lo)) & failed))
        rec += np.clip(r, lo, hi) * float(1 << sum(sub[k + 1:]))
    ev.converts += nf * len(sub)
    return np.where(failed, rec, s)
