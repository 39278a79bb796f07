"""Time, energy and timeline of a weight-rewriting schedule (targets with program_once = false).

The machine runs the program once per batch chunk; on a rewriting target that one pass stands for every
inference of the chunk (ARAS runs one inference at a time and every inference repeats the same schedule), so
write events count once per inference and time and energy are reported per inference. The cells start in
steady state: each crossbar holds the last block the program writes into it, as the previous inference left
it (the first inference after power-up, from blank cells, is not modelled).

`Cells` measures every write against what the cells hold (pulses, changed cells, two-phase row time, bytes);
`account(machine)` replays the program order as a timeline (isa/README.md, "Schedules"):
- consecutive instructions of one `layer` form a step; steps run one after another (one layer at a time);
  a step's mvms run in parallel, each once the writes issued so far to its PE rows (its crossbar's, and its
  replicas') have ended (a PE row writes or computes, not both), taking ceil(windows / copies) x input
  passes x xbar_cycle_ns; the step's digital work follows (digital_ops / digital_ops_per_ns);
- an xbwrite starts once its PE row is released (every earlier mvm on the row's crossbars has ended), its
  crossbar's previous write has ended and, with after=X, step X has ended; it streams its bytes from DRAM
  in program order at dram_gbps and ends no earlier than one row after its last byte.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import RuntimeFault

ROW_FIELDS = ("kind", "pe_row", "start_ns", "end_ns", "layer", "pulses")     # pulses: a write's; 0 for a compute


def pulse_ns(t) -> float:
    """One programming pulse: write_row_ns is a row whose slowest cells swing the full range in both phases."""
    return t.write_row_ns / (2 * ((1 << t.cell_bits) - 1))


@dataclass
class WriteEvent:
    changed: int        # cells whose level changes
    pulses: int         # sum of |new - old| levels
    ns: float           # sum over rows of (largest increase + largest decrease) x pulse_ns
    nbytes: int         # the block's weights fetched from DRAM, one byte per weight and device
    rows: int


class Cells:
    """Levels of every physical crossbar, (2, rows, cols): device 0 adds, device 1 subtracts (2T2R); a
    filter's weight slices sit in adjacent columns."""

    def __init__(self, program, encode):
        self.t = program.target
        self.grid: dict[int, np.ndarray] = {}
        self.events: dict[int, WriteEvent] = {}        # id(xbwrite) -> its event in one pass
        for ins in program.code:                       # steady state: what the previous inference left
            if ins.op == "xbwrite":
                self.write(ins.attr("xb"), encode(ins), ins)
        self.events.clear()

    @staticmethod
    def layout(xbar) -> np.ndarray:
        lv = xbar.levels()
        s = len(xbar.slices)
        d, r, n = lv.shape[0] // s, lv.shape[1], lv.shape[2]
        return lv.reshape(d, s, r, n).transpose(0, 2, 3, 1).reshape(d, r, n * s)

    def write(self, xb: int, xbar, ins) -> WriteEvent:
        new = self.layout(xbar).astype(np.int16)
        d, r, c = new.shape
        grid = self.grid.setdefault(xb, np.zeros((2, self.t.rows, self.t.cols), np.int8))
        old = grid[:d, :r, :c].astype(np.int16)
        diff = new - old
        inc = np.maximum(diff, 0).max(axis=(0, 2))
        dec = np.maximum(-diff, 0).max(axis=(0, 2))
        ev = WriteEvent(int(np.count_nonzero(diff)), int(np.abs(diff).sum()),
                        float((inc + dec).sum()) * pulse_ns(self.t), int(xbar.mask.sum()) * d, r)
        grid[:d, :r, :c] = new
        self.events[id(ins)] = ev
        return ev


@dataclass
class _Step:
    layer: str | None
    start: float
    mvm_end: float = 0.0
    digital_ns: float = 0.0
    mvm_ns: float = 0.0         # its longest mvm, waits for writes left out
    banks: tuple | None = None
    bank_ins: object = None
    in_bytes: int = 0
    out_bytes: int = 0

    @property
    def end(self) -> float:
        return max(self.start, self.mvm_end) + self.digital_ns


def _act_bytes(x: np.ndarray) -> int:
    """Per-sample bytes of an activation: u8 codes, or 32-bit accumulators."""
    return int(np.prod(x.shape[1:], dtype=np.int64)) * (1 if x.dtype == np.uint8 else 4)


def account(m) -> dict:
    """Per-inference time, energy and timeline of the schedule the machine has run (see the module doc).
    Raises RuntimeFault when a layer's activations exceed the banks its mvm selected."""
    t, p, n = m.t, m.p, m.stats.samples
    if m.cells is None:
        raise RuntimeFault(f"{m.file}: target {t.name} is program-once: no schedule to account")
    if not n:
        raise RuntimeFault(f"{m.file}: no inference has run")
    k = t.row_xbars
    count: dict[str, int] = {}
    for ins in p.code:
        if ins.op != "xbwrite" and ins.attr("layer") is not None:
            count[ins.attr("layer")] = count.get(ins.attr("layer"), 0) + 1
    # the APUs shift-add their own column sums alongside the crossbar (ARAS sec. III: an mvm counts one digital op per
    # convert); the rest of a layer's digital work runs on the chip's digital units. Crossbar work that is not
    # an mvm (run-time operands, PIM banks: xbar_ns under negative keys) and run-time writes no compute hides
    # add to their step as the stats time them.
    mvm_layers = {i.attr("layer") for i in p.code if i.op == "mvm"}
    digital = {name: (max(0, s.digital_ops - (s.adc_converts if name in mvm_layers else 0)) / t.digital_ops_per_ns
                      + sum(v for xb, v in s.xbar_ns.items() if xb < 0) + s.rt_exposed_ns) / n
               for name, s in m.stats.layers.items()}
    steps: list[_Step] = []
    step: _Step | None = None
    ready: dict[int, float] = {}
    release: dict[int, float] = {}              # PE row -> end of the last mvm on it so far
    writing: dict[int, float] = {}              # PE row -> end of the last write on it so far
    layer_end: dict[str, float] = {}
    dram, stall = 0.0, 0.0
    timeline = []

    def close():
        nonlocal step
        if step is not None:
            steps.append(step)
            if step.layer is not None:
                layer_end[step.layer] = step.end
            _check_banks(m, step)
            step = None

    for ins in p.code:
        if ins.op == "xbwrite":
            after = ins.attr("after")
            if after is not None and step is not None and step.layer == after:
                close()
            xb = ins.attr("xb")
            row = xb // k
            ev = m.cells.events[id(ins)]
            start = max(release.get(row, 0.0), ready.get(xb, 0.0), layer_end.get(after, 0.0))
            end = start + ev.ns
            if t.dram_gbps:
                dram = max(start, dram) + ev.nbytes / t.dram_gbps
                late = max(end, dram + ev.ns / max(ev.rows, 1))
                stall += late - end
                end = late
            ready[xb] = end
            writing[row] = max(writing.get(row, 0.0), end)
            timeline.append(("write", row, start, end, ins.attr("layer"), ev.pulses))
            continue
        layer = ins.attr("layer")
        if step is None or layer != step.layer:
            close()
            step = _Step(layer, steps[-1].end if steps else 0.0)
        if layer is not None:
            step.digital_ns += digital.get(layer, 0.0) / count[layer]
        if ins.op == "mvm":
            xbs = (ins.attr("xb"),) + tuple(ins.attr("rep", ()))
            x = m.env[ins.args[1].name]
            windows = int(np.prod(x.shape[1:-1], dtype=np.int64))
            dur = -(-windows // len(xbs)) * t.mvm_ns(ins.attr("islices"), ins.attr("recover", 0),
                                                      1 if ins.attr("signed") is None else 2,
                                                      m.__dict__.get("mvm_groups", {}).get(id(ins), 1))
            s = max([step.start] + [writing.get(c // k, 0.0) for c in xbs])     # a PE row writes or computes
            for row in sorted({c // k for c in xbs}):
                release[row] = max(release.get(row, 0.0), s + dur)
                timeline.append(("compute", row, s, s + dur, layer, 0))
            step.mvm_end = max(step.mvm_end, s + dur)
            step.mvm_ns = max(step.mvm_ns, dur)
            if ins.attr("ibanks") is not None and step.banks is None:
                src = m.windowed[ins.args[1].name][0] if ins.args[1].name in m.windowed else x
                step.banks = (tuple(ins.attr("ibanks")), tuple(ins.attr("obanks") or ()))
                step.bank_ins, step.in_bytes = ins, _act_bytes(src)
        elif ins.op in ("requant", "accout"):
            step.out_bytes = max(step.out_bytes, _act_bytes(m.env[ins.args[0].name]))
    close()
    total = max([steps[-1].end if steps else 0.0] + [e[3] for e in timeline])
    return _report(m, steps, timeline, total, stall)


def _check_banks(m, step: _Step):
    if step.banks is None:
        return
    for which, banks, need in (("input", step.banks[0], step.in_bytes), ("output", step.banks[1], step.out_bytes)):
        cap = sum(m.t.gbuf_banks_kb[b] for b in banks) * 1024
        if banks and need > cap:
            raise m.fault(step.bank_ins, f"the layer's {which} of {need} B per sample exceeds its banks "
                                         f"{list(banks)} ({cap} B)")


def _bound(m) -> float:
    """ARAS sec. IV's write bound: the time to write every logical crossbar once, at the times this program's writes took (its first
    write of each), with every crossbar writing all the time and the DRAM streaming all the time. No schedule
    of these writes can be faster, so the achieved share is at most 100%."""
    t = m.t
    seen, times, nbytes = set(), [], 0
    for ins in m.p.code:
        if ins.op == "xbwrite" and ins.attr("lxb", ins.attr("xb")) not in seen:
            seen.add(ins.attr("lxb", ins.attr("xb")))
            ev = m.cells.events[id(ins)]
            times.append(ev.ns)
            nbytes += ev.nbytes
    return max(sum(times) / t.xbars, max(times, default=0.0), nbytes / t.dram_gbps if t.dram_gbps else 0.0)


def _report(m, steps, timeline, total, stall) -> dict:
    t, n = m.t, m.stats.samples
    evs = [m.cells.events[id(i)] for i in m.p.code if i.op == "xbwrite"]
    powered, bank_pj = None, 0.0
    first = next((s.banks for s in steps if s.banks), None)
    for s in steps:
        powered = s.banks or powered or first
        if powered:
            kb = sum(t.gbuf_banks_kb[b] for b in powered[0] + powered[1])
            bank_pj += kb * t.gbuf_mw_per_kb * (s.end - s.start)          # mW x ns = pJ
    compute = 0.0
    for s in m.stats.layers.values():
        e = m.stats.energy(s, 0.0)
        compute += sum(e[c] for c in ("adc", "dac", "crossbar", "buffers", "digital"))
    pulses = sum(e.pulses for e in evs)
    runtime_pulses = sum(s.rt_write_pulses for s in m.stats.layers.values()) / n     # run-time operands (xbload)
    energy = {"weight_writes": pulses * t.e_write_pulse, "runtime_writes": runtime_pulses * t.e_write_pulse,
              "compute": compute / n, "static_banks": bank_pj, "static_pes": t.tiles * t.static_mw_per_tile * total}
    bound = _bound(m)
    floor = sum(s.mvm_ns + s.digital_ns for s in steps)      # the steps' compute alone, no write waited for
    both = max(bound, floor)
    return {
        "time_ns": total,
        "cycles": total / t.xbar_cycle_ns,
        "inferences_per_s": 1e9 / total if total else float("inf"),
        "bound_ns": bound,
        "bound_inferences_per_s": 1e9 / bound if bound else float("inf"),
        "pct_of_bound": 100.0 * bound / total if total else 100.0,
        "compute_floor_ns": floor,
        "pct_of_lower_bound": 100.0 * both / total if total else 100.0,
        "crossbar_writes": len(evs),
        "cells_changed": sum(e.changed for e in evs),
        "write_pulses": pulses,
        "runtime_write_pulses": runtime_pulses,
        "write_busy_ns": sum(e.ns for e in evs),
        "dram_bytes": sum(e.nbytes for e in evs),
        "dram_stall_ns": stall,
        "energy_pj": energy,
        "energy_pj_total": sum(energy.values()),
        "steps": [{"layer": s.layer, "start_ns": s.start, "end_ns": s.end,
                   **({"ibanks": list(s.banks[0]), "obanks": list(s.banks[1])} if s.banks else {})}
                  for s in steps if s.layer is not None],
        "pe_rows": t.pe_rows,
        "timeline_fields": list(ROW_FIELDS),
        "timeline": [list(e) for e in timeline],
        "notes": "per inference, in steady state (cells as the previous inference left them); one inference at a "
                 "time, the batch's arithmetic is batched but its time and energy scale with the inferences",
    }
