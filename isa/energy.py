"""Per-event energies and per-component areas of a target, derived from Accelergy's hwcomponents models.

    python -m isa.energy TARGET.toml [--tech-node 32nm] [-o OUT.toml | --in-place | --check]

Each figure of the target's `[energy]` table (and `gbuf_mw_per_kb`) and of its `[area]` table is computed from
a component model for the target's own parameters (ADC bits and rate, crossbar size, DAC and cell bits, buffer
size) at one technology node, and written with its provenance (package, version, model, parameters) in a
comment beside it. `--check` exits 1 with a diff when a file differs from what the models give now (CI runs it
on the presets). The models need the `[energy]` extra (Python >= 3.12): pip install -e '.[energy]', and where
glibc is older than 2.38, .ci/build_energy_models.sh PYTHON to rebuild CACTI and NeuroSim; the presets ship
the derived figures, so nothing else imports this module's models. docs/energy.md: what they change.

Models, one per counted event (runtime/stats.py multiplies them by the run's counts):
  e_adc_convert   hwcomponents-adc ADC (Murmann survey fit): adc_bits at the per-ADC rate cols / adcs_per_xbar
                  per crossbar cycle; its `convert` action (the model books 20% of the energy as leakage)
  e_dac_pulse     hwcomponents-library IsaacDAC, 1 bit: one row pulse (a pulse-train slice of value v is v pulses)
  e_cell_read     hwcomponents-neurosim MemoryCell read: one cell under one input slice (a pulse train of up to
                  2^dac_bits - 1 pulses), NeuroSim's sample RRAM cell, at an assumed average input and cell level
  e_write_pulse   hwcomponents-neurosim MemoryCell write: one programming pulse of that cell
  e_buffer_byte   tile buffer access per byte (mean of read and write): ISAAC's eDRAM (hwcomponents-library
                  IsaacEDRAM) on a target without global-buffer banks, else an SRAM by CACTI (hwcomponents-cacti)
  e_digital_op    hwcomponents-library IsaacShiftAdd, 16 bits: one shift-add (the elementwise ops are charged alike)
  static_mw_per_tile  the leakage of a tile's ADCs, crossbars (NeuroSim array) and, on a program-once target,
                  its buffer; a rewriting target's buffers are the global-buffer banks (gbuf_mw_per_kb)
  area_*_um2      each model's area: one ADC, one row's DAC, one crossbar (cells + row and column drivers),
                  one tile buffer, one shift-add unit (one per ADC)
"""
from __future__ import annotations

import argparse
import difflib
import importlib.metadata as md
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import AsmError
from .target import Target, _flatten, from_dict

PACKAGES = ("hwcomponents", "hwcomponents-adc", "hwcomponents-cacti", "hwcomponents-neurosim", "hwcomponents-library")
# NeuroSim's inputs the target does not give: the share of rows driven and the mean cell level (model parameters,
# so the figures they set are marked as resting on them)
AVG_INPUT = 0.5
AVG_CELL = 0.5
CELL = "nvsim_RRAM"
READ_PULSE_S = 1e-8
SHIFT_ADD_BITS = 16
EDRAM_WIDTH = 256
SRAM_WIDTH = 256
GBUF_BANK_KB = 256          # the bank whose leakage per KB sets gbuf_mw_per_kb (ARAS's baseline bank size)

ENERGY_KEYS = ("e_adc_convert", "e_dac_pulse", "e_cell_read", "e_buffer_byte", "e_digital_op", "e_write_pulse",
               "static_mw_per_tile")
AREA_KEYS = ("area_adc_um2", "area_dac_um2", "area_crossbar_um2", "area_buffer_um2", "area_digital_um2")


@dataclass(frozen=True)
class Figure:
    key: str
    value: float
    source: str


def _ver(pkg: str) -> str:
    return f"{pkg} {md.version(pkg)}"


def _num(v: float) -> str:
    """Four significant digits, as TOML reads them back (a float always: 20 -> 20.0)."""
    return repr(float(f"{v:.4g}"))


def parse_tech(s: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(nm)?\s*", str(s))
    if not m or not 7 <= float(m.group(1)) <= 130:
        raise AsmError(f"--tech-node must be like 32nm, between 7 and 130 nm (NeuroSim's range), got {s!r}")
    return float(m.group(1))


def derive(t: Target, tech_nm: float) -> list[Figure]:
    """The figures of ENERGY_KEYS, AREA_KEYS and (with global-buffer banks) gbuf_mw_per_kb for `t` at `tech_nm`."""
    import logging
    logging.getLogger("hwcomponents").setLevel(logging.ERROR)
    import hwcomponents_neurosim as ns
    from hwcomponents_adc import ADC
    from hwcomponents_cacti import SRAM
    from hwcomponents_library.library.isaac import IsaacDAC, IsaacEDRAM, IsaacShiftAdd

    T = tech_nm * 1e-9
    tn = f"tech_node={tech_nm:g}nm"
    pj, um2, mw = 1e12, 1e12, 1e3
    out: list[Figure] = []

    rate = t.cols / t.adcs_per_xbar / (t.xbar_cycle_ns * 1e-9)
    adc = ADC(n_bits=t.adc_bits, tech_node=T, throughput=rate)
    adc_src = f"{_ver('hwcomponents-adc')} ADC(n_bits={t.adc_bits}, {tn}, throughput={rate:.4g}/s)"
    out.append(Figure("e_adc_convert", adc.convert().energy * pj, adc_src + ".convert"))

    dac = IsaacDAC(tech_node=T, resolution=1, rows=1)
    out.append(Figure("e_dac_pulse", dac.convert().energy * pj,
                      f"{_ver('hwcomponents-library')} IsaacDAC(resolution=1, {tn}).convert"))

    cell_path = str(Path(ns.__file__).parent / "cells" / f"{CELL}.cell")
    xkw = dict(tech_node=T, cycle_period=t.xbar_cycle_ns * 1e-9, rows=t.rows, cols=t.cols,
               cols_active_at_once=t.cols, cell_config=cell_path, average_input_value=AVG_INPUT,
               average_cell_value=AVG_CELL, read_pulse_width=READ_PULSE_S, temporal_dac_bits=t.dac_bits,
               temporal_spiking=True)
    x_src = (f"{_ver('hwcomponents-neurosim')} MemoryCell(cell={CELL}, rows={t.rows}, cols={t.cols}, "
             f"temporal_dac_bits={t.dac_bits}, {tn}; assumption: average_input_value={AVG_INPUT}, "
             f"average_cell_value={AVG_CELL})")
    cell = ns.MemoryCell(**xkw)
    out.append(Figure("e_cell_read", cell.read().energy * pj, x_src + ".read"))

    banks = bool(t.gbuf_banks_kb)
    bits = t.buffer_kb_per_tile * 1024 * 8
    if banks:
        buf = SRAM(tech_node=T, width=SRAM_WIDTH, size=bits)
        per_byte = (buf.read().energy + buf.write().energy) / 2 / (SRAM_WIDTH / 8)
        buf_src = f"{_ver('hwcomponents-cacti')} SRAM(width={SRAM_WIDTH}, size={t.buffer_kb_per_tile} KB, {tn})"
    else:
        buf = IsaacEDRAM(tech_node=T, width=EDRAM_WIDTH, size=bits)
        per_byte = (buf.read().energy + buf.write().energy) / 2 / (EDRAM_WIDTH / 8)
        buf_src = (f"{_ver('hwcomponents-library')} IsaacEDRAM(width={EDRAM_WIDTH}, size={t.buffer_kb_per_tile} KB, "
                   f"{tn})")
    out.append(Figure("e_buffer_byte", per_byte * pj, buf_src + ": (read + write) / 2 per byte"))

    sa = IsaacShiftAdd(tech_node=T, width=SHIFT_ADD_BITS)
    sa_src = f"{_ver('hwcomponents-library')} IsaacShiftAdd(width={SHIFT_ADD_BITS}, {tn})"
    out.append(Figure("e_digital_op", sa.shift_add().energy * pj, sa_src + ".shift_add (elementwise ops alike)"))
    out.append(Figure("e_write_pulse", cell.write().energy * pj, x_src + ".write"))

    rowd, cold = ns.RowDrivers(**xkw), ns.ColDrivers(**xkw)
    xbar_leak = cell.leak_power * t.rows * t.cols + rowd.leak_power + cold.leak_power
    per_tile = t.imas_per_tile * t.xbars_per_ima
    static = per_tile * (t.adcs_per_xbar * adc.leak_power + xbar_leak) + (0.0 if banks else buf.leak_power)
    out.append(Figure("static_mw_per_tile", static * mw,
                      f"{_ver('hwcomponents-adc')} and {_ver('hwcomponents-neurosim')} leak_power: {per_tile} x "
                      f"({t.adcs_per_xbar} ADC + one array: cells, row and column drivers)"
                      + (", buffers in gbuf_mw_per_kb" if banks else ", + the tile buffer (IsaacEDRAM: 0)")))
    if banks:
        bank = SRAM(tech_node=T, width=SRAM_WIDTH, size=GBUF_BANK_KB * 1024 * 8)
        out.append(Figure("gbuf_mw_per_kb", bank.leak_power * mw / GBUF_BANK_KB,
                          f"{_ver('hwcomponents-cacti')} SRAM(width={SRAM_WIDTH}, size={GBUF_BANK_KB} KB, {tn})"
                          ".leak_power per KB"))

    out.append(Figure("area_adc_um2", adc.area * um2, adc_src))
    dac_a = IsaacDAC(tech_node=T, resolution=t.dac_bits, rows=1)
    out.append(Figure("area_dac_um2", dac_a.area * um2,
                      f"{_ver('hwcomponents-library')} IsaacDAC(resolution={t.dac_bits}, {tn}), one row"))
    out.append(Figure("area_crossbar_um2", (cell.area * t.rows * t.cols + rowd.area + cold.area) * um2,
                      x_src.replace("MemoryCell(", "MemoryCell x rows x cols + RowDrivers + ColDrivers(")))
    out.append(Figure("area_buffer_um2", buf.area * um2, buf_src))
    out.append(Figure("area_digital_um2", sa.area * um2, sa_src + ", one per ADC"))
    return out


def render(text: str, figs: list[Figure], tech_nm: float, cmd: str) -> str:
    """`text` (a target TOML) with each figure's line rewritten (value and provenance comment), the comment lines
    that continued it dropped, `tech_node_nm` set, and an `[area]` table added after `[energy]` if missing."""
    lines = text.splitlines()
    by_key = {f.key: f for f in figs}
    by_key_line = {"tech_node_nm": f"tech_node_nm = {_num(tech_nm)}    # the node the figures below are derived at"}
    for f in figs:
        by_key_line[f.key] = f"{f.key} = {_num(f.value)}    # {f.source}"
    out, seen, skip_cont = [], set(), False
    for ln in lines:
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=", ln)
        if skip_cont and re.match(r"^\s+#", ln):
            continue
        skip_cont = False
        if m and m.group(1) in by_key_line:
            out.append(by_key_line[m.group(1)])
            seen.add(m.group(1))
            skip_cont = True
            continue
        if re.match(r"^\[energy\]", ln):
            out.append(f"[energy]                # pJ per event (static: mW); derived by `{cmd}`")
            if not re.search(r"^tech_node_nm\s*=", text, re.M):
                out.append(by_key_line["tech_node_nm"])
                seen.add("tech_node_nm")
            continue
        if re.match(r"^\[area\]", ln):
            out.append(f"[area]                  # um^2 per unit (runtime/stats.py: area_mm2); derived as [energy]")
            continue
        out.append(ln)
    missing = [k for k in AREA_KEYS if k not in seen and k in by_key]
    if missing:
        at = next((i for i, ln in enumerate(out) if ln.startswith("[") and i > _index(out, "[energy]")), len(out))
        block = [f"[area]                  # um^2 per unit (runtime/stats.py: area_mm2); derived as [energy]"]
        block += [by_key_line[k] for k in missing] + [""]
        out[at:at] = block
    left = [k for k in by_key if k not in seen and k not in AREA_KEYS]
    if left:
        raise AsmError(f"the target file has no line for {', '.join(left)} to write the derived figure into")
    return "\n".join(out) + "\n"


def _index(lines: list[str], prefix: str) -> int:
    return next((i for i, ln in enumerate(lines) if ln.startswith(prefix)), -1)


def generate(path: Path, tech: str | None) -> tuple[str, str]:
    """(current text, text with derived figures) of the target file at `path`."""
    text = path.read_text()
    try:
        flat = _flatten(tomllib.loads(text), str(path))
    except tomllib.TOMLDecodeError as e:
        raise AsmError(f"bad target TOML {path}: {e}") from None
    t = from_dict(flat, where=str(path))
    if tech is None and not t.tech_node_nm:
        raise AsmError(f"{path}: give --tech-node (the target has no tech_node_nm)")
    tech_nm = parse_tech(tech) if tech is not None else t.tech_node_nm
    cmd = f"python -m isa.energy {path.name} --tech-node {tech_nm:g}nm"
    return text, render(text, derive(t, tech_nm), tech_nm, cmd)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m isa.energy", description=__doc__.split("\n\n")[0])
    ap.add_argument("targets", nargs="+", help="target TOML files")
    ap.add_argument("--tech-node", help="technology node, e.g. 32nm (default: the target's tech_node_nm)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("-o", "--out", help="write the derived target here (one target only)")
    g.add_argument("--in-place", action="store_true", help="rewrite each target file")
    g.add_argument("--check", action="store_true", help="exit 1, with a diff, if a file differs from the derivation")
    a = ap.parse_args(argv)
    if a.out and len(a.targets) != 1:
        ap.error("-o takes one target")
    try:
        versions = ", ".join(_ver(p) for p in PACKAGES)
    except md.PackageNotFoundError as e:
        print(f"error: {e.name} is not installed: pip install -e '.[energy]' (Python >= 3.12)", file=sys.stderr)
        return 1
    drift = 0
    for spec in a.targets:
        p = Path(spec)
        try:
            old, new = generate(p, a.tech_node)
        except (AsmError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        if a.check:
            if old != new:
                drift += 1
                sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                           f"{spec} (shipped)", f"{spec} (derived now)"))
        elif a.in_place:
            p.write_text(new)
        elif a.out:
            Path(a.out).write_text(new)
        else:
            sys.stdout.write(new)
    if a.check:
        print(f"{len(a.targets) - drift} of {len(a.targets)} targets equal their derivation ({versions})"
              + ("" if not drift else f"; {drift} DRIFTED: rerun python -m isa.energy --in-place and review"),
              file=sys.stderr)
    return 1 if drift else 0


if __name__ == "__main__":
    sys.exit(main())
