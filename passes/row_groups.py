"""ADC-aware mapping: how many crossbar rows are summed per conversion (row groups: partial wordline activation).

A crossbar of R rows read all at once sums R cells per column; an ADC of few bits clips what it cannot
resolve (the aras preset: 128 rows of 2-bit cells through a 6-bit ADC). Reading the rows in groups of g, one
group after another, converts each group's partial sum apart: ceil(R / g) times the conversions and the
crossbar time, smaller sums. Contract: op.attrs["row_group"] of every crossbar layer (0: all rows at once),
which the lowering writes on its crossbars (xbwrite group=g) and the runtime reads them by.

Per layer the candidates are g = all rows, then halves (R/2, R/4, ..., 1), fewest turns first; each is run on
calibration rows (the slicing search's sample: passes/slicing.py Trials, the target's encoding and the
layer's weight slicing, exact integer sums) and its loss is the relative L2 error the ADC's clipping adds to
the layer's product, ||clipped - exact|| / ||exact||. The first candidate within options.saturation_budget wins.
A speculating target (RAELLA sec. 4.3) is judged in its recovery slices: a failed speculative sum is
recomputed in them, so they are what clips. A layer that no group brings within the budget takes the
lowest-loss group and the report says so (and a warning). options.row_group forces a group for every
layer or per layer ({layer: g}); the report still gives its measured loss.
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ir import CompileError, Graph
from isa.target import row_groups

from .mapping import CROSSBAR_OPS, tile_layer, weight_matrix
from .reference import run_reference
from .encoding import encode_block
from .slicing import MAX_TRIAL_MACS, SAMPLES, Trials, _risky_columns, layer_blocks, layer_inputs, sample_filters

DEFAULT_BUDGET = 0.01


def candidates(rows: int) -> list[int]:
    """Row groups to try, fewest turns first: 0 (all rows), then rows / 2, rows / 4, ..., 1."""
    out, g = [0], rows // 2
    while g >= 1:
        out.append(g)
        g //= 2
    return out


def judged_slices(islices, recover: int) -> tuple[int, ...]:
    """The input slices whose sums the ADC keeps: the layer's, or under speculation its recovery slices."""
    if not recover:
        return tuple(islices)
    return (recover,) * (8 // recover) + ((8 % recover,) if 8 % recover else ())


@dataclass
class RowGroupReport:
    saturation_budget: float = DEFAULT_BUDGET
    mode: str = "chosen"               # chosen (by the budget) or forced (options.row_group)
    # layer -> {group, turns (of its fullest crossbar), loss, clipped conversions and their rate, converts_per_mac
    # and converts_factor (against all rows at once) on the calibration rows judged, ...}
    layers: dict = field(default_factory=dict)
    over_budget: list = field(default_factory=list)   # layers no group brings within the budget


class RowGroups:
    name = "row_groups"

    def run(self, g: Graph, ctx) -> RowGroupReport:
        t = ctx.target
        opts = ctx.options
        budget = opts.saturation_budget
        layers = [op for op in g.topo() if op.kind in CROSSBAR_OPS]
        forced = opts.row_group
        rep = RowGroupReport(saturation_budget=budget, mode="chosen" if forced is None else "forced")
        for op in layers:
            op.attrs["row_group"] = 0
        if forced is not None:
            for op in layers:
                grp = forced.get(op.name, 0) if isinstance(forced, dict) else forced
                if isinstance(grp, bool) or not isinstance(grp, int) or not 0 <= grp <= t.rows:
                    raise CompileError(f"row group {grp!r} for layer {op.name}: expected rows per conversion in "
                                       f"0..{t.rows} (0: all rows)")
                op.attrs["row_group"] = grp
        if not layers or ctx.calib is None:
            if forced is None and ctx.calib is None and layers:
                rep.mode = "none (no calibration inputs)"
            for op in layers:
                rep.layers[op.name] = {"group": op.attrs["row_group"], "loss": None}
            return rep
        encoding = opts.encoding or t.encoding

        class Layer:
            """What every candidate of one layer shares: its sampled filters, tiles and encoded blocks."""
            def __init__(self, op):
                self.op = op
                self.slices = tuple(op.attrs.get("slices") or t.weight_slices)
                islices, recover = op.attrs.get("islices") or (tuple(t.input_slices), t.recovery_bits)
                self.judged = judged_slices(islices, recover)
                self.trial, _, self.xrows = sample_filters(op)
                self.wm, groups = weight_matrix(self.trial)
                kg, n = self.wm.shape
                self.tiles = tile_layer(kg, n, groups, t.rows, t.cols, len(self.slices))
                self.used = max(r[1] - r[0] for r, _ in self.tiles)
                self.signed = self.trial.attrs.get("signed_input", False)
                self.blocks = layer_blocks(self.trial, t, len(self.slices))    # encoded once, read by every group
                # can any column sum reach the ADC's bounds with every row at once? (else no group clips either)
                self.can_clip = any(self._risky(w, mask, hist, terms)
                                    for _, _, mask, w, hist, terms in self.blocks.blocks)

            def _risky(self, w, mask, hist, terms) -> bool:
                phi, flips = encode_block(w, mask, self.slices, encoding, t.flip, hist, terms)
                return len(_risky_columns(w, mask, encoding, phi, self.slices, flips, self.judged, t.adc_range)[1]) > 0

            def converts(self, grp) -> int:
                """Conversions of one input row (every part, slice and turn)."""
                return len(self.judged) * (2 if self.signed else 1) * len(self.slices) * sum(
                    (c[1] - c[0]) * row_groups(r[1] - r[0], grp) for r, c in self.tiles)

        prepared = {op.name: Layer(op) for op in layers}
        env = None
        if any(lay.can_clip for lay in prepared.values()):
            env = run_reference(g, {k: v[:SAMPLES] for k, v in ctx.calib.items()}, keep_all=True)

        def search(op):
            lay = prepared[op.name]
            slices, judged, trial, blocks = lay.slices, lay.judged, lay.trial, lay.blocks
            macs = sum(int(b[2].sum()) for b in blocks.blocks)         # of one input row

            def entry(grp, loss, sat, rows, tried):
                return {"group": grp, "turns": row_groups(lay.used, grp), "loss": round(loss, 6), "clipped": sat,
                        "clipped_rate": round(sat / (rows * lay.converts(grp)), 6) if rows else 0.0,
                        "converts_per_mac": round(lay.converts(grp) / macs, 4) if macs else 0.0,
                        "converts_factor": round(lay.converts(grp) / lay.converts(0), 4),
                        "slices": list(slices), "judged_input_slices": list(judged), "tried": tried,
                        "within_budget": loss <= budget}

            if not lay.can_clip:
                grp = op.attrs["row_group"]
                return grp, entry(grp, 0.0, 0, 0, 0)
            x = layer_inputs(op, env[op.inputs[0]])
            keep = max(16, int(MAX_TRIAL_MACS // trial.attrs["q"]["w"].size))
            idx = np.linspace(0, len(x) - 1, keep).round().astype(np.int64) if len(x) > keep else slice(None)
            x = np.ascontiguousarray(x[idx][:, lay.xrows])
            q = trial.attrs["q"]
            const = q["bias"] - (0 if lay.signed else q["zx"]) * lay.wm.astype(np.int64).sum(axis=0)
            planes: dict = {}

            def measure(grp):
                tr = Trials(trial, x, [slices], t, encoding, judged, blocks, planes, group=grp)
                corr, sat = tr.run([0], 0, len(x))
                prod = tr.exact - const
                norm = float(np.sqrt((prod ** 2).sum()))
                loss = float(np.sqrt((corr[0] ** 2).sum())) / norm if norm else 0.0
                return loss, int(sat[0]), len(x)

            if forced is not None:
                grp = op.attrs["row_group"]
                return grp, entry(grp, *measure(grp), 1)
            best = None
            tried = 0
            for grp in candidates(lay.used):
                tried += 1
                loss, sat, conv = measure(grp)
                if best is None or loss < best[1]:
                    best = (grp, loss, sat, conv)
                if loss <= budget:
                    return grp, entry(grp, loss, sat, conv, tried)
            return best[0], entry(*best, tried)

        with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
            for op, (grp, e) in zip(layers, pool.map(search, layers)):
                op.attrs["row_group"] = grp
                rep.layers[op.name] = e
                if not e["within_budget"]:
                    rep.over_budget.append(op.name)
        if rep.over_budget and forced is None:
            warnings.warn(f"row groups: {len(rep.over_budget)} layer(s) exceed the saturation budget {budget} at "
                          f"every group ({', '.join(rep.over_budget[:5])}{', ...' if len(rep.over_budget) > 5 else ''})"
                          "; they take their lowest-loss group", stacklevel=2)
        return rep
