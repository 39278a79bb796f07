"""ARAS figures (ARAS sec. IV-VII): weight-rewriting schedules on models larger than the chip.

Per model, five programs: naive; overlap (the ARAS baseline, no optimisation, 15 x 256 KB buffer);
+bank selection; +replication; +weight reuse (= `--schedule aras`). Per program: compile time, inferences/s,
% of the write bound, time per inference, write pulses, energy per inference by component and its change
per optimisation, replication's extra weights; accuracy on real data with and without weight reuse (digits:
540 images; MiniLM: cosine to the float reference and nearest-neighbour same-group rate on the 64 sentences),
plus a sweep of weight reuse's clip budget (the share of a layer's weights its shift may clip). Time and
energy are per inference in steady state (runtime/schedule.py), so they are measured on a few samples.

    python benchmarks/aras.py [--models digits,resnet,minilm] [--out benchmarks/results/aras]
                              [--compute-latency per_slice,per_vector] [--time-only] [--configs overlap,...]
                              [--digits-dir examples/digits] [--minilm-dir examples/minilm/build]

--compute-latency gives the readings of the paper's crossbar compute latency to time under (the target key
compute_latency: per input slice, as the presets read it, or per whole input vector); a reading other than the
target's own is reported as "MODEL (reading)", timed only (outputs do not depend on the time model).
--time-only leaves out the accuracy runs and the whole-model comparison; --configs runs only the configs named.

Models: digits CNN on benchmarks/targets/aras_digits.toml (the aras preset cut to 3 PE rows: 12 crossbars
against the model's 21), a ResNet-34-style CNN (CIFAR shape, 32x32, seeded random weights, He init, BatchNorm;
no accuracy: no real data) and MiniLM-L6 (examples/minilm/make_minilm.py; calibrated on calib.npz, its first 16
sentences), both on the aras preset (2304 crossbars).
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
from isa import load_target  # noqa: E402
from runtime.machine import Machine  # noqa: E402
from runtime.schedule import account  # noqa: E402
from runtime.timeline import plot as plot_timeline  # noqa: E402

from benchmarks.model_files import (add_digits_dir, add_minilm_dir, digits_files, load_minilm,  # noqa: E402
                                    minilm_files)
CONFIGS = [
    ("naive", {"schedule": "naive"}),
    ("overlap", {"schedule": "overlap"}),
    ("+banks", {"schedule": "aras", "replication": False, "weight_reuse": False}),
    ("+replication", {"schedule": "aras", "weight_reuse": False}),
    ("+reuse (aras)", {"schedule": "aras"}),
]
PAPER = {"pct_of_bound": {"overlap": 66, "+reuse (aras)": 88},
         "energy_step_pct": {"+banks": -3, "+replication": -14, "+reuse (aras)": -11}, "energy_total_pct": -28,
         "pulses_reuse_pct": -17, "accuracy_loss_pct": "< 0.12 on average (0.42 worst)", "extra_weights_pct": 6.4,
         "inferences_per_s": {"ResNet-50": 132, "BERT-Base (seq 128)": 130, "VGG-16": 43, "DenseNet-161": 95,
                              "BERT-Large": 39}}


def resnet34(hw: int = 32, width: int = 64, blocks=(3, 4, 6, 3)):
    """ResNet-34's basic blocks (21M weights, ~2.3x the aras preset's crossbars, near ResNet-50's ratio)."""
    from tests.compiler.cnn_blocks import Net
    n = Net("resnet34", c=3, hw=hw, seed=0)
    x, c = n.conv_bn("x", width), width
    for stage, (cout, nb) in enumerate(zip([width, 2 * width, 4 * width, 8 * width], blocks)):
        for b in range(nb):
            stride = 2 if stage and b == 0 else 1
            y = n.conv_bn(n.conv_bn(x, cout, stride=stride), cout, act=None)
            skip = x if stride == 1 and cout == c else n.conv_bn(x, cout, k=1, stride=stride, pad=0, act=None)
            x, c = n.act(n.add(y, skip)), cout
    return n.model(n.head(x))


def judge_minilm(emb, ref, group) -> dict:
    cos = (emb * ref).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(ref, axis=1)
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    return {"cosine_mean": float(cos.mean()), "nn_same_group": float((group[sim.argmax(1)] == group).mean())}


def model_setup(name: str, args):
    """(model, target, calib, timing feeds, accuracy fn or None)."""
    if name == "digits":
        files = digits_files(args.digits_dir)
        d = np.load(files["test"])
        acc = lambda m: float((m.run({"image": d["x"]})["logits"].argmax(1) == d["y"]).mean())
        return (files["model"], load_target(ROOT / "benchmarks" / "targets" / "aras_digits.toml"),
                np.load(files["calib"]), {"image": d["x"][:8]}, acc)
    if name == "resnet":
        from tests.compiler.cnn_blocks import images
        x = images(10, (3, 32, 32), 1)
        return resnet34(), load_target("aras"), x[:8], {"x": x[8:10]}, None
    if name == "minilm":
        model, feeds, calib, group, ref = load_minilm(args.minilm_dir)
        acc = lambda m: judge_minilm(m.run(feeds)["embedding"], ref, group)
        return model, load_target("aras"), calib, {k: v[:1] for k, v in feeds.items()}, acc
    raise SystemExit(f"unknown model {name}")


def whole_model_outputs(model, target, calib, feeds) -> dict:
    """The same program on a target that holds the model (program-once, enough PEs): the schedules' reference."""
    c = compile_model(model, target.replace(program_once=True, tiles=4096), calib)
    return Machine(c.program).run(feeds)


def record(c, key):
    return next((r.report for r in c.records if r.name == key), None)


def run_config(name, label, opts, model, target, calib, feeds, acc, out: Path, whole=None, known=None) -> dict:
    t0 = time.perf_counter()
    c = compile_model(model, target, calib, options=opts)
    compile_s = time.perf_counter() - t0
    m = Machine(c.program)
    outs = m.run(feeds)
    r = account(m)
    plot_timeline(r, out / f"{name}_{label.split()[0].strip('+')}_timeline.png")
    sched, reuse = record(c, "schedule"), record(c, "weight_reuse")
    row = {"config": label, "compile_s": round(compile_s, 1), "time_us": r["time_ns"] / 1e3,
           "inferences_per_s": r["inferences_per_s"], "pct_of_bound": r["pct_of_bound"],
           "bound_inferences_per_s": r["bound_inferences_per_s"], "writes": r["crossbar_writes"],
           "compute_floor_us": r["compute_floor_ns"] / 1e3, "pct_of_lower_bound": r["pct_of_lower_bound"],
           "write_pulses": r["write_pulses"], "cells_changed": r["cells_changed"],
           "energy_uj": {k: v / 1e6 for k, v in r["energy_pj"].items()}, "energy_uj_total": r["energy_pj_total"] / 1e6,
           "dram_stall_us": r["dram_stall_ns"] / 1e3, "extra_weights_pct": sched.extra_weights_pct,
           "logical_crossbars": sched.logical_crossbars, "replication": sched.replication,
           "reuse_center": reuse.center if reuse else None}
    if sched.decisions and "heuristic_makespan_ns" in sched.decisions[0]:     # sec. V-B: Algorithm 1 against its ILP
        ds = sched.decisions
        row["replication_methods"] = {
            "decisions": len(ds), "ilp_better": sum(d["ilp_makespan_ns"] < d["heuristic_makespan_ns"] for d in ds),
            "heuristic_window_us": sum(d["heuristic_makespan_ns"] for d in ds) / 1e3,
            "ilp_window_us": sum(d["ilp_makespan_ns"] for d in ds) / 1e3}
    if whole is not None and not (reuse and reuse.center is not None):    # same encoding as the whole model
        row["outputs_identical_to_whole_model"] = all(np.array_equal(outs[k], whole[k]) for k in whole)
    prev = next((r for r in (known or {}).get("rows", []) if r["config"] == label and "accuracy" in r), None)
    if prev is not None:        # --keep-accuracy: outputs do not depend on the time model
        row.update({k: prev[k] for k in ("accuracy", "accuracy_ideal_adc", "accuracy_run_s")})
    elif acc is not None and (label in ("+replication", "+reuse (aras)")):
        t0 = time.perf_counter()
        row["accuracy"] = acc(Machine(c.program))
        row["accuracy_ideal_adc"] = acc(Machine(c.program, ideal=True))     # weight reuse's effect alone
        row["accuracy_run_s"] = round(time.perf_counter() - t0, 1)
    print(f"  {label:14s} {row['inferences_per_s']:8.1f} inf/s {row['pct_of_bound']:5.1f}% of bound "
          f"{row['energy_uj_total']:10.2f} uJ {row['write_pulses']:>10d} pulses  compile {compile_s:.1f}s"
          + (f"  accuracy {row['accuracy']}" if "accuracy" in row else "")
          + f"  same as whole model: {row.get('outputs_identical_to_whole_model', '-')}", flush=True)
    return row


def sweep_reuse(model, target, calib, feeds, acc, clips, known=None) -> list[dict]:
    rows = []
    for clip in clips:
        prev = next((r for r in (known or {}).get("reuse_sweep", []) if r["max_clip"] == clip), None)
        c = compile_model(model, target, calib, options={"schedule": "aras", "reuse_max_clip": clip})
        m = Machine(c.program)
        m.run(feeds)
        r = account(m)
        reuse = record(c, "weight_reuse")
        rows.append({"max_clip": clip, "center": reuse.center, "clipped_weights": reuse.clipped,
                     "shifted_layers": sum(1 for lr in reuse.layers.values() if lr.delta),
                     "write_pulses": r["write_pulses"], "energy_uj_total": r["energy_pj_total"] / 1e6,
                     "accuracy": prev["accuracy"] if prev else acc(Machine(c.program)) if acc else None,
                     "accuracy_ideal_adc": prev["accuracy_ideal_adc"] if prev else
                     acc(Machine(c.program, ideal=True)) if acc else None})
        print(f"  reuse max_clip {clip}: center {reuse.center}, pulses {r['write_pulses']}, "
              f"accuracy {rows[-1]['accuracy']}", flush=True)
    return rows


def changes(rows: list[dict]) -> dict:
    by = {r["config"]: r for r in rows}
    base = by["overlap"]["energy_uj_total"]
    steps = ["overlap", "+banks", "+replication", "+reuse (aras)"]
    out = {"energy_step_pct": {s: 100 * (by[s]["energy_uj_total"] - by[p]["energy_uj_total"]) / base
                               for p, s in zip(steps, steps[1:])},
           "energy_total_pct": 100 * (by["+reuse (aras)"]["energy_uj_total"] - base) / base,
           "pulses_reuse_pct": 100 * (by["+reuse (aras)"]["write_pulses"] - by["+replication"]["write_pulses"])
           / max(1, by["+replication"]["write_pulses"])}
    if "accuracy" in by["+replication"]:
        out["accuracy_without_reuse"] = by["+replication"]["accuracy"]
        out["accuracy_with_reuse"] = by["+reuse (aras)"]["accuracy"]
        out["accuracy_ideal_adc_without_reuse"] = by["+replication"]["accuracy_ideal_adc"]
        out["accuracy_ideal_adc_with_reuse"] = by["+reuse (aras)"]["accuracy_ideal_adc"]
    return out


def _fmt(a) -> str:
    if isinstance(a, dict):
        return f"cos {a['cosine_mean']:.4f} NN {a['nn_same_group']:.3f}"
    return f"{a:.4f}"


def table(results: dict) -> str:
    out = ["| model | config | compile s | inf/s | % of write bound | compute floor us | % of max(bounds) | us/inference "
           "| write pulses | energy uJ (write / compute / static banks / static PEs) | total uJ | extra weights % | "
           "outputs = whole-model target |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        for r in res["rows"]:
            e = r["energy_uj"]
            out.append(f"| {name} | {r['config']} | {r['compile_s']} | {r['inferences_per_s']:.1f} | "
                       f"{r['pct_of_bound']:.1f} | {r['compute_floor_us']:.0f} | {r['pct_of_lower_bound']:.1f} | {r['time_us']:.0f} | "
                       f"{r['write_pulses']} | {e['weight_writes'] + e['runtime_writes']:.2f} / "
                       f"{e['compute']:.2f} / {e['static_banks']:.2f} / {e['static_pes']:.2f} | "
                       f"{r['energy_uj_total']:.2f} | {r['extra_weights_pct']:.1f} | "
                       f"{ {True: 'yes', False: 'NO'}.get(r.get('outputs_identical_to_whole_model'), '-')} |")
    out += ["", "| model | bank selection | replication | weight reuse | total | pulses (reuse) | accuracy "
            "without / with reuse |", "|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        ch = res["changes"]
        if not ch:          # a subset of the configs (--configs): no steps to compare
            continue
        s = ch["energy_step_pct"]
        accs = (f"{_fmt(ch['accuracy_without_reuse'])} / {_fmt(ch['accuracy_with_reuse'])} (ideal ADC: "
                f"{_fmt(ch['accuracy_ideal_adc_without_reuse'])} / {_fmt(ch['accuracy_ideal_adc_with_reuse'])})"
                if "accuracy_with_reuse" in ch else "-")
        out.append(f"| {name} | {s['+banks']:+.1f}% | {s['+replication']:+.1f}% | {s['+reuse (aras)']:+.1f}% | "
                   f"{ch['energy_total_pct']:+.1f}% | {ch['pulses_reuse_pct']:+.1f}% | {accs} |")
    p = PAPER
    out.append(f"| paper (sec. V-VII, 5 DNNs) | {p['energy_step_pct']['+banks']}% | {p['energy_step_pct']['+replication']}% "
               f"| {p['energy_step_pct']['+reuse (aras)']}% | {p['energy_total_pct']}% | {p['pulses_reuse_pct']}% | "
               f"loss {p['accuracy_loss_pct']} |")
    out += ["", "Replication (sec. V-B), per model: the releases at which the planner decided, how often the ILP's window "
            "makespan beat Algorithm 1's, both summed over the decisions, and whether the whole plan kept the replicas "
            "(planned time with / without them):", "",
            "| model | decisions | ILP better | Algorithm 1 windows us | ILP windows us | kept (planned us with / without) |",
            "|---|---|---|---|---|---|"]
    for name, res in results.items():
        r = next((r for r in res["rows"] if r["config"] == "+replication"), None)
        if r and r.get("replication_methods"):
            rm, k = r["replication_methods"], r.get("replication") or {}
            out.append(f"| {name} | {rm['decisions']} | {rm['ilp_better']} | {rm['heuristic_window_us']:.0f} | "
                       f"{rm['ilp_window_us']:.0f} | {'yes' if k.get('kept') else 'no'} "
                       f"({k.get('replicated_ns', 0) / 1e3:.0f} / {k.get('single_ns', 0) / 1e3:.0f}) |")
    for name, res in results.items():
        if res.get("reuse_sweep"):
            out += ["", f"Weight reuse's clip budget on {name}:", "",
                    "| max clip | center | shifted layers | clipped weights | write pulses | energy uJ | accuracy "
                    "(ideal ADC) |", "|---|---|---|---|---|---|---|"]
            out += [f"| {r['max_clip']} | {r['center']} | {r['shifted_layers']} | {r['clipped_weights']} | "
                    f"{r['write_pulses']} | {r['energy_uj_total']:.2f} | {_fmt(r['accuracy'])} "
                    f"({_fmt(r['accuracy_ideal_adc'])}) |" for r in res["reuse_sweep"]]
    out += ["", f"Paper: overlap at {p['pct_of_bound']['overlap']}% and aras at {p['pct_of_bound']['+reuse (aras)']}% "
            f"of the write bound, naive below both; replication writes +{p['extra_weights_pct']}% weights; "
            "inferences/s " + ", ".join(f"{k} {v}" for k, v in p["inferences_per_s"].items()) + "."]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="digits,resnet,minilm")
    ap.add_argument("--clips", default="0.05,0.2", help="weight reuse clip budgets to sweep (digits, minilm)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "aras"))
    ap.add_argument("--keep-accuracy", action="store_true",
                    help="reuse the accuracies already in the results (they do not depend on time or energy)")
    ap.add_argument("--compute-latency", default="per_slice",
                    help="readings of the crossbar compute latency, comma-separated: per_slice, per_vector")
    ap.add_argument("--time-only", action="store_true",
                    help="leave out the accuracy runs and the whole-model comparison")
    ap.add_argument("--configs", help="comma-separated config labels to run (default: all)")
    add_digits_dir(ap)
    add_minilm_dir(ap)
    args = ap.parse_args()
    names = args.models.split(",")
    if "digits" in names:                      # a missing file ends here, before hours of other models
        digits_files(args.digits_dir)
    if "minilm" in names:
        minilm_files(args.minilm_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "aras.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for name in names:
        print(name, flush=True)
        model, target0, calib, feeds, acc0 = model_setup(name, args)
        whole = None if args.time_only else whole_model_outputs(model, target0, calib, feeds)
        for reading in args.compute_latency.split(","):
            target = target0.replace(compute_latency=reading)
            own = reading == target0.compute_latency
            key = name if own else f"{name} ({reading})"
            acc = acc0 if own and not args.time_only else None
            known = results.get(key) if args.keep_accuracy else None
            rows = [run_config(name if own else f"{name}_{reading}", label, opts, model, target, calib, feeds, acc,
                               out, whole, known) for label, opts in CONFIGS
                    if not args.configs or label in args.configs.split(",")]
            results[key] = {"target": target.name, "compute_latency": reading, "rows": rows,
                            "changes": changes(rows) if len(rows) == len(CONFIGS) else {}}
            if acc is not None:
                results[key]["reuse_sweep"] = sweep_reuse(model, target, calib, feeds, acc,
                                                          [float(v) for v in args.clips.split(",") if v], known)
            path.write_text(json.dumps(results, indent=1, default=float))
            (out / "aras.md").write_text(table({k: v for k, v in results.items() if k != "paper"}))
    results["paper"] = PAPER
    path.write_text(json.dumps(results, indent=1, default=float))
    (out / "aras.md").write_text(table({k: v for k, v in results.items() if k != "paper"}))


if __name__ == "__main__":
    main()
