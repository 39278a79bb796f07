"""Compile and run every model of a corpus built by make_corpus.py, and write the table docs/corpus.md.

    python examples/corpus/corpus_table.py OUT_DIR [--targets isaac raella] [--cnn-samples 6] [--only NAME ...]
                                           [--table docs/corpus.md] [--no-run]

For each model and target, a child process compiles it with pimc's defaults (`--calib NAME_calib`; plus the
options NAME.json names, shown beside the target: --outputs where a model echoes its inputs), runs the
first eval samples on the ideal machine and on the target, and evaluates the quantised integer reference;
results land in OUT_DIR/results/NAME@TARGET.json (kept: a later call only runs what is missing, --no-run runs
nothing). The table is regenerated above a marker line; notes below it are kept. Peak MB is the child's own ru_maxrss (compile and runs together). A model pimc refuses,
or an export that failed, gets its one-line reason in the table.

Figures per row: compile s (pimc.compile), run s/sample (the target run over the samples), peak MB (the child),
ideal == reference (bit for bit), and against onnxruntime float (NAME_reference.npy): top-1 agreement (CNNs) or
mean cosine and nearest-neighbour same-group rate (sentence encoders), mean cosine and max abs error of the
measured output (detectors and other dense outputs; NAME.json's measured_output, else the first), for --ideal
and the target; label accuracy where NAME.json has eval_labels, pixel agreement at its binary_threshold, a text
recogniser's (ctc) per-step class agreement, character error rate (edit distance to float's greedy CTC reading
over its length) and lines read the same, and
where channels_differ (axis 1 mixes quantities, e.g. YOLO's box coordinates and class scores) the channel
with the largest error relative to its own float maximum.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def load_data(out: Path, name: str, kind: str, n: int | None):
    p = out / f"{name}_{kind}.npz"
    if p.exists():
        with np.load(p) as z:
            d = {k: z[k] for k in z.files}
        return {k: v[:n] for k, v in d.items()} if n else d
    x = np.load(out / f"{name}_{kind}.npy")
    return x[:n] if n else x


def ctc_greedy(p: np.ndarray) -> list[tuple[int, ...]]:
    """A recogniser's text per sample: the best class per step, repeats merged, the blank (class 0) dropped."""
    best = p.argmax(-1)
    return [tuple(int(c) for k, c in enumerate(row) if c and (k == 0 or c != row[k - 1])) for row in best]


def edit_distance(a, b) -> int:
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, c in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != c))
    return d[-1]


def metrics(y: np.ndarray, ref: np.ndarray, family: str, group=None, labels=None, threshold=None,
            channels: bool = False, ctc: bool = False) -> dict:
    a, b = y.reshape(len(y), -1).astype(np.float64), ref.reshape(len(ref), -1).astype(np.float64)
    cos = np.sum(a * b, 1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
    row = {"cosine": float(cos.mean()), "max_abs_error": float(np.abs(a - b).max()),
           "max_abs_float": float(np.abs(b).max())}
    if family == "cnn":
        row["top1_agreement"] = float(np.mean(y.argmax(1) == ref.argmax(1)))
    if channels:        # axis 1 holds channels of different meaning: one's loss hides in the whole cosine
        err = np.abs(y - ref).astype(np.float64).swapaxes(0, 1).reshape(y.shape[1], -1).max(1)
        top = np.abs(ref).astype(np.float64).swapaxes(0, 1).reshape(ref.shape[1], -1).max(1)
        rel = err / np.maximum(top, 1e-30)
        row["worst_channel"] = int(rel.argmax())
        row["worst_channel_rel_error"] = float(rel.max())
        row["worst_channel_abs_error"] = float(err[rel.argmax()])
        row["worst_channel_float_max"] = float(top[rel.argmax()])
    if ctc:         # a text recogniser: the class of every step, and the decoded line
        row["step_agreement"] = float(np.mean(y.argmax(-1) == ref.argmax(-1)))
        got, read = ctc_greedy(y), ctc_greedy(ref)
        row["lines_equal"] = float(np.mean([s == t for s, t in zip(got, read)]))
        row["char_error_rate"] = sum(map(edit_distance, got, read)) / max(1, sum(map(len, read)))
    if threshold is not None:       # a probability map's pixels on the same side of the model's threshold
        row["binary_agreement"] = float(np.mean((a > threshold) == (b > threshold)))
    if labels is not None:
        row["task_accuracy"] = float(np.mean(y.argmax(1) == labels[:len(y)]))
    if group is not None:
        sim = a @ a.T / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(a, axis=1))
        np.fill_diagonal(sim, -np.inf)
        row["nn_same_group"] = float(np.mean(group[sim.argmax(1)] == group))
    return row


def evaluate(out: Path, name: str, target: str, n: int | None) -> dict:
    """Compile on `target` and run the eval samples (what a child process does)."""
    import pimc
    from passes.reference import dequantize_outputs, run_reference
    info = json.loads((out / f"{name}.json").read_text())
    calib = load_data(out, name, "calib", None)
    ev = load_data(out, name, "eval", n)
    group = ev.pop("group", None) if isinstance(ev, dict) else None
    ref_float = np.load(out / f"{name}_reference.npy")[:n] if n else np.load(out / f"{name}_reference.npy")
    t = time.perf_counter()
    prog = pimc.compile(str(out / f"{name}.onnx"), target=target, calib=calib, **info.get("options", {}))
    res = {"compile_s": time.perf_counter() - t, "samples": len(ref_float)}
    quant = dequantize_outputs(prog._compiled.graph, run_reference(prog._compiled.graph, _feeds(prog, ev)))
    key = info.get("measured_output") or next(iter(quant))      # the output NAME_reference.npy holds
    t = time.perf_counter()
    ideal, _ = pimc.run(prog, ev, ideal=True)
    res["ideal_s_per_sample"] = (time.perf_counter() - t) / len(ref_float)
    t = time.perf_counter()
    real, stats = pimc.run(prog, ev)
    res["run_s_per_sample"] = (time.perf_counter() - t) / len(ref_float)
    res["ideal_equals_reference"] = all(np.array_equal(ideal[k], quant[k]) for k in quant)
    labels = np.array(info["eval_labels"]) if "eval_labels" in info else None
    res["float_task_accuracy"] = None if labels is None else \
        float(np.mean(ref_float.argmax(1) == labels[:len(ref_float)]))
    thr = info.get("binary_threshold")
    ch = bool(info.get("channels_differ"))
    ctc = bool(info.get("ctc"))
    res["ideal"] = metrics(ideal[key], ref_float, info["family"], group, labels, thr, ch, ctc)
    res["target"] = metrics(real[key], ref_float, info["family"], group, labels, thr, ch, ctc)
    res["saturation_rate"] = float(stats.saturation_rate)
    res["converts_per_mac"] = float(stats.converts_per_mac)
    return res


def _feeds(prog, ev):
    from pimc.api import _feeds as feeds
    return feeds(prog, ev)


def run_child(out: Path, name: str, target: str, n: int | None) -> dict:
    """One compile + run in a child process: its result, wall time and peak resident memory (ru_maxrss)."""
    dest = out / "results" / f"{name}@{target}.json"
    dest.parent.mkdir(exist_ok=True)
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, __file__, str(out), "--child", name, target, str(n or 0)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    so, se = p.communicate()
    res = json.loads(so.decode().strip().splitlines()[-1]) if p.returncode == 0 else \
        {"error": (se.decode().strip().splitlines() or ["exit %d" % p.returncode])[-1][:400]}
    res["wall_s"] = time.perf_counter() - t
    dest.write_text(json.dumps(res, indent=1))
    return res


def child(out: Path, name: str, target: str, n: int) -> int:
    import resource
    from ir import CompileError, FrontendError
    try:
        res = evaluate(out, name, target, n or None)
    except (FrontendError, CompileError) as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    res["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # the child's own peak
    print(json.dumps(res))
    return 0


def fmt(v, spec=".4f"):
    return "-" if v is None else format(v, spec)


def table(out: Path, targets: list[str]) -> str:
    lines = ["| model | exporter | opset | export s | ops | params | target | compile s | run s/sample | peak MB | "
             "--ideal == reference | float agreement: ideal / target |",
             "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|---|"]
    for meta in sorted(out.glob("*.json")):
        info = json.loads(meta.read_text())
        name = info["name"]
        head = f"| {name} | {info['exporter']} | {info['opset']} | "
        if "error" in info:
            lines.append(head + f"- | - | - | - | - | - | - | export failed | {info['error'].replace('|', '/')} |")
            continue
        head += f"{info['export_s']:.0f} | {len(info['ops'])} | {info['params'] / 1e6:.2f} M | "
        flags = "".join(f" (--{k.replace('_', '-')} {v})" for k, v in info.get("options", {}).items())
        for t in targets:
            p = out / "results" / f"{name}@{t}.json"
            t += flags
            if not p.exists():
                lines.append(head + f"{t} | - | - | - | not measured | (no result in {p.parent.name}/) |")
                continue
            r = json.loads(p.read_text())
            if "error" in r:
                lines.append(head + f"{t} | - | - | {fmt(r.get('peak_mb'), '.0f')} | refused | "
                             f"{r['error'].replace('|', '/')} |")
                continue
            fl = f" (float NN {info['float_nn_same_group']:.3f})" if "float_nn_same_group" in info else ""

            if r.get("float_task_accuracy") is not None:
                fl = f" (labels: float {r['float_task_accuracy']:.3f})"

            def agree(m):
                if "top1_agreement" in m:
                    task = f", labels {m['task_accuracy']:.3f}" if "task_accuracy" in m else ""
                    return f"top-1 {m['top1_agreement']:.3f}, cos {m['cosine']:.4f}{task}"
                if "nn_same_group" in m:
                    return f"cos {m['cosine']:.4f}, NN {m['nn_same_group']:.3f}"
                binary = f", pixels at threshold {m['binary_agreement']:.3f}" if "binary_agreement" in m else ""
                if "lines_equal" in m:
                    binary += (f", steps' class {m['step_agreement']:.3f}, character error rate "
                               f"{m['char_error_rate']:.3f}, lines read the same {m['lines_equal']:.3f}")
                worst = (f", worst channel {m['worst_channel']}: max abs err {m['worst_channel_abs_error']:.3g} (its "
                         f"float max {m['worst_channel_float_max']:.3g})" if "worst_channel" in m else "")
                return (f"cos {m['cosine']:.4f}, max abs err {m['max_abs_error']:.3g} (float max "
                        f"{m['max_abs_float']:.3g}){binary}{worst}")
            lines.append(head + f"{t} | {r['compile_s']:.1f} | {r['run_s_per_sample']:.2f} | {r['peak_mb']:.0f} | "
                         f"{'bit for bit' if r['ideal_equals_reference'] else 'NO'} ({r['samples']} samples) | "
                         f"{agree(r['ideal'])} / {agree(r['target'])}{fl} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--child" in argv:
        i = argv.index("--child")
        return child(Path(argv[0]), argv[i + 1], argv[i + 2], int(argv[i + 3]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--targets", nargs="+", default=["isaac", "raella"])
    ap.add_argument("--cnn-samples", type=int, default=6, help="eval images per CNN or detector (default 6: the "
                    "first six, e.g. the centre crops)")
    ap.add_argument("--only", nargs="+")
    ap.add_argument("--table", type=Path, default=ROOT / "docs" / "corpus.md")
    ap.add_argument("--no-run", action="store_true")
    args = ap.parse_args(argv)
    for meta in sorted(args.out.glob("*.json")):
        info = json.loads(meta.read_text())
        if "error" in info or args.no_run or (args.only and info["name"] not in args.only):
            continue
        for t in args.targets:
            if (args.out / "results" / f"{info['name']}@{t}.json").exists():
                continue
            n = args.cnn_samples if info["family"] in ("cnn", "dense") else None
            r = run_child(args.out, info["name"], t, n)
            print(f"{info['name']} on {t}: " + (r["error"] if "error" in r else
                  f"compiled in {r['compile_s']:.1f} s, ideal == reference: {r['ideal_equals_reference']}"),
                  flush=True)
    body = table(args.out, args.targets)
    notes = args.table.read_text().partition(MARK)[2] if args.table.exists() else "\n"
    args.table.write_text(HEADER + body + "\n\n" + MARK + notes)
    print(f"wrote {args.table}")
    return 0


HEADER = """# Corpus: real models from the wild

Generated by `python examples/corpus/corpus_table.py OUT_DIR` after `python examples/corpus/make_corpus.py OUT_DIR`
(`pip install -e '.[corpus]'`, and the steps below). Each model is compiled with pimc's defaults on each target,
calibrated on NAME_calib (other photos, crops, lines or sentences than the eval ones); "float agreement" is
against onnxruntime float on the first eval samples (six for images, all 32 sentences), per family: top-1
agreement, mean cosine of the scores and label accuracy for classifiers; mean cosine and the nearest-neighbour
same-group rate for sentence encoders; mean cosine and the largest absolute error of the measured output for
detectors, landmarkers and segmenters. Timings were taken on a shared 2-core machine (other jobs running):
compare rows, not absolute numbers.

"""
MARK = "<!-- end of the generated table; notes below are kept when it is regenerated -->"

if __name__ == "__main__":
    sys.exit(main())
