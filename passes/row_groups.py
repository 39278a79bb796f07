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
from .slicing import MAX_TRIAL_MACS, SAMPLES, Trials, layer_blocks, layer_inputs, sample_filters

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
        env = run_reference(g, {k: v[:SAMPLES] for k, v in ctx.calib.items()}, keep_all=True)

        def search(op):
            slices = tuple(op.attrs.get("slices") or t.weight_slices)
            islices, recover = op.attrs.get("islices") or (tuple(t.input_slices), t.recovery_bits)
            judged = judged_slices(islices, recover)
            x = layer_inputs(op, env[op.inputs[0]])
            trial, _, xrows = sample_filters(op)
            keep = max(16, int(MAX_TRIAL_MACS // trial.attrs["q"]["w"].size))
            idx = np.linspace(0, len(x) - 1, keep).round().astype(np.int64) if len(x) > keep else slice(None)
            x = np.ascontiguousarray(x[idx][:, xrows])
            wm, groups = weight_matrix(trial)
            kg, n = wm.shape
            tiles = tile_layer(kg, n, groups, t.rows, t.cols, len(slices))
            used = max(r[1] - r[0] for r, _ in tiles)
            q = trial.attrs["q"]
            signed = trial.attrs.get("signed_input", False)
            const = q["bias"] - (0 if signed else q["zx"]) * wm.astype(np.int64).sum(axis=0)
            planes: dict = {}
            blocks = layer_blocks(trial, t, len(slices))        # encoded once, read by every group

            def measure(grp):
                tr = Trials(trial, x, [slices], t, encoding, judged, blocks, planes, group=grp)
                corr, sat = tr.run([0], 0, len(x))
                prod = tr.exact - const
                norm = float(np.sqrt((prod ** 2).sum()))
                loss = float(np.sqrt((corr[0] ** 2).sum())) / norm if norm else 0.0
                converts = len(x) * len(judged) * (2 if signed else 1) * len(slices) * sum(
                    (c[1] - c[0]) * row_groups(r[1] - r[0], grp) for r, c in tiles)
                return loss, int(sat[0]), converts

            macs = len(x) * sum(int(b[2].sum()) for b in blocks.blocks)

            def entry(grp, loss, sat, converts, tried):
                turns = row_groups(used, grp)
                return {"group": grp, "turns": turns, "loss": round(loss, 6), "clipped": sat,
                        "clipped_rate": round(sat / converts, 6) if converts else 0.0,
                        "converts_per_mac": round(converts / macs, 4) if macs else 0.0,
                        "converts_factor": round(sum((c[1] - c[0]) * row_groups(r[1] - r[0], grp) for r, c in tiles)
                                                 / sum(c[1] - c[0] for _, c in tiles), 4),
                        "slices": list(slices), "judged_input_slices": list(judged), "tried": tried,
                        "within_budget": loss <= budget}

            if forced is not None:
                grp = op.attrs["row_group"]
                return grp, entry(grp, *measure(grp), 1)
            best = None
            tried = 0
            for grp in candidates(used):
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
