"""Float evaluation of the (unquantised) IR in NumPy: one small function per op kind, in a registry.

Used for calibration (activation ranges) and for checking the frontend against onnxruntime.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .graph import Graph, Op

KERNELS = {}


def kernel(kind):
    def reg(fn):
        KERNELS[kind] = fn
        return fn
    return reg


def windows(x, kernel_shape, strides, pads, dilations, fill):
    """(B, C, H, W) -> (B, C, OH, OW, kh, kw) view of the padded input."""
    t, l, b, r = pads
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=fill)
    kh, kw = kernel_shape
    dh, dw = dilations
    v = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    return v[:, :, ::strides[0], ::strides[1], ::dh, ::dw]


@kernel("conv")
def _conv(op, x, w, b=None):
    """A depthwise conv as kh*kw scaled adds of the shifted input; any other as one product per group of the
    unfolded input (columns (C/g)*kh*kw x positions), in batch chunks that bound the unfolded copy."""
    a = op.attrs
    g = a["group"]
    v = windows(x, a["kernel"], a["strides"], a["pads"], a["dilations"], 0.0)
    B, C, OH, OW, kh, kw = v.shape
    cout, cg = w.shape[0], C // g
    og = cout // g
    if cg == 1:
        y, buf = np.zeros((B, g, og, OH, OW)), np.empty((B, g, og, OH, OW))
        for i in range(kh):
            for j in range(kw):
                np.multiply(v[:, :, None, :, :, i, j], w[:, 0, i, j].reshape(1, g, og, 1, 1), out=buf)
                y += buf
    else:
        wg = w.reshape(g, og, cg * kh * kw)
        y = np.empty((B, g, og, OH * OW))
        step = max(1, UNFOLD_ELEMS // (C * kh * kw * OH * OW))
        for b0 in range(0, B, step):
            cols = np.ascontiguousarray(v[b0:b0 + step].transpose(0, 1, 4, 5, 2, 3))    # (b, C, kh, kw, OH, OW)
            np.matmul(wg, cols.reshape(-1, g, cg * kh * kw, OH * OW), out=y[b0:b0 + step])
    y = y.reshape(B, cout, OH, OW)
    return y + (b.reshape(1, -1, 1, 1) if b is not None else 0)


UNFOLD_ELEMS = 1 << 23      # float64 elements of one chunk's unfolded input (64 MiB)


@kernel("linear")
def _linear(op, x, w, b=None):
    y = grouped_matmul(x, w, op.attrs.get("group", 1))
    return y + b if b is not None else y


def grouped_matmul(x, w, groups: int = 1):
    """x (..., G*K) times a (K, G*N) weight whose column block g reads x's block g (block-diagonal); one
    BLAS call per group over every row, not one per sample."""
    rows = x.reshape(-1, x.shape[-1])
    if groups == 1:
        y = rows @ w
    else:
        k, n = w.shape[0], w.shape[1] // groups
        y = np.concatenate([rows[:, i * k:(i + 1) * k] @ w[:, i * n:(i + 1) * n] for i in range(groups)], axis=1)
    return y.reshape(x.shape[:-1] + (w.shape[1],))


@kernel("matmul")
def _matmul(op, a, b):
    return a @ b


@kernel("relu")
def _relu(op, x):
    return np.maximum(x, 0)


@kernel("clip")
def _clip(op, x):
    return np.clip(x, op.attrs["lo"], op.attrs["hi"])


@kernel("unary")
def _unary(op, x):
    if "prescale" in op.attrs:     # a scalar product folded in (passes/quantize.py fold_prescales)
        x = x * op.attrs["prescale"]
    return UNARY[op.attrs["fn"]](x, **op.attrs.get("params", {}))


def erf(x):
    """Abramowitz & Stegun 7.1.26: |error| < 1.5e-7, below float32 resolution near 1; vectorised."""
    x = np.asarray(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-a * a))


UNARY = {
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "leaky_relu": lambda x, alpha: np.where(x >= 0, x, alpha * x),
    "hard_sigmoid": lambda x, alpha, beta: np.clip(alpha * x + beta, 0, 1),
    "hard_swish": lambda x: x * np.clip(x / 6 + 0.5, 0, 1),
    "elu": lambda x, alpha: np.where(x > 0, x, alpha * (np.exp(np.minimum(x, 0)) - 1)),
    "exp": np.exp,
    "abs": np.abs,
    "neg": np.negative,
    "sqrt": lambda x: np.sqrt(np.maximum(x, 0)),
    "gelu_erf": lambda x: 0.5 * x * (1 + erf(x / np.sqrt(2))),
    "erf": erf,
    "reciprocal": lambda x: 1 / x,
    "log": np.log,
    "pow": lambda x, p: np.power(x, p),
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))),
    "softplus": lambda x: np.logaddexp(0, x),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "mish": lambda x: x * np.tanh(np.logaddexp(0, x)),
    "selu": lambda x, alpha, gamma: gamma * np.where(x > 0, x, alpha * (np.exp(np.minimum(x, 0)) - 1)),
    "celu": lambda x, alpha: np.maximum(x, 0) + np.minimum(0, alpha * (np.exp(np.minimum(x, 0) / alpha) - 1)),
    "thresholded_relu": lambda x, alpha: np.where(x > alpha, x, 0),
    "shrink": lambda x, bias, lambd: np.where(x < -lambd, x + bias, np.where(x > lambd, x - bias, 0)),
    "swish": lambda x, alpha: x / (1 + np.exp(-alpha * x)),
    "sin": np.sin, "cos": np.cos, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan,
    "sinh": np.sinh, "cosh": np.cosh, "asinh": np.arcsinh, "atanh": np.arctanh,
    "greater": lambda x, c: (x > c).astype(np.float64), "less": lambda x, c: (x < c).astype(np.float64),
    "greater_equal": lambda x, c: (x >= c).astype(np.float64), "less_equal": lambda x, c: (x <= c).astype(np.float64),
    "equal": lambda x, c: (x == c).astype(np.float64),
    "floor": np.floor, "ceil": np.ceil, "sign": np.sign, "tan": np.tan, "acosh": np.arccosh, "round": np.rint,
}


@kernel("maxpool")
def _maxpool(op, x):
    a = op.attrs
    return windows(x, a["kernel"], a["strides"], a["pads"], a["dilations"], -np.inf).max(axis=(4, 5))


@kernel("avgpool")
def _avgpool(op, x):
    a = op.attrs
    s = windows(x, a["kernel"], a["strides"], a["pads"], a["dilations"], 0.0).sum(axis=(4, 5))
    return s / pool_counts(x.shape[2:], a)


def pool_counts(hw, a):
    """Divisor per output position: the window size, or only its in-image part (count_include_pad=0)."""
    ones = np.ones((1, 1) + tuple(hw))
    if a["count_include_pad"]:
        t, l, b, r = a["pads"]
        ones = np.pad(ones, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=1.0)
        a = {**a, "pads": (0, 0, 0, 0)}
    t, l, b, r = a["pads"]
    ones = np.pad(ones, ((0, 0), (0, 0), (t, b), (l, r)))
    kh, kw = a["kernel"]
    dh, dw = a["dilations"]
    v = sliding_window_view(ones, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    return v[:, :, ::a["strides"][0], ::a["strides"][1], ::dh, ::dw].sum(axis=(4, 5))


@kernel("gavgpool")
def _gavgpool(op, x):
    return x.mean(axis=(2, 3), keepdims=True)


@kernel("gmaxpool")
def _gmaxpool(op, x):
    return x.max(axis=(2, 3), keepdims=True)


@kernel("add")
def _add(op, a, b):
    return a + b


@kernel("mul")
def _mul(op, a, b):
    return a * b


@kernel("div")
def _div(op, a, b):
    return a / b


@kernel("pow")
def _pow(op, a, b):
    return np.power(a, b)


@kernel("fmod")
def _fmod(op, a, b):
    return np.fmod(a, b)


@kernel("mod")
def _mod(op, a, b):
    return np.mod(a, b)


@kernel("gather")
def _gather(op, ids, table):
    return table[np.asarray(ids, dtype=np.int64)]


@kernel("layernorm")
def _layernorm(op, x, gamma, beta):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + op.attrs["eps"]) * gamma + beta


REDUCE = {"sum": np.sum, "mean": np.mean, "max": np.max, "prod": np.prod,
          "l2": lambda x, axis, keepdims: np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))}


@kernel("reduce")
def _reduce(op, x):
    return REDUCE[op.attrs["fn"]](x, axis=op.attrs["axes"], keepdims=op.attrs["keepdims"])


@kernel("expand")
def _expand(op, x):
    return np.broadcast_to(x, (x.shape[0],) + tuple(op.attrs["shape"]))


def maskfn(ids, mode, shape, on=0.0, off=0.0, table=None, dtype=np.float64):
    """The per-sample token-mask forms of compiler/masks.py, from the integer mask [B, S]."""
    valid = np.asarray(ids).reshape(len(ids), -1) != 0
    if mode == "select":
        return np.where(valid, dtype(on), dtype(off)).astype(dtype).reshape((len(ids),) + tuple(shape))
    return np.asarray(table, dtype)[valid.sum(axis=1)].reshape((len(ids),) + tuple(shape))


@kernel("maskfn")
def _maskfn(op, ids):
    a = op.attrs
    return maskfn(ids, a["mode"], a["shape"], a.get("on", 0.0), a.get("off", 0.0), a.get("table"))


@kernel("concat")
def _concat(op, *xs):
    batch = max(x.shape[0] for x in xs)        # a constant part (a class token) holds one sample
    return np.concatenate([np.broadcast_to(x, (batch,) + x.shape[1:]) for x in xs], axis=op.attrs["axis"])


@kernel("reshape")
def _reshape(op, x):
    return x.reshape((x.shape[0],) + tuple(op.attrs["shape"]))


@kernel("slice")
def _slice(op, x):
    a = op.attrs
    return x[(slice(None),) + tuple(slice(s, e, st) for s, e, st in zip(a["starts"], a["ends"], a["steps"]))]


@kernel("upsample")
def _upsample(op, x):
    for k, f in enumerate(op.attrs["factors"], 1):
        x = np.repeat(x, f, axis=k)
    return x


@kernel("transpose")
def _transpose(op, x):
    return x.transpose(op.attrs["perm"])


@kernel("hardmax")
def _hardmax(op, x):
    y = np.zeros_like(x)
    np.put_along_axis(y, np.expand_dims(np.argmax(x, axis=op.attrs["axis"]), op.attrs["axis"]), 1.0,
                      axis=op.attrs["axis"])
    return y


@kernel("softmax")
def _softmax(op, x):
    e = np.exp(x - x.max(axis=op.attrs["axis"], keepdims=True))
    return e / e.sum(axis=op.attrs["axis"], keepdims=True)


@kernel("lrn")
def _lrn(op, x):
    a = op.attrs
    return x / lrn_denominator(x, a["size"], a["alpha"], a["beta"], a["bias"])


def lrn_denominator(x, size, alpha, beta, bias):
    sq = np.pad(x * x, ((0, 0), ((size - 1) // 2, size // 2), (0, 0), (0, 0)))
    s = sliding_window_view(sq, size, axis=1).sum(axis=-1)
    return (bias + alpha / size * s) ** beta


@kernel("pad")
def _pad(op, x):
    p = op.attrs["pads"]  # per-sample (begin..., end...)
    n = len(p) // 2
    return np.pad(x, ((0, 0),) + tuple(zip(p[:n], p[n:])), constant_values=op.attrs["value"])


@kernel("topk")
def _topk(op, x, by=None):
    """Sparse attention's score mask (passes/sparse_attention.py): the scores x where the mask taken from `by`
    (the predicted scores; x itself when absent) keeps them, the rest the float32 minimum. Same rule as
    runtime/vector.py's sparse_keep, here in float64."""
    by = x if by is None else by
    k, t = op.attrs.get("k"), op.attrs.get("threshold")
    if k is not None and k < by.shape[-1]:
        keep = np.zeros(by.shape, bool)
        np.put_along_axis(keep, np.argsort(-by, axis=-1, kind="stable")[..., :k], True, axis=-1)
    else:
        keep = by >= by.max(axis=-1, keepdims=True) - t if k is None else np.ones(by.shape, bool)
    return np.where(keep, x, float(np.finfo(np.float32).min))


def run_op(op: Op, args):
    y = KERNELS[op.kind](op, *args)
    act = op.attrs.get("act")        # an activation fused into the op by passes.fuse
    return np.clip(y, act[0], act[1]) if act else y


def evaluate(graph: Graph, feeds: dict[str, np.ndarray], keep_all: bool = False, visit=None) -> dict[str, np.ndarray]:
    """Run the float graph; returns the outputs (or every tensor with keep_all). visit(name, value), if given,
    sees the feeds and then every tensor as it is computed; without keep_all a tensor is dropped after its last
    reader, so a pass that only folds each tensor into a statistic holds the live ones only."""
    env = {k: np.asarray(v, dtype=np.float64) for k, v in feeds.items()}
    ops = graph.topo()
    last = {t: i for i, op in enumerate(ops) for t in op.inputs}
    keep = set(graph.outputs)
    if visit is not None:
        for k, v in env.items():
            visit(k, v)
    # a model's own arithmetic may overflow (an inf weight, a huge calibration value): the ranges and weights
    # it yields are checked where they are used (calibrate, quantize), which name the tensor
    with np.errstate(all="ignore"):
        for i, op in enumerate(ops):
            args = [env[t] if t in env else graph.tensors[t].data for t in op.inputs]
            env[op.outputs[0]] = run_op(op, args)
            if visit is not None:
                visit(op.outputs[0], env[op.outputs[0]])
            if not keep_all:
                for t in set(op.inputs):
                    if last.get(t) == i and t in env and t not in keep:
                        del env[t]
    return env if keep_all else {t: env[t] for t in graph.outputs}
