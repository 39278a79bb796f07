"""pimrun on a ResNet-50-size CNN (torchvision topology, 224x224, seeded weights: benchmarks/models/resnet50.py)
against onnxruntime on the same images, in one process: seconds per image on the raella target, the ratio, top-1
agreement with float, and the peak memory of `pimrun` alone (a process of its own) on 1 image and on all the
images in chunks of 1 and in one chunk: what the program's state costs, and what each sample in a chunk adds.
Output: benchmarks/results/resnet50_run.txt.

    python benchmarks/resnet50_run.py [--images 4] [--repeat 2] [--target raella]
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pimc  # noqa: E402
from benchmarks.models import resnet50 as R  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--target", default="raella")
    a = ap.parse_args()
    m = R.build(opset=9, seed=0)
    calib, x = R.images(4, seed=1), R.images(a.images, seed=2)
    t0 = time.perf_counter()
    prog = pimc.compile(m, target=a.target, calib=calib)
    compile_s = time.perf_counter() - t0
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    sess.run(None, feed)
    ort_s = []
    for _ in range(5):
        t0 = time.perf_counter()
        ref = sess.run(None, feed)[0]
        ort_s.append((time.perf_counter() - t0) / len(x))
    pimc.run(prog, x[:1])                   # warm-up: the kernel loaded, the buffers measured
    run_s = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        outs, _ = pimc.run(prog, x)
        run_s.append((time.perf_counter() - t0) / len(x))
    y = next(iter(outs.values()))
    with tempfile.TemporaryDirectory() as tmp:
        prog.save(f"{tmp}/r50.pimasm")
        np.save(f"{tmp}/x1.npy", x[:1])
        np.save(f"{tmp}/x.npy", x)
        rss = {k: _pimrun_rss(f"{tmp}/r50.pimasm", f"{tmp}/{f}", f"{tmp}/o.npy", chunk)
               for k, f, chunk in (("1 image", "x1.npy", 1), ("chunk 1", "x.npy", 1), ("one chunk", "x.npy", len(x)))}
    lines = [f"# python benchmarks/resnet50_run.py --images {a.images} --repeat {a.repeat} --target {a.target}",
             f"# ResNet-50 v1.5, 224x224, opset 9, seeded weights; fastest of {a.repeat} runs (onnxruntime: of 5)",
             f"compile s                 {compile_s:.1f}",
             f"onnxruntime ms / image    {min(ort_s) * 1e3:.1f}",
             f"pimrun {a.target} s / image  {min(run_s):.2f}",
             f"x onnxruntime             {min(run_s) / min(ort_s):.0f}",
             f"top-1 agreement           {np.mean(y.argmax(1) == ref.argmax(1)):.2f} ({len(x)} images)",
             f"peak RSS MiB (this process: compile and runs)  {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}",
             f"pimrun peak RSS MiB, 1 image                   {rss['1 image']:.0f}",
             f"pimrun peak RSS MiB, {len(x)} images in chunks of 1    {rss['chunk 1']:.0f}",
             f"pimrun peak RSS MiB, {len(x)} images in one chunk      {rss['one chunk']:.0f}",
             f"pimrun MiB per sample of a chunk               "
             f"{(rss['one chunk'] - rss['chunk 1']) / max(1, len(x) - 1):.0f}"]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    (ROOT / "benchmarks" / "results" / "resnet50_run.txt").write_text(text)


def _pimrun_rss(prog: str, x: str, out: str, chunk: int) -> float:
    """Peak RSS (MiB) of one pimrun process: a Python process that only waits on it, so its own children's
    maximum is pimrun's."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    cmd = [sys.executable, "-c", code, sys.executable, "-m", "runtime.cli", prog, "--input", x, "-o", out,
           "--chunk", str(chunk), "--quiet"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    return int(res.stdout.split()[-1]) / 1024


if __name__ == "__main__":
    main()
