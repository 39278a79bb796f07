"""The digital vector unit in float32: the exact semantics of the ISA's v* instructions.

Transformers' ops without weights (layernorm, softmax, GELU, mask arithmetic, pooling, normalisation) run
here. Every kernel takes and returns float32 arrays and rounds to float32 after each elementwise step, as a
float32 SIMD unit would; reductions go over a contiguous last axis (NumPy's pairwise order), so a sample's
result never depends on the batch around it. The runtime and the compiler's quantised reference both call
these functions, so they agree bit for bit. Integer <-> float boundaries: `quant` (float32 -> u8 codes, round
half to even) before a crossbar, `scale_acc` (exact integer psum + bias, times the per-channel scale in
float64, rounded once to float32) after one.
"""
from __future__ import annotations

import numpy as np

F32 = np.float32


def f32(x) -> np.ndarray:
    return np.asarray(x, dtype=F32)


def quant(x, scale: float, zero: int, smooth=None) -> np.ndarray:
    """u8 codes of x (times a per-channel smoothing factor on the last axis, if given)."""
    x = f32(x) if smooth is None else f32(x) * f32(smooth)
    return np.clip(np.rint(x / F32(scale)) + F32(zero), 0, 255).astype(np.uint8)


def scale_acc(acc, bias, scale, act=None) -> np.ndarray:
    """(psum + bias) * scale per channel (last axis), in float64 where every integer is exact, then float32.
    Large accumulators take one fused compiled pass (the same float64 operations, element by element)."""
    acc = np.asarray(acc)
    b, s = np.asarray(bias, np.float64), np.asarray(scale, np.float64)
    if acc.size >= FUSED_MIN and acc.ndim and b.ndim <= 1 and s.ndim <= 1 and acc.dtype in (np.float32, np.float64):
        n = acc.shape[-1]
        y = np.empty(acc.shape, F32)
        _fused_scale()(np.ascontiguousarray(acc).reshape(-1, n), np.ascontiguousarray(np.broadcast_to(b, (n,))),
                       np.ascontiguousarray(np.broadcast_to(s, (n,))), y.reshape(-1, n))
    else:
        y = ((acc.astype(np.float64) + b) * s).astype(F32)
    return clamp(y, *act) if act else y


FUSED_MIN = 1 << 16           # elements from which scale_acc's compiled pass beats NumPy's four
_fused: list = []


def _fused_scale():
    """scale_acc's compiled pass, made on first use (Numba imported only then)."""
    if not _fused:
        from numba import njit

        @njit(cache=True, nogil=True)
        def run(acc, b, s, y):
            for i in range(acc.shape[0]):
                for j in range(acc.shape[1]):
                    y[i, j] = np.float32((np.float64(acc[i, j]) + b[j]) * s[j])
        _fused.append(run)
    return _fused[0]


def gather(ids, codes, rowscale) -> np.ndarray:
    """Embedding rows: int8 codes times their row's scale."""
    ids = np.asarray(ids, dtype=np.int64)
    return codes[ids].astype(F32) * rowscale[ids][..., None]


def maskfn(ids, mode, shape, on=0.0, off=0.0, table=None) -> np.ndarray:
    """Token mask [B, S] -> float32: `select` puts on / off per token at the axis of `shape` of length S;
    `count` looks up table[number of valid tokens] (compiler/masks.py recognises both forms)."""
    valid = np.asarray(ids).reshape(len(ids), -1) != 0
    if mode == "select":
        out = np.where(valid, F32(on), F32(off))
    elif mode == "count":
        out = np.asarray(table, F32)[valid.sum(axis=1)]
    else:
        raise ValueError(f"unknown mask mode '{mode}'")
    return out.reshape((len(ids),) + tuple(shape))


def erf(x):
    """Abramowitz & Stegun 7.1.26 in float32 (|error| < 1.5e-7 before rounding)."""
    a = np.abs(x)
    t = F32(1) / (F32(1) + F32(0.3275911) * a)
    poly = t * (F32(0.254829592) + t * (F32(-0.284496736) + t * (F32(1.421413741) + t * (F32(-1.453152027)
                                                                                  + t * F32(1.061405429)))))
    return np.sign(x) * (F32(1) - poly * np.exp(-a * a))


_SQRT1_2 = F32(np.sqrt(0.5))
_TANH_C = F32(np.sqrt(2 / np.pi))

UNARY = {
    "erf": erf,
    "tanh": np.tanh,
    "sigmoid": lambda x: F32(1) / (F32(1) + np.exp(-x)),
    "exp": np.exp,
    "log": np.log,
    "sqrt": lambda x: np.sqrt(np.maximum(x, F32(0))),
    "abs": np.abs,
    "neg": np.negative,
    "reciprocal": lambda x: F32(1) / x,
    "relu": lambda x: np.maximum(x, F32(0)),
    "gelu_erf": lambda x: F32(0.5) * x * (F32(1) + erf(x * _SQRT1_2)),
    "gelu_tanh": lambda x: F32(0.5) * x * (F32(1) + np.tanh(_TANH_C * (x + F32(0.044715) * x * x * x))),
    "softplus": lambda x: np.logaddexp(F32(0), x),
    "softsign": lambda x: x / (F32(1) + np.abs(x)),
    "mish": lambda x: x * np.tanh(np.logaddexp(F32(0), x)),
    "sin": np.sin, "cos": np.cos, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan,
    "sinh": np.sinh, "cosh": np.cosh, "asinh": np.arcsinh, "atanh": np.arctanh,
    "floor": np.floor, "ceil": np.ceil, "sign": np.sign, "tan": np.tan, "acosh": np.arccosh,
    "round": np.rint,       # (half to even, as ONNX rounds)
    "hard_swish": lambda x: x * np.clip(x * F32(1 / 6) + F32(0.5), F32(0), F32(1)),
}


# functions of one parameter p (the instruction's `p`)
UNARY_P = {
    "leaky_relu": lambda x, p: np.where(x >= 0, x, p * x),
    "elu": lambda x, p: np.where(x > 0, x, p * (np.exp(np.minimum(x, F32(0))) - F32(1))),
    "celu": lambda x, p: np.maximum(x, F32(0)) + np.minimum(F32(0), p * (np.exp(np.minimum(x, F32(0)) / p) - F32(1))),
    "thresholded_relu": lambda x, p: np.where(x > p, x, F32(0)),
    "swish": lambda x, p: x / (F32(1) + np.exp(-p * x)),
    "greater": lambda x, p: (x > p).astype(F32), "less": lambda x, p: (x < p).astype(F32),
    "greater_equal": lambda x, p: (x >= p).astype(F32), "less_equal": lambda x, p: (x <= p).astype(F32),
    "equal": lambda x, p: (x == p).astype(F32),
}


def clamp(x, lo=None, hi=None) -> np.ndarray:
    """Clamp to whichever bounds are given (None or an infinity: no bound on that side)."""
    if lo is not None and np.isfinite(lo):
        x = np.maximum(x, F32(lo))
    if hi is not None and np.isfinite(hi):
        x = np.minimum(x, F32(hi))
    return x


def unary(fn: str, x, p: float = 0.0, lo=None, hi=None) -> np.ndarray:
    x = f32(x)
    with np.errstate(all="ignore"):
        if fn == "pow":
            return (x * x if p == 2 else np.power(x, F32(p))).astype(F32)
        if fn == "clip":
            return clamp(x, lo, hi)
        if fn in UNARY_P:
            return UNARY_P[fn](x, F32(p)).astype(F32)
        return UNARY[fn](x).astype(F32)


BINARY = {"add": np.add, "mul": np.multiply, "div": np.divide, "sub": np.subtract, "pow": np.power, "fmod": np.fmod,
          "mod": np.mod}


def binary(fn: str, a, b) -> np.ndarray:
    with np.errstate(all="ignore"):
        return BINARY[fn](f32(a), f32(b)).astype(F32)


def _last(x, axes):
    """x with the reduced axes moved last and flattened into one contiguous axis."""
    keep = [d for d in range(x.ndim) if d not in axes]
    y = np.ascontiguousarray(x.transpose(keep + list(axes)))
    return y.reshape(y.shape[:len(keep)] + (-1,))


def reduce(fn: str, x, axes, keepdims: bool) -> np.ndarray:
    x = f32(x)
    axes = tuple(a % x.ndim for a in axes)
    y = _last(x, axes)
    if fn == "sum":
        r = y.sum(axis=-1, dtype=F32)
    elif fn == "mean":
        r = y.sum(axis=-1, dtype=F32) / F32(y.shape[-1])
    elif fn == "max":
        r = y.max(axis=-1)
    elif fn == "prod":
        r = y.prod(axis=-1, dtype=F32)
    elif fn == "l2":
        r = np.sqrt((y * y).sum(axis=-1, dtype=F32))
    else:
        raise ValueError(f"unknown reduction '{fn}'")
    if keepdims:
        r = r.reshape(tuple(1 if d in axes else n for d, n in enumerate(x.shape)))
    return r.astype(F32)


def layernorm(x, gamma, beta, eps: float) -> np.ndarray:
    x = np.ascontiguousarray(f32(x))
    n = F32(x.shape[-1])
    mu = x.sum(axis=-1, keepdims=True, dtype=F32) / n
    d = x - mu
    var = (d * d).sum(axis=-1, keepdims=True, dtype=F32) / n
    return (d / np.sqrt(var + F32(eps)) * f32(gamma) + f32(beta)).astype(F32)


def concat(xs, axis: int) -> np.ndarray:
    return np.concatenate([f32(x) for x in xs], axis=axis)


def pad(x, pads, value: float = 0.0) -> np.ndarray:
    n = len(pads) // 2
    return np.pad(f32(x), ((0, 0),) + tuple(zip(pads[:n], pads[n:])), constant_values=F32(value))


def pool(fn: str, x, kernel, strides, pads, dilations, count_include_pad: bool = False) -> np.ndarray:
    """Float32 max / average pooling over 2-D windows (one pass per kernel offset: a fixed summation order)."""
    from .kernels import pool_counts, window_reduce
    x = f32(x)
    if fn == "max":
        return np.ascontiguousarray(window_reduce(x, kernel, strides, pads, dilations, -np.inf, np.maximum))
    s = window_reduce(x, kernel, strides, pads, dilations, 0, np.add)
    counts = pool_counts(x.shape[2:], kernel, strides, pads, dilations, count_include_pad).astype(F32)
    return np.ascontiguousarray(s / counts)


def softmax(x, axis: int) -> np.ndarray:
    x = f32(x)
    axis = axis % x.ndim
    y = np.moveaxis(x, axis, -1)
    e = np.exp(y - y.max(axis=-1, keepdims=True))
    e = np.ascontiguousarray(e)
    s = e / e.sum(axis=-1, keepdims=True, dtype=F32)
    return np.moveaxis(s, -1, axis).astype(F32)


def hardmax(x, axis: int) -> np.ndarray:
    """1 at the first maximum along `axis`, 0 elsewhere (ONNX Hardmax: ties go to the lowest index)."""
    x = f32(x)
    axis = axis % x.ndim
    y = np.zeros_like(x)
    np.put_along_axis(y, np.expand_dims(np.argmax(x, axis=axis), axis), F32(1), axis=axis)
    return y


def expand(x, shape) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(x, (x.shape[0],) + tuple(shape)))


def sparse_keep(x, k: int | None = None, threshold: float | None = None) -> np.ndarray:
    """Sparse attention's mask over the last axis (any float dtype): the k largest entries of each row (ties:
    the lower index), or the entries within `threshold` of the row's maximum."""
    if k is not None:
        if k >= x.shape[-1]:
            return np.ones(x.shape, bool)
        keep = np.zeros(x.shape, bool)
        np.put_along_axis(keep, np.argsort(-x, axis=-1, kind="stable")[..., :k], True, axis=-1)
        return keep
    return x >= x.max(axis=-1, keepdims=True) - x.dtype.type(threshold)


def topk(x, k: int | None = None, threshold: float | None = None, by=None) -> tuple[np.ndarray, np.ndarray]:
    """`vtopk`: the scores x where the mask taken from `by` (predicted scores; x itself when None) keeps them,
    the others the float32 minimum (softmax gives them exact zeros); returns (scores, keep mask)."""
    x = f32(x)
    keep = sparse_keep(x if by is None else f32(by), k, threshold)
    return np.where(keep, x, np.finfo(F32).min).astype(F32), keep
