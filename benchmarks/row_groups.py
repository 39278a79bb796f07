"""Row groups (passes/row_groups.py): what the ADC-aware mapping buys and costs on the aras preset.

Per model, the same program compiled with every row read at once (row_group 0, the mapping before row groups)
and with the groups the compiler chooses (the default, saturation budget 0.01), and optionally more budgets:
accuracy on real data (digits: top-1 on 540 images against the float model; MiniLM: cosine to the float
reference and nearest-neighbour same-group count on the 64 sentences), the target's saturation rate,
converts/MAC, the crossbar compute time per inference and the schedule's time per inference (weight
rewriting included, runtime/schedule.py), and the groups chosen per layer. Also the isaac and raella presets
on digits with their defaults, which row groups must leave as they were. Writes
benchmarks/results/row_groups.{json,md}.

    python benchmarks/row_groups.py [--models digits,minilm] [--budgets 0.01] [--digits-dir examples/digits]
                                    [--minilm-dir examples/minilm/build]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.pipeline import compile_model  # noqa: E402
from runtime.machine import Machine  # noqa: E402
from runtime.schedule import account  # noqa: E402

from benchmarks.minilm import judge  # noqa: E402
from benchmarks.model_files import add_digits_dir, add_minilm_dir, digits_files, load_minilm  # noqa: E402


def setup(name: str, args):
    """(model, calib, feeds, judge(outputs) -> dict, float accuracy or None)."""
    if name == "digits":
        import onnxruntime as ort
        f = digits_files(args.digits_dir)
        d = np.load(f["test"])
        sess = ort.InferenceSession(str(f["model"]))
        fl = float((sess.run(None, {"image": d["x"]})[0].argmax(1) == d["y"]).mean())
        return (f["model"], np.load(f["calib"]), {"image": d["x"]},
                lambda out: {"top1": float((out["logits"].argmax(1) == d["y"]).mean())}, {"top1": fl})
    model, feeds, calib, group, ref = load_minilm(args.minilm_dir)
    j = lambda out: {k: v for k, v in judge(out["embedding"], ref, group).items() if k != "n"}   # noqa: E731
    return model, calib, feeds, j, None


def run(model, target, calib, feeds, judge_fn, opts) -> dict:
    t0 = time.perf_counter()
    c = compile_model(model, target, calib, options=opts)
    compile_s = time.perf_counter() - t0
    rg = next(r.report for r in c.records if r.name == "row_groups")
    m = Machine(c.program)
    out = m.run(feeds)
    st = m.stats.to_json()
    row = {"options": opts, "compile_s": round(compile_s, 1), **judge_fn(out),
           "saturation_rate": st["saturation_rate"], "converts_per_mac": st["converts_per_mac"],
           "compute_us": st["per_inference"]["time_ns"] / 1e3,
           "groups": dict(Counter(str(e["group"]) for e in rg.layers.values())),
           "over_budget": rg.over_budget,
           "worst_loss": max((e["loss"] or 0.0 for e in rg.layers.values()), default=0.0)}
    if not c.program.target.program_once:
        row["schedule_us"] = account(m)["time_ns"] / 1e3
    print(json.dumps(row), flush=True)
    return row


def table(res: dict) -> str:
    lines = ["# python benchmarks/row_groups.py --models digits,minilm (each run adds its models' rows to "
             "benchmarks/results/row_groups.json)", "",
             "| model | target | mapping | accuracy | saturation rate | converts/MAC | compute us | schedule us | "
             "groups chosen (group: layers) |", "|---|---|---|---|---|---|---|---|---|"]
    for key, r in res.items():
        if key == "float":
            continue
        acc = (f"top-1 {r['top1']:.4f}" if "top1" in r else
               f"cos {r['cosine_mean']:.4f}, NN {r['nn_same_group']}/64")
        o = r["options"]
        mapping = ("all rows (row_group 0)" if o.get("row_group") == 0 else
                   f"chosen, budget {o.get('saturation_budget', 0.01)}")
        sched = f"{r['schedule_us']:.0f}" if "schedule_us" in r else "-"
        groups = ", ".join(f"{g}: {n}" for g, n in sorted(r["groups"].items(), key=lambda kv: -int(kv[0])))
        lines.append(f"| {r['model']} | {r['target']} | {mapping} | {acc} | {r['saturation_rate']:.4%} | "
                     f"{r['converts_per_mac']:.4f} | {r['compute_us']:.0f} | {sched} | {groups} |")
    if "float" in res:
        lines += ["", f"Float digits CNN (onnxruntime): top-1 {res['float']['top1']:.4f}."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="digits,minilm")
    ap.add_argument("--budgets", default="0.01", help="saturation budgets to compile with (besides row_group 0)")
    add_digits_dir(ap)
    add_minilm_dir(ap)
    args = ap.parse_args()
    out = ROOT / "benchmarks" / "results"
    path = out / "row_groups.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    for name in args.models.split(","):
        model, calib, feeds, judge_fn, fl = setup(name, args)
        if fl:
            res["float"] = fl
        runs = [("aras", {"row_group": 0})] + [("aras", {"saturation_budget": float(b)})
                                               for b in args.budgets.split(",")]
        if name == "digits":
            runs += [("isaac", {}), ("raella", {})]
        for target, opts in runs:
            key = f"{name} {target} {json.dumps(opts, sort_keys=True)}"
            res[key] = {"model": name, "target": target, **run(model, target, calib, feeds, judge_fn, opts)}
            path.write_text(json.dumps(res, indent=1))
            (out / "row_groups.md").write_text(table(res))
    print(table(res))


if __name__ == "__main__":
    main()
