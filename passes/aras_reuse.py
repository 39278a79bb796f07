"""Partial weight reuse (ARAS sec. V-C, eq. 3-7).

When weights are rewritten (ARAS), a cell costs |new level - old level| write pulses and nothing when its
level stays. Shifting a layer's 8-bit weight codes (the unsigned encoding stores W + 128, 0..255) by an
integer delta, so that their mean sits at a common center, makes successive layers agree more often in the
high-order cells. Codes pushed outside 0..255 are clipped.

Exactness: the crossbar stores O = W - center and the digital side adds center * sum(x) (encoding.py);
the unsigned encoding uses center = -128 for symmetric weights, and per filter the center that keeps
O in 0..255 for weights with a zero point (`--weights asymmetric`, an already-quantised model's uint8 codes),
where O is the code itself. Storing O' = clip(O + delta) with center' = center - delta gives
O'.x + center'.sum(x) = W_eff.x with W_eff = O' + center - delta, which is W wherever nothing was clipped. So
the pass moves each shifted layer's encoding centers by -delta (the weight zero point absorbs delta, eq. 7) and
sets q["w"] to W_eff: the quantised reference then computes what the crossbars compute, bit for bit, and equals
the unshifted reference exactly when no weight clips. The stored codes O are what is shifted, their mean what
is moved to the common center.

Contract (WeightReuse): runs after EncodeWeights on an unsigned-encoded graph. Crossbar layers are written in
`plan` order, a list of (slot, layer, crossbar index) writes onto physical crossbars; by default the layers'
crossbars in topological order fill `slots` physical crossbars round-robin (slots=None: the target's count,
so a model that fits never overwrites another layer). A slot's image is its rows x cols cell levels, a
filter's slices in adjacent physical columns; a write changes only the cells its layer uses, fresh cells hold
level 0 (project assumption). Figures are per inference in steady state (the slots start as the previous
inference left them). One center is common to every layer but the first (the first crossbar layer is never
shifted); each layer gets its own delta = center - round(mean code). A layer the center would clip beyond
max_clip of its weights stays unshifted. The candidates, "no shift" and the six centers, are each simulated.
Clipping is the accuracy risk, so with calibration data each candidate is also run (the quantised reference,
all its shifts applied) on a held-apart part of it, the last quarter (at most 16 samples), against the
unshifted program: its loss is the outputs' relative L2 error (continuous, so that 16 samples resolve it;
the share of samples whose top class changes is reported beside it for [N, classes] outputs, but on the
digits CNN a center that changed none of the 16 cost 11 points of test accuracy). Per layer, the report gives each candidate's clipped weights, its own
accumulator error (that layer's shift alone, on its held-apart inputs) and its skip ratio. Of the candidates
within loss_budget that cost no more pulses than no shift, the most skipped cells wins (then the lower loss,
fewer pulses, fewer clipped weights, candidate order); A5 asks for the lowest loss and the most skipped
cells, and the budget is how the two are traded. A common center matters because a cell is skipped only when
the layer before it in that cell moved the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ir import CompileError, Graph
from ir.float_eval import grouped_matmul
from runtime import crossbar as X

from .mapping import CROSSBAR_OPS, weight_matrix
from .reference import dequantize_outputs, run_reference
from .slicing import layer_inputs

CENTERS = (88, 96, 104, 152, 160, 168)      # ARAS sec. V-C: the six candidate centers
DEFAULT_MAX_CLIP = 0.01                     # project choice: at most 1% of a layer's weights may clip
DEFAULT_LOSS_BUDGET = 0.002                 # project choice: outputs within 0.2% (relative L2) of no shift
HELD_MAX, ROWS_MAX = 16, 4096               # held-apart samples; input rows per layer for its own error


# -- cells and pulses ----------------------------------------------------------------------------------------

def cell_levels(codes: np.ndarray, slices) -> np.ndarray:
    """Levels of the cells holding each 8-bit code: shape (len(slices), *codes.shape), most significant first."""
    return np.stack(X.slice_values(np.asarray(codes, np.int64), slices))


@dataclass
class WriteCost:
    cells: int = 0         # cells written
    changed: int = 0       # of those, cells whose level changes (the rest are skipped)
    pulses: int = 0        # sum of |new level - old level|

    @property
    def skipped(self) -> int:
        return self.cells - self.changed

    def __iadd__(self, o: "WriteCost") -> "WriteCost":
        self.cells, self.changed, self.pulses = self.cells + o.cells, self.changed + o.changed, self.pulses + o.pulses
        return self


def level_cost(old: np.ndarray, new: np.ndarray, mask: np.ndarray | None = None) -> WriteCost:
    """Cost of overwriting levels `old` with `new` (same shape) on the cells where mask is true."""
    d = np.abs(new.astype(np.int64) - old.astype(np.int64))
    if mask is not None:
        d = d[mask]
    return WriteCost(int(d.size), int(np.count_nonzero(d)), int(d.sum()))


def rewrite_cost(old_codes: np.ndarray, new_codes: np.ndarray, slices, mask: np.ndarray | None = None) -> WriteCost:
    """Cost of overwriting the 8-bit codes old_codes with new_codes, one cell per slice (e.g. (2, 2, 2, 2) for
    2-bit cells); mask (shape of the codes) selects the weights written."""
    m = None if mask is None else np.broadcast_to(mask, (len(slices),) + np.shape(mask))
    return level_cost(cell_levels(old_codes, slices), cell_levels(new_codes, slices), m)


def shift_codes(codes: np.ndarray, delta: int) -> tuple[np.ndarray, int]:
    """Shifted codes clipped to 0..255, and how many clipped."""
    s = np.asarray(codes, np.int64) + delta
    return np.clip(s, 0, 255), int(np.count_nonzero((s < 0) | (s > 255)))


def delta_for(codes: np.ndarray, center: int) -> int:
    """The integer shift that moves the codes' mean to `center`."""
    return int(center - np.rint(np.mean(codes)))


# -- crossbar images -----------------------------------------------------------------------------------------

def effective_weights(w: np.ndarray, centers: np.ndarray, delta: int) -> np.ndarray:
    """The weights a layer computes with once its stored codes W - centers are shifted by delta and clipped."""
    return (np.clip(w - centers + delta, 0, 255) + centers - delta).astype(w.dtype)


def center_matrix(op) -> np.ndarray:
    """Each weight's encoding center in the layer matrix's layout (K_g x N): every crossbar's center (-128, or
    one per filter for weights with a zero point) spread over the rows it holds."""
    kg, ng = op.attrs["kg"], op.attrs["ng"]
    out = np.zeros(op.attrs["wm"].shape, np.int64)
    for xb, e in zip(op.attrs["xbars"], op.attrs["enc"]["xbars"]):
        c = np.arange(*xb["cols"])
        local = np.arange(*xb["rows"])[:, None] - (c[None, :] // ng) * kg
        r, k = np.nonzero((local >= 0) & (local < kg))
        out[local[r, k], c[k]] = np.broadcast_to(np.asarray(e["center"], np.int64), c.shape)[k]
    return out


def layer_weights(op, wm: np.ndarray) -> np.ndarray:
    """q["w"]'s layout of a layer matrix (the inverse of mapping.weight_matrix)."""
    w = op.attrs["q"]["w"]
    return wm.T.reshape(w.shape).astype(w.dtype) if op.kind == "conv" else wm.astype(w.dtype)


def encode(op, j: int, wm: np.ndarray, center: int, flip: bool) -> X.Crossbar:
    """Crossbar j of a mapped layer with weight matrix wm around `center`, flips chosen as EncodeWeights does."""
    xb, kg, ng, slices = op.attrs["xbars"][j], op.attrs["kg"], op.attrs["ng"], op.attrs["slices"]
    flips = None
    if flip:
        mask = X.block_mask(xb["rows"], xb["cols"], kg, ng)
        w = X.block_weights(wm, xb["rows"], xb["cols"], kg, ng)
        flips = X.flip_flags(np.where(mask, w - center, 0), mask, slices)
    return X.program(op.name, wm, xb["rows"], xb["cols"], kg, ng, "unsigned", center, slices, flips)


def image(xb: X.Crossbar) -> tuple[np.ndarray, np.ndarray]:
    """(levels, mask) of the crossbar's cells laid out physically: row r, column filter * n_slices + slice."""
    lv = xb.pos.transpose(1, 2, 0).reshape(xb.pos.shape[1], -1)
    mk = np.repeat(xb.mask, len(xb.slices), axis=1)
    return lv, mk


# -- the pass ------------------------------------------------------------------------------------------------

@dataclass
class LayerReuse:
    center: int | None        # None: not shifted
    delta: int
    weights: int
    clipped: int
    cells: int                # cells written per inference
    pulses_before: int        # steady state, no layer shifted
    pulses_after: int         # steady state, the chosen shifts
    skipped_before: int
    skipped_after: int
    candidates: dict = field(default_factory=dict)  # center -> {delta, clipped, layer_error, skip_ratio}


@dataclass
class Candidate:
    center: int | None
    layers_shifted: int
    clipped: int
    pulses: int
    skipped: int
    skip_ratio: float
    loss: float | None         # output_error, what the budget bounds (None: no calibration data)
    output_error: float | None  # the outputs' relative L2 error against no shift, on the held-apart samples
    top1_changed: float | None  # share of held-apart samples whose top class changes


@dataclass
class ReuseReport:
    centers: list[int]
    max_clip: float
    slots: int
    writes: int
    center: int | None = None         # the common center chosen (None: nothing shifted)
    layers: dict[str, LayerReuse] = field(default_factory=dict)
    pulses_before: int = 0
    pulses_after: int = 0
    clipped: int = 0
    loss_budget: float | None = None
    held_apart: int = 0               # calibration samples the candidates were measured on
    candidates: list[Candidate] = field(default_factory=list)


def fifo_plan(ops, slots: int) -> list[tuple[int, str, int]]:
    """Every layer's crossbars in order, onto `slots` physical crossbars round-robin."""
    plan, k = [], 0
    for op in ops:
        for j in range(len(op.attrs["xbars"])):
            plan.append((k % slots, op.name, j))
            k += 1
    return plan


def steady_costs(plan, images, shape) -> dict[str, WriteCost]:
    """Write cost per layer of one inference's writes, the slots holding what the previous inference left.
    images(layer, j) -> (levels, mask) of that layer's crossbar j."""
    state: dict[int, np.ndarray] = {}
    costs: dict[str, WriteCost] = {}
    for counting in (False, True):
        for slot, name, j in plan:
            lv, mk = images(name, j)
            old = state.setdefault(slot, np.zeros(shape, np.int64))
            r, c = lv.shape
            if counting:
                costs.setdefault(name, WriteCost()).__iadd__(level_cost(old[:r, :c], lv, mk))
            old[:r, :c] = np.where(mk, lv, old[:r, :c])
    return costs


def steady_write_ns(plan, images, shape, pulse_ns: float) -> list[float]:
    """Time of each write of `plan` in steady state, as the runtime times it (runtime/schedule.py): the block's
    rectangle of cells is rewritten, and each row takes its largest increase plus its largest decrease in
    pulses (two polarity phases, the slowest cell of the row in each)."""
    state: dict[int, np.ndarray] = {}
    out: list[float] = []
    for counting in (False, True):
        for slot, name, j in plan:
            lv = images(name, j)[0]
            old = state.setdefault(slot, np.zeros(shape, np.int64))
            r, c = lv.shape
            if counting:
                d = lv - old[:r, :c]
                out.append(float((np.maximum(d, 0).max(1) + np.maximum(-d, 0).max(1)).sum()) * pulse_ns)
            old[:r, :c] = lv
    return out


def write_timer(g: Graph, t):
    """plan -> steady-state time of each of its writes, for the schedule to time itself with the cells its
    writes meet instead of the worst case (backend/schedule.py, ScheduleOptions.write_costs). Layers are
    timed with their codes as they stand (before weight reuse shifts them)."""
    ops = {op.name: op for op in g.topo() if op.kind in CROSSBAR_OPS}
    cache: dict[str, list] = {}

    def images(name, j):
        if name not in cache:
            op = ops[name]
            enc = op.attrs["enc"]
            flip = any(e["flip"] is not None for e in enc["xbars"])
            cache[name] = [image(encode(op, i, op.attrs["wm"], enc["xbars"][i]["center"], flip))
                           for i in range(len(op.attrs["xbars"]))]
        return cache[name][j]

    pulse = t.write_row_ns / (2 * ((1 << t.cell_bits) - 1))
    return lambda plan: steady_write_ns(plan, images, (t.rows, t.cols), pulse)


class WeightReuse:
    name = "weight_reuse"

    def __init__(self, centers: Sequence[int] = CENTERS, max_clip: float = DEFAULT_MAX_CLIP,
                 slots: int | None = None, plan: list[tuple[int, str, int]] | None = None,
                 loss_budget: float = DEFAULT_LOSS_BUDGET):
        self.centers, self.max_clip, self.slots, self.plan = tuple(centers), max_clip, slots, plan
        self.loss_budget = loss_budget

    def run(self, g: Graph, ctx) -> ReuseReport:
        t = ctx.target
        ops = [op for op in g.topo() if op.kind in CROSSBAR_OPS]
        for op in ops:
            enc = op.attrs.get("enc")
            if enc is None:
                raise CompileError(f"node {op.name}: weight reuse runs after encode_weights")
            if enc["encoding"] != "unsigned":
                raise CompileError(f"node {op.name}: weight reuse shifts 0..255 weight codes and needs the unsigned "
                                   f"encoding, not {enc['encoding']}")
        by_name = {op.name: op for op in ops}
        plan = self.plan if self.plan is not None else fifo_plan(ops, self.slots or t.xbars)
        for slot, name, j in plan:
            if name not in by_name or not 0 <= j < len(by_name[name].attrs["xbars"]):
                raise CompileError(f"weight reuse: the write plan names crossbar {j} of '{name}', which is not mapped")
        flip = {op.name: any(e["flip"] is not None for e in op.attrs["enc"]["xbars"]) for op in ops}
        centers = {op.name: center_matrix(op) for op in ops}
        cache: dict[tuple[str, int], list] = {}

        def costs(deltas: dict[str, int]) -> dict[str, WriteCost]:
            def images(name, j):
                d = deltas.get(name, 0)
                if (name, d) not in cache:
                    op = by_name[name]
                    wm = effective_weights(op.attrs["wm"], centers[name], d)
                    cache[name, d] = [image(encode(op, i, wm, np.asarray(e["center"]) - d, flip[name]))
                                      for i, e in enumerate(op.attrs["enc"]["xbars"])]
                return cache[name, d][j]
            return steady_costs(plan, images, (t.rows, t.cols))

        held = held_apart(ctx.calib)
        measure = Losses(g, ops, held, centers) if held else None
        per_layer: dict[str, dict] = {op.name: {} for op in ops}
        rep = ReuseReport(list(self.centers), self.max_clip, len({s for s, _, _ in plan}), len(plan),
                          loss_budget=self.loss_budget if held else None,
                          held_apart=len(next(iter(held.values()))) if held else 0)
        # one center common to every layer but the first (each layer with its own delta); a layer the center
        # would clip beyond max_clip stays unshifted
        best = None
        for k, c in enumerate((None,) + self.centers):
            choice = {}
            for op in ops[1:] if c is not None else []:
                codes = op.attrs["wm"] - centers[op.name]
                d = delta_for(codes, c)
                clipped = shift_codes(codes, d)[1]
                if d and clipped <= self.max_clip * codes.size:
                    choice[op.name] = (d, clipped)
            deltas = {n: d for n, (d, _) in choice.items()}
            layer_costs = costs(deltas)
            total = WriteCost()
            for wc in layer_costs.values():
                total += wc
            if c is None:
                base = total.pulses
            err, top1 = measure.outputs(deltas) if measure else (None, None)
            loss = err
            clipped = sum(v[1] for v in choice.values())
            rep.candidates.append(Candidate(c, len(choice), clipped, total.pulses, total.skipped,
                                            total.skipped / max(total.cells, 1), loss, err, top1))
            if c is not None:
                for op in ops:
                    d, n_clip = choice.get(op.name, (0, 0))
                    wc = layer_costs.get(op.name, WriteCost())
                    per_layer[op.name][c] = {"delta": d, "clipped": n_clip, "skip_ratio": wc.skipped / max(wc.cells, 1),
                                             "layer_error": measure.layer(op, d) if measure and d else 0.0}
            over = loss is not None and loss > self.loss_budget
            # within the loss budget and never more pulses than no shift; then the most skipped cells
            key = (over, total.pulses > base, -total.skipped, loss or 0.0, total.pulses, clipped, k)
            if best is None or key < best[0]:
                best = (key, c if choice else None, choice)
        _, center, choice = best
        rep.center = center
        before, after = costs({}), costs({n: d for n, (d, _) in choice.items()})

        for op in ops:
            d, clipped = choice.get(op.name, (0, 0))
            b, a = before.get(op.name, WriteCost()), after.get(op.name, WriteCost())
            rep.layers[op.name] = LayerReuse(center if d else None, d, int(op.attrs["q"]["w"].size), clipped, a.cells,
                                             b.pulses, a.pulses, b.skipped, a.skipped, per_layer[op.name])
            if d:
                apply_shift(op, d, flip[op.name], centers[op.name])
        rep.pulses_before = sum(lr.pulses_before for lr in rep.layers.values())
        rep.pulses_after = sum(lr.pulses_after for lr in rep.layers.values())
        rep.clipped = sum(lr.clipped for lr in rep.layers.values())
        return rep


def held_apart(calib: dict | None) -> dict | None:
    """The last quarter of the calibration set (at most HELD_MAX samples), or None without one."""
    if not calib:
        return None
    n = len(next(iter(calib.values())))
    k = min(HELD_MAX, max(1, n // 4))
    return {name: v[n - k:] for name, v in calib.items()}


class Losses:
    """What a candidate's clipping costs on held-apart samples: the program's outputs (the quantised reference
    with every shift applied) against the unshifted ones, and one layer's accumulator error alone."""

    def __init__(self, g: Graph, ops, held: dict, centers: dict[str, np.ndarray]):
        self.g, self.held, self.centers = g, held, centers
        env = run_reference(g, held, keep_all=True)
        self.base = dequantize_outputs(g, {t: env[t] for t in g.outputs})
        self.rows = {}
        for op in ops:
            x = layer_inputs(op, env[op.inputs[0]])
            if len(x) > ROWS_MAX:
                x = x[np.linspace(0, len(x) - 1, ROWS_MAX).round().astype(np.int64)]
            self.rows[op.name] = x.astype(np.float64) - op.attrs["q"]["zx"]

    def outputs(self, deltas: dict[str, int]) -> tuple[float, float | None]:
        if not deltas:
            return 0.0, (0.0 if self._classes() else None)
        ops = {op.name: op for op in self.g.ops.values() if op.name in deltas}
        saved = {n: op.attrs["q"]["w"] for n, op in ops.items()}
        try:
            for n, op in ops.items():
                op.attrs["q"]["w"] = layer_weights(op, effective_weights(op.attrs["wm"], self.centers[n], deltas[n]))
            y = dequantize_outputs(self.g, run_reference(self.g, self.held))
        finally:
            for n, op in ops.items():
                op.attrs["q"]["w"] = saved[n]
        num = sum(float(np.sum((np.asarray(y[k], np.float64) - self.base[k]) ** 2)) for k in self.base)
        den = sum(float(np.sum(np.asarray(self.base[k], np.float64) ** 2)) for k in self.base)
        top1 = None
        if self._classes():
            k = self._classes()[0]
            top1 = float(np.mean(np.argmax(y[k], 1) != np.argmax(self.base[k], 1)))
        return (num / den) ** 0.5 if den else 0.0, top1

    def _classes(self) -> list[str]:
        return [k for k, v in self.base.items() if np.ndim(v) == 2 and np.shape(v)[1] > 1]

    def layer(self, op, delta: int) -> float:
        """Relative L2 error of the layer's accumulator from its own shift, on its held-apart input rows."""
        w, groups = weight_matrix(op)
        diff = effective_weights(w.astype(np.int64), self.centers[op.name], delta).astype(np.float64) - w
        if not diff.any():
            return 0.0
        x = self.rows[op.name]
        exact = grouped_matmul(x, w.astype(np.float64), groups)
        err = grouped_matmul(x, diff, groups)
        n = float(np.linalg.norm(exact))
        return float(np.linalg.norm(err)) / n if n else 0.0


def apply_shift(op, delta: int, flip: bool, centers: np.ndarray | None = None) -> None:
    """Shift a mapped, unsigned-encoded layer's stored codes by delta: W_eff into q["w"] and wm, every crossbar's
    center(s) moved by -delta, flips chosen again for the new codes."""
    wm = effective_weights(op.attrs["wm"], center_matrix(op) if centers is None else centers, delta)
    op.attrs["q"]["w"] = layer_weights(op, wm)
    op.attrs["wm"] = weight_matrix(op)[0]
    for j, e in enumerate(op.attrs["enc"]["xbars"]):
        e["center"] = e["center"] - delta
        e["flip"] = encode(op, j, op.attrs["wm"], e["center"], True).flip if flip else None
    op.attrs["reuse"] = {"delta": delta}
