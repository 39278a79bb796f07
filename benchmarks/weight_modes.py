"""Symmetric against asymmetric per-channel weights (R0, `--weights`): the digits CNN on isaac, raella
(Center+Offset) and raella with Zero+Offset (`--encoding differential`): ideal == reference, accuracy on the
540 test images (ideal and target), the weights' rms quantisation error (mean over layers, relative to each
layer's max |w|) and the ADC saturation rate.

    python benchmarks/weight_modes.py [--out benchmarks/results/weight_modes.md]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.pipeline import compile_model  # noqa: E402
from passes.reference import dequantize_outputs, run_reference  # noqa: E402
from runtime.machine import Machine  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "weight_modes.md")
    a = ap.parse_args(argv)
    d = ROOT / "examples" / "digits"
    with np.load(d / "digits_test.npz") as z:
        x, y = z["x"], z["y"]
    calib = np.load(d / "digits_calib.npy")
    lines = ["# python benchmarks/weight_modes.py", "",
             "| target | encoding | weights | ideal == reference | accuracy ideal | accuracy target | weight rms error | "
             "saturation |", "|---|---|---|---|---:|---:|---:|---:|"]
    for target, enc in (("isaac", None), ("raella", None), ("raella", "differential")):
        for w in ("symmetric", "asymmetric"):
            c = compile_model(str(d / "digits_cnn.onnx"), target, calib, {"weights": w} | ({"encoding": enc} if enc else {}))
            ideal = Machine(c.program, ideal=True).run({"image": x})["logits"]
            ref = dequantize_outputs(c.graph, run_reference(c.graph, {"image": x}))["logits"]
            m = Machine(c.program)
            real = m.run({"image": x})["logits"]
            rms = next(r.report for r in c.records if r.name == "quantize").weight_rms_error
            lines.append(f"| {target} | {enc or c.program.target.encoding} | {w} | {np.array_equal(ideal, ref)} | "
                         f"{np.mean(ideal.argmax(1) == y):.4f} | {np.mean(real.argmax(1) == y):.4f} | "
                         f"{np.mean(list(rms.values())):.5f} | {100 * m.stats.to_json()['saturation_rate']:.4f}% |")
            print(lines[-1], flush=True)
    a.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
