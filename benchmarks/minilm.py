"""MiniLM-L6 end to end: compile, run the 64 sentences, judge against the float reference, per attention mode.

For each --attention mode: compile time, pimrun time (ideal and the real target), mean cosine to
minilm_reference.npy, the nearest-neighbour same-group rate, and the run-time crossbar writes (cells,
pulses, write time, the part of it on the critical path), cycles and energy per inference. Calibration: the
first 16 sentences (calib.npz). Writes benchmarks/results/minilm_<target>.{json,md}. The model and data are
examples/minilm/make_minilm.py's files (--minilm-dir, default examples/minilm/build).

    python benchmarks/minilm.py [--target raella] [--modes retransformer,naive,digital] [--minilm-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.pipeline import compile_model  # noqa: E402
from isa import parse_program, print_program  # noqa: E402
from runtime.machine import Machine  # noqa: E402

from benchmarks.model_files import add_minilm_dir, load_minilm  # noqa: E402


def judge(emb: np.ndarray, ref: np.ndarray, group: np.ndarray) -> dict:
    cos = (emb * ref).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(ref, axis=1)
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "nn_same_group": int((group[sim.argmax(1)] == group).sum()), "n": len(emb)}


def run_mode(model, target: str, mode: str, feeds, calib, ref, group, extra: dict) -> dict:
    t0 = time.perf_counter()
    c = compile_model(model, target, calib, options={"attention": mode, **extra})
    text = print_program(c.program)
    compile_s = time.perf_counter() - t0
    prog = parse_program(text)
    out = {"mode": mode, "compile_s": round(compile_s, 1), "program_mb": round(len(text) / 1e6, 1)}
    for level, ideal in (("ideal", True), ("target", False)):
        t0 = time.perf_counter()
        m = Machine(prog, ideal=ideal)
        emb = m.run(feeds)["embedding"]
        out[f"{level}_run_s"] = round(time.perf_counter() - t0, 1)
        out[level] = judge(emb, ref, group)
        if not ideal:
            st = m.stats.to_json()
            n = st["samples"]
            out["stats"] = {k: st[k] for k in ("converts_per_mac", "saturation_rate", "speculation_success")} | {
                "runtime_write_cells": st["runtime_write_cells"] / n,
                "runtime_write_pulses": st["runtime_write_pulses"] / n,
                "runtime_write_us": st["runtime_write_ns"] / n / 1e3,
                "exposed_write_us": st["exposed_write_ns"] / n / 1e3,
                "time_us": st["per_inference"]["time_ns"] / 1e3,
                "cycles": st["cycles"] / n,
                "energy_uj": st["per_inference"]["energy_incl_weight_writes_pj"] / 1e6,
                "energy_writes_uj": (st["energy_pj"]["weight_writes"] + st["energy_pj"]["runtime_writes"]) / n / 1e6,
            }
    return out


def table(rows: list[dict], target: str) -> str:
    head = ("| attention | compile s | pimrun s (ideal / target) | cosine ideal | cosine target | NN same group "
            "(ideal / target) | run-time writes: cells | pulses | write us | exposed us | time us | energy uJ incl. "
            "weight writes (of it writes) |")
    lines = [f"MiniLM-L6, 64 sentences, target `{target}`, calibration: the first 16 sentences; per inference. "
             "The energy includes the one-time weight load spread over the 64 sentences (so it depends on the "
             "batch) and the crossbars written at run time.", "",
             head, "|" + "---|" * 12]
    for r in rows:
        s = r["stats"]
        lines.append(f"| {r['mode']} | {r['compile_s']} | {r['ideal_run_s']} / {r['target_run_s']} | "
                     f"{r['ideal']['cosine_mean']:.4f} | {r['target']['cosine_mean']:.4f} | "
                     f"{r['ideal']['nn_same_group']}/64 / {r['target']['nn_same_group']}/64 | "
                     f"{s['runtime_write_cells']:.0f} | {s['runtime_write_pulses']:.0f} | {s['runtime_write_us']:.0f} | "
                     f"{s['exposed_write_us']:.0f} | {s['time_us']:.0f} | {s['energy_uj']:.2f} "
                     f"({s['energy_writes_uj']:.2f}) |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="raella")
    ap.add_argument("--modes", default="retransformer,naive,digital")
    ap.add_argument("--slicing", help="fixed weight slicing, e.g. 4,2,2 (default: the target's)")
    add_minilm_dir(ap)
    args = ap.parse_args()
    model, feeds, calib, group, ref = load_minilm(args.minilm_dir)
    extra = {"slicing": tuple(int(v) for v in args.slicing.split(","))} if args.slicing else {}
    rows = []
    for mode in args.modes.split(","):
        rows.append(run_mode(model, args.target, mode, feeds, calib, ref, group, extra))
        print(json.dumps(rows[-1]), flush=True)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"minilm_{args.target}.json").write_text(json.dumps(rows, indent=1))
    (out / f"minilm_{args.target}.md").write_text(table(rows, args.target))
    print(table(rows, args.target))


if __name__ == "__main__":
    main()
