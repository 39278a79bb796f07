"""Event counters per layer and the energy / time model over them (figures from the target)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from isa import Target

from . import banks as B


@dataclass
class LayerStats:
    name: str
    macs: int = 0
    adc_converts: int = 0
    saturated_converts: int = 0
    spec_converts: int = 0
    columns: int = 0
    spec_failures: int = 0
    crossbars: set = field(default_factory=set)      # physical crossbar ids the layer's weights were written into
    logical: set = field(default_factory=set)        # its weight blocks (lxb): what one copy of the layer needs
    rows_used: list = field(default_factory=list)
    cells_used: int = 0
    dac_pulses: int = 0
    cell_reads: int = 0
    digital_ops: int = 0
    buffer_bytes: int = 0
    cells_written: int = 0       # cells whose level a weight write changed
    write_pulses: int = 0
    write_ns: float = 0.0        # row-by-row programming time of the layer's crossbars
    xbar_ns: dict = field(default_factory=dict)
    hist: np.ndarray | None = None
    # crossbars written at run time with an activation (runtime/dynamic.py), summed over the batch
    rt_write_cells: int = 0
    rt_write_pulses: int = 0
    rt_write_ns: float = 0.0
    rt_exposed_ns: float = 0.0     # the part of rt_write_ns that no overlapping compute hides
    banks: dict = field(default_factory=dict)     # sparse attention's PIM bank products (runtime/banks.py)

    def add_events(self, ev) -> None:
        """Add what one mvm or dmvm cost (crossbar.MvmEvents)."""
        self.macs += ev.macs
        self.adc_converts += ev.converts
        self.columns += ev.columns
        self.saturated_converts += ev.saturated
        self.spec_converts += ev.spec_converts
        self.spec_failures += ev.spec_failures
        self.dac_pulses += ev.dac_pulses
        self.cell_reads += ev.cell_reads

    def add_xbar_time(self, xb: int, ns: float):
        self.xbar_ns[xb] = self.xbar_ns.get(xb, 0.0) + ns

    SUMMED = ("macs", "adc_converts", "saturated_converts", "spec_converts", "columns", "spec_failures",
              "dac_pulses", "cell_reads", "digital_ops", "buffer_bytes", "rt_write_cells", "rt_write_pulses",
              "rt_write_ns", "rt_exposed_ns")
    ONCE = ("crossbars", "logical", "rows_used", "cells_used")   # what the program maps, the same in every shard
    LOAD = ("cells_written", "write_pulses", "write_ns")         # a program-once target's weight load

    def merge(self, other: LayerStats, program_once: bool) -> None:
        """Add another shard's stats of this layer: per-sample counters add, the mapping and a program-once
        weight load count once."""
        for f in self.SUMMED + (() if program_once else self.LOAD):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        if not self.crossbars:
            for f in self.ONCE + (self.LOAD if program_once else ()):
                setattr(self, f, type(getattr(other, f))(getattr(other, f)))
        for k, v in other.xbar_ns.items():
            self.add_xbar_time(k, v)
        if other.hist is not None:
            self.hist = other.hist.copy() if self.hist is None else self.hist + other.hist
        if other.banks:
            B.add(self.banks, other.banks["product"], other.banks["mode"], other.banks)


def converts_per_column(converts: int, spec: int, columns: int) -> dict:
    """ADC conversions per column readout, split into speculative and recovery ones under speculation."""
    if not columns:
        return {"converts_per_column": 0.0}
    out = {"converts_per_column": converts / columns}
    if spec:
        out |= {"speculative_per_column": spec / columns, "recovery_per_column": (converts - spec) / columns}
    return out


class Stats:
    def __init__(self, target: Target, hist_range=None):
        self.t = target
        self.layers: dict[str, LayerStats] = {}
        self.samples = 0
        self.hist_range = hist_range

    def layer(self, name: str) -> LayerStats:
        if name not in self.layers:
            self.layers[name] = LayerStats(name)
        return self.layers[name]

    def merge(self, other: Stats) -> Stats:
        """Add the stats of another shard of the same program and flags (Machine.run with sample_offset):
        merging every shard's stats, in sample order, into a fresh Stats gives the stats of one run over all
        of them (the same to_json). Returns self."""
        self.samples += other.samples
        for name, s in other.layers.items():
            self.layer(name).merge(s, self.t.program_once)
        return self

    def energy(self, s: LayerStats, time_ns: float) -> dict:
        t = self.t
        tiles = max(1, -(-len(s.crossbars) // (t.imas_per_tile * t.xbars_per_ima))) if s.crossbars else 0
        return {
            "adc": s.adc_converts * t.e_adc_convert,
            "dac": s.dac_pulses * t.e_dac_pulse,
            "crossbar": s.cell_reads * t.e_cell_read,
            "buffers": s.buffer_bytes * t.e_buffer_byte,
            "digital": s.digital_ops * t.e_digital_op,
            "weight_writes": s.write_pulses * t.e_write_pulse,
            "runtime_writes": s.rt_write_pulses * t.e_write_pulse,
            "static": tiles * t.static_mw_per_tile * time_ns * 1e-3,   # mW x ns = pJ
        }

    def compute_ns(self, s: LayerStats) -> float:
        return max(s.xbar_ns.values(), default=0.0) + s.digital_ops / self.t.digital_ops_per_ns

    def row(self, s: LayerStats) -> dict:
        t = self.t
        time_ns = self.compute_ns(s) + s.rt_exposed_ns
        nx = len(s.crossbars)
        e = self.energy(s, time_ns)
        return {
            "layer": s.name,
            "macs": s.macs,
            "adc_converts": s.adc_converts,
            "converts_per_mac": s.adc_converts / s.macs if s.macs else 0.0,
            "saturated_converts": s.saturated_converts,
            "saturation_rate": s.saturated_converts / s.adc_converts if s.adc_converts else 0.0,
            "speculation_success": 1 - s.spec_failures / s.spec_converts if s.spec_converts else None,
            **converts_per_column(s.adc_converts, s.spec_converts, s.columns),
            "logical_crossbars": len(s.logical),
            "physical_crossbars": nx,
            "rows_used": float(np.mean(s.rows_used)) if s.rows_used else 0.0,
            "utilisation": s.cells_used / (nx * t.rows * t.cols) if nx else 0.0,
            "cells_written": s.cells_written,
            "write_pulses": s.write_pulses,
            "write_ns": s.write_ns,
            "runtime_write_cells": s.rt_write_cells,
            "runtime_write_pulses": s.rt_write_pulses,
            "runtime_write_ns": s.rt_write_ns,
            "exposed_write_ns": s.rt_exposed_ns,
            "dac_pulses": s.dac_pulses,
            "digital_ops": s.digital_ops,
            "time_ns": time_ns,
            "cycles": time_ns / t.xbar_cycle_ns,
            "energy_pj": e,
            **({"banks": B.report(s.banks, t.bank_m, t.bank_n)} if s.banks else {}),
        }

    def to_json(self) -> dict:
        """The whole batch's figures (README, "Stats"). On a rewriting target the time and energy here are the
        layers' own (no replicas overlapped, no write waited for): runtime/results.py puts the schedule's in
        their place."""
        rows = [self.row(s) for s in self.layers.values()]
        spec = sum(s.spec_converts for s in self.layers.values())
        fails = sum(s.spec_failures for s in self.layers.values())
        tot = {k: sum(r[k] for r in rows) for k in ("macs", "adc_converts", "saturated_converts", "cells_written",
                                                      "write_pulses", "dac_pulses", "digital_ops", "time_ns",
                                                      "runtime_write_cells", "runtime_write_pulses",
                                                      "runtime_write_ns", "exposed_write_ns", "cycles")}
        physical = set().union(*(s.crossbars for s in self.layers.values())) if self.layers else set()
        all_rows = [x for s in self.layers.values() for x in s.rows_used]
        cells = sum(s.cells_used for s in self.layers.values())
        cells_total = sum(len(s.crossbars) for s in self.layers.values()) * self.t.rows * self.t.cols
        energy = {k: sum(r["energy_pj"][k] for r in rows) for k in rows[0]["energy_pj"]} if rows else {}
        total = sum(energy.values())
        n = max(self.samples, 1)
        return {
            "target": self.t.name,
            "samples": self.samples,
            **tot,
            "logical_crossbars": sum(len(s.logical) for s in self.layers.values()),
            "physical_crossbars": len(physical),
            "chip_crossbars": self.t.xbars,
            "converts_per_mac": tot["adc_converts"] / tot["macs"] if tot["macs"] else 0.0,
            "saturation_rate": tot["saturated_converts"] / tot["adc_converts"] if tot["adc_converts"] else 0.0,
            "rows_used": float(np.mean(all_rows)) if all_rows else 0.0,
            "speculation_success": 1 - fails / spec if spec else None,
            **converts_per_column(tot["adc_converts"], spec, sum(s.columns for s in self.layers.values())),
            "speculation_failures": fails,
            "utilisation": cells / cells_total if cells_total else 0.0,
            "energy_pj": energy,
            "energy_pj_total": total,
            "area_mm2": (area := self.t.chip_area_mm2()),
            "area_mm2_total": sum(area.values()),
            "per_inference": {"energy_excl_weight_writes_pj": (total - energy.get("weight_writes", 0.0)) / n,
                              "energy_incl_weight_writes_pj": total / n,
                              "time_ns": tot["time_ns"] / n,
                              "pipelined_ns": max((r["time_ns"] for r in rows), default=0.0) / n},
            "notes": ("cells_written, write_pulses and energy_pj.weight_writes are the one-time weight load of a "
                      "program-once target (energy_incl_weight_writes_pj spreads it over the batch)"
                      if self.t.program_once
                      else "cells_written and write_pulses are the schedule's rewrites in steady state, once per "
                           "inference, times the samples; time and energy are the schedule's (see 'schedule')")
                     + "; energy and area use the target TOML's figures (the presets': hwcomponents models, "
                       "isa/energy.py; those marked 'assumption' rest on the project's choices)",
            **({"banks": self.banks()} if any(s.banks for s in self.layers.values()) else {}),
            "layers": rows,
        }

    def banks(self) -> dict:
        """Sparse attention's bank products summed per product (sddmm, spmm): cycles and PE utilisation of the
        chosen mode and of the VMM mappings of the same work (runtime/banks.py)."""
        out = {}
        for s in self.layers.values():
            if s.banks:
                B.add(out.setdefault(s.banks["product"], {}), s.banks["product"], s.banks["mode"], s.banks)
        return {k: B.report(v, self.t.bank_m, self.t.bank_n) for k, v in out.items()}

    def histogram(self) -> dict | None:
        if self.hist_range is None:
            return None
        return {name: s.hist.tolist() for name, s in self.layers.items() if s.hist is not None} | \
            {"_range": list(self.hist_range)}
