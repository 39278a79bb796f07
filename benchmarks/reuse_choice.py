"""ARAS weight reuse choosing its center by accuracy (ARAS sec. V-C, A5): every candidate's loss on held-apart
calibration samples, its pulses and skipped cells, and the accuracy on real data of the one chosen, for a
loss budget and a clip budget.

    python benchmarks/reuse_choice.py [--models digits,minilm] [--budgets 0.002,0.05] [--max-clip 0.01,1.0]
                                      [--weights symmetric,asymmetric] [--ideal-only] [--out benchmarks/results/reuse_choice.md]

The digits CNN (examples/digits) on benchmarks/targets/aras_digits.toml (ARAS scaled down so that digits'
weights are rewritten during inference, as benchmarks/aras.py runs it), calibrated on its 64 calibration
images (the last 16 held apart for the candidates' losses), accuracy on its 540 test images with the ideal ADC
(reuse's effect alone) and on the target. MiniLM-L6 (examples/minilm/make_minilm.py) runs on the aras preset,
judged on its 64 sentences (cosine to float, nearest neighbour in the same paraphrase group). `--weights`
compares symmetric codes (every layer's mean code near 128) with R0's per-channel scale and zero point (each
filter's own 8-bit codes are what is stored and shifted).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.aras import judge_minilm  # noqa: E402
from benchmarks.model_files import load_minilm  # noqa: E402
from compiler.pipeline import compile_model  # noqa: E402
from isa import load_target  # noqa: E402
from runtime.machine import Machine  # noqa: E402


def setups(names, minilm_dir: Path):
    """name -> (model, target, calibration feeds, accuracy(machine) -> text)."""
    for name in names:
        if name == "digits":
            d = ROOT / "examples" / "digits"
            with np.load(d / "digits_test.npz") as z:
                x, y = z["x"], z["y"]
            yield (name, str(d / "digits_cnn.onnx"), load_target(str(ROOT / "benchmarks" / "targets" / "aras_digits.toml")),
                   np.load(d / "digits_calib.npy"),
                   lambda m: f"top-1 {np.mean(m.run({'image': x})['logits'].argmax(1) == y):.4f} (540 test images)")
        elif name == "minilm":
            model, feeds, calib, group, ref = load_minilm(minilm_dir)

            def judge(m, feeds=feeds, ref=ref, group=group):
                j = judge_minilm(m.run(feeds)["embedding"], ref, group)
                return f"cosine {j['cosine_mean']:.4f}, nearest neighbour {round(64 * j['nn_same_group'])}/64"
            yield name, str(model), load_target("aras"), calib, judge
        else:
            raise SystemExit(f"unknown model {name}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits")
    ap.add_argument("--budgets", default="0.002,0.05")
    ap.add_argument("--max-clip", default="0.01,1.0")
    ap.add_argument("--weights", default="symmetric")
    ap.add_argument("--minilm-dir", type=Path, default=ROOT / "examples" / "minilm" / "build")
    ap.add_argument("--ideal-only", action="store_true", help="skip the run on the target's ADC (slow for MiniLM)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "reuse_choice.md")
    a = ap.parse_args(argv)
    lines = [f"# {' '.join(['python benchmarks/reuse_choice.py'] + (argv if argv is not None else sys.argv[1:]))}", ""]
    for name, model, target, calib, accuracy in setups(a.models.split(","), a.minilm_dir):
        for weights, clip, budget in [(w, float(c), float(b)) for w in a.weights.split(",")
                                      for c in a.max_clip.split(",") for b in a.budgets.split(",")]:
            c = compile_model(model, target, calib, options={"schedule": "aras", "reuse_max_clip": clip,
                                                             "reuse_loss_budget": budget, "weights": weights})
            rep = next(r.report for r in c.records if r.name == "weight_reuse")
            lines += [f"## {name}, {weights} weights, max_clip {clip}, loss budget {budget}: center {rep.center}, "
                      f"held-apart samples {rep.held_apart}; ideal ADC {accuracy(Machine(c.program, ideal=True))}"
                      + ("" if a.ideal_only else f", target {accuracy(Machine(c.program))}"), "",
                      "| center | layers shifted | weights clipped | write pulses | skipped cells | skip ratio | "
                      "top-1 changed (held apart) | output error (rel. L2) | chosen |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
            for cand in rep.candidates:
                top1 = "" if cand.top1_changed is None else f"{cand.top1_changed:.4f}"
                lines.append(f"| {cand.center} | {cand.layers_shifted} | {cand.clipped} | {cand.pulses} | {cand.skipped} | "
                             f"{cand.skip_ratio:.4f} | {top1} | {cand.output_error:.4f} | "
                             f"{'yes' if cand.center == rep.center else ''} |")
            lines.append("")
            print("\n".join(lines[-len(rep.candidates) - 5:]), flush=True)
    a.out.write_text("\n".join(lines))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
