"""Peak memory of a compile against the input size: a small CNN (three 3x3 convolutions, 3-16-32-32 channels,
strides 2, 2, 1, ReLU, global average pool, a 10-way Gemm; random weights, seed 0) at H x H inputs, calibrated
on N random samples, compiled for a target. Each size compiles in a fresh process, so its peak resident memory
(ru_maxrss, interpreter and imports included) is that compile's own.

    python benchmarks/compile_memory.py [--sizes 224 1024] [--calib 2] [--target isaac]
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def cnn(h: int):
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for k, (cin, cout, s) in enumerate([(3, 16, 2), (16, 32, 2), (32, 32, 1)]):
        nodes += [helper.make_node("Conv", [x, f"w{k}", f"b{k}"], [f"c{k}"], pads=[1, 1, 1, 1], strides=[s, s]),
                  helper.make_node("Relu", [f"c{k}"], [f"r{k}"])]
        inits += [numpy_helper.from_array((rng.normal(size=(cout, cin, 3, 3)) * 0.2).astype(np.float32), f"w{k}"),
                  numpy_helper.from_array(np.zeros(cout, np.float32), f"b{k}")]
        x = f"r{k}"
    nodes += [helper.make_node("GlobalAveragePool", [x], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("Gemm", ["f", "wf"], ["y"])]
    inits.append(numpy_helper.from_array(rng.normal(size=(32, 10)).astype(np.float32), "wf"))
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, h, h])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def one(h: int, n: int, target: str) -> str:
    sys.path.insert(0, str(ROOT))
    from compiler.pipeline import compile_model
    calib = np.random.default_rng(1).normal(size=(n, 3, h, h)).astype(np.float32)
    t0 = time.perf_counter()
    compile_model(cnn(h), target, calib)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return f"{h}x{h}, {n} calibration samples, {target}: compile {time.perf_counter() - t0:.1f} s, peak RSS {peak:.0f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 1024])
    ap.add_argument("--calib", type=int, default=2)
    ap.add_argument("--target", default="isaac")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(one(a.one, a.calib, a.target))
        return
    for h in a.sizes:
        subprocess.run([sys.executable, __file__, "--one", str(h), "--calib", str(a.calib), "--target", a.target],
                       check=True)


if __name__ == "__main__":
    main()
