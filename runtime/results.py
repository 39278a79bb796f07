"""What a run reports: the stats JSON (`pimrun --stats`, `pimc.run`) and the summary lines pimrun prints from it.

Each printed figure is a field of the JSON, printed once under a name that says what it counts (README,
"Stats"). On a rewriting target the schedule's accounting (runtime/schedule.py) is the time and energy of an
inference: the batch totals and `per_inference` are taken from it, so the JSON holds one figure for each."""
from __future__ import annotations

from .schedule import account


def stats_json(m) -> dict:
    """The stats of the batch machine `m` has run, with `schedule` on a rewriting target."""
    s = m.stats.to_json()
    if m.cells is None:
        return s
    sc = account(m)
    n = s["samples"]
    e = s["energy_pj"]
    # the schedule's static energy (the whole chip over its time, the powered buffer banks) replaces the layers'
    e["static"] = (sc["energy_pj"]["static_banks"] + sc["energy_pj"]["static_pes"]) * n
    s["energy_pj_total"] = sum(e.values())
    s["time_ns"], s["cycles"] = sc["time_ns"] * n, sc["cycles"] * n
    s["per_inference"] = {"energy_excl_weight_writes_pj": sc["energy_pj_total"] - sc["energy_pj"]["weight_writes"],
                          "energy_incl_weight_writes_pj": sc["energy_pj_total"], "time_ns": sc["time_ns"]}
    s["schedule"] = sc
    return s


def summary_lines(s: dict) -> list[str]:
    """pimrun's summary of a stats dict from `stats_json`."""
    spec = s.get("speculation_success")
    pi = s["per_inference"]
    lines = [f"{s['samples']} samples on {s['target']}: converts/MAC {s['converts_per_mac']:.4f}, "
             f"saturation {s['saturation_rate']:.4%}" + (f", speculation success {spec:.2%}" if spec is not None else "")]
    xb = (f"crossbars: {s['logical_crossbars']} logical (weight blocks), {s['physical_crossbars']} physical "
          f"of {s['chip_crossbars']} on the chip")
    sc = s.get("schedule")
    if s.get("area_mm2_total"):
        xb += f"; chip area {s['area_mm2_total']:.1f} mm2"
    if sc is None:
        lines.append(xb)
        lines.append(f"energy per inference excluding weight writes {pi['energy_excl_weight_writes_pj'] / 1e6:.3f} uJ; "
                     f"weight load (once, before the first inference): {s['cells_written']} cells, "
                     f"{s['write_pulses']} write pulses, {s['energy_pj'].get('weight_writes', 0.0) / 1e6:.3f} uJ")
        return lines
    lines.append(xb + f", {sc['crossbar_writes']} crossbar writes per inference")
    lines.append(f"schedule per inference (steady state): {sc['time_ns'] / 1e3:.1f} us, "
                 f"{sc['inferences_per_s']:.1f} inferences/s, {sc['pct_of_bound']:.1f}% of the write bound "
                 f"(compute floor {sc['compute_floor_ns'] / 1e3:.1f} us)")
    held = (" (each crossbar already holds the weights it is written with: nothing to reprogram)"
            if sc["crossbar_writes"] and not sc["write_pulses"] else "")
    lines.append(f"weight writes per inference: {sc['dram_bytes'] / 1e6:.3f} MB from DRAM, {sc['cells_changed']} cells "
                 f"changed, {sc['write_pulses']} write pulses{held}")
    lines.append(f"energy per inference including weight writes {pi['energy_incl_weight_writes_pj'] / 1e6:.3f} uJ "
                 f"(weight writes {sc['energy_pj']['weight_writes'] / 1e6:.3f} uJ)")
    return lines
