"""Compiled (Numba) kernel of the sliced crossbar product's ADC-modelled columns: crossbar.mvm's fast path.

For a block of input rows at a time, on every core: one pass over each input row's set bits adds each
crossbar row's levels into that bit's plane (exact float32 sums; a zero code skips its row, a
block-diagonal crossbar's row its columns); every input slice's and recovery slice's column sum is then a
shift-add of planes, so speculation's recovery forms no sum anew. Then the noise (noise.py's keyed draws),
the histogram, the ADC clip or speculation with recovery of the failed columns, and the shift-add into the
output (float64, exact integers). No slice tensor is materialised. crossbar.mvm's NumPy loop is the
reference: the same sums, draws and counts, bit for bit (tests/runtime/test_xbar_kernels.py).
Compiled once per machine (cache=True, in __pycache__); docs/speed.md has the first call's cost.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

ROWS_PER_BLOCK = 32

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S48 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(48)


@njit(cache=True, inline="always")
def _normal(key, counter, table):
    """noise.normals for one counter (same mixing, same table)."""
    z = key + np.uint64(counter) * _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    z = z ^ (z >> _S31)
    return table[np.int64(z >> _S48)]


@njit(cache=True, inline="always")
def _noisy(p, q, e, z):
    """rint(p - q + e * sqrt(p + q) * z), every step in float32 as NumPy does it (sqrt rounded from float64
    to float32 is the float32 square root: the double rounding is innocuous for sqrt)."""
    s = (p - q) + (e * np.float32(math.sqrt(np.float64(p + q)))) * z
    return np.float32(np.rint(np.float64(s)))


@njit(cache=True, inline="always")
def _combine(P, low, width, c):
    """The column sum of an input (sub-)slice of `width` bits from bit `low`, from the bit planes' sums."""
    t = np.float32(0.0)
    for b in range(low + width - 1, low - 1, -1):
        t = t * np.float32(2.0) + P[b, c]
    return t


@njit(cache=True)
def _planes(x, m, g, Pf):
    """Add crossbar row r's levels g[r] into the plane of every set bit of x[m, r]; Pf is (8 planes x C) flat."""
    C = g.shape[1]
    for r in range(x.shape[1]):
        v = np.int64(x[m, r])
        if v == 0:
            continue
        for b in range(8):
            if (v >> b) & 1:
                o = b * C
                for c in range(C):
                    Pf[o + c] += g[r, c]


@njit(cache=True)
def _planes_ranged(x, m, g, cs, ce, Pf):
    """_planes where row r's levels lie in columns cs[r]:ce[r] alone (a block-diagonal crossbar)."""
    C = g.shape[1]
    for r in range(x.shape[1]):
        v = np.int64(x[m, r])
        if v == 0:
            continue
        for b in range(8):
            if (v >> b) & 1:
                o = b * C
                for c in range(cs[r], ce[r]):
                    Pf[o + c] += g[r, c]


@njit(cache=True, inline="always")
def _shift_add(Pf, low, width, C, a):
    """a = every column's sum of an input slice of `width` bits from bit `low`: planes shift-added (flat
    planes, whole rows at a time: vectorised)."""
    for c in range(C):
        a[c] = 0
    for b in range(low + width - 1, low - 1, -1):
        o = b * C
        for c in range(C):
            a[c] = a[c] * np.float32(2.0) + Pf[o + c]


@njit(cache=True, inline="always")
def _sum(P, PN, noisy, hasneg, low, width, c, e, key, ctr, table):
    """A (sub-)slice's column sum as the ADC sees it: exact, or with its keyed noise draw, rounded."""
    p = _combine(P, low, width, c)
    if not noisy:
        return p
    q = _combine(PN, low, width, c) if hasneg else np.float32(0.0)
    return _noisy(p, q, e, _normal(key, ctr, table))


@njit(cache=True, inline="always")
def _clip(a, flo, fhi):
    """Clip the converted sums a to the ADC's range in place; how many lay outside it."""
    ns = 0
    for c in range(a.shape[0]):
        ns += (a[c] > fhi) | (a[c] < flo)
    if ns:
        for c in range(a.shape[0]):
            a[c] = min(max(a[c], flo), fhi)
    return ns


@njit(cache=True, inline="always")
def _add_scaled(tot, w, a):
    """tot += w * a: an input slice's converted sums shift-added (float64, exact integers)."""
    for c in range(a.shape[0]):
        tot[c] += w * np.float64(a[c])


@njit(cache=True, inline="always")
def _fold(tot, col_n, col_coef, row, out, m):
    """Output row m += each column's total into its filter, times the column's +-2^shift."""
    row[:] = 0
    for c in range(tot.shape[0]):
        row[col_n[c]] += col_coef[c] * tot[c]
    for j in range(out.shape[1]):
        out[m, j] += row[j]


# one compiled signature: x and out may be views, the levels and tables are contiguous
_SIG = ("void(uint8[:, :], float32[:, ::1], float32[:, ::1], int64[::1], int64[::1], int64[::1], int64[::1], "
        "float64[::1], float64[::1], int64[::1], int64[::1], int64[::1], int64[::1], int64[::1], int64[::1], "
        "float32[::1], int64, float64, float64, int64, int64, float32, uint64, int64, int64, int64, "
        "float32[::1], float64[:, :], int64[::1], int64[::1])")


def _adc_columns(x, g, gn, cs, ce, col_n, col_phys, col_coef, ish, shifts, widths, sub_off, sub_cnt, sub_low,
                sub_width, sub_scale, recover, lo, hi, hist_lo, nhist, e, key, row0, npass, nphys, table, out,
                counts, hist):
    """Add the ADC-modelled columns' shift-added results into out (M, n) float64.

    x (M, R) u8 codes; g (R, C) float32 levels of the C columns (pos - neg; with noise, pos alone and gn the
    neg levels, (0, 0) where none); row r's nonzero levels lie in columns cs[r]:ce[r]. Column c is physical
    column col_phys[c], adds into filter col_n[c] with factor col_coef[c] (+-2^shift). Input slice i is
    bits shifts[i].. of widths[i], weighted ish[i]. With `recover`, slice i's recovery slices are sub_off[i]
    .. + sub_cnt[i] of sub_low / sub_width / sub_scale. e > 0 draws noise from stream `key`, counter
    ((row0 + m) * npass + pass) * nphys + col_phys. Adds saturated, spec_failures, recovery converts into
    counts[0:3] and the clipped speculative sums' histogram (from hist_lo, nhist bins) into hist.

    Per input row, one pass over its set bits adds each crossbar row's levels into that bit's plane (an
    exact float32 sum); every slice's and recovery slice's column sum is then a shift-add of planes, so
    speculation's recovery forms no sum anew.
    """
    M, R = x.shape
    C = g.shape[1]
    n = out.shape[1]
    nI = shifts.shape[0]
    noisy = e > 0
    hasneg = gn.shape[0] > 0
    dense = R == 0 or (cs.max() == 0 and ce.min() == C)
    flo, fhi = np.float32(lo), np.float32(hi)
    flo_h, fhi_h = np.float32(hist_lo), np.float32(hist_lo + nhist - 1)
    nb = (M + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK
    cnt = np.zeros((nb, 3), np.int64)
    hst = np.zeros((nb, max(nhist, 1)), np.int64)
    for blk in prange(nb):
        P = np.zeros((8, C), np.float32)
        PN = np.zeros((8, C) if noisy and hasneg else (1, 1), np.float32)
        Pf = P.reshape(8 * C)                  # flat: a view per plane in the hot loop costs 10x
        PNf = PN.reshape(PN.size)
        a = np.zeros(C, np.float32)
        q = np.zeros(C, np.float32)
        tot = np.zeros(C, np.float64)
        row = np.zeros(n, np.float64)
        for m in range(blk * ROWS_PER_BLOCK, min(M, (blk + 1) * ROWS_PER_BLOCK)):
            Pf[:] = 0
            if noisy and hasneg:
                PNf[:] = 0
            # separate simple loops: a branch inside the loop nest stops it vectorising (4x slower)
            if dense:
                _planes(x, m, g, Pf)
                if noisy and hasneg:
                    _planes(x, m, gn, PNf)
            else:
                _planes_ranged(x, m, g, cs, ce, Pf)
                if noisy and hasneg:
                    _planes_ranged(x, m, gn, cs, ce, PNf)
            tot[:] = 0
            for i in range(nI):
                _shift_add(Pf, shifts[i], widths[i], C, a)
                if noisy:
                    if hasneg:
                        _shift_add(PNf, shifts[i], widths[i], C, q)
                    ctr = ((row0 + m) * npass + i) * nphys
                    for c in range(C):
                        a[c] = _noisy(a[c], q[c], e, _normal(key, ctr + col_phys[c], table))
                if nhist:
                    for c in range(C):
                        h = min(max(a[c], flo_h), fhi_h)
                        hst[blk, np.int64(h) - hist_lo] += 1
                if recover:
                    k0, k1 = sub_off[i], sub_off[i] + sub_cnt[i]
                    for c in range(C):
                        if (a[c] <= flo) | (a[c] >= fhi):
                            cnt[blk, 1] += 1
                            cnt[blk, 2] += k1 - k0
                            rec = np.float32(0.0)
                            for k in range(k0, k1):
                                ctrk = ((row0 + m) * npass + nI + k) * nphys + col_phys[c]
                                s = _sum(P, PN, noisy, hasneg, sub_low[k], sub_width[k], c, e, key, ctrk, table)
                                if s > fhi or s < flo:
                                    cnt[blk, 0] += 1
                                    s = min(max(s, flo), fhi)
                                rec += s * sub_scale[k]
                            a[c] = rec
                else:
                    cnt[blk, 0] += _clip(a, flo, fhi)
                _add_scaled(tot, ish[i], a)
            _fold(tot, col_n, col_coef, row, out, m)
    for blk in range(nb):
        for k in range(3):
            counts[k] += cnt[blk, k]
        for h in range(nhist):
            hist[h] += hst[blk, h]



_compiled_adc_columns = []


def adc_columns(*args):
    """_adc_columns compiled for its one signature on first use, not at import: a cold cache then compiles
    it only for programs that have a sparse, block-diagonal crossbar (the GEMM path takes the others)."""
    if not _compiled_adc_columns:
        _compiled_adc_columns.append(njit(_SIG, parallel=True, cache=True)(_adc_columns))
    return _compiled_adc_columns[0](*args)

# ---- the GEMM path's epilogue: column sums formed by BLAS (crossbar._gemm_columns, dynamic._compiled) -------

@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _sub_sums(bits, nk, g, whole, scale, d):
    """Recovery slices' column sums into d[:nk + 1]: the first nk are dot products of their bits (bits[k])
    with the column's levels g; the last (least significant) is the whole slice's exact sum less the others.
    Small integers in float32: exact in any order below 2^24, so the dot products may vectorise."""
    for k in range(nk):
        b = bits[k]
        t = np.float32(0.0)
        for r in range(g.shape[0]):
            t += b[r] * g[r]
        d[k] = t
    t = whole
    for k in range(nk):
        t -= scale[k] * d[k]
    d[nk] = t


@njit(cache=True, nogil=True)
def _row_planes(bits, nk, G, P):
    """Every column's recovery slice sums at once, P[k] = bits[k] @ G: G's row r (contiguous) times each
    nonzero value, a zero costing nothing. Cheaper than dot products where many of a row's columns fail."""
    C = G.shape[1]
    for k in range(nk):
        for c in range(C):
            P[k, c] = 0
        for r in range(G.shape[0]):
            b = bits[k, r]
            if b != 0:
                for c in range(C):
                    P[k, c] += b * G[r, c]


# one compiled signature: the sums, codes and outputs may be views; the levels are contiguous (the recovery
# slices' dot products vectorise over them)
_EPI_SIG = ("void(float32[:, :, :], float32[:, :, :], uint8[:, :], float32[:, ::1], float32[:, ::1], float32[:, ::1], "
            "float32[:, ::1], int64[::1], float64[::1], int64[::1], float64[::1], int64[::1], int64[::1], int64[::1], "
            "int64[::1], int64[::1], float32[::1], int64, float64, float64, int64, int64, float32, uint64, int64, "
            "int64, int64, float32[::1], float64[:, :], int64[::1], int64[::1])")


@njit(_EPI_SIG, cache=True, nogil=True)
def adc_epilogue(S, SQ, x, G, GN, GT, GTN, col_n, col_coef, col_phys, ish, shifts, sub_off, sub_cnt, sub_low,
                 sub_width, sub_scale, recover, lo, hi, hist_lo, nhist, e, key, row0, npass, nphys, table, out,
                 counts, hist):
    """The ADC and the shift-add of column sums formed elsewhere (BLAS): the GEMM path's compiled half.

    S (nI, k, C) float32 holds every input slice's exact column sums of the k input rows x (k, R) u8 (with
    noise: the adding devices' sums, and SQ the subtracting ones', (0, 0, 0) where none). G (R, C) and GT (its
    contiguous transpose) are the columns' levels (with noise: the adding devices'; GN, GTN the subtracting
    ones'). Then, as adc_columns: the keyed noise, the histogram, the clip or speculation with recovery, and
    the shift-add into out (k, n) float64; counts and histogram add into counts / hist. A failed column's
    recovery slices but the last are dot products of their bits with its levels, or, where a row has more
    failed columns than nonzero values, every column's sums from the set bits' rows of G; the last is the whole
    slice's exact sum less the others. (BLAS products of every column's recovery slices measured slower,
    even at 17% failures.)
    """
    nI, k, C = S.shape
    R = x.shape[1]
    n = out.shape[1]
    noisy = e > 0
    hasneg = SQ.shape[0] > 0
    flo, fhi = np.float32(lo), np.float32(hi)
    flo_h, fhi_h = np.float32(hist_lo), np.float32(hist_lo + nhist - 1)
    bits = np.zeros((8, R), np.float32)
    xr = np.zeros(R, np.uint8)
    P, PQ = np.zeros((8, C), np.float32), np.zeros((8, C), np.float32)
    dp, dq = np.zeros(8, np.float32), np.zeros(8, np.float32)
    a = np.zeros(C, np.float32)
    tot = np.zeros(C, np.float64)
    row = np.zeros(n, np.float64)
    for m in range(k):
        tot[:] = 0
        for i in range(nI):
            if noisy:
                ctr = ((row0 + m) * npass + i) * nphys
                for c in range(C):
                    q = SQ[i, m, c] if hasneg else np.float32(0.0)
                    a[c] = _noisy(S[i, m, c], q, e, _normal(key, ctr + col_phys[c], table))
            else:
                a[:] = S[i, m]
            if nhist:
                for c in range(C):
                    h = min(max(a[c], flo_h), fhi_h)
                    hist[np.int64(h) - hist_lo] += 1
            if recover:
                nf = 0
                for c in range(C):
                    nf += (a[c] <= flo) | (a[c] >= fhi)
                if nf:
                    k0, k1 = sub_off[i], sub_off[i] + sub_cnt[i]
                    nk = k1 - k0 - 1
                    counts[1] += nf
                    counts[2] += nf * (k1 - k0)
                    nnz = 0
                    xr[:] = x[m]                  # contiguous: the loops below vectorise
                    for kk in range(nk):
                        sh, mk = sub_low[k0 + kk], (1 << sub_width[k0 + kk]) - 1
                        for r in range(R):
                            v = (xr[r] >> sh) & mk
                            bits[kk, r] = np.float32(v)
                            nnz += v != 0
                    planes = nnz * C < nf * nk * R
                    if planes:
                        _row_planes(bits, nk, G, P)
                        if noisy and hasneg:
                            _row_planes(bits, nk, GN, PQ)
                    for c in range(C):
                        if (a[c] <= flo) | (a[c] >= fhi):
                            if planes:
                                t = S[i, m, c]
                                tq = SQ[i, m, c] if noisy and hasneg else np.float32(0.0)
                                for kk in range(nk):
                                    dp[kk], dq[kk] = P[kk, c], PQ[kk, c]
                                    t -= sub_scale[k0 + kk] * dp[kk]
                                    tq -= sub_scale[k0 + kk] * dq[kk]
                                dp[nk], dq[nk] = t, tq
                            else:
                                _sub_sums(bits, nk, GT[c], S[i, m, c], sub_scale[k0:], dp)
                                if noisy and hasneg:
                                    _sub_sums(bits, nk, GTN[c], SQ[i, m, c], sub_scale[k0:], dq)
                            rec = np.float32(0.0)
                            for kk in range(k0, k1):
                                s = dp[kk - k0]
                                if noisy:
                                    q = dq[kk - k0] if hasneg else np.float32(0.0)
                                    ctrk = ((row0 + m) * npass + nI + kk) * nphys + col_phys[c]
                                    s = _noisy(s, q, e, _normal(key, ctrk, table))
                                if s > fhi or s < flo:
                                    counts[0] += 1
                                    s = min(max(s, flo), fhi)
                                rec += s * sub_scale[kk]
                            a[c] = rec
            else:
                counts[0] += _clip(a, flo, fhi)
            _add_scaled(tot, ish[i], a)
        _fold(tot, col_n, col_coef, row, out, m)
