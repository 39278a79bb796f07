"""Compile time of a ResNet-50: per-phase seconds, total, .pimasm size, peak memory; fastest of N.

    python benchmarks/compile_time.py [--target raella] [--repeat 3] [--images 4] [--width 64]
                                      [--pimasm OUT.pimasm] [--out benchmarks/results/compile_time.txt]

The model is benchmarks/models/resnet50.py's (224x224, opset 9, seed 0), calibrated on `--images` of its
smooth ImageNet-normalised images, compiled with the target's default flags as `pimc` does: frontend, the
pass manager's passes (their own timings, passes/manager.py), lowering, printing. Each repetition runs in a
fresh process, so its peak resident memory (ru_maxrss) is the compile's own (with the interpreter and
imports); the row kept is the repetition with the least total time, as other load only ever adds time.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def compile_once(model: Path, calib: Path, target: str, pimasm: Path | None) -> dict:
    """One timed compile in this process: per phase [wall s, CPU s of all threads], the same for the total,
    pimasm bytes and peak RSS in MiB. The passes' wall times are the pass manager's own records."""
    import compiler.pipeline as P
    from isa import print_program

    cpu: dict[str, float] = {}
    wall: dict[str, float] = {}

    def timed(name, fn):
        def run(*a, **k):
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn(*a, **k)
            wall[name] = wall.get(name, 0.0) + time.perf_counter() - t0
            cpu[name] = cpu.get(name, 0.0) + time.process_time() - c0
            return out
        return run

    def passes():
        ps = default_passes()
        for p in ps:
            p.run = timed(p.name, p.run)
        return ps

    default_passes = P.default_passes
    P.default_passes = passes
    P.import_onnx = timed("frontend", P.import_onnx)
    P.lower_graph = timed("lower", P.lower_graph)
    x = np.load(calib)
    t0, c0 = time.perf_counter(), time.process_time()
    c = P.compile_model(model, target, x)
    text = timed("print", print_program)(c.program)
    total = [time.perf_counter() - t0, time.process_time() - c0]
    wall.update({r.name: r.seconds for r in c.records})
    rows = {k: [wall[k], cpu[k]] for k in ["frontend"] + [r.name for r in c.records] + ["lower", "print"]}
    if pimasm:
        pimasm.write_text(text)
    return {"phases": rows, "total": total, "bytes": len(text.encode()),
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="raella")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--images", type=int, default=4, help="calibration images")
    ap.add_argument("--width", type=int, default=64, help="ResNet width (64 is ResNet-50)")
    ap.add_argument("--pimasm", type=Path, help="also keep the program text (for cmp against another build)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "compile_time.txt")
    ap.add_argument("--child", nargs=3, metavar=("MODEL", "CALIB", "PIMASM"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        model, calib, pimasm = a.child
        print(json.dumps(compile_once(Path(model), Path(calib), a.target, Path(pimasm) if pimasm != "-" else None)))
        return

    import onnx
    from benchmarks.models.resnet50 import build, images
    with tempfile.TemporaryDirectory() as tmp:
        model, calib = Path(tmp) / "resnet50.onnx", Path(tmp) / "calib.npy"
        onnx.save(build(opset=9, seed=0, width=a.width), model)
        np.save(calib, images(a.images, seed=1))
        runs = []
        for i in range(a.repeat):
            keep = str(a.pimasm) if a.pimasm and i == 0 else "-"
            out = subprocess.run([sys.executable, __file__, "--target", a.target, "--child", str(model), str(calib),
                                  keep], check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
            print(f"run {i + 1}/{a.repeat}: {runs[-1]['total'][0]:.2f} s", file=sys.stderr)
    best = min(runs, key=lambda r: r["total"][0])
    sizes = {r["bytes"] for r in runs}
    lines = [f"# benchmarks/compile_time.py --target {a.target} --repeat {a.repeat} --images {a.images}"
             + (f" --width {a.width}" if a.width != 64 else ""),
             f"# ResNet-50 v1.5 (width {a.width}), 224x224, opset 9, seed 0; {platform.python_version()}, "
             f"numpy {np.__version__}; fastest of {a.repeat} (totals: "
             + ", ".join(f"{r['total'][0]:.2f}" for r in runs) + " s)",
             "# wall: seconds as they passed; cpu: CPU seconds of all the process's threads (what the compile",
             "# used; other load on the machine stretches wall time, not this)",
             f"{'phase':<18} {'wall s':>9} {'cpu s':>9}"]
    lines += [f"{k:<18} {v[0]:>9.3f} {v[1]:>9.3f}" for k, v in best["phases"].items()]
    lines += [f"{'total':<18} {best['total'][0]:>9.3f} {best['total'][1]:>9.3f}",
              f"pimasm bytes: {best['bytes']}" + ("" if len(sizes) == 1 else f" (runs differ: {sorted(sizes)})"),
              f"peak memory (ru_maxrss of the compiling process): {best['peak_mib']:.0f} MiB"]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)


if __name__ == "__main__":
    main()
