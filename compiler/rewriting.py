"""Weight-rewriting targets: compile options -> the schedule (backend/schedule.py) with the ARAS
optimisations plugged in, each switchable (ARAS sec. V-A to V-C).

Options (compile_model's `options`, pimc's flags): `schedule` naive | overlap | aras (default aras), and for
aras `bank_select`, `replication`, `weight_reuse` (default on) and `reuse_max_clip` (the share of a layer's
weights its shift may clip, passes/aras_reuse.py). naive and overlap are the unoptimised
baselines: the 15 x 256 KB global buffer of ARAS sec. VI (the fewest banks powered per layer), one copy of each layer,
weights as quantised. `--no-bank-select` keeps that buffer under aras too; the others drop their step. Weight
reuse shifts 0..255 codes, so it applies to the unsigned encoding only (others compile without it).
"""
from __future__ import annotations

import dataclasses
import time

from backend.schedule import MODES, ScheduleOptions, plan_schedule
from ir import CompileError, Graph
from isa import Target
from passes import aras_banks, aras_replication
from passes import aras_reuse
from passes.aras_reuse import WeightReuse
from passes.manager import PassRecord
from passes.options import Options


def _replicate(loads, free_rows):
    rep = aras_replication.replicate([aras_replication.LayerLoad(**dataclasses.asdict(x)) for x in loads], free_rows)
    c = rep.chosen
    return c.factors, c.now, {"method": rep.chosen_method, "factors": list(c.factors), "now": c.now,
                              "heuristic_makespan_ns": rep.heuristic.makespan, "ilp_makespan_ns": rep.ilp.makespan,
                              "heuristic_factors": list(rep.heuristic.factors), "ilp_factors": list(rep.ilp.factors)}


def _bank_selector(t: Target):
    def select(layers):
        rep = aras_banks.select_banks([aras_banks.LayerActs(*x) for x in layers], t.gbuf_banks_kb, t.gbuf_mw_per_kb)
        banks = {n: (lb.in_banks, lb.out_banks) for n, lb in rep.layers.items()}
        return banks, {"banks_kb": rep.banks_kb, "mw_per_kb": rep.mw_per_kb,
                       "layers": {n: {"in": lb.in_banks, "out": lb.out_banks, "static_mw": lb.static_mw,
                                      "gated_baseline_mw": lb.gated_baseline_mw} for n, lb in rep.layers.items()}}
    return select


def prepare(t: Target, options: Options) -> tuple[Target, ScheduleOptions | None]:
    """The target the program runs on (the baseline buffer unless bank selection is on) and the schedule."""
    mode = options.schedule
    if t.program_once:
        if mode:
            raise CompileError(f"--schedule {mode}: target {t.name} is program-once (it never rewrites weights)")
        return t, None
    mode = mode or "aras"
    if mode not in MODES:
        raise CompileError(f"unknown schedule '{mode}' (known: {', '.join(MODES)})")
    aras = mode == "aras"
    if t.gbuf_banks_kb and not (aras and options.bank_select):
        t = t.replace(gbuf_banks_kb=aras_banks.BASELINE_BANKS_KB)
    return t, ScheduleOptions(mode, _replicate if aras and options.replication else None,
                              _bank_selector(t) if t.gbuf_banks_kb else None)


def plan(g: Graph, ctx, sched: ScheduleOptions, progress=None) -> list[PassRecord]:
    """Plan the schedule now (weight reuse needs to know which crossbars overwrite which), then reuse."""
    t0 = time.perf_counter()
    ops = g.topo()
    unsigned = all(op.attrs["enc"]["encoding"] == "unsigned" for op in ops if op.kind in ("conv", "linear"))
    if unsigned and ctx.options.cell_timed_plan:
        sched.write_costs = aras_reuse.write_timer(g, ctx.target)
    sched.plan = plan_schedule(g, ops, ctx.target, sched)
    records = [PassRecord("plan_schedule", time.perf_counter() - t0,
                          {"mode": sched.mode, "planned_ns": sched.plan.planned_ns, "writes": len(sched.plan.writes),
                           "timed": sched.plan.timed})]
    if sched.mode == "aras" and ctx.options.weight_reuse and unsigned:
        t0 = time.perf_counter()
        rep = WeightReuse(plan=sched.plan.writes, max_clip=ctx.options.reuse_max_clip,
                          loss_budget=ctx.options.reuse_loss_budget).run(g, ctx)
        records.append(PassRecord("weight_reuse", time.perf_counter() - t0, rep))
    if progress:
        progress("plan_schedule")
    return records
