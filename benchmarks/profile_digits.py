"""Where pimrun --ideal spends its time on the 540 digits images: milliseconds per instruction kind, from the
fastest of 5 runs.

    python benchmarks/profile_digits.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.pipeline import compile_model  # noqa: E402
from isa import parse_program, print_program  # noqa: E402
from runtime import machine as M  # noqa: E402

DIGITS = ROOT / "examples" / "digits"


def timed_handlers(totals: dict) -> dict:
    """Wrap every instruction handler to add its wall time to totals[op]; returns the originals."""
    orig = dict(M.EXEC)

    def wrap(op, fn):
        def run(m, ins):
            t0 = time.perf_counter()
            fn(m, ins)
            totals[op] = totals.get(op, 0.0) + time.perf_counter() - t0
        return run
    M.EXEC.update({op: wrap(op, fn) for op, fn in orig.items()})
    return orig


def main(repeat: int = 5):
    x = np.load(DIGITS / "digits_test.npz")["x"]
    for target in ("isaac", "raella"):
        c = compile_model(DIGITS / "digits_cnn.onnx", target, np.load(DIGITS / "digits_calib.npy"))
        m = M.Machine(parse_program(print_program(c.program)), ideal=True)
        totals: dict = {}
        orig = timed_handlers(totals)
        best = None
        for _ in range(repeat):
            totals.clear()
            t0 = time.perf_counter()
            m.run({"image": x})
            t = time.perf_counter() - t0
            if best is None or t < best[0]:
                best = (t, dict(totals))
        M.EXEC.update(orig)
        top = sorted(best[1].items(), key=lambda kv: -kv[1])[:6]
        print(f"{target} --ideal: {best[0] * 1e3:.1f} ms; " + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in top))


if __name__ == "__main__":
    main()
