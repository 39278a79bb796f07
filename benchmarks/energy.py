"""Energy and area with the presets' derived figures (isa/energy.py): raella against isaac on the digits CNN (and
MiniLM-L6 and a ResNet-50-size CNN, `--models digits,minilm,resnet50`) per component, with the figures the presets held before (project assumptions) beside them; ARAS's energy steps from
benchmarks/aras.py's results; and each headline's sensitivity to every per-event figure scaled by 2 and by 1/2
(energy is linear in each figure, so a scaled component is its energy times the factor).

    python benchmarks/energy.py [--models digits,minilm,resnet50] [--aras benchmarks/results/aras/aras.json]
                                [--out benchmarks/results/energy] [--minilm-dir examples/minilm/build]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pimc  # noqa: E402
from benchmarks.model_files import add_minilm_dir, load_minilm, minilm_files  # noqa: E402

# the presets' [energy] figures before they were derived (git show 6dcce1c:isa/targets/*.toml), pJ / mW per tile
BEFORE = {
    "isaac": {"adc": 2.6, "dac": 0.002, "crossbar": 0.003, "buffers": 0.5, "digital": 0.05, "weight_writes": 10.0,
              "runtime_writes": 10.0, "static": 10.0},
    "raella": {"adc": 1.3, "dac": 0.002, "crossbar": 0.003, "buffers": 0.5, "digital": 0.05, "weight_writes": 10.0,
               "runtime_writes": 10.0, "static": 10.0},
}
KEY = {"adc": "e_adc_convert", "dac": "e_dac_pulse", "crossbar": "e_cell_read", "buffers": "e_buffer_byte",
       "digital": "e_digital_op", "weight_writes": "e_write_pulse", "runtime_writes": "e_write_pulse",
       "static": "static_mw_per_tile"}
# per inference, without the one-time weight load (run-time writes are attention's, every inference)
COMPUTE = ("adc", "dac", "crossbar", "buffers", "digital", "runtime_writes", "static")


def measure(model: str, target: str, minilm_dir: Path) -> dict:
    """Per-inference energy by component at the derived and at the earlier figures, and the chip area."""
    if model == "digits":
        d = ROOT / "examples" / "digits"
        prog = pimc.compile(str(d / "digits_cnn.onnx"), target=target, calib=np.load(d / "digits_calib.npy"))
        _, stats = pimc.run(prog, np.load(d / "digits_test.npz")["x"])
    elif model == "resnet50":       # seeded weights, 4 calibration and 2 evaluation images (benchmarks/resnet50_run.py)
        from benchmarks.models import resnet50 as R
        prog = pimc.compile(R.build(opset=9, seed=0), target=target, calib=R.images(4, seed=1))
        _, stats = pimc.run(prog, R.images(2, seed=2))
    else:
        path, feeds, calib, _, _ = load_minilm(minilm_dir)
        prog = pimc.compile(str(path), target=target, calib=calib)
        _, stats = pimc.run(prog, feeds)
    s = stats.to_json()
    t = prog.target
    n = s["samples"]
    now = {c: v / n for c, v in s["energy_pj"].items()}
    before = {c: now[c] * BEFORE[target][c] / getattr(t, KEY[c]) if getattr(t, KEY[c]) else 0.0 for c in now}
    return {"now_pj": now, "before_pj": before, "area_mm2": s["area_mm2"], "area_mm2_total": s["area_mm2_total"],
            "converts_per_mac": s["converts_per_mac"], "samples": n}


def total(e: dict, scale: dict | None = None) -> float:
    return sum(e[c] * (scale or {}).get(c, 1.0) for c in COMPUTE)


def model_tables(r: dict) -> list[str]:
    i, ra = r["isaac"], r["raella"]
    out = ["| component | isaac uJ | raella uJ | isaac share | raella share | isaac / raella | before: isaac uJ | "
           "before: raella uJ |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    ti, tr = total(i["now_pj"]), total(ra["now_pj"])
    for c in COMPUTE:
        a, b = i["now_pj"][c], ra["now_pj"][c]
        ratio = f"{a / b:.2f}x" if b else "-"
        out.append(f"| {c} | {a / 1e6:.4f} | {b / 1e6:.4f} | {100 * a / ti:.1f}% | {100 * b / tr:.1f}% | {ratio} | "
                   f"{i['before_pj'][c] / 1e6:.4f} | {ra['before_pj'][c] / 1e6:.4f} |")
    bi, br = total(i["before_pj"]), total(ra["before_pj"])
    out.append(f"| **total** (no weight load) | **{ti / 1e6:.4f}** | **{tr / 1e6:.4f}** | | | **{ti / tr:.2f}x** | "
               f"{bi / 1e6:.4f} | {br / 1e6:.4f} ({bi / br:.2f}x) |")
    load = {t: {k: r[t][k]["weight_writes"] * r[t]["samples"] / 1e6 for k in ("now_pj", "before_pj")} for t in r}
    out.append(f"| weight load (once, not per inference) | {load['isaac']['now_pj']:.4f} | {load['raella']['now_pj']:.4f} "
               f"| | | | {load['isaac']['before_pj']:.4f} | {load['raella']['before_pj']:.4f} |")
    out += ["", "| chip area mm2 | " + " | ".join(i["area_mm2"]) + " | total |",
            "|---|" + "---:|" * (len(i["area_mm2"]) + 1)]
    for t in ("isaac", "raella"):
        a = r[t]["area_mm2"]
        out.append(f"| {t} | " + " | ".join(f"{v:.1f}" for v in a.values()) + f" | {r[t]['area_mm2_total']:.1f} |")
    out += ["", "Sensitivity of isaac / raella (energy per inference without the weight load) to each figure, "
            "scaled on both targets:", "", "| figure | x 1/2 | x 2 |", "|---|---:|---:|"]
    for c in COMPUTE:
        cells = [total(i["now_pj"], {c: f}) / total(ra["now_pj"], {c: f}) for f in (0.5, 2.0)]
        if i["now_pj"][c] or ra["now_pj"][c]:
            label = KEY[c] + (" (run-time writes)" if c == "runtime_writes" else "")
            out.append(f"| {label} | {cells[0]:.2f}x | {cells[1]:.2f}x |")
    return out


def aras_tables(path: Path) -> list[str]:
    if not path.exists():
        return [f"(no ARAS results at {path}: run benchmarks/aras.py first)"]
    res = json.loads(path.read_text())
    out = []
    for model, v in res.items():
        if model == "paper":
            continue
        rows = {r["config"]: r for r in v["rows"]}
        parts = list(next(iter(rows.values()))["energy_uj"])
        out += [f"ARAS, {model} on `{v['target']}`, uJ per inference (steady state):", "",
                "| config | " + " | ".join(parts) + " | total | vs overlap |", "|---|" + "---:|" * (len(parts) + 2)]
        base = rows["overlap"]["energy_uj_total"]
        for name, r in rows.items():
            out.append(f"| {name} | " + " | ".join(f"{r['energy_uj'][p]:.3f}" for p in parts)
                       + f" | {r['energy_uj_total']:.3f} | {100 * (r['energy_uj_total'] - base) / base:+.1f}% |")
        out += ["", f"Sensitivity of {model}'s total change overlap -> +reuse (aras) (paper: -28%) to each part "
                "scaled by 2 and by 1/2:", "", "| part | x 1/2 | x 2 |", "|---|---:|---:|"]
        for p in parts:
            if not any(r["energy_uj"][p] for r in rows.values()):
                continue
            cells = []
            for f in (0.5, 2.0):
                tot = {k: sum(r["energy_uj"][q] * (f if q == p else 1.0) for q in parts) for k, r in rows.items()}
                cells.append(100 * (tot["+reuse (aras)"] - tot["overlap"]) / tot["overlap"])
            out.append(f"| {p} | {cells[0]:+.1f}% | {cells[1]:+.1f}% |")
        out.append("")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--aras", default=str(ROOT / "benchmarks" / "results" / "aras" / "aras.json"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "energy"))
    ap.add_argument("--models", default="digits")
    ap.add_argument("--tables-only", action="store_true", help="redo the tables from --out's energy.json, run nothing")
    add_minilm_dir(ap)
    a = ap.parse_args()
    models = a.models.split(",")
    if "minilm" in models and not a.tables_only:
        minilm_files(a.minilm_dir)
    title = {"digits": "Digits CNN, 540 test images", "minilm": "MiniLM-L6, 64 sentences of 64 tokens",
             "resnet50": "ResNet-50-size CNN (seeded weights, 224x224), 2 images"}
    out = Path(a.out)
    r = json.loads((out / "energy.json").read_text()) if a.tables_only else {}
    lines = []
    for m in (r if a.tables_only else models):
        if not a.tables_only:
            r[m] = {t: measure(m, t, a.minilm_dir) for t in ("isaac", "raella")}
        lines += [f"{title[m]}, per inference:", ""] + model_tables(r[m]) + [""]
    ratios = {m: total(r[m]["isaac"]["now_pj"]) / total(r[m]["raella"]["now_pj"]) for m in r}
    before = {m: total(r[m]["isaac"]["before_pj"]) / total(r[m]["raella"]["before_pj"]) for m in r}
    geo = lambda v: float(np.exp(np.mean(np.log(list(v.values())))))      # noqa: E731
    lines += [f"isaac / raella geomean over {', '.join(r)}: {geo(ratios):.2f}x (before: {geo(before):.2f}x; "
              "thesis: 3.9x over seven ImageNet DNNs)", ""]
    lines += aras_tables(Path(a.aras))
    out.mkdir(parents=True, exist_ok=True)
    (out / "energy.json").write_text(json.dumps(r, indent=1))
    (out / "energy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
