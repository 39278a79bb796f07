"""ARAS weight reuse choosing its center by accuracy (ARAS sec. V-C, A5): every candidate's loss on held-apart
calibration samples, its pulses and skipped cells, and the accuracy on real data of the one chosen, for a
loss budget and a clip budget.

    python benchmarks/reuse_choice.py [--budgets 0.002,0.05] [--max-clip 0.01,1.0]
                                      [--out benchmarks/results/reuse_choice.md]

The digits CNN (examples/digits) on benchmarks/targets/aras_digits.toml (ARAS scaled down so that digits'
weights are rewritten during inference, as benchmarks/aras.py runs it), calibrated on its 64 calibration
images (the last 16 held apart for the candidates' losses), accuracy on its 540 test images with the ideal ADC
(reuse's effect alone) and on the target.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.pipeline import compile_model  # noqa: E402
from isa import load_target  # noqa: E402
from runtime.machine import Machine  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="0.002,0.05")
    ap.add_argument("--max-clip", default="0.01,1.0")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "reuse_choice.md")
    a = ap.parse_args(argv)
    d = ROOT / "examples" / "digits"
    model, calib = d / "digits_cnn.onnx", np.load(d / "digits_calib.npy")
    with np.load(d / "digits_test.npz") as z:
        x, y = z["x"], z["y"]
    lines = [f"# {' '.join(['python benchmarks/reuse_choice.py'] + (argv if argv is not None else sys.argv[1:]))}", ""]
    for clip in [float(v) for v in a.max_clip.split(",")]:
        for budget in [float(v) for v in a.budgets.split(",")]:
            c = compile_model(str(model), load_target(str(ROOT / "benchmarks" / "targets" / "aras_digits.toml")), calib, options={"schedule": "aras", "reuse_max_clip": clip,
                                                                 "reuse_loss_budget": budget})
            rep = next(r.report for r in c.records if r.name == "weight_reuse")
            ideal = float(np.mean(Machine(c.program, ideal=True).run({"image": x})["logits"].argmax(1) == y))
            real = float(np.mean(Machine(c.program).run({"image": x})["logits"].argmax(1) == y))
            lines += [f"## max_clip {clip}, loss budget {budget}: center {rep.center}, held-apart samples "
                      f"{rep.held_apart}; test accuracy (540 images) ideal ADC {ideal:.4f}, target {real:.4f}", "",
                      "| center | layers shifted | weights clipped | write pulses | skipped cells | skip ratio | "
                      "top-1 changed (held apart) | output error (rel. L2) | chosen |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
            for cand in rep.candidates:
                lines.append(f"| {cand.center} | {cand.layers_shifted} | {cand.clipped} | {cand.pulses} | {cand.skipped} | "
                             f"{cand.skip_ratio:.4f} | {cand.top1_changed:.4f} | {cand.output_error:.4f} | "
                             f"{'yes' if cand.center == rep.center else ''} |")
            lines.append("")
            print("\n".join(lines[-len(rep.candidates) - 5:]), flush=True)
    a.out.write_text("\n".join(lines))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
