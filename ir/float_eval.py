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
    a = op.attrs
    g = a["group"]
    v = windows(x, a["kernel"], a["strides"], a["pads"], a["dilations"], 0.0)
    B, C, OH, OW, kh, kw = v.shape
    cout = w.shape[0]
    v = v.reshape(B, g, C // g, OH, OW, kh, kw)
    wg = w.reshape(g, cout // g, C // g, kh, kw)
    y = np.einsum("bgchwij,gocij->bgohw", v, wg, optimize=True).reshape(B, cout, OH, OW)
    return y + (b.reshape(1, -1, 1, 1) if b is not None else 0)


@kernel("linear")
def _linear(op, x, w, b=None):
    y = x @ w
    return y + b if b is not None else y


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
    return UNARY[op.attrs["fn"]](x, **op.attrs.get("params", {}))


def _erf(x):
    from math import erf
    return np.vectorize(erf, otypes=[np.float64])(x)


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
    "gelu_erf": lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))),
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))),
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


@kernel("concat")
def _concat(op, *xs):
    return np.concatenate(xs, axis=op.attrs["axis"])


@kernel("reshape")
def _reshape(op, x):
    return x.reshape((x.shape[0],) + tuple(op.attrs["shape"]))


@kernel("transpose")
def _transpose(op, x):
    return x.transpose(op.attrs["perm"])


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


def run_op(op: Op, args):
    y = KERNELS[op.kind](op, *args)
    act = op.attrs.get("act")        # an activation fused into the op by passes.fuse
    return np.clip(y, act[0], act[1]) if act else y


def evaluate(graph: Graph, feeds: dict[str, np.ndarray], keep_all: bool = False) -> dict[str, np.ndarray]:
    """Run the float graph; returns the outputs (or every tensor with keep_all)."""
    env = {k: np.asarray(v, dtype=np.float64) for k, v in feeds.items()}
    for op in graph.topo():
        args = [env[t] if t in env else graph.tensors[t].data for t in op.inputs]
        env[op.outputs[0]] = run_op(op, args)
    return env if keep_all else {t: env[t] for t in graph.outputs}
