"""Weight and input slicing; Adaptive Weight Slicing (RAELLA thesis sec. 4.2-4.3, Algorithm 1).

Contract: sets op.attrs["slices"] (weight slices) and op.attrs["islices"] = (input slices, recovery bits) of
every crossbar layer. Input slices are the target's (speculation widths with their recovery width, sec. 4.3);
options["no_speculation"] gives eight 1-bit slices without recovery. A layer whose input has a nonzero zero
point runs it as positive and negative parts (sec. 2.4, op.attrs["signed_input"]) unless options["signed_inputs"]
is "offset" (u8 codes with the zero point corrected digitally). With options["slicing"] a given tuple is used
for every layer. With options["slicing"] == "adaptive" each layer tries the 108 slicings of an 8-bit weight
(widths 1..4 summing to 8, fewer slices first): it is encoded as the target encodes it, run through the
crossbars with ADC saturation on 10 calibration inputs in 1-bit input slices, and its error is the mean
|8-bit output - exact 8-bit output| over the outputs whose exact value is nonzero. The first slice count
with a slicing under the error budget wins, with its lowest-error slicing; the last crossbar layer always
takes eight 1-bit slices (unless options["slicing_last_layer"], for one-layer studies). Without the option
the target's slicing stands.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import numpy as np

from ir import CompileError, Graph, Op
from ir.float_eval import grouped_matmul
from runtime import crossbar as X
from runtime import kernels as K

from .center_offset import histograms
from .encoding import encode_block
from .mapping import CROSSBAR_OPS, tile_layer, weight_matrix
from .reference import run_reference

SAMPLES = 10
DEFAULT_BUDGET = 0.09
MAX_TRIAL_MACS = 2e7        # rows x weights per trial slicing: a large layer is judged on evenly spaced rows
MAX_TRIAL_FILTERS = 256     # ... and on evenly spaced filters
MAX_TRIAL_GROUPS = 3        # ... or, for a grouped linear (one group per attention head), on evenly spaced groups


def slicings(max_width: int = 4, bits: int = 8) -> list[tuple[int, ...]]:
    """Every ordered tuple of widths in 1..max_width summing to `bits`, fewest slices first."""
    out = []
    for count in range(1, bits + 1):
        out += sorted((c for c in itertools.product(range(1, max_width + 1), repeat=count) if sum(c) == bits),
                      reverse=True)
    return out


def layer_inputs(op, codes: np.ndarray) -> np.ndarray:
    """A layer's crossbar input rows (M, K) from its input codes, as the program streams them."""
    if op.kind == "conv":
        a = op.attrs
        x = K.im2col(codes, a["kernel"], a["strides"], a["pads"], a["dilations"], a["q"]["zx"])
    else:
        x = codes
    return x.reshape(-1, x.shape[-1])


def layer_outputs(op, codes: np.ndarray) -> np.ndarray:
    """Output codes in the psum layout (M, N)."""
    if op.kind == "conv":
        codes = codes.transpose(0, 2, 3, 1)
    return codes.reshape(-1, codes.shape[-1])


@dataclass
class LayerBlocks:
    """A layer's crossbar blocks with what every trial slicing of them shares (weights, masks, histograms)."""
    wm: np.ndarray
    kg: int
    ng: int
    blocks: list           # (rows, cols, mask, weights, histograms, center cost terms per slice)


def layer_blocks(op, target, nslices: int) -> LayerBlocks:
    wm, groups = weight_matrix(op)
    kg, n = wm.shape
    ng = n // groups
    blocks = []
    for rows, cols in tile_layer(kg, n, groups, target.rows, target.cols, nslices):
        mask = X.block_mask(rows, cols, kg, ng)
        w = X.block_weights(wm, rows, cols, kg, ng)
        blocks.append((rows, cols, mask, w, histograms(w, mask), {}))
    return LayerBlocks(wm, kg, ng, blocks)


def simulate_layer(op, x: np.ndarray, slices, target, encoding: str, islices=(1,) * 8,
                   ideal: bool = False, blocks: LayerBlocks | None = None, planes: dict | None = None
                   ) -> tuple[np.ndarray, int]:
    """8-bit outputs of the layer on the target's crossbars with ADC saturation (none if ideal), and the
    saturated count: what X.mvm gives block by block, without its event counts. `blocks` (layer_blocks)
    must have been tiled for as many slices as `slices` has; `planes` caches the input slices across calls
    on the same x (a caller trying many slicings of one layer passes the same dict)."""
    lb = blocks if blocks is not None and len(blocks.blocks) == len(
        tile_layer(blocks.kg, blocks.wm.shape[1], blocks.wm.shape[1] // blocks.ng, target.rows, target.cols,
                   len(slices))) else layer_blocks(op, target, len(slices))
    wm, kg, ng = lb.wm, lb.kg, lb.ng
    n = wm.shape[1]
    q = op.attrs["q"]
    signed = op.attrs.get("signed_input", False)
    planes = {} if planes is None else planes
    key = (id(x), tuple(islices), signed, int(q["zx"]))
    if planes.get("key") != key:        # x is kept with its key, so its id is not reused while cached
        parts = [x]
        if signed:
            v = x.astype(np.int16) - q["zx"]
            parts = [np.maximum(v, 0).astype(np.uint8), np.maximum(-v, 0).astype(np.uint8)]
        planes.clear()
        planes.update(key=key, x=x, parts=parts, slices=[np.stack(X.slice_values(p, islices)) for p in parts])
    parts = planes["parts"]
    adc = None if ideal else target.adc_range
    acc = np.zeros((len(x), n))
    saturated = 0
    for rows, cols, mask, w, hist, terms in lb.blocks:
        phi, flips = encode_block(w, mask, slices, encoding, target.flip, hist, terms)
        levels = _levels(w, mask, encoding, phi, slices, flips)
        for sign, part, sl in zip((1, -1), parts, planes["slices"]):
            out, sat = _block_mvm(w, mask, levels, phi, flips, slices, part[:, rows[0]:rows[1]],
                                  sl[:, :, rows[0]:rows[1]], islices, adc)
            acc[:, cols[0]:cols[1]] += sign * out
            saturated += sat
    acc += q["bias"] - (0 if signed else q["zx"]) * wm.astype(np.int64).sum(axis=0)
    return K.requant(acc, q["mult"], q["shift"], q["zy"], q["lo"], q["hi"]), saturated


def _levels(w, mask, encoding, center, slices, flip) -> np.ndarray:
    """(n_slices, R, n) int16 cell levels of a block as X.program encodes it (the adding device's level minus
    the subtracting one's; flipped columns store complements), from the weights and mask layer_blocks made."""
    offsets = np.where(mask, w - np.asarray(center, dtype=np.int64).reshape(1, -1), 0)
    low = 0 if encoding == "unsigned" else -255
    if offsets.min(initial=0) < low or offsets.max(initial=0) > 255:
        raise ValueError(f"weights minus center span [{offsets.min()}, {offsets.max()}], outside the 8-bit "
                         f"{encoding} range [{low}, 255]")
    o = offsets.astype(np.int16)
    if encoding == "unsigned":
        pos = np.stack(X.slice_values(o, slices))
        if flip is not None:
            full = np.array([(1 << s) - 1 for s in slices], np.int16)[:, None, None]
            pos = np.where(flip[:, None, :], full - pos, pos) * mask
        return pos
    sign = np.sign(o)          # a weight's offset sits on one device of its pair: level = sign x slice of |o|
    return np.stack(X.slice_values(np.abs(o), slices)) * sign


def _block_mvm(w, mask, levels, center, flip, slices, x: np.ndarray, xs: np.ndarray, islices,
               adc_range) -> tuple[np.ndarray, int]:
    """X.mvm's result and saturated count for one crossbar (no recovery, noise or histograms; X.program's
    levels from _levels), from the input slices xs (nI, M, R) made once per layer. The same exact integers:
    the physical columns that cannot reach an ADC bound and the digital terms as one product, each other
    column's sums clipped, then shift-added per filter (|values| < 2^53 in float64, so the order of the
    additions changes nothing)."""
    if adc_range is None:
        return X.product(x, w), 0
    lo, hi = adc_range
    imax = (1 << max(islices)) - 1
    chi = np.maximum(levels, 0).sum(axis=1, dtype=np.int64) * imax                   # X.column_bounds
    clo = -np.maximum(-levels, 0).sum(axis=1, dtype=np.int64) * imax
    risky = (clo < lo) | (chi > hi)
    if not risky.any():
        return X.product(x, w), 0
    n = w.shape[1]
    flip = np.zeros((len(slices), n), bool) if flip is None else np.asarray(flip, bool)
    wsh = np.array([1 << s for s in X.slice_shifts(slices)], dtype=np.int64)[:, None]
    full = np.array([(1 << s) - 1 for s in slices], dtype=np.int64)[:, None]
    coef = np.where(flip, -wsh, wsh)                                               # (nW, n)
    d = (flip * wsh * full).sum(axis=0)
    center = np.broadcast_to(np.asarray(center, dtype=np.int64), (n,))
    linear = np.einsum("jrn,jn->rn", levels, coef * ~risky, dtype=np.int64) + mask * (center + d)[None, :]
    out = X.product(x, linear).astype(np.float64)
    j_idx, n_idx = np.nonzero(risky)
    nI, M, R = xs.shape
    s = X.product(xs.reshape(nI * M, R), levels[j_idx, :, n_idx].T)              # (nI * M, risky columns)
    saturated = int(np.count_nonzero(s > hi)) + int(np.count_nonzero(s < lo))
    np.clip(s, lo, hi, out=s)
    # shift-add over the input slices, in float32 where every value stays an exact integer (below 2^24)
    ish = [2.0 ** v for v in X.slice_shifts(islices)]
    c = coef[j_idx, n_idx]
    dt = np.float32 if max(-lo, hi) * sum(ish) * np.abs(c).max() < X.EXACT_F32 else np.float64
    s = s.reshape(nI, M, -1)
    t = np.zeros(s.shape[1:], dt)
    for i, f in enumerate(ish):
        t += dt(f) * s[i]
    t *= c.astype(dt)                                                                 # (M, risky columns)
    for j in np.unique(j_idx):          # per weight slice: each filter has at most one column in it
        sel = j_idx == j
        out[:, n_idx[sel]] += t[:, sel]
    return out, saturated


def slicing_error(op, x, ref, slices, target, encoding, blocks: dict | None = None) -> float:
    """Mean error of a slicing; `blocks` caches layer_blocks per slice count, and the input slices, across
    the trials."""
    lb, planes = None, None
    if blocks is not None:
        lb = blocks.get(len(slices)) or blocks.setdefault(len(slices), layer_blocks(op, target, len(slices)))
        planes = blocks.setdefault("planes", {})
    return output_error(simulate_layer(op, x, slices, target, encoding, blocks=lb, planes=planes)[0], ref)


def sample_filters(op):
    """(op, filter indices, input-row indices) to judge slicings on: a layer wider than MAX_TRIAL_FILTERS is
    judged on that many evenly spaced filters, a grouped linear (attention heads) on MAX_TRIAL_GROUPS evenly
    spaced groups; the copy of the op holds only their per-filter parameters."""
    q = op.attrs["q"]
    n = q["w"].shape[0] if op.kind == "conv" else q["w"].shape[1]
    groups = op.attrs.get("group", 1)
    rows = slice(None)
    if op.kind == "linear" and groups > MAX_TRIAL_GROUPS:
        kg, ng = q["w"].shape[0], n // groups
        chosen = np.linspace(0, groups - 1, MAX_TRIAL_GROUPS).round().astype(np.int64)
        cols = (chosen[:, None] * ng + np.arange(ng)[None, :]).ravel()
        rows = (chosen[:, None] * kg + np.arange(kg)[None, :]).ravel()
        attrs = {**op.attrs, "group": MAX_TRIAL_GROUPS}
    elif groups == 1 and n > MAX_TRIAL_FILTERS:
        cols = np.linspace(0, n - 1, MAX_TRIAL_FILTERS).round().astype(np.int64)
        attrs = dict(op.attrs)
    else:
        return op, slice(None), rows
    attrs["q"] = {k: (v[cols] if op.kind == "conv" or k != "w" else v[:, cols])
                  if k in ("w", "bias", "mult", "shift") else v for k, v in q.items()}
    return Op(op.name, op.kind, op.inputs, op.outputs, attrs), cols, rows


def exact_outputs(op, x: np.ndarray) -> np.ndarray:
    """The layer's exact 8-bit outputs on its rows x: the integer product on the 8-bit output grid."""
    wm, groups = weight_matrix(op)
    q = op.attrs["q"]
    acc = np.rint(grouped_matmul(x.astype(np.float64) - q["zx"], wm.astype(np.float64), groups)) + q["bias"]
    return K.requant(acc, q["mult"], q["shift"], q["zy"], q["lo"], q["hi"])


def output_error(y: np.ndarray, ref: np.ndarray) -> float:
    nz = ref != 0
    return float(np.abs(y[nz].astype(np.int64) - ref[nz]).mean()) if nz.any() else 0.0


def choose(errors_of, candidates, budget):
    """Algorithm 1's order and stop rule: (error, slicing, tried) of the first slice count with a slicing
    under the budget, its lowest error (the earlier slicing on ties); eight 1-bit slices if none passes."""
    tried = 0
    for count in sorted({len(c) for c in candidates}):
        errors = []
        for s in (c for c in candidates if len(c) == count):
            errors.append((errors_of(s), s))
            tried += 1
        passing = [e for e in errors if e[0] < budget]
        if passing:
            err, s = min(passing, key=lambda e: e[0])
            return err, s, tried
    return None, (1,) * 8, tried


@dataclass
class SlicingReport:
    mode: str = "target"
    input_slices: list = field(default_factory=list)
    recovery_bits: int = 0
    error_budget: float = DEFAULT_BUDGET
    layers: dict = field(default_factory=dict)   # layer -> {slices, error, tried, ms}


class Slicing:
    name = "slicing"

    def run(self, g: Graph, ctx) -> SlicingReport:
        t = ctx.target
        mode = ctx.options.slicing or ("adaptive" if t.adaptive_slicing else None)
        layers = [op for op in g.topo() if op.kind in CROSSBAR_OPS]
        inputs = ((1,) * 8, 0) if ctx.options.no_speculation else (tuple(t.input_slices), t.recovery_bits)
        signed = ctx.options.signed_inputs == "split"
        for op in g.ops.values():       # products whose weights are written at run time (passes/attention.py)
            if op.kind == "matmul" and op.attrs.get("crossbar"):
                op.attrs["islices"], op.attrs["slices"] = inputs, tuple(t.weight_slices)
        for op in layers:
            op.attrs["islices"] = inputs
            # an input with a zero point can be negative; it runs as positive and negative parts
            op.attrs["signed_input"] = signed and op.attrs["q"]["zx"] > 0
        rep = SlicingReport(input_slices=list(inputs[0]), recovery_bits=inputs[1])
        if mode is None:
            rep.layers = {op.name: {"slices": list(t.weight_slices)} for op in layers}
            return rep
        if mode != "adaptive":   # one slicing for every layer, or a {layer: slicing} map (others: the target's)
            chosen = {op.name: tuple(mode.get(op.name, t.weight_slices) if isinstance(mode, dict) else mode)
                      for op in layers}
            for op in layers:
                sl = chosen[op.name]
                if sum(sl) != 8 or any(not 1 <= w <= t.cell_bits for w in sl):
                    raise CompileError(f"slicing {list(sl)} must be widths 1..{t.cell_bits} summing to 8")
                op.attrs["slices"] = sl
            rep.mode, rep.layers = "forced", {k: {"slices": list(v)} for k, v in chosen.items()}
            return rep
        if ctx.calib is None:
            raise CompileError("adaptive weight slicing needs calibration inputs (--calib)")
        budget = ctx.options.error_budget
        encoding = ctx.options.encoding or t.encoding
        env = run_reference(g, {k: v[:SAMPLES] for k, v in ctx.calib.items()}, keep_all=True)
        rep.mode, rep.error_budget = "adaptive", budget
        candidates = slicings(min(4, t.cell_bits))
        for op in layers:
            t0 = time.perf_counter()
            last = (op is layers[-1] and not ctx.options.slicing_last_layer) or "mult" not in op.attrs["q"]
            if last:
                op.attrs["slices"] = (1,) * 8
                rep.layers[op.name] = {"slices": [1] * 8, "error": None, "tried": 0, "ms": 0.0}
                continue
            x = layer_inputs(op, env[op.inputs[0]])
            y = env[op.outputs[0]]
            trial, cols, xrows = sample_filters(op)
            keep = max(16, int(MAX_TRIAL_MACS // trial.attrs["q"]["w"].size))
            idx = np.linspace(0, len(x) - 1, keep).round().astype(np.int64) if len(x) > keep else slice(None)
            x = x[idx][:, xrows]
            # the exact 8-bit outputs: the layer's own u8 codes, or for a float32 output (the vector unit's)
            # its exact accumulator on the 8-bit grid of the output's range
            ref = layer_outputs(op, y)[idx][:, cols] if y.dtype == np.uint8 else exact_outputs(trial, x)
            cache: dict = {}
            err, chosen, tried = choose(lambda sl: slicing_error(trial, x, ref, sl, t, encoding, cache), candidates,
                                        budget)
            op.attrs["slices"] = chosen
            rep.layers[op.name] = {"slices": list(chosen), "error": err, "tried": tried,
                                   "ms": round(1e3 * (time.perf_counter() - t0), 2)}
        return rep
