"""8-bit quantisation (RAELLA thesis sec. 2.4, 6.1).

Contract: every activation becomes u8 codes with a per-tensor (scale, zero) from the calibration range (or
from the model's own Q/DQ parameters); crossbar weights become symmetric per-output-channel int8 in
[-127, 127] (coarser for a channel whose bias would not fit the accumulator otherwise), except that an
already-quantised model's weights keep their own codes, scales and zero points (model_weights); each op
gets the integer parameters of its digital arithmetic in op.attrs["q"] (fixed-point multipliers as
mult / 2^shift with mult in [2^30, 2^31)). A graph output produced directly by a crossbar op without
activation stays a 32-bit accumulator with a per-channel scale, so logits are not rounded to 8 bits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ir import CompileError, Graph, Op
from ir.float_eval import UNARY
from runtime.kernels import softmax_table

from .quantize_vector import VECTOR_KINDS, VECTOR_ONLY_FNS, quantize_vector, wants_vector

F32_MAX = float(np.finfo(np.float32).max)
PASS_THROUGH = ("maxpool", "gmaxpool", "reshape", "transpose", "pad", "slice", "upsample")


def qparams(lo: float, hi: float) -> tuple[float, int]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0
    if not scale > 0 or not math.isfinite(scale):
        return 1.0, 0
    return scale, int(np.clip(round(-lo / scale), 0, 255))


def fixed_point(m: float) -> tuple[int, int]:
    """m ~= mult / 2^shift, mult in [2^30, 2^31), 1 <= shift <= 62."""
    if m <= 0:
        return 0, 1
    e = math.floor(math.log2(m))
    shift = 30 - e
    if shift > 62:
        return int(round(m * 2 ** 62)), 62
    if shift < 1:
        raise CompileError(f"requantisation multiplier {m:g} is too large")
    mult = int(round(m * 2 ** shift))
    if mult >= 1 << 31:
        mult, shift = mult >> 1, shift - 1
    return mult, shift


def fixed_point_vec(ms) -> tuple[np.ndarray, np.ndarray]:
    pairs = [fixed_point(float(m)) for m in np.ravel(ms)]
    return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)


def common_shift(*ms: float) -> tuple[list[int], int]:
    """Several multipliers over one shift (for add / concat)."""
    _, shift = fixed_point(max(abs(m) for m in ms))
    return [int(round(m * 2 ** shift)) for m in ms], shift


def code(v: float, scale: float, zero: int) -> int:
    return int(np.clip(round(v / scale) + zero, 0, 255)) if math.isfinite(v) else (0 if v < 0 else 255)


@dataclass
class QuantizeReport:
    activations: int = 0
    weights_quantised: int = 0
    weight_rms_error: dict = field(default_factory=dict)   # per layer, relative to the weight range
    accumulator_outputs: list = field(default_factory=list)
    vector: str = "int8"           # digital ops: integer (int8) or the float32 vector unit (fp32)
    quant_ops: int = 0
    smoothed: list = field(default_factory=list)
    # per layer, the channels whose bias did not fit at their weight scale: the coarser scale they got (factor),
    # their weight rms error relative to their own max |w|, and the bound on their pre-activation change
    raised_scales: dict = field(default_factory=dict)
    # per layer whose codes an already-quantised model gave (kept as they are): their type, granularity,
    # how many channels have a nonzero zero point, the integer weight range (code - zero), where the bias is from
    model_weights: dict = field(default_factory=dict)


class Quantize:
    name = "quantize"

    def run(self, g: Graph, ctx) -> QuantizeReport:
        rep = QuantizeReport()
        for name, (lo, hi) in ctx.ranges.items():
            # NaN is caught where the range is used. A range open below alone is a mask's -inf (attention's
            # causal or window masks, which softmax turns into zeros); overflow from huge data reaches +inf
            if hi > F32_MAX or (lo < -F32_MAX and math.isfinite(lo)):
                raise CompileError(f"tensor {name}: calibration range [{lo:.3g}, {hi:.3g}] overflows float32 (the "
                                   "model's own arithmetic would give infinity); scale the calibration data")
        if wants_vector(g, ctx.options):
            quantize_vector(self, g, ctx, rep)
            rep.activations = sum(1 for t in g.tensors.values() if not t.is_const)
            return rep
        for name in g.inputs:
            self._set_from_range(g, ctx, name)
        fold_prescales(g)
        fold_channel_affines(g)
        for op in g.topo():
            if op.kind not in QUANTISERS:
                raise CompileError(f"node {op.name}: no quantised form for op '{op.kind}'" + (
                    " (it runs on the float32 vector unit: --vector auto or fp32)" if op.kind in VECTOR_KINDS else ""))
            try:
                QUANTISERS[op.kind](self, g, ctx, op, rep)
            except CompileError as e:
                if op.name in str(e):
                    raise
                raise CompileError(f"node {op.name} ({op.kind}): {e}") from None
        rep.activations = sum(1 for t in g.tensors.values() if t.dtype in ("u8", "i32"))
        return rep

    # -- tensors -------------------------------------------------------------------------------------
    def _set_from_range(self, g, ctx, name):
        t = g.tensors[name]
        if t.qhint:
            t.scale, t.zero = t.qhint["scale"], t.qhint["zero"]
        elif name in ctx.ranges:
            lo, hi = ctx.ranges[name]
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise CompileError(f"tensor {name}: calibration range [{lo}, {hi}] is not finite")

            t.scale, t.zero = qparams(lo, hi)
        else:
            raise CompileError(f"tensor {name}: no calibration range")
        t.dtype = "u8"

    def _inherit(self, g, src, dst):
        s, d = g.tensors[src], g.tensors[dst]
        d.scale, d.zero, d.dtype = s.scale, s.zero, "u8"

    def _clamp(self, op, t):
        act = op.attrs.get("act")
        if not act:
            return 0, 255
        return max(0, code(act[0], t.scale, t.zero)), min(255, code(act[1], t.scale, t.zero))

    def _operand(self, g, name):
        """(codes, scale, zero) of an input; constants get quantised on the spot."""
        t = g.tensors[name]
        h = t.qhint
        if t.is_const and t.dtype != "u8" and h and "codes" in h and np.ndim(h["scale"]) == 0 \
                and h["codes"].shape == t.data.shape:     # the model's own codes (compiler/onnx_qdq.py)
            shift = 128 if h["dtype"] == "int8" else 0
            t.scale, t.zero = h["scale"], h["zero"] + shift
            t.data, t.dtype = (h["codes"] + shift).astype(np.uint8), "u8"
        if t.is_const and t.dtype != "u8":
            t.scale, t.zero = qparams(float(t.data.min()), float(t.data.max()))
            t.data = np.clip(np.rint(t.data / t.scale) + t.zero, 0, 255).astype(np.uint8)
            t.dtype = "u8"
        return t.scale, t.zero


def fold_prescales(g: Graph) -> None:
    """mul(x, scalar c) -> unary f, where a quantised model states x's and f's quantisation but leaves the
    product in float (onnxruntime's quantiser leaves GELU's Div by sqrt 2 before Erf unquantised): one table
    f(c * x) over x's codes, as the model computes it, instead of rounding the product to a grid of its own."""
    for op in g.topo():
        if op.kind != "unary" or "prescale" in op.attrs:
            continue
        mid = op.inputs[0]
        p = g.producer(mid)
        if p is None or p.kind != "mul" or mid in g.outputs or len(g.consumers(mid)) != 1:
            continue
        consts = [i for i in p.inputs if g.tensors[i].is_const]
        if len(consts) != 1 or g.tensors[consts[0]].data.size != 1:
            continue
        x = next(i for i in p.inputs if i != consts[0])
        if g.tensors[mid].qhint or not g.tensors[x].qhint or not g.tensors[op.outputs[0]].qhint:
            continue
        op.attrs["prescale"] = float(g.tensors[consts[0]].data.reshape(()))
        op.inputs = [x]
        g.remove_op(p.name)
        del g.tensors[mid]


def fold_channel_affines(g: Graph) -> None:
    """mul(x, per-channel c) -> add(., per-channel b), where a quantised model states x's and the sum's
    quantisation but not the product's (a BatchNormalization left in float between a quantised conv and the
    next quantisation, with or without a Relu / Clip fused after it): one table per channel from x's codes to
    the sum's, y = x * c + b in float32 as onnxruntime computes it, rounded once, instead of rounding the
    product to a grid of pimc's own."""
    def stated(t: str) -> bool:         # the model's own quantisation, not bounds the frontend derived
        return bool(g.tensors[t].qhint) and not g.tensors[t].qhint.get("derived")

    for add in g.topo():
        if add.kind != "add":
            continue
        (mid, b), y = add.inputs, add.outputs[0]
        p = g.producer(mid)
        if p is None or p.kind != "mul" or mid in g.outputs or len(g.consumers(mid)) != 1 or stated(mid) \
                or not stated(y):
            continue
        x, c = p.inputs
        shape = g.tensors[x].shape
        if not shape or not g.tensors[x].qhint:
            continue
        n = shape[0]
        per = {(), (1,), (1, n) + (1,) * (len(shape) - 1), (n,) + (1,) * (len(shape) - 1)}   # along axis 1
        cv, bv = g.tensors[c].data, g.tensors[b].data
        if not (g.tensors[c].is_const and g.tensors[b].is_const and np.shape(cv) in per and np.shape(bv) in per):
            continue
        # a BatchNormalization's constants as onnxruntime computes them in float32, where the frontend kept them
        cv, bv = p.attrs.get("float32", (cv, bv))
        g.add_op("unary", g.unique(add.name + ".affine"), [x], [y], fn="channel_affine",
                 scale=np.broadcast_to(np.reshape(cv, -1), (n,)).astype(np.float32),
                 shift=np.broadcast_to(np.reshape(bv, -1), (n,)).astype(np.float32), act=add.attrs.get("act"))
        g.remove_op(add.name)
        g.remove_op(p.name)
        del g.tensors[mid]


QUANTISERS = {}


def quantiser(*kinds):
    def reg(fn):
        for k in kinds:
            QUANTISERS[k] = fn
        return fn
    return reg


# Bias codes stay within +-2^30, so the bias plus any crossbar sum (under 2^30 for fewer than 33,000 rows of
# 8-bit inputs and weights, offset terms included) stays inside the 32-bit accumulator.
BIAS_LIMIT = 1 << 30


def quantise_weights(op: Op, g: Graph, x_scale: float, rep: QuantizeReport, asymmetric: bool = False):
    """Symmetric per-output-channel int8 weights (int16 container), their scales, and the bias on the
    accumulator's scale x_scale * sw, |bias| <= BIAS_LIMIT.

    asymmetric (R0's weights, `--weights asymmetric`): per output channel a scale and a zero point over the
    channel's range (0 included), 256 levels: the integer weight is code - zero, up to 9 bits and spanning at
    most 255 per channel, which every encoding stores as 8-bit offsets from a center (as for an
    already-quantised model's zero points).

    A channel whose bias needs more codes than that at sw = max|w| / 127 (BatchNorm folded into near-zero or
    all-zero weights next to a large shift) gets the coarser scale sw = |b| / (x_scale * (BIAS_LIMIT - 1)): its
    weights lose precision, by at most sw / 2 each, which changes the channel's pre-activation by at most
    sw / 2 * K * 255 * x_scale (K rows, 255 input codes), a 2^-23 * K share of |b|. The channels, the scale
    factor and that bound go into rep.raised_scales[op.name]."""
    W = g.tensors[op.inputs[1]].data.astype(np.float64)
    b = g.tensors[op.inputs[2]].data.astype(np.float64) if len(op.inputs) > 2 else np.zeros(
        W.shape[0] if op.kind == "conv" else W.shape[1])
    for what, name, v in (("weights", op.inputs[1], W), ("bias", op.inputs[2] if len(op.inputs) > 2 else "", b)):
        if not np.isfinite(v).all():
            raise CompileError(f"node {op.name}: {what} {name} hold NaN or infinity")
        if np.abs(v).max(initial=0) > F32_MAX:
            raise CompileError(f"node {op.name}: {what} {name} hold {np.abs(v).max():.3g}, beyond float32")
    axes = tuple(range(1, W.ndim)) if op.kind == "conv" else (0,)
    kept = model_weights(op, g, W, b, x_scale, rep)
    if kept is not None:
        return kept
    amax = np.abs(W).max(axis=axes)
    lo, hi = np.minimum(W.min(axis=axes), 0.0), np.maximum(W.max(axis=axes), 0.0)
    sw0 = np.where(amax > 0, (hi - lo) / 255.0 if asymmetric else amax / 127.0, 1.0)
    need = np.abs(b) / (x_scale * (BIAS_LIMIT - 1))
    # an all-zero channel's scale is free: the finest at which its bias fits
    sw = np.where(amax > 0, np.maximum(sw0, need), np.where(need > 0, need, 1.0))
    shape = (-1,) + (1,) * (W.ndim - 1) if op.kind == "conv" else (1, -1)
    shaped = sw.reshape(shape)
    if asymmetric:
        zero = np.clip(np.rint(-lo / sw), 0, 255).reshape(shape)
        wi = (np.clip(np.rint(W / shaped) + zero, 0, 255) - zero).astype(np.int16)
    else:
        wi = np.clip(np.rint(W / shaped), -127, 127).astype(np.int16)
    err = (wi * shaped - W) ** 2
    rep.weights_quantised += wi.size
    rep.weight_rms_error[op.name] = float(np.sqrt(np.mean(err)) / max(float(amax.max()), 1e-30))
    with np.errstate(all="ignore"):
        codes = np.rint(b / (x_scale * sw))      # checked in float: a cast first would wrap a huge one round
    if not np.all(np.abs(codes) <= BIAS_LIMIT):
        raise CompileError(f"node {op.name}: bias {op.inputs[2] if len(op.inputs) > 2 else ''} does not fit 32 "
                           "bits after quantisation")
    bias = codes.astype(np.int64)
    raised = np.flatnonzero((amax > 0) & (sw > sw0))
    if raised.size:
        rows = W.size // len(sw)
        ch_rms = np.sqrt(err.mean(axis=axes))[raised]
        rep.raised_scales[op.name] = {
            "channels": raised.tolist(),
            "bias": b[raised].tolist(),
            "scale_factor": (sw / sw0)[raised].tolist(),
            "weight_rms_error": (ch_rms / amax[raised]).tolist(),
            "output_error_bound": (sw[raised] / 2 * rows * 255 * x_scale).tolist()}
    return wi, sw, bias


def model_weights(op: Op, g: Graph, W: np.ndarray, b: np.ndarray, x_scale: float, rep: QuantizeReport):
    """The codes, scales and zero points of an already-quantised model's weights (compiler/onnx_qdq.py), where
    the weights still equal them dequantised: (codes - zero, scale, bias codes), else None. The integer weight
    is code - zero, so a nonzero zero point (uint8 or asymmetric int8 weights) gives weights of up to 9 bits
    that span at most 255 per filter; the encoding stores them as 8-bit offsets from a center and the digital
    side adds center * sum(x) (passes/encoding.py). The model's int32 bias codes are kept where they are on
    the accumulator's scale x_scale * scale (else rounded from the real bias, as for a float model)."""
    h = g.tensors[op.inputs[1]].qhint
    if not h or "codes" not in h:
        return None
    s, z = h["scale"], h["zero"]
    shaped = (-1,) + (1,) * (W.ndim - 1) if op.kind == "conv" else (1, -1)
    wi = h["codes"] - z.reshape(shaped)
    if W.shape != wi.shape or np.any(np.abs(W / s.reshape(shaped) - wi) > 1e-3):
        return None
    acc = x_scale * s
    hb = g.tensors[op.inputs[2]].qhint if len(op.inputs) > 2 else None
    with np.errstate(all="ignore"):
        codes = np.rint(b / acc)
    from_model = bool(hb and "codes" in hb
                      and np.all(np.abs(b / acc - hb["codes"]) <= 1e-3 * np.maximum(1.0, np.abs(hb["codes"]))))
    if from_model:
        codes = hb["codes"].astype(np.float64)
    if not np.all(np.abs(codes) <= BIAS_LIMIT):
        raise CompileError(f"node {op.name}: bias {op.inputs[2] if len(op.inputs) > 2 else ''} does not fit 32 "
                           "bits after quantisation")
    rep.weights_quantised += wi.size
    rep.weight_rms_error[op.name] = 0.0
    rep.model_weights[op.name] = {
        "dtype": h["dtype"], "per_channel": bool(h["per_channel"]), "nonzero_zero_points": int(np.count_nonzero(z)),
        "weight_range": [int(wi.min()), int(wi.max())],
        "bias_codes": "model" if from_model else ("rounded" if len(op.inputs) > 2 else "none")}
    return wi.astype(np.int16), s.astype(np.float64), codes.astype(np.int64)


@quantiser("conv", "linear")
def _crossbar(self: Quantize, g: Graph, ctx, op: Op, rep: QuantizeReport):
    x, out = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    wi, sw, bias = quantise_weights(op, g, x.scale, rep, ctx.options.weights == "asymmetric")
    acc_scale = x.scale * sw
    q = {"w": wi, "bias": bias, "zx": x.zero}
    is_output = op.outputs[0] in g.outputs and not g.consumers(op.outputs[0])
    if is_output and "act" not in op.attrs and not out.qhint:
        out.dtype, out.scale, out.zero = "i32", acc_scale.astype(np.float64), 0
        out.qaxis = 1 if op.kind == "conv" else -1
        rep.accumulator_outputs.append(op.outputs[0])
    else:
        self._set_from_range(g, ctx, op.outputs[0])
        q["mult"], q["shift"] = fixed_point_vec(acc_scale / out.scale)
        q["zy"] = out.zero
        q["lo"], q["hi"] = self._clamp(op, out)
    op.attrs["q"] = q


@quantiser("add")
def _add(self, g, ctx, op, rep):
    (sa, za), (sb, zb) = self._operand(g, op.inputs[0]), self._operand(g, op.inputs[1])
    self._set_from_range(g, ctx, op.outputs[0])
    out = g.tensors[op.outputs[0]]
    (ma, mb), shift = common_shift(sa / out.scale, sb / out.scale)
    lo, hi = self._clamp(op, out)
    op.attrs["q"] = dict(za=za, ma=ma, zb=zb, mb=mb, shift=shift, zy=out.zero, lo=lo, hi=hi)


@quantiser("mul", "matmul")
def _mul(self, g, ctx, op, rep):
    (sa, za), (sb, zb) = self._operand(g, op.inputs[0]), self._operand(g, op.inputs[1])
    self._set_from_range(g, ctx, op.outputs[0])
    out = g.tensors[op.outputs[0]]
    mult, shift = fixed_point(sa * sb / out.scale)
    lo, hi = self._clamp(op, out)
    op.attrs["q"] = dict(za=za, zb=zb, mult=mult, shift=shift, zy=out.zero, lo=lo, hi=hi)


@quantiser("relu", "clip", "unary")
def _lut(self, g, ctx, op, rep):
    x = g.tensors[op.inputs[0]]
    self._set_from_range(g, ctx, op.outputs[0])
    out = g.tensors[op.outputs[0]]
    v = (np.arange(256) - x.zero) * x.scale
    if op.kind == "relu":
        f = np.maximum(v, 0)
    elif op.kind == "clip":
        f = np.clip(v, op.attrs["lo"], op.attrs["hi"])
    else:
        if op.attrs["fn"] == "channel_affine":      # float32 throughout, as onnxruntime's BN on dequantised codes
            v32 = (np.arange(256, dtype=np.float32) - np.float32(x.zero)) * np.float32(x.scale)
            f = v32[None, :] * op.attrs["scale"][:, None] + op.attrs["shift"][:, None]
            if op.attrs["act"] is not None:                 # a Relu / Clip fused into the BN's add
                f = np.clip(f, *op.attrs["act"])
            op.attrs["q"] = {"table": np.clip(np.rint(f / np.float32(out.scale)) + out.zero, 0, 255).astype(np.uint8)}
            return
        if op.attrs["fn"] in VECTOR_ONLY_FNS:
            raise CompileError(f"node {op.name}: '{op.attrs['fn']}' has no quantised form (8-bit codes cannot tell "
                               "equal values from close ones): it runs on the float32 vector unit (--vector auto or fp32)")
        with np.errstate(all="ignore"):
            f = UNARY[op.attrs["fn"]](v * op.attrs.get("prescale", 1.0), **op.attrs.get("params", {}))
        # codes outside the function's domain (acosh below 1: the range always holds 0) never come from
        # calibrated inputs; they get 0 rather than NaN
        f = np.clip(np.nan_to_num(f, nan=0.0), -1e30, 1e30)
    op.attrs["q"] = {"table": np.clip(np.rint(f / out.scale) + out.zero, 0, 255).astype(np.uint8)}


@quantiser(*PASS_THROUGH)
def _pass_through(self, g, ctx, op, rep):
    self._inherit(g, op.inputs[0], op.outputs[0])
    x = g.tensors[op.inputs[0]]
    op.attrs["q"] = {"fill": code(op.attrs.get("value", 0.0), x.scale, x.zero)} if op.kind == "pad" else {}


@quantiser("avgpool", "gavgpool")
def _avg(self, g, ctx, op, rep):
    x = g.tensors[op.inputs[0]]
    self._set_from_range(g, ctx, op.outputs[0])
    out = g.tensors[op.outputs[0]]
    mult, shift = fixed_point(x.scale / out.scale)
    op.attrs["q"] = dict(zx=x.zero, mult=mult, shift=shift, zy=out.zero, lo=0, hi=255)


PART_SCALES = 4.0     # an output concat whose parts' scales differ this much keeps each part's own


@quantiser("concat")
def _concat(self, g, ctx, op, rep):
    if _keeps_parts(self, g, op):
        return
    self._set_from_range(g, ctx, op.outputs[0])
    out = g.tensors[op.outputs[0]]
    parts = []
    for i in op.inputs:
        s, z = self._operand(g, i)
        mult, shift = fixed_point(s / out.scale)
        if s == out.scale:
            mult, shift = 1 << 30, 30
        parts.append((z, mult, shift))
    op.attrs["q"] = {"zx": [p[0] for p in parts], "mult": [p[1] for p in parts], "shift": [p[2] for p in parts],
                     "zy": out.zero}


def _keeps_parts(self, g, op) -> bool:
    """A graph output that concatenates run-time parts of very different ranges (YOLO: box coordinates in
    pixels next to class probabilities) keeps each part's codes, scale and zero point: one scale for the whole
    would round the small part to nothing. The output then carries one scale and zero per channel of the
    concat axis; the concat copies codes."""
    out = op.outputs[0]
    if out not in g.outputs or g.consumers(out) or any(g.tensors[i].is_const for i in op.inputs):
        return False
    parts = [self._operand(g, i) for i in op.inputs]
    scales = [s for s, _ in parts]
    if max(scales) < PART_SCALES * min(scales):
        return False
    axis = op.attrs["axis"]
    sizes = [(1,) + tuple(g.tensors[i].shape) for i in op.inputs]
    t = g.tensors[out]
    t.scale = np.concatenate([np.full(sz[axis], s, np.float64) for sz, (s, _) in zip(sizes, parts)])
    t.zero = np.concatenate([np.full(sz[axis], z, np.int64) for sz, (_, z) in zip(sizes, parts)])
    t.qaxis, t.dtype = axis, "u8"
    op.attrs["q"] = {"zx": [0] * len(parts), "mult": [1 << 30] * len(parts), "shift": [30] * len(parts), "zy": 0}
    return True


@quantiser("softmax")
def _softmax(self, g, ctx, op, rep):
    x, out = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    op.attrs["q"] = {"table": softmax_table(x.scale)}
    h = out.qhint
    if h and (h["scale"], h["zero"]) != (1 / 255, 0):
        # the model's own grid, at onnxruntime's QLinearSoftmax rule (it also stands in for a QDQ Softmax):
        # codes round(floor(1 / scale) * p) + zero, 1 / scale taken in float32 (254 for a float32 1/255)
        mult = int(np.floor(np.float32(1.0) / np.float32(h["scale"])))
        if 1 <= mult <= 1 << 16:
            out.scale, out.zero, out.dtype = h["scale"], h["zero"], "u8"
            op.attrs["q"].update(mult=mult, zero=h["zero"])
            return
    out.scale, out.zero, out.dtype = 1 / 255, 0, "u8"


@quantiser("lrn")
def _lrn(self, g, ctx, op, rep):
    x = g.tensors[op.inputs[0]]
    self._set_from_range(g, ctx, op.outputs[0])
    out = g.tensors[op.outputs[0]]
    op.attrs["q"] = dict(zx=x.zero, sx=x.scale, sy=out.scale, zy=out.zero)
