"""Digital integer kernels: the exact semantics of the ISA's digital instructions.

Every kernel maps integer arrays to integer arrays with a fixed rounding rule (round half up through a
right shift), so the runtime and the compiler's quantised reference (which calls these same kernels for the
digital ops) agree bit for bit. Crossbar arithmetic lives in crossbar.py.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def rshift_round(v: np.ndarray, shift) -> np.ndarray:
    """floor(v / 2^shift + 1/2) on int64, shift >= 1 (per element or broadcast)."""
    shift = np.asarray(shift, dtype=np.int64)
    return (v + (np.int64(1) << (shift - 1))) >> shift


def requant(acc, mult, shift, zero, lo, hi, bias=None) -> np.ndarray:
    """u8 = clamp(floor(((acc + bias) * mult + 2^(shift-1)) / 2^shift) + zero, lo, hi); mult, shift, bias
    broadcast on the last axis. An integer-valued float acc whose products stay below 2^52 takes the same
    arithmetic in float64: there every step is exact (mult / 2^shift is exact, and so are the products and
    sums of these multiples of 2^-shift), and it is faster than int64 shifts."""
    mult, shift = np.asarray(mult, dtype=np.int64), np.asarray(shift, dtype=np.int64)
    acc = np.asarray(acc)
    b = np.zeros(1, np.int64) if bias is None else np.asarray(bias, dtype=np.int64)
    if acc.dtype.kind == "f" and acc.size:
        peak = max(abs(float(acc.max())), abs(float(acc.min()))) + float(np.abs(b).max())
        if peak * float(mult.max()) + 2.0 ** (int(shift.max()) - 1) + 256 * 2.0 ** int(shift.max()) < 2.0 ** 52:
            m = mult * np.exp2(-shift.astype(np.float64))
            v = acc * m
            v += b * m + 0.5 + zero
            np.floor(v, out=v)
            return np.clip(v, lo, hi, out=v).astype(np.uint8)
    v = rshift_round((acc.astype(np.int64) + b) * mult, shift) + zero
    return np.clip(v, lo, hi).astype(np.uint8)


def quantize(x, scale, zero) -> np.ndarray:
    """Float input -> u8 codes, round half to even (what the input DACs' quantiser does)."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) / scale) + zero, 0, 255).astype(np.uint8)


def dequantize(q, scale, zero, axis=None) -> np.ndarray:
    s = np.asarray(scale, dtype=np.float64)
    if axis is not None and s.ndim:
        shape = [1] * q.ndim
        shape[axis] = -1
        s = s.reshape(shape)
    return ((np.asarray(q, dtype=np.float64) - zero) * s).astype(np.float32)


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
    return table[x]


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


def window_reduce(x, kernel, strides, pads, dilations, fill, ufunc, dtype=None) -> np.ndarray:
    """Reduce every window with ufunc (maximum, add): one pass per kernel offset, not per window."""
    v = windows(x, kernel, strides, pads, dilations, fill)
    out = np.array(v[..., 0, 0], dtype=dtype or x.dtype)
    for ky in range(kernel[0]):
        for kx in range(kernel[1]):
            if ky or kx:
                ufunc(out, v[..., ky, kx], out=out)
    return out


def im2col(x, kernel, strides, pads, dilations, fill) -> np.ndarray:
    """(B, C, H, W) -> (B, OH*OW, C*kh*kw): one crossbar input row per output position, (c, ky, kx) order."""
    v = windows(x, kernel, strides, pads, dilations, fill)
    B, C, OH, OW, kh, kw = v.shape
    return v.transpose(0, 2, 3, 1, 4, 5).reshape(B, OH * OW, C * kh * kw)


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
    return np.clip((2 * num + den) // (2 * den) + zy, lo, hi).astype(np.uint8)


def avgpool(x, zx, kernel, strides, pads, dilations, count_include_pad, mult, shift, zy, lo, hi):
    acc = window_reduce(x.astype(np.int64) - zx, kernel, strides, pads, dilations, 0, np.add)
    counts = pool_counts(x.shape[2:], kernel, strides, pads, dilations, count_include_pad)
    return avg_divide(acc, counts, mult, shift, zy, lo, hi)


def global_avgpool(x, zx, mult, shift, zy, lo, hi):
    acc = (x.astype(np.int64) - zx).sum(axis=(2, 3), keepdims=True)
    return avg_divide(acc, np.int64(x.shape[2] * x.shape[3]), mult, shift, zy, lo, hi)


SOFTMAX_FRAC_BITS = 16


def softmax_table(scale) -> np.ndarray:
    """exp(-scale * d) for code distances d = 0..255, in 16-bit fixed point."""
    return np.round(np.exp(-scale * np.arange(256)) * (1 << SOFTMAX_FRAC_BITS)).astype(np.int64)


def softmax(x, table, axis) -> np.ndarray:
    """Output codes with scale 1/255, zero 0: round(255 * e / sum(e)), e from the exp table."""
    d = x.max(axis=axis, keepdims=True).astype(np.int64) - x
    e = table[d]
    s = e.sum(axis=axis, keepdims=True)
    return ((2 * 255 * e + s) // (2 * s)).astype(np.uint8)


def lrn(x, zx, sx, size, alpha, beta, bias, sy, zy) -> np.ndarray:
    """Local response normalisation across channels, computed in float64 then requantised."""
    v = (x.astype(np.float64) - zx) * sx
    sq = np.pad(v * v, ((0, 0), ((size - 1) // 2, size // 2), (0, 0), (0, 0)))
    s = sliding_window_view(sq, size, axis=1).sum(axis=-1)
    y = v / (bias + alpha / size * s) ** beta
    return np.clip(np.rint(y / sy) + zy, 0, 255).astype(np.uint8)
