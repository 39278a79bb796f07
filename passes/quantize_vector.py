"""8-bit quantisation with a float32 vector unit (the transformer form of the Quantize pass).

Contract: the crossbars and the activation x activation products see 8-bit codes exactly as in the integer
form (u8 inputs with a per-tensor scale and zero, int8 per-channel weights); every other op runs on the
digital vector unit in float32 (the papers leave its precision open; DESIGN.md's digital ops). So:
- a `quant` op (float32 -> u8, range from calibration) is inserted in front of each crossbar / matmul input,
  one per source tensor;
- a crossbar or matmul op leaves float32: (integer accumulator + bias) x per-channel scale, then the fused
  activation clamp;
- every other op keeps its float meaning and is evaluated by the float32 kernels of runtime/vector.py;
- embedding tables are stored as int8 codes with one scale per row (the per-channel weight rule applied per row).
- the inputs of linear layers fed by a layernorm are smoothed (SmoothQuant, Xiao et al. 2023): normalised
  activations carry a few channels far larger than the rest (from the layernorm's gain), which a per-tensor
  8-bit scale cannot serve; the quant op divides channel c by s_c = sqrt(max|x_c| / max|W_c|) and the layers
  reading it multiply weight row c by s_c before their int8 quantisation, so x.W is unchanged before
  rounding. options["smooth"] = "layernorm" (default) | "all" | "none".
In auto mode a graph uses the integer form when every op has one (no layernorm, embedding lookup, token
masks, reductions, division, Hardmax, Mod, equality) and it has crossbar or matrix ops to feed; a graph with
none of those runs on the vector unit (nothing_to_quantise). options["vector"] = "fp32" | "int8" forces one.
"""
from __future__ import annotations

import numpy as np

from ir import CompileError, Graph, Op
from runtime import vector as V

VECTOR_ONLY = ("layernorm", "gather", "maskfn", "reduce", "div", "pow", "fmod", "mod", "expand", "topk", "hardmax")
MATRIX_OPS = ("conv", "linear", "matmul")
VECTOR_ONLY_FNS = ("equal",)       # equality is all ties, which 8-bit codes cannot tell from near misses


def wants_vector(g: Graph, options) -> bool:
    mode = options.vector
    if mode == "auto":       # (a product placed on run-time-written crossbars needs the vector form too)
        return any(op.kind in VECTOR_ONLY or op.attrs.get("crossbar") for op in g.ops.values()) or \
            any(g.tensors[i].dtype == "i64" for i in g.inputs) or nothing_to_quantise(g) or \
            any(op.kind == "unary" and op.attrs["fn"] in VECTOR_ONLY_FNS for op in g.ops.values())
    if mode == "int8" and any(op.attrs.get("crossbar") for op in g.ops.values()):
        raise CompileError("products on run-time-written crossbars (--attention naive|retransformer) need the "
                           "float32 vector unit (--vector fp32 or auto), or --attention digital")
    return mode == "fp32"


def nothing_to_quantise(g: Graph) -> bool:
    """A float model with no crossbar or matrix op: 8-bit codes would serve no crossbar and only lose what
    the float ops need (a threshold between two codes, a softmax row far above the calibrated range's
    step), so every op runs on the float32 vector unit, where each has a float form. A model that states its
    own quantisation (Q/DQ) keeps its integer form."""
    return not any(op.kind in MATRIX_OPS for op in g.ops.values()) and \
        not any(t.qhint for t in g.tensors.values()) and all(has_float_form(op) for op in g.ops.values())


def has_float_form(op: Op) -> bool:
    """Whether the vector unit evaluates `op` (after vector_forms' rewrites)."""
    if op.kind in ("gavgpool", "gmaxpool"):
        return True
    if op.kind == "unary":
        return op.attrs["fn"] in V.UNARY or op.attrs["fn"] in V.UNARY_P or op.attrs["fn"] in ("pow", "hard_sigmoid")
    return op.kind in VECTOR_KINDS


def insert_quants(g: Graph, ctx) -> int:
    """A quant op in front of every run-time input of a crossbar / matmul op, shared per source tensor."""
    made: dict[str, str] = {}
    for op in g.topo():
        if op.kind not in MATRIX_OPS:
            continue
        for k, src in enumerate(op.inputs[:2] if op.kind == "matmul" else op.inputs[:1]):
            t = g.tensors[src]
            if t.is_const:
                continue
            key = (src, op.kind == "matmul")     # crossbar layers may smooth their quant; matmuls may not
            if key not in made:
                q = g.unique(src + ".q")
                g.add_tensor(type(t)(q, t.shape, qhint=t.qhint))
                if src in ctx.ranges:
                    ctx.ranges[q] = ctx.ranges[src]
                g.add_op("quant", g.unique(f"{op.name}.quant{k}"), [src], [q])
                made[key] = q
            op.inputs[k] = made[key]
    return len(made)


SMOOTH_ALPHA = 0.5      # SmoothQuant's default migration strength


def smooth(g: Graph, ctx, which: str) -> list[str]:
    """Per-channel smoothing of the quant ops in front of linear layers (see the module docstring)."""
    done = []
    for op in g.topo():
        if op.kind != "quant" or which == "none":
            continue
        src, readers = op.inputs[0], g.consumers(op.outputs[0])
        prod = g.producer(src)
        if which == "layernorm" and (prod is None or prod.kind != "layernorm"):
            continue
        if not readers or any(r.kind != "linear" for r in readers) or src not in ctx.channel_ranges:
            continue
        clo, chi = ctx.channel_ranges[src]
        if any(g.tensors[r.inputs[1]].data.shape[0] != len(clo) for r in readers):
            continue            # a grouped linear (ReTransformer's per-head products): its rows are not x's channels
        xmax = np.maximum(np.maximum(np.abs(clo), np.abs(chi)), 1e-8)
        wmax = np.max([np.abs(g.tensors[r.inputs[1]].data).max(axis=1) for r in readers], axis=0)
        s = xmax ** SMOOTH_ALPHA / np.maximum(wmax, 1e-8) ** (1 - SMOOTH_ALPHA)
        s = np.where(wmax > 0, s, 1.0)
        for r in readers:
            w = g.tensors[r.inputs[1]]
            w.data = w.data * s[:, None]
        inv = (1.0 / s).astype(np.float32)
        op.attrs["smooth"] = inv
        ctx.ranges[op.outputs[0]] = (float(np.min(clo * inv)), float(np.max(chi * inv)))
        done.append(op.name)
    return done


def vector_forms(g: Graph) -> None:
    """Ops the vector unit has no instruction of their own for, written with those it has: global pools as
    reductions, hard_sigmoid(x) = clip(alpha x + beta, 0, 1) (a MobileNetV3 squeeze-excitation's gate)."""
    for op in list(g.ops.values()):
        if op.kind in ("gavgpool", "gmaxpool"):
            op.attrs.update(fn="mean" if op.kind == "gavgpool" else "max", axes=(2, 3), keepdims=True)
            op.kind = "reduce"
        elif op.kind == "unary" and op.attrs["fn"] == "hard_sigmoid":
            p, (x,), (y,) = op.attrs["params"], op.inputs, op.outputs
            shape = g.tensors[y].shape
            scaled, shifted = g.unique(y + ".scaled"), g.unique(y + ".shifted")
            for t in (scaled, shifted):
                g.add_tensor(type(g.tensors[y])(t, shape))
            alpha = g.const(g.unique(op.name + ".alpha"), np.float64(p["alpha"]))
            beta = g.const(g.unique(op.name + ".beta"), np.float64(p["beta"]))
            g.add_op("mul", g.unique(op.name + ".mul"), [x, alpha], [scaled])
            g.add_op("add", g.unique(op.name + ".add"), [scaled, beta], [shifted])
            op.kind, op.inputs, op.attrs = "clip", [shifted], {"lo": 0.0, "hi": 1.0}


def quantize_vector(self, g: Graph, ctx, rep) -> None:
    from .quantize import fixed_point_vec, qparams, quantise_weights
    rep.vector = "fp32"
    vector_forms(g)
    rep.quant_ops = insert_quants(g, ctx)
    rep.smoothed = smooth(g, ctx, ctx.options.smooth)
    for name in g.inputs:
        if g.tensors[name].dtype != "i64":
            g.tensors[name].dtype = "f32"
    for op in g.topo():
        out = g.tensors[op.outputs[0]]
        if op.kind == "quant":
            self._set_from_range(g, ctx, op.outputs[0])
            op.attrs["q"] = {"scale": float(out.scale), "zero": int(out.zero), "smooth": op.attrs.get("smooth")}
            continue
        out.dtype = "f32"
        q = {}
        if op.kind in ("conv", "linear"):
            x = g.tensors[op.inputs[0]]
            wi, sw, bias = quantise_weights(op, g, x.scale, rep, ctx.options.weights == "asymmetric")
            q = {"w": wi, "bias": bias, "zx": x.zero, "oscale": (x.scale * sw).astype(np.float64)}
            if op.outputs[0] in ctx.ranges:
                # an 8-bit grid over the output's range: what adaptive slicing measures a slicing's error on
                sy, zy = qparams(*ctx.ranges[op.outputs[0]])
                q["mult"], q["shift"] = fixed_point_vec(x.scale * sw / sy)
                q.update(zy=zy, lo=0, hi=255)
        elif op.kind == "matmul":
            a, b = g.tensors[op.inputs[0]], g.tensors[op.inputs[1]]
            q = {"za": a.zero, "zb": b.zero, "oscale": float(a.scale * b.scale)}
        elif op.kind == "gather":
            table = g.tensors[op.inputs[1]].data.astype(np.float64)
            amax = np.abs(table).max(axis=1)
            scale = np.where(amax > 0, amax / 127.0, 1.0)
            q = {"codes": np.clip(np.rint(table / scale[:, None]), -127, 127).astype(np.int8),
                 "rowscale": scale.astype(np.float32)}
        elif op.kind not in VECTOR_KINDS:
            raise CompileError(f"node {op.name}: no float32 vector form for op '{op.kind}'")
        elif not has_float_form(op):
            raise CompileError(f"node {op.name}: the float32 vector unit has no '{op.attrs['fn']}' function (this "
                               "model needs the vector unit for its other ops; the function runs in the integer "
                               "form only)")
        if "act" in op.attrs:
            q["act"] = tuple(float(v) for v in op.attrs["act"])
        op.attrs["q"] = q


# ops the vector unit evaluates with their float meaning (runtime/vector.py)
VECTOR_KINDS = ("layernorm", "maskfn", "reduce", "div", "pow", "fmod", "mod", "expand", "add", "mul", "unary", "relu", "clip",
                "softmax", "reshape", "transpose", "concat", "topk", "slice", "upsample", "maxpool", "avgpool", "pad",
                "hardmax")
