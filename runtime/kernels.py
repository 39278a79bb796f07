"""Digital integer kernels: the exact semantics of the ISA's digital instructions.

Every kernel maps integer arrays to integer arrays with a fixed rounding rule (round half up through a
right shift), so the runtime and the compiler's quantised reference (which calls these same kernels for the
digital ops) agree bit for bit. Crossbar arithmetic lives in crossbar.py.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import parallel


def rshift_round(v: np.ndarray, shift) -> np.ndarray:
    """floor(v / 2^shift + 1/2) on int64, shift >= 1 (per element or broadcast)."""
    shift = np.asarray(shift, dtype=np.int64)
    return (v + (np.int64(1) << (shift - 1))) >> shift


def requant(acc, mult, shift, zero, lo, hi, bias=None, bound=None) -> np.ndarray:
    """u8 = clamp(floor(((acc + bias) * mult + 2^(shift-1)) / 2^shift) + zero, lo, hi); mult, shift, bias
    broadcast on the last axis. An integer-valued float acc takes the same arithmetic in float64 where that is
    exact (RequantPlan), which is faster than int64 shifts; `bound` (the largest |acc| there can be) lets
    it fold the bias into the rounding constant, one pass fewer."""
    acc = np.asarray(acc)
    plan = requant_plan(acc.dtype, acc.shape[-1] if acc.ndim else 1, mult, shift, zero, lo, hi, bias, bound)
    if plan is not None and acc.ndim and acc.size:
        a2 = acc.reshape(-1, acc.shape[-1])
        out = np.empty(a2.shape, np.uint8)
        parallel.rows(len(a2), lambda r0, r1: plan(a2[r0:r1], out[r0:r1]), a2.shape[1])
        return out.reshape(acc.shape)
    mult, shift = np.asarray(mult, dtype=np.int64), np.asarray(shift, dtype=np.int64)
    b = np.zeros(1, np.int64) if bias is None else np.asarray(bias, dtype=np.int64)
    v = rshift_round((acc.astype(np.int64) + b) * mult, shift) + zero
    return np.clip(v, lo, hi).astype(np.uint8)


def requant_plan(dtype, n, mult, shift, zero, lo, hi, bias=None, bound=None) -> RequantPlan | None:
    """The float64 requantisation of float accumulators with n channels, where it is exact; else None."""
    mult, shift = np.asarray(mult, dtype=np.int64), np.asarray(shift, dtype=np.int64)
    b = np.zeros(1, np.int64) if bias is None else np.asarray(bias, dtype=np.int64)
    c0 = 0.5 + zero
    reach = max(abs(lo - c0), abs(hi + 1 - c0), hi + 1) * 2.0 ** int(shift.max(initial=1))
    if np.dtype(dtype).kind != "f" or not 0 <= lo <= hi or reach > 2.0 ** 53:
        return None
    # folded: acc * m and b * m + c0 are each exact (multiples of 2^-shift below 2^53 of them)
    fold = bound is not None and float(bound) * float(mult.max(initial=0)) < 2.0 ** 53 and bool(np.all(
        np.abs(b * mult).astype(np.float64) + abs(c0) * np.exp2(shift.astype(np.float64)) < 2.0 ** 53))
    return RequantPlan(n, mult, shift, c0, lo, hi, b, fold)


REQUANT_BLOCK = 1 << 16     # float64 elements per block (512 KiB): a block's passes stay in cache


class RequantPlan:
    """floor(clip((acc + b) * m + c0, lo, hi)) in float64, m = mult / 2^shift (exact). acc + b is exact. The
    product is exact wherever the result can land in [lo, hi + 1): there |(acc + b) * mult| is below
    |lo - c0|, |hi + 1 - c0| times 2^shift, at most 2^53 (requant_plan checks), and so is the sum with c0, a
    multiple of 2^-shift below hi + 1. Elsewhere rounding is monotonic and lo - c0, hi + 1 - c0 are exact,
    so a value below or above the range stays there. With lo >= 0 the cast's truncation is the floor.
    `fold` (requant_plan has checked acc * m and b * m + c0 are exact): acc * m + (b * m + c0), the same sum
    of two exact terms, so the same argument holds, in three passes instead of four.
    Calling it requantises (k, n) rows block by block; requant calls it on each thread's rows."""

    def __init__(self, n, mult, shift, c0, lo, hi, b, fold):
        self.rows = max(1, REQUANT_BLOCK // n)
        m64 = np.broadcast_to(mult * np.exp2(-shift.astype(np.float64)), (n,))
        b64 = np.broadcast_to(b.astype(np.float64), (n,))
        # whole-block operands: same-shape contiguous arrays run as one flat SIMD loop, a broadcast row does not
        self.m = np.tile(m64, (self.rows, 1))
        self.add = np.tile(m64 * b64 + c0 if fold else b64, (self.rows, 1))
        self.c0, self.lo, self.hi, self.fold = c0, lo, hi, fold

    def __call__(self, a: np.ndarray, out: np.ndarray) -> None:
        """Requantise float rows a (k, n) into u8 out (k, n)."""
        buf = np.empty((min(self.rows, len(a)), a.shape[1]))
        for s in range(0, len(a), self.rows):
            k = min(self.rows, len(a) - s)
            v, m, add = buf[:k], self.m[:k], self.add[:k]
            if self.fold:
                np.copyto(v, a[s:s + k])               # a cast, then same-type passes: a mixed multiply is slower
                v *= m
                v += add
            else:
                np.add(a[s:s + k], add, out=v)         # the cast to float64 and the bias in one pass
                v *= m
                v += self.c0
            np.clip(v, self.lo, self.hi, out=out[s:s + k], casting="unsafe")


def quantize(x, scale, zero) -> np.ndarray:
    """Float input -> u8 codes, round half to even (what the input DACs' quantiser does)."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) / scale) + zero, 0, 255).astype(np.uint8)


def dequantize(q, scale, zero, axis=None) -> np.ndarray:
    """(q - zero) x scale; a scale (and zero) with one value per channel lies along `axis` if given."""
    s, z = np.asarray(scale, dtype=np.float64), np.asarray(zero, dtype=np.float64)
    if axis is not None:
        shape = [1] * np.ndim(q)
        shape[axis] = -1
        s, z = (s.reshape(shape) if s.ndim else s), (z.reshape(shape) if z.ndim else z)
    return ((np.asarray(q, dtype=np.float64) - z) * s).astype(np.float32)


def rescale(x, zx, mult, shift, zy, lo=0, hi=255) -> np.ndarray:
    if mult == 1 << shift and zx == zy:   # same quantisation: a copy
        return np.clip(x, lo, hi).astype(np.uint8)
    return requant(x.astype(np.int64) - zx, mult, shift, zy, lo, hi)


def add(a, za, ma, b, zb, mb, shift, zy, lo, hi) -> np.ndarray:
    v = (a.astype(np.int64) - za) * ma + (b.astype(np.int64) - zb) * mb
    return np.clip(rshift_round(v, shift) + zy, lo, hi).astype(np.uint8)


def mul(a, za, b, zb, mult, shift, zy, lo, hi) -> np.ndarray:
    v = (a.astype(np.int64) - za) * (b.astype(np.int64) - zb)
    return requant(v, mult, shift, zy, lo, hi)


def lut(x, table) -> np.ndarray:
    """table[x]; a (C, 256) table holds one row per channel (axis 1 of x)."""
    if table.ndim == 2:
        return table[np.arange(table.shape[0]).reshape((1, -1) + (1,) * (x.ndim - 2)), x]
    return table[x]


def slice_axes(x, starts, ends, steps) -> np.ndarray:
    """x[:, s0:e0:st0, s1:e1:st1, ...]: one (start, end, step) per per-sample axis, steps positive."""
    return x[(slice(None),) + tuple(slice(s, e, st) for s, e, st in zip(starts, ends, steps))]


def upsample(x, factors) -> np.ndarray:
    """Nearest-neighbour upsampling: element i of per-sample axis k repeated factors[k] times."""
    for k, f in enumerate(factors, 1):
        if f != 1:
            x = np.repeat(x, f, axis=k)
    return x


def pad_hw(x, pads, fill):
    t, l, b, r = pads
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=fill)


def windows(x, kernel, strides, pads, dilations, fill):
    """(B, C, H, W) -> (B, C, OH, OW, kh, kw) view of the padded input."""
    xp = pad_hw(x, pads, fill)
    kh, kw = kernel
    dh, dw = dilations
    v = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    return v[:, :, ::strides[0], ::strides[1], ::dh, ::dw]


def out_hw(x, kernel, strides, pads, dilations):
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    H, W = x.shape[2] + pads[0] + pads[2], x.shape[3] + pads[1] + pads[3]
    return (H - (kh - 1) * dh - 1) // sh + 1, (W - (kw - 1) * dw - 1) // sw + 1


def _channels_last_windows(x, kernel, strides, pads, dilations, fill):
    """(B, C, H, W) -> the (B, OH, OW, C) view of each kernel offset (ky, kx), over a channels-last copy of
    the padded input (no copy where x is channels-last in memory and unpadded)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    t, l, b, r = pads
    OH, OW = out_hw(x, kernel, strides, pads, dilations)
    xt = x.transpose(0, 2, 3, 1)
    if any(pads):
        xp = np.full((x.shape[0], x.shape[2] + t + b, x.shape[3] + l + r, x.shape[1]), fill, dtype=x.dtype)
        xp[:, t:t + x.shape[2], l:l + x.shape[3]] = xt
        xt = xp
    return {(ky, kx): xt[:, ky * dh: ky * dh + (OH - 1) * sh + 1: sh, kx * dw: kx * dw + (OW - 1) * sw + 1: sw]
            for ky in range(kh) for kx in range(kw)}


def window_reduce(x, kernel, strides, pads, dilations, fill, ufunc, dtype=None) -> np.ndarray:
    """Reduce every window with ufunc (maximum, add): one pass per kernel offset, not per window. Runs
    channels-last, so each pass moves whole channel vectors; returns (B, C, OH, OW), channels-last in memory."""
    OH, OW = out_hw(x, kernel, strides, pads, dilations)
    out = np.empty((x.shape[0], OH, OW, x.shape[1]), dtype=dtype or x.dtype)

    def part(b0, b1):
        views = iter(_channels_last_windows(x[b0:b1], kernel, strides, pads, dilations, fill).values())
        o = out[b0:b1]
        np.copyto(o, next(views))
        for v in views:
            ufunc(o, v, out=o)

    parallel.rows(len(x), part, OH * OW * x.shape[1] * kernel[0] * kernel[1])
    return out.transpose(0, 3, 1, 2)


def im2col(x, kernel, strides, pads, dilations, fill) -> np.ndarray:
    """(B, C, H, W) -> (B, OH*OW, C*kh*kw): one crossbar input row per output position, (c, ky, kx) order.
    One strided copy per kernel offset, channels-last."""
    (kh, kw), (B, C) = kernel, x.shape[:2]
    OH, OW = out_hw(x, kernel, strides, pads, dilations)
    if kh == kw == 1:
        v = _channels_last_windows(x, kernel, strides, pads, dilations, fill)[0, 0]
        return np.ascontiguousarray(v).reshape(B, OH * OW, C)
    out = np.empty((B, OH, OW, C, kh, kw), dtype=x.dtype)

    def part(b0, b1):
        for (ky, kx), v in _channels_last_windows(x[b0:b1], kernel, strides, pads, dilations, fill).items():
            out[b0:b1, ..., ky, kx] = v

    parallel.rows(B, part, OH * OW * C * kh * kw)
    return out.reshape(B, OH * OW, C * kh * kw)


def maxpool(x, kernel, strides, pads, dilations) -> np.ndarray:
    # pad with code 0: the smallest code never wins over a real element of the window
    return window_reduce(x, kernel, strides, pads, dilations, 0, np.maximum)


def pool_counts(hw, kernel, strides, pads, dilations, count_include_pad) -> np.ndarray:
    """Elements each average divides by: the whole window, or only its in-image part."""
    ones = np.ones((1, 1) + tuple(hw), dtype=np.int64)
    if count_include_pad:
        ones = pad_hw(ones, pads, 1)
        pads = (0, 0, 0, 0)
    return window_reduce(ones, kernel, strides, pads, dilations, 0, np.add)[0, 0]


def avg_divide(acc, counts, mult, shift, zy, lo, hi) -> np.ndarray:
    """round(acc * (mult / 2^shift) / count) + zy, count per position, exact in int64."""
    num = acc.astype(np.int64) * mult
    den = counts.astype(np.int64) << shift
    if den.ndim == 0 and not int(den) & (int(den) - 1):      # a power of two: a shift, not an int64 division
        q = (2 * num + den) >> int(den).bit_length()
    else:
        q = (2 * num + den) // (2 * den)
    return np.clip(q + zy, lo, hi).astype(np.uint8)


def avgpool(x, zx, kernel, strides, pads, dilations, count_include_pad, mult, shift, zy, lo, hi):
    acc = window_reduce(x.astype(np.int64) - zx, kernel, strides, pads, dilations, 0, np.add)
    counts = pool_counts(x.shape[2:], kernel, strides, pads, dilations, count_include_pad)
    return avg_divide(acc, counts, mult, shift, zy, lo, hi)


def global_avgpool(x, zx, mult, shift, zy, lo, hi):
    hw = x.shape[2] * x.shape[3]
    # the narrowest exact sum type: the reduction's speed is its casts
    dt = np.uint16 if x.dtype == np.uint8 and hw * 255 < 1 << 16 else np.int64
    acc = x.sum(axis=(2, 3), keepdims=True, dtype=dt).astype(np.int64) - zx * hw
    return avg_divide(acc, np.int64(hw), mult, shift, zy, lo, hi)


SOFTMAX_FRAC_BITS = 16


def softmax_table(scale) -> np.ndarray:
    """exp(-scale * d) for code distances d = 0..255, in 16-bit fixed point."""
    return np.round(np.exp(-scale * np.arange(256)) * (1 << SOFTMAX_FRAC_BITS)).astype(np.int64)


def softmax(x, table, axis, mult: int = 255, zero: int = 0) -> np.ndarray:
    """Output codes round(mult * e / sum(e)) + zero (half up, clamped to 0..255), e from the exp table: scale
    1/255, zero 0 by default; a quantised model's own output grid takes mult = floor(1 / its scale) and its zero
    point (onnxruntime's QLinearSoftmax rule, passes/quantize.py)."""
    d = x.max(axis=axis, keepdims=True).astype(np.int64) - x
    e = table[d]
    s = e.sum(axis=axis, keepdims=True)
    if mult == 255 and zero == 0:
        return ((2 * 255 * e + s) // (2 * s)).astype(np.uint8)
    return np.clip((2 * mult * e + s) // (2 * s) + zero, 0, 255).astype(np.uint8)


def lrn(x, zx, sx, size, alpha, beta, bias, sy, zy) -> np.ndarray:
    """Local response normalisation across channels, computed in float64 then requantised."""
    v = (x.astype(np.float64) - zx) * sx
    sq = np.pad(v * v, ((0, 0), ((size - 1) // 2, size // 2), (0, 0), (0, 0)))
    s = sliding_window_view(sq, size, axis=1).sum(axis=-1)
    y = v / (bias + alpha / size * s) ** beta
    return np.clip(np.rint(y / sy) + zy, 0, 255).astype(np.uint8)


# ---- sparse attention's score predictor (passes/sparse_attention.py; `sdpred`) -----------------------------
# A low-bit filtering round in the manner of Energon (Zhou et al., arXiv 2110.09310): the predicted score is the
# product of the 8-bit codes cut to their top `bits` bits, each taken at the middle of the range its dropped
# bits span (an unbiased cut), minus the zero points as the exact product does; at 8 bits, the exact score.
# The reference and the runtime both call predicted_acc, so `--ideal` equals the reference bit for bit.

def msb_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """u8 codes cut to their top `bits` bits (1..8): ((c >> s) << s) + 2^(s-1), s = 8 - bits, as float64."""
    if not 1 <= bits <= 8:
        raise ValueError(f"predictor bits must lie in 1..8, got {bits}")
    c = np.asarray(codes).astype(np.int64)
    s = 8 - bits
    return (c if s == 0 else ((c >> s) << s) + (1 << (s - 1))).astype(np.float64)


def predicted_acc(a: np.ndarray, za: int, w: np.ndarray, zb: int, bits: int) -> np.ndarray:
    """The predictor's integer accumulators (msb(a) - za) @ (msb(w) - zb), as float64 (every sum exact)."""
    return np.rint((msb_codes(a, bits) - za) @ (msb_codes(w, bits) - zb))
