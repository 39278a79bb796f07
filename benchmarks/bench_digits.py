"""pimrun against onnxruntime on the 540 digits test images, measured in one run.

Prints a markdown table: wall time (fastest of --repeat runs), ratio to onnxruntime, and for the sliced runs
the sliced-MAC rate (MACs x input slices x weight slices per second) as a fraction of this machine's float32
GEMM MAC rate measured here too. The ISAAC lower bound is slice pairs x onnxruntime time: what a perfect
implementation of the bit-sliced arithmetic would take at onnxruntime's speed. onnxruntime is timed again
right before each pimrun run and the ratio is of these two times, so load that other processes put on the
machine while the benchmark runs weighs on both sides alike.

    python benchmarks/bench_digits.py [--repeat 5] [--json out.json]

The target rows' ADC-modelled columns run in the compiled kernel (runtime/xbar_kernels.py); PIMC_XBAR=numpy
in the environment times the NumPy reference instead.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.pipeline import compile_model  # noqa: E402
from isa import parse_program, print_program  # noqa: E402
from runtime.machine import Machine  # noqa: E402

DIGITS = ROOT / "examples" / "digits"


def timed(fn, repeat, warmup=2):
    """Fastest of `repeat` calls after `warmup` untimed ones. The fastest, not the median: the first calls
    after a pause run up to 3x slower (threads waking, clocks rising) and load from other processes only
    ever adds time, so the minimum is the figure that repeats from run to run, for both sides."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def timed_against(fn, ref, repeat):
    """Times of ref's and then fn's runs, each after warm-up calls: ref is measured next to every fn. Not
    call by call in turns: onnxruntime's threads spin for a while after each call and would slow the next."""
    t_ref = timed(ref, repeat)
    return timed(fn, repeat), t_ref


def gemm_mac_rate(n=1024, repeat=5) -> float:
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    return n ** 3 / timed(lambda: a @ a, repeat)


def slice_pairs(prog) -> float:
    """Input slices x weight slices per crossbar, averaged over the crossbars weighted by the cells they use."""
    writes = {i.attr("xb"): i for i in prog.code if i.op == "xbwrite"}
    num = den = 0.0
    for i in prog.code:
        if i.op == "mvm":
            w = writes[i.attr("xb")]
            (r0, r1), (c0, c1) = w.attr("rows"), w.attr("cols")
            cells = (r1 - r0) * (c1 - c0)
            num += cells * len(i.attr("islices")) * len(w.attr("slices"))
            den += cells
    return num / den


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    d = np.load(DIGITS / "digits_test.npz")
    x, y = d["x"], d["y"]
    feeds = {"image": x}
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(DIGITS / "digits_cnn.onnx"), so, providers=["CPUExecutionProvider"])
    ort_run = lambda: sess.run(None, feeds)   # noqa: E731
    t_ort = timed(ort_run, args.repeat)
    rate = gemm_mac_rate()
    calib = np.load(DIGITS / "digits_calib.npy")
    rows = [{"run": "onnxruntime float32", "seconds": t_ort, "ratio": 1.0}]
    compile_s = {}
    for target, opts in (("isaac", {}), ("raella", {}), ("raella --no-speculation", {"no_speculation": True})):
        t0 = time.perf_counter()
        c = compile_model(DIGITS / "digits_cnn.onnx", target.split()[0], calib, options=opts)
        compile_s[target] = time.perf_counter() - t0
        prog = parse_program(print_program(c.program))
        pairs = slice_pairs(prog)
        for label, kw in (("--ideal", dict(ideal=True)), ("target", {}), ("target, every slice formed",
                                                                        dict(sliced=True))):
            m = Machine(prog, **kw)
            out = {}
            secs, ort_secs = timed_against(lambda: out.update(m.run(feeds)), ort_run, args.repeat)
            s = m.stats.to_json()
            macs = s["macs"] / s["samples"] * len(x)
            row = {"run": f"pimrun {target} {label}", "seconds": secs, "ratio": secs / ort_secs,
                   "accuracy": float(np.mean(out["logits"].argmax(1) == y))}
            if "sliced" in kw or label == "target":
                row["sliced_mac_rate_vs_gemm"] = macs * pairs / secs / rate
                row["vs_lower_bound"] = secs / (pairs * ort_secs)
            rows.append(row)
    print(f"float32 GEMM: {rate / 1e9:.1f} GMAC/s; onnxruntime: {t_ort * 1e3:.1f} ms for {len(x)} images\n")
    print("| run | time (ms) | x onnxruntime | x lower bound (slice pairs x ORT) | sliced-MAC rate / GEMM rate | top-1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['run']} | {r['seconds'] * 1e3:.1f} | {r['ratio']:.1f} | "
              f"{r.get('vs_lower_bound', float('nan')):.2f} | {r.get('sliced_mac_rate_vs_gemm', float('nan')):.3f} | "
              f"{r.get('accuracy', float('nan')):.4f} |")
    print("\ncompile: " + ", ".join(f"{k} {v:.2f} s" for k, v in compile_s.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"gemm_mac_per_s": rate, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
