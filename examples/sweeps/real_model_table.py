"""Markdown tables of a finished pimsweep run: one row per point, then per crossbar layer the saturation of every
point and the speculation success of the points that speculate (an ideal-ADC point is the integer reference:
its row gives the metric alone).

    python examples/sweeps/real_model_table.py RESULTS_DIR [--layers]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def rows(results: Path) -> list[dict]:
    out = {}
    for line in (results / "points.jsonl").read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        out[r["point_id"]] = r                      # a point run again keeps its last row
    with open(results / "results.csv") as f:      # in the sweep file's order
        order = [row["point_id"] for row in csv.DictReader(f)]
    return sorted(out.values(), key=lambda r: order.index(r["point_id"]) if r["point_id"] in order else len(order))


def name(r: dict) -> str:
    return r.get("label") or r.get("name") or r["point_id"]


def pct(v) -> str:
    return "-" if v in (None, "") else f"{100 * v:.2f}%"


def summary(rs: list[dict]) -> str:
    lines = ["| point | top-1 agreement with float | converts/MAC | saturated converts | speculation success | "
             "energy uJ/inference (without the weight load) | compile s | run s/sample |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rs:
        if r.get("error"):
            lines.append(f"| {name(r)} | failed: {r['error']} | | | | | | |")
            continue
        if r.get("ideal") in (True, "True", "true"):    # the integer reference: no ADC, no hardware figures
            lines.append(f"| {name(r)} | {r['score']:.4f} ({round(r['score'] * r['samples'])}/{r['samples']}) | "
                         f"- | - | - | - | {r['compile_s']:.1f} | {r['run_s'] / r['samples']:.1f} |")
            continue
        spec = r.get("speculation_success") if r.get("speculation_failures") is not None and \
            r.get("recovery_per_column") else None
        lines.append(f"| {name(r)} | {r['score']:.4f} ({round(r['score'] * r['samples'])}/{r['samples']}) | "
                     f"{r['converts_per_mac']:.4f} | {pct(r['saturation_rate'])} | {pct(spec)} | "
                     f"{r['per_inference.energy_excl_weight_writes_pj'] / 1e6:.1f} | {r['compile_s']:.1f} | {r['run_s'] / r['samples']:.1f} |")
    return "\n".join(lines)


def layers(rs: list[dict]) -> str:
    rs = [r for r in rs if not r.get("error") and r.get("ideal") not in (True, "True", "true")]
    spec = [r for r in rs if r.get("recovery_per_column")]
    head = ["layer"] + [f"saturated: {name(r)}" for r in rs] + [f"speculation success: {name(r)}" for r in spec]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    names = [layer["layer"] for layer in rs[0]["layers"]]
    by = [{layer["layer"]: layer for layer in r["layers"]} for r in rs]
    sby = [{layer["layer"]: layer for layer in r["layers"]} for r in spec]
    for n in names:
        if not any(b.get(n, {}).get("adc_converts") for b in by):     # digital layers: nothing converted
            continue
        cells = [pct(b.get(n, {}).get("saturation_rate")) for b in by]
        cells += [pct(b.get(n, {}).get("speculation_success")) for b in sby]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--layers", action="store_true", help="also the per-layer table")
    a = ap.parse_args(argv)
    if not (a.results / "points.jsonl").exists():
        print(f"real_model_table: {a.results} holds no points.jsonl (run pimsweep first)", file=sys.stderr)
        return 1
    rs = rows(a.results)
    print(summary(rs))
    if a.layers:
        print()
        print(layers(rs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
