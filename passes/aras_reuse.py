"""Partial weight reuse (ARAS sec. V-C, eq. 3-7).

When weights are rewritten (ARAS), a cell costs |new level - old level| write pulses and nothing when its
level stays. Shifting a layer's 8-bit weight codes (the unsigned encoding stores W + 128, 0..255) by an
integer delta, so that their mean sits at a common center, makes successive layers agree more often in the
high-order cells. Codes pushed outside 0..255 are clipped.

Exactness: the crossbar stores O = W - center and the digital side adds center * sum(x) (encoding.py);
the unsigned encoding uses center = -128. Storing O' = clip(W + 128 + delta) with center' = -128 - delta gives
O'.x + center'.sum(x) = W_eff.x with W_eff = O' - 128 - delta, which is W wherever nothing was clipped. So the
pass sets each shifted layer's encoding center to -128 - delta (the weight zero point absorbs delta, eq. 7) and
q["w"] to W_eff: the quantised reference then computes what the crossbars compute, bit for bit, and equals the
unshifted reference exactly when no weight clips.

Contract (WeightReuse): runs after EncodeWeights on an unsigned-encoded graph. Crossbar layers are written in
`plan` order, a list of (slot, layer, crossbar index) writes onto physical crossbars; by default the layers'
crossbars in topological order fill `slots` physical crossbars round-robin (slots=None: the target's count,
so a model that fits never overwrites another layer). A slot's image is its rows x cols cell levels, a
filter's slices in adjacent physical columns; a write changes only the cells its layer uses, fresh cells hold
level 0 (project assumption). Figures are per inference in steady state (the slots start as the previous
inference left them). One center is common to every layer but the first (the first crossbar layer is never
shifted); each layer gets its own delta = center - round(mean code). A layer the center would clip beyond
max_clip of its weights stays unshifted. The candidates, "no shift" and the six centers, are each simulated;
of those that cost no more pulses than no shift, the most skipped cells wins (then fewer pulses, fewer
clipped weights, candidate order). A common center
matters because a cell is skipped only when the layer before it in that cell moved the same way. Clipping is
the accuracy risk: the report counts it; accuracy itself is measured on data by the caller.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ir import CompileError, Graph
from runtime import crossbar as X

from .mapping import CROSSBAR_OPS, weight_matrix

CENTERS = (88, 96, 104, 152, 160, 168)      # ARAS sec. V-C: the six candidate centers
DEFAULT_MAX_CLIP = 0.01                     # project choice: at most 1% of a layer's weights may clip


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

def effective_weights(w: np.ndarray, delta: int) -> np.ndarray:
    """The weights a layer computes with once its codes W + 128 are shifted by delta and clipped."""
    return (np.clip(w.astype(np.int64) + 128 + delta, 0, 255) - 128 - delta).astype(w.dtype)


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
                 slots: int | None = None, plan: list[tuple[int, str, int]] | None = None):
        self.centers, self.max_clip, self.slots, self.plan = tuple(centers), max_clip, slots, plan

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
        cache: dict[tuple[str, int], list] = {}

        def costs(deltas: dict[str, int]) -> dict[str, WriteCost]:
            def images(name, j):
                d = deltas.get(name, 0)
                if (name, d) not in cache:
                    op = by_name[name]
                    wm = effective_weights(op.attrs["wm"], d)
                    cache[name, d] = [image(encode(op, i, wm, -128 - d if d else op.attrs["enc"]["xbars"][i]["center"],
                                                   flip[name])) for i in range(len(op.attrs["xbars"]))]
                return cache[name, d][j]
            return steady_costs(plan, images, (t.rows, t.cols))

        # one center common to every layer but the first (each layer with its own delta); a layer the center
        # would clip beyond max_clip stays unshifted
        best = None
        for k, c in enumerate((None,) + self.centers):
            choice = {}
            for op in ops[1:] if c is not None else []:
                if not narrow(op):
                    continue
                codes = op.attrs["q"]["w"].astype(np.int64) + 128
                d = delta_for(codes, c)
                clipped = shift_codes(codes, d)[1]
                if d and clipped <= self.max_clip * codes.size:
                    choice[op.name] = (d, clipped)
            total = WriteCost()
            for wc in costs({n: d for n, (d, _) in choice.items()}).values():
                total += wc
            if c is None:
                base = total.pulses
            # never more pulses than no shift; then the most skipped cells
            key = (total.pulses > base, -total.skipped, total.pulses, sum(v[1] for v in choice.values()), k)
            if best is None or key < best[0]:
                best = (key, c if choice else None, choice)
        _, center, choice = best
        before, after = costs({}), costs({n: d for n, (d, _) in choice.items()})

        rep = ReuseReport(list(self.centers), self.max_clip, len({s for s, _, _ in plan}), len(plan), center)
        for op in ops:
            d, clipped = choice.get(op.name, (0, 0))
            b, a = before.get(op.name, WriteCost()), after.get(op.name, WriteCost())
            rep.layers[op.name] = LayerReuse(center if d else None, d, int(op.attrs["q"]["w"].size), clipped, a.cells,
                                             b.pulses, a.pulses, b.skipped, a.skipped)
            if d:
                apply_shift(op, d, flip[op.name])
        rep.pulses_before = sum(lr.pulses_before for lr in rep.layers.values())
        rep.pulses_after = sum(lr.pulses_after for lr in rep.layers.values())
        rep.clipped = sum(lr.clipped for lr in rep.layers.values())
        return rep


def narrow(op) -> bool:
    """Weights that fit W + 128 in 0..255. An already-quantised model's weights with a zero point (code - zero,
    up to 9 bits) do not: such a layer keeps its own encoding centers and is never shifted."""
    w = op.attrs["q"]["w"]
    return bool(w.min(initial=0) >= -128 and w.max(initial=0) <= 127)


def apply_shift(op, delta: int, flip: bool) -> None:
    """Shift a mapped, unsigned-encoded layer's stored codes by delta: W_eff into q["w"] and wm, every crossbar's
    center to -128 - delta, flips chosen again for the new codes."""
    q = op.attrs["q"]
    q["w"] = effective_weights(q["w"], delta)
    op.attrs["wm"] = weight_matrix(op)[0]
    for j, e in enumerate(op.attrs["enc"]["xbars"]):
        e["center"] = -128 - delta
        e["flip"] = encode(op, j, op.attrs["wm"], -128 - delta, True).flip if flip else None
    op.attrs["reuse"] = {"delta": delta}
