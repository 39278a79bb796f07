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
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

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
    saturated count: what X.mvm gives block by block, without its event counts (simulate_slicings for one)."""
    return simulate_slicings(op, x, [slices], target, encoding, islices, ideal, blocks, planes)[0]


def simulate_slicings(op, x: np.ndarray, slicings_, target, encoding: str, islices=(1,) * 8,
                      ideal: bool = False, blocks: LayerBlocks | None = None, planes: dict | None = None
                      ) -> list[tuple[np.ndarray, int]]:
    """simulate_layer for several slicings of one slice count at once (they share the tiling): each one's
    8-bit outputs and saturated count, every input row (Trials.run)."""
    tr = Trials(op, x, slicings_, target, encoding, islices, blocks, planes, ideal)
    if ideal:
        return [(tr.requant(tr.exact), 0)] * len(slicings_)
    corr, sat = tr.run(range(len(slicings_)), 0, len(x))
    return [(tr.requant(tr.exact + corr[k] if sat[k] else tr.exact), int(sat[k])) for k in range(len(slicings_))]


class Trials:
    """Several slicings of one slice count of a layer, on its sampled input rows x: what they share.

    The layer's exact accumulator (every sum linear) is formed once per input x; a slicing only adds, for
    each column sum that its ADC clips, (clipped - exact) x the column's shift-add factor. The columns that can
    reach an ADC bound (column_bounds) of the active slicings of a crossbar go through one product with the
    input's bit planes. `blocks` (layer_blocks) must have been tiled for this slice count; `planes` caches the
    input slices and the exact accumulator across calls on the same x (a caller trying many slicings of one
    layer passes the same dict). All sums are exact integers: the outputs and counts are X.mvm's bit for bit."""

    def __init__(self, op, x, slicings_, target, encoding, islices=(1,) * 8, blocks=None, planes=None,
                 ideal: bool = False, group: int = 0):
        count = len(slicings_[0])
        assert all(len(s) == count for s in slicings_), "one slice count per call"
        lb = blocks if blocks is not None and len(blocks.blocks) == len(
            tile_layer(blocks.kg, blocks.wm.shape[1], blocks.wm.shape[1] // blocks.ng, target.rows, target.cols,
                       count)) else layer_blocks(op, target, count)
        n = lb.wm.shape[1]
        q = self.q = op.attrs["q"]
        signed = op.attrs.get("signed_input", False)
        planes = {} if planes is None else planes
        key = (id(x), tuple(islices), signed, int(q["zx"]))
        if planes.get("key") != key:        # x is kept with its key, so its id is not reused while cached
            parts = [x]
            if signed:
                v = x.astype(np.int16) - q["zx"]
                parts = [np.maximum(v, 0).astype(np.uint8), np.maximum(-v, 0).astype(np.uint8)]
            exact = np.zeros((len(x), n))
            for rows, cols, mask, w, _, _ in lb.blocks:     # exact sums: the same whatever the tiling
                for sign, part in zip((1, -1), parts):
                    exact[:, cols[0]:cols[1]] += sign * X.product(part[:, rows[0]:rows[1]], w)
            exact += q["bias"] - (0 if signed else q["zx"]) * lb.wm.astype(np.int64).sum(axis=0)
            planes.clear()
            planes.update(key=key, x=x, exact=exact, slices=[np.stack(X.slice_values(p, islices)) for p in parts])
        self.exact, self.xs, self.n = planes["exact"], planes["slices"], n
        self.ish = np.array([2.0 ** v for v in X.slice_shifts(islices)])
        self.adc = target.adc_range
        self.group = group          # rows summed per conversion (0: a crossbar's all); see run
        self.blocks = []        # per crossbar: rows, and per slicing (levels (R, k), filters, factors)
        for rows, cols, mask, w, hist, terms in ([] if ideal else lb.blocks):    # an ideal ADC clips nothing
            columns = []
            for sl in slicings_:
                phi, flips = encode_block(w, mask, sl, encoding, target.flip, hist, terms)
                g, n_idx, coef = _risky_columns(w, mask, encoding, phi, sl, flips, islices, target.adc_range)
                columns.append((g, cols[0] + n_idx, coef.astype(np.float64)))
            self.blocks.append((rows, columns))

    def requant(self, acc):
        q = self.q
        return K.requant(acc, q["mult"], q["shift"], q["zy"], q["lo"], q["hi"])

    def run(self, active, m0: int, m1: int):
        """Rows m0:m1 of the active slicings: (corrections (len(active), rows, n) to add to exact, saturated
        counts)."""
        active = list(active)
        corr = np.zeros((len(active), m1 - m0, self.n))
        saturated = np.zeros(len(active), np.int64)
        lo, hi = self.adc
        for rows, columns in self.blocks:
            cs = [columns[k] for k in active]
            if not sum(len(c[1]) for c in cs):
                continue
            g = np.concatenate([c[0] for c in cs], axis=1)
            col_k = np.concatenate([np.full(len(c[1]), i) for i, c in enumerate(cs)])
            col_f = np.concatenate([c[1] for c in cs])
            coef = np.concatenate([c[2] for c in cs])
            size = rows[1] - rows[0]
            gsize = self.group or size
            for sign, sl_x in zip((1, -1), self.xs):
                nI = len(sl_x)
                step = max(1, X.BLOCK_ELEMS // max(1, nI * g.shape[1]))
                for r0 in range(m0, m1, step):     # row chunks bound the (slices x rows x columns) sums held
                    # with row groups each group's sums are converted (and clipped) apart; the columns risky
                    # for the whole crossbar include every column risky for a group, so none is missed
                    for a in range(0, size, gsize):
                        b = min(size, a + gsize)
                        xs = sl_x[:, r0:min(r0 + step, m1), rows[0] + a:rows[0] + b]
                        s = X.product(xs.reshape(-1, b - a), g[a:b])
                        saturated += _apply_clips(s, nI, lo, hi, self.ish, col_k, col_f, sign * coef,
                                                  corr[:, r0 - m0:r0 - m0 + xs.shape[1]])
        return corr, saturated


def trial_errors(op, x, ref, slicings_, target, encoding, budget: float, cache: dict | None = None) -> list[float]:
    """Mean error (output_error) of each slicing of one slice count, or inf for one proved unable to be
    chosen (it cannot pass the budget, or cannot beat the lowest error): what choose needs, for less work.

    Every per-row error is >= 0, so a slicing's error over the rows seen so far bounds its full error from
    below. The slicing with the lowest error on the first rows is run on all of them; the others go on row
    chunk by row chunk only while they might still pass and beat (or tie, if earlier) that error."""
    cache = {} if cache is None else cache
    count = len(slicings_[0])
    lb = cache.get(count) or cache.setdefault(count, layer_blocks(op, target, count))
    tr = Trials(op, x, slicings_, target, encoding, blocks=lb, planes=cache.setdefault("planes", {}))
    nz = ref != 0
    total = int(nz.sum())
    if not total:
        return [0.0] * len(slicings_)
    M = len(x)

    def sums(active, m0, m1):       # integer sum of |y - ref| over the nonzero refs of rows m0:m1
        corr, sat = tr.run(active, m0, m1)
        r, z, e = ref[m0:m1].astype(np.int64), nz[m0:m1], tr.exact[m0:m1]
        return [int(np.abs(tr.requant(e + corr[i] if sat[i] else e).astype(np.int64) - r)[z].sum())
                for i in range(len(active))]

    cuts = [0] + [c for c in (max(1, M // 8), max(1, M // 4), max(1, M // 2)) if c < M] + [M]
    cuts = sorted(set(cuts))
    partial = dict(zip(range(len(slicings_)), sums(range(len(slicings_)), 0, cuts[1])))
    best = min(partial, key=lambda k: (partial[k], k))
    full = {best: partial[best] + sum(sums([best], a, b)[0] for a, b in zip(cuts[1:], cuts[2:]))}

    def alive(k):
        s = partial[k]
        return s / total < budget and (s < full[best] or (s == full[best] and k < best))

    active = [k for k in partial if k != best and alive(k)]
    for a, b in zip(cuts[1:], cuts[2:]):
        if not active:
            break
        for k, s in zip(active, sums(active, a, b)):
            partial[k] += s
        active = [k for k in active if alive(k)]
    for k in active:
        full[k] = partial[k]
    return [full[k] / total if k in full else math.inf for k in range(len(slicings_))]


def _apply_clips(s, nI, lo, hi, ish, col_k, col_f, coef, corr) -> np.ndarray:
    """slicing_kernel.apply_clips (the compiled kernel, unless PIMC_XBAR=numpy asks for this NumPy reference):
    per slicing, how many sums of s (input slice i's rows first) the ADC clipped; each clip's correction,
    factor x 2^shift x (clipped - sum), added into corr (slicings, rows, filters)."""
    if _kernel() is not None:
        apply_clips = _kernel()
        cnt = np.zeros((len(s) // nI, corr.shape[0]), np.int64)
        apply_clips(s, nI, float(lo), float(hi), ish, col_k, col_f, coef, corr, cnt)
        return cnt.sum(axis=0)
    d = np.clip(s, lo, hi)
    d -= s                                                   # nonzero where the ADC clipped
    cnt = np.bincount(col_k, weights=(d != 0).sum(axis=0), minlength=corr.shape[0]).astype(np.int64)
    if cnt.any():
        t = np.tensordot(ish, d.reshape(nI, -1, d.shape[1]).astype(np.float64), axes=1) * coef
        for k in np.nonzero(cnt)[0]:
            sel = np.nonzero(col_k == k)[0]
            for j in np.unique(np.abs(coef[sel])):      # columns of one weight slice: at most one per filter
                both = sel[np.abs(coef[sel]) == j]
                corr[k][:, col_f[both]] += t[:, both]
    return cnt


@lru_cache(maxsize=1)
def _compiled():
    try:
        from .slicing_kernel import apply_clips
    except ImportError:         # without Numba, the NumPy reference
        return None
    return apply_clips


def _kernel():
    return None if os.environ.get("PIMC_XBAR", "").lower() == "numpy" else _compiled()


def _risky_columns(w, mask, encoding, center, slices, flip, islices, adc_range):
    """The physical columns of a block whose sums can reach an ADC bound: their (R, k) levels as X.program
    encodes them, filters and shift-add factors (+-2^shift; flipped columns store complements)."""
    levels = _levels(w, mask, encoding, center, slices, flip)
    lo, hi = adc_range
    imax = (1 << max(islices)) - 1
    up = np.maximum(levels, 0).sum(axis=1, dtype=np.int64)                       # X.column_bounds
    chi, clo = up * imax, (levels.sum(axis=1, dtype=np.int64) - up) * imax
    j_idx, n_idx = np.nonzero((clo < lo) | (chi > hi))
    wsh = np.array([1 << s for s in X.slice_shifts(slices)], dtype=np.int64)
    coef = wsh[j_idx] * np.where(flip[j_idx, n_idx], -1, 1) if flip is not None else wsh[j_idx]
    return levels[j_idx, :, n_idx].T, n_idx, coef


def _levels(w, mask, encoding, center, slices, flip) -> np.ndarray:
    """(n_slices, R, n) cell levels of a block as X.program encodes it (the adding device's level minus the
    subtracting one's; flipped columns store complements), from the weights and mask layer_blocks made; int8
    (a slice of at most 7 bits), else int16."""
    offsets = np.where(mask, w.astype(np.int16) - np.asarray(center, dtype=np.int16).reshape(1, -1), 0)
    low = 0 if encoding == "unsigned" else -255
    if offsets.min(initial=0) < low or offsets.max(initial=0) > 255:
        raise ValueError(f"weights minus center span [{offsets.min()}, {offsets.max()}], outside the 8-bit "
                         f"{encoding} range [{low}, 255]")
    dt = np.int8 if max(slices) <= 7 else np.int16
    if encoding == "unsigned":
        pos = np.stack(X.slice_values(offsets, slices)).astype(dt)
        if flip is not None:
            full = np.array([(1 << s) - 1 for s in slices], dt)[:, None, None]
            pos = np.where(flip[:, None, :], full - pos, pos) * mask.astype(dt)
        return pos
    a = np.abs(offsets).astype(np.uint8)     # a weight's offset sits on one device of its pair: level = sign x
    sign = np.sign(offsets).astype(dt)       # slice of |o|
    out = np.empty((len(slices),) + a.shape, dt)
    for j, (sh, wd) in enumerate(zip(X.slice_shifts(slices), slices)):
        np.multiply(((a >> sh) & ((1 << wd) - 1)).astype(dt), sign, out=out[j])
    return out


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
    under the budget, its lowest error (the earlier slicing on ties); eight 1-bit slices if none passes.
    errors_of maps a list of slicings of one slice count to their errors (every one of a count is tried)."""
    tried = 0
    for count in sorted({len(c) for c in candidates}):
        group = [c for c in candidates if len(c) == count]
        errors = list(zip(errors_of(group), group))
        tried += len(group)
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
        last = layers[-1] if layers and not ctx.options.slicing_last_layer else None

        def search(op):
            t0 = time.perf_counter()
            if op is last or "mult" not in op.attrs["q"]:
                return (1,) * 8, {"slices": [1] * 8, "error": None, "tried": 0, "ms": 0.0}
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
            err, chosen, tried = choose(lambda group: trial_errors(trial, x, ref, group, t, encoding, budget, cache),
                                        candidates, budget)
            return chosen, {"slices": list(chosen), "error": err, "tried": tried,
                            "ms": round(1e3 * (time.perf_counter() - t0), 2)}

        # layers are searched independently, one per core (NumPy, BLAS and the clip kernel release the GIL)
        with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
            for op, (chosen, entry) in zip(layers, pool.map(search, layers)):
                op.attrs["slices"] = chosen
                rep.layers[op.name] = entry
        return rep
