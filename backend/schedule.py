"""Weight-rewriting schedules (ARAS sec. III-IV, V-B) for targets with program_once = false.

Contract: `schedule_program(program, graph, ops, options)` takes the lowered program, in which every logical
crossbar (passes/mapping.py numbering) has one `xbwrite` and one `mvm` carrying `xb=<logical>`, and turns it
into a schedule in place:
- every logical crossbar is placed on a physical crossbar (r of them when its layer is replicated r times);
  the crossbars of a layer fill whole PE rows of `target.row_xbars` crossbars (a PE row holds one layer, ARAS sec. III);
- every `xbwrite` moves to just after the `mvm` that frees its PE row and names its physical crossbar `xb`,
  its logical one `lxb` and its row `pe`; every `mvm` names its physical crossbar, its replicas `rep` and the
  layer's buffer banks `ibanks` / `obanks`.
What the order means for time is runtime/schedule.py's: a write starts once its PE row is released (and, with
`after=`, once that step has ended), a layer computes once its crossbars hold it, one layer at a time.

Modes: `naive` writes a layer (after the previous step, `after=`), then computes it. `overlap` writes the
next layers into PE rows as soon as they are released, a layer in parts when the free rows are short. `aras`
is overlap whose every release asks `options.replicate` which layers to write now and with which
replication factor (Algorithm 1 / its ILP), with banks per layer from `options.select_banks`; replicas are
kept only when the whole plan is faster with them. A layer takes windows x input passes x xbar_cycle_ns. A
write takes rows x write_row_ns (every row swings the full range) unless `options.write_costs` times the
writes of a placement on the cells they meet in steady state (passes/aras_reuse.write_timer; the pipeline
gives it for the unsigned encoding): the plan is then made again with those times until the placement settles.
The runtime measures the real times.
"""
from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ir import CompileError, Graph
from isa import Instr, Program
from isa.target import row_groups

MODES = ("naive", "overlap", "aras")


@dataclass(frozen=True)
class Load:
    """One layer as the replication planner sees it (the fields of passes/aras_replication.LayerLoad)."""
    name: str
    rows: int              # PE rows of one copy
    windows: int
    window_ns: float
    write_ns: float
    replicable: bool
    weights: int


@dataclass
class ScheduleOptions:
    mode: str = "aras"
    # (loads, free PE rows) -> (factors, how many of loads to write now, detail for the report); None: r = 1
    replicate: Callable | None = None
    # [(layer, input bytes, output bytes)] -> ({layer: (input banks, output banks)}, detail); None: no banks
    select_banks: Callable | None = None
    # [(physical crossbar, layer, block)] in write order -> each write's time in steady state; None: worst case
    write_costs: Callable | None = None
    plan: "Plan | None" = None                  # from plan_schedule, when a pass needed it before lowering
    report: "ScheduleReport | None" = None      # filled by schedule_program


@dataclass
class ScheduleReport:
    mode: str
    pe_rows: int
    row_xbars: int
    logical_crossbars: int
    writes: int                      # xbwrite instructions, replicas included
    weights_written: int             # per inference, replicas included
    extra_weights_pct: float         # replication's extra writes, % of writing every layer once
    planned_ns: float                # the plan's inference time (crossbar time only; writes as `timed`)
    bound_ns: float                  # ARAS sec. IV's bound: every logical crossbar written once, every crossbar busy
    layers: dict = field(default_factory=dict)
    decisions: list = field(default_factory=list)
    replication: dict | None = None  # {kept, replicated_ns, single_ns}: the plan with and without replicas
    banks: dict | None = None
    timed: str = "worst case"        # how the plan timed its writes: "worst case" or "cells"


@dataclass
class _Layer:
    name: str
    index: int
    blocks: list[int]
    rows_used: dict[int, int]
    weights: dict[int, int]
    windows: int
    window_ns: float
    conv: bool
    in_bytes: int
    out_bytes: int
    factor: int = 1

    def latency(self, r: int) -> float:
        return -(-self.windows // r) * self.window_ns


@dataclass
class _Group:
    """The crossbars one PE row is written with: (block, copy) slots of one layer."""
    layer: int
    slots: list[tuple[int, int]]
    row: int = -1
    pre: bool = False               # naive: written before its layer starts, after the previous step


def _nbytes(t) -> int:
    return int(np.prod(t.shape, dtype=np.int64)) * (4 if t.dtype == "i32" else 1)


def _window_ns(op, target) -> float:
    """Crossbar time of one window, as the lowering emits the layer's mvms (lower.py _crossbar_op): its input
    passes, each of its crossbars' row groups in turn (the slowest crossbar's)."""
    islices, recover = op.attrs.get("islices") or (target.input_slices, target.recovery_bits)
    groups = max(row_groups(x["rows"][1] - x["rows"][0], op.attrs.get("row_group", 0)) for x in op.attrs["xbars"])
    return target.mvm_ns(islices, recover, 2 if op.attrs.get("signed_input", False) else 1, groups)


def _layers(g: Graph, ops, target) -> list[_Layer]:
    out = []
    for op in ops:
        if op.kind not in ("conv", "linear"):
            continue
        xbs = op.attrs["xbars"]
        oshape = g.tensors[op.outputs[0]].shape
        ishape = g.tensors[op.inputs[0]].shape
        conv = op.kind == "conv"
        windows = int(np.prod(oshape[1:])) if conv else int(np.prod(ishape[:-1], dtype=np.int64))
        out.append(_Layer(
            op.name, len(out), [x["xb"] for x in xbs],
            {x["xb"]: x["rows"][1] - x["rows"][0] for x in xbs},
            {x["xb"]: (x["rows"][1] - x["rows"][0]) * (x["cols"][1] - x["cols"][0]) for x in xbs},
            max(1, windows), _window_ns(op, target), conv,
            _nbytes(g.tensors[op.inputs[0]]), _nbytes(g.tensors[op.outputs[0]])))
    return out


class Plan:
    """Simulates the schedule and records where every write goes. A write takes its time from `costs`
    ((physical crossbar, layer, block) -> ns) when given, else the worst case."""

    def __init__(self, layers: list[_Layer], target, opts: ScheduleOptions, costs: dict | None = None):
        self.L, self.t, self.opts, self.costs = layers, target, opts, costs or {}
        self.layer_write_ns: dict[str, float] = {}              # a layer's slowest write, as `costs` has it
        for (_, name, _), ns in self.costs.items():
            self.layer_write_ns[name] = max(ns, self.layer_write_ns.get(name, 0.0))
        self.k = target.row_xbars
        self.mode = opts.mode
        self.heap = [(0.0, r) for r in range(target.pe_rows)]      # (free from, PE row)
        self.anchor: dict[int, tuple[int, int] | None] = {}        # row -> (layer, block) of its releasing mvm
        self.queue: deque[_Group] = deque()
        self.nxt = 0
        self.dram = 0.0
        self.placed: dict[int, list[int]] = {}                     # block -> physical crossbars, copy order
        self.write_end: dict[int, float] = {}                      # physical crossbar -> write end
        self.row_group: dict[int, _Group] = {}
        self.at_start: list[_Group] = []
        self.pre: dict[int, list[_Group]] = {}
        self.after_mvm: dict[tuple[int, int], list[_Group]] = {}
        self.order: dict[int, list[int]] = {}                      # layer -> blocks in compute order
        self.start = [0.0] * len(layers)
        self.end = [0.0] * len(layers)
        self.parts = [0] * len(layers)
        self.decisions: list = []
        self.writes: list[tuple[int, str, int]] = []     # (physical crossbar, layer, block index)
        self.banks: dict = {}
        self.bank_detail = None
        self.replication: dict | None = None
        self.planned_ns = 0.0
        self.timed = "worst case"

    # -- writes ----------------------------------------------------------------------------------------
    def load(self, j: int) -> Load:
        w = self.L[j]
        return Load(w.name, -(-len(w.blocks) // self.k), w.windows, w.window_ns,
                    self.layer_write_ns.get(w.name, max(w.rows_used.values()) * self.t.write_row_ns),
                    w.conv and w.windows > 1,
                    sum(w.weights.values()))

    def expand(self):
        """Decide the next layer(s) to write and their factors; queue their groups."""
        if self.mode == "aras" and self.opts.replicate is not None:
            loads = [self.load(j) for j in range(self.nxt, len(self.L))]
            factors, now, detail = self.opts.replicate(loads, len(self.heap))
            self.decisions.append({"first": self.L[self.nxt].name, "free_rows": len(self.heap), **detail})
            factors = list(factors[:max(1, now)])
        else:
            factors = [1]
        for r in factors:
            w = self.L[self.nxt]
            w.factor = r
            slots = [(b, c) for c in range(r) for b in w.blocks]
            for i in range(0, len(slots), self.k):
                self.queue.append(_Group(self.nxt, slots[i:i + self.k]))
            self.nxt += 1

    def fill(self, cur: int):
        """Give free PE rows to queued groups, deciding further layers as the mode allows."""
        decided = False
        while self.heap:
            if not self.queue:
                if self.nxt == len(self.L) or self.mode == "naive" and self.nxt > cur:
                    return
                if decided and self.mode == "aras" and self.opts.replicate is not None:
                    return            # one decision per release: the plan may have kept rows for later
                self.expand()
                decided = True
                continue
            g = self.queue.popleft()
            free, row = heapq.heappop(self.heap)
            self.assign(g, row, free, cur)

    def assign(self, g: _Group, row: int, free: float, cur: int):
        w = self.L[g.layer]
        g.row = row
        start = free
        if self.mode == "naive" and g.layer == cur and not self.order.get(cur):
            g.pre = True
            start = max(start, self.start[cur])
        self.row_group[row] = g
        ends = []
        for i, (b, c) in enumerate(g.slots):
            xb = row * self.k + i
            self.placed.setdefault(b, []).append(xb)
            key = (xb, w.name, w.blocks.index(b))
            self.writes.append(key)
            d = self.costs.get(key, w.rows_used[b] * self.t.write_row_ns)
            ends.append(start + d)
            if self.t.dram_gbps:
                self.dram = max(start, self.dram) + w.weights[b] / self.t.dram_gbps
                ends[-1] = max(ends[-1], self.dram + d / w.rows_used[b])
        for i in range(len(g.slots)):        # the row computes once all its crossbars are written
            self.write_end[row * self.k + i] = max(ends)
        if g.pre:
            self.pre.setdefault(cur, []).append(g)
        elif self.anchor.get(row) is None:
            self.at_start.append(g)
        else:
            self.after_mvm.setdefault(self.anchor[row], []).append(g)

    # -- compute ---------------------------------------------------------------------------------------
    def run(self):
        t_prev = 0.0
        for li, w in enumerate(self.L):
            self.start[li] = t_prev
            self.order[li] = []
            todo = list(w.blocks)
            done: dict[int, float] = {}
            while todo:
                self.fill(li)
                ready = [b for b in todo if len(self.placed.get(b, ())) == w.factor]
                if not ready:
                    raise CompileError(f"schedule: layer {w.name} cannot be placed on {self.t.pe_rows} PE rows")
                self.parts[li] += 1
                for b in ready:
                    s = max(t_prev, max(self.write_end[xb] for xb in self.placed[b]))
                    done[b] = s + w.latency(w.factor)
                    self.order[li].append(b)
                todo = [b for b in todo if b not in done]
                for row, g in sorted(self.row_group.items()):
                    if g.layer == li and all(b in done for b, _ in g.slots):
                        del self.row_group[row]
                        last = max((b for b, _ in g.slots), key=self.order[li].index)
                        self.anchor[row] = (li, last)
                        heapq.heappush(self.heap, (max(done[b] for b, _ in g.slots), row))
            t_prev = self.end[li] = max(done.values())
        self.planned_ns = t_prev
        return t_prev


def _bound(layers: list[_Layer], target) -> float:
    """ARAS sec. IV's bound: every logical crossbar written once (worst-case rows), all crossbars writing."""
    times = [w.rows_used[b] * target.write_row_ns for w in layers for b in w.blocks]
    nbytes = sum(sum(w.weights.values()) for w in layers)
    return max(sum(times) / target.xbars, max(times, default=0.0),
               nbytes / target.dram_gbps if target.dram_gbps else 0.0)


def _timed(g: Graph, ops, target, opts: ScheduleOptions, rounds: int = 4) -> Plan:
    """The plan, timed with what its writes cost on the cells they meet when `opts.write_costs` is given:
    plan with worst-case writes, cost the writes of that placement, plan again with those costs, until the
    placement no longer changes (then the times are the placement's own) or `rounds` run out."""
    plan = Plan(_layers(g, ops, target), target, opts)
    plan.run()
    if opts.write_costs is None:
        return plan
    for _ in range(rounds):
        costs = dict(zip(plan.writes, opts.write_costs(plan.writes)))
        again = Plan(_layers(g, ops, target), target, opts, costs)
        again.run()
        again.timed = "cells" if again.writes == plan.writes else "cells (placement still moving)"
        plan = again
        if plan.timed == "cells":
            break
    return plan


def plan_schedule(g: Graph, ops, target, opts: ScheduleOptions) -> Plan:
    """Place and time the writes of the graph's crossbar layers (the program is not needed: the plan depends
    on shapes, never on weight values, so passes that change weights may use it and lowering reuses it)."""
    if opts.mode not in MODES:
        raise CompileError(f"unknown schedule '{opts.mode}' (known: {', '.join(MODES)})")
    plan = _timed(g, ops, target, opts)
    if opts.replicate is not None:
        # the planner sees one release at a time through a window model: keep its factors only when the whole
        # schedule's time improves on one copy of every layer
        single = _timed(g, ops, target, ScheduleOptions(opts.mode, write_costs=opts.write_costs))
        kept = plan.planned_ns < single.planned_ns
        info = {"kept": kept, "replicated_ns": plan.planned_ns, "single_ns": single.planned_ns}
        single.decisions = plan.decisions
        plan = plan if kept else single
        plan.replication = info
    if opts.select_banks is not None and target.gbuf_banks_kb:
        plan.banks, plan.bank_detail = opts.select_banks([(w.name, w.in_bytes, w.out_bytes) for w in plan.L])
    return plan


def schedule_program(p: Program, g: Graph, ops, opts: ScheduleOptions) -> ScheduleReport:
    t = p.target
    plan = opts.plan if opts.plan is not None else plan_schedule(g, ops, t, opts)
    writes = {i.attr("xb"): i for i in p.code if i.op == "xbwrite"}
    mvms = {i.attr("xb"): i for i in p.code if i.op == "mvm"}
    layers, banks, planned = plan.L, plan.banks, plan.planned_ns
    _emit(p, plan, writes, mvms, banks)
    one = sum(sum(w.weights.values()) for w in layers)
    written = sum(w.factor * sum(w.weights.values()) for w in layers)
    rep = ScheduleReport(
        opts.mode, t.pe_rows, t.row_xbars, sum(len(w.blocks) for w in layers),
        sum(1 for i in p.code if i.op == "xbwrite"), written, 100.0 * (written - one) / one if one else 0.0,
        planned, _bound(layers, t),
        {w.name: {"crossbars": len(w.blocks), "pe_rows": -(-len(w.blocks) * w.factor // t.row_xbars),
                  "replication": w.factor, "parts": plan.parts[w.index], "windows": w.windows,
                  "planned_start_ns": plan.start[w.index], "planned_end_ns": plan.end[w.index],
                  **({"ibanks": list(banks[w.name][0]), "obanks": list(banks[w.name][1])} if w.name in banks else {})}
         for w in layers},
        plan.decisions, plan.replication, plan.bank_detail, plan.timed)
    opts.report = rep
    return rep


def _emit(p: Program, plan: Plan, writes: dict[int, Instr], mvms: dict[int, Instr], banks: dict):
    index = {w.name: w.index for w in plan.L}

    def xbwrite(gr: _Group, after=None):
        out = []
        for (b, c) in gr.slots:
            tmpl = writes[b]
            xb = plan.placed[b][c]
            attrs = (("xb", xb), ("lxb", b), ("pe", gr.row)) + tuple(a for a in tmpl.attrs if a[0] != "xb")
            out.append(Instr("xbwrite", tmpl.args, attrs + ((("after", after),) if after else ())))
        return out

    def mvm(li: int, b: int):
        tmpl = mvms[b]
        xbs = plan.placed[b]
        extra = (("rep", tuple(xbs[1:])),) if len(xbs) > 1 else ()
        name = plan.L[li].name
        if name in banks:
            extra += (("ibanks", tuple(banks[name][0])), ("obanks", tuple(banks[name][1])))
        return Instr("mvm", tmpl.args, (("xb", xbs[0]), ("lxb", b)) + tuple(a for a in tmpl.attrs if a[0] != "xb")
                     + extra)

    out: list[Instr] = []
    started, entered, last_layer = False, set(), None
    for ins in p.code:
        if ins.op == "xbwrite":
            continue
        if ins.op != "input" and not started:
            started = True
            for gr in plan.at_start:
                out += xbwrite(gr)
        li = index.get(ins.attr("layer"))
        if li is not None and li not in entered:
            entered.add(li)
            for gr in plan.pre.get(li, ()):
                out += xbwrite(gr, last_layer)
        if ins.op == "mvm":
            if li is None:
                raise CompileError(f"schedule: mvm on crossbar {ins.attr('xb')} names no crossbar layer")
            if ins.attr("xb") == plan.L[li].blocks[0]:
                for b in plan.order[li]:
                    out.append(mvm(li, b))
                    for gr in plan.after_mvm.get((li, b), ()):
                        out += xbwrite(gr)
            continue
        out.append(ins)
        if ins.attr("layer") is not None:
            last_layer = ins.attr("layer")
    p.code[:] = out
