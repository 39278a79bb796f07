"""RAELLA's ablation (ch. 7 of Andrulis's thesis "Efficient, Accurate, and Flexible PIM Inference through
Adaptable Low-Resolution Arithmetic") on a real model, in one command.

Setups: ISAAC -> +Center+Offset (512 rows, 7-bit signed ADC, ISAAC's 2-bit weight / 1-bit input slicing)
-> +Adaptive Weight Slicing -> +Speculation, and Zero+Offset (differential) beside each Center+Offset setup
at the same slicings. Per setup: converts/MAC, saturation rate, column-sum resolution (bits of an ADC of the
setup's signedness that holds 99.9% of the column sums), speculation success, energy by component,
accuracy on real data, and accuracy under analog noise E as mean and standard deviation over seeds 0..N-1
(noise is keyed by seed, sample, instruction and column: a rerun reproduces every figure). Writes a markdown
table, a JSON file (per-seed scores too) and plots, results only, so a rerun writes the same files.

    python benchmarks/ablation.py digits [--noise 4,8,12] [--seeds 5] [--out benchmarks/results/digits] [--digits-dir DIR]
    python benchmarks/ablation.py minilm-fc [--layers 36] [--out benchmarks/results/minilm_fc] [--minilm-dir DIR]

digits: the digits CNN (examples/digits) on all 540 test images, calibrated on digits_calib.npy.
minilm-fc: every MatMul with a weight matrix in minilm_l6.onnx (examples/minilm/make_minilm.py builds it into
examples/minilm/build) as its own one-layer model, its input activations captured with onnxruntime on the 64
sentences; calibrated on the first 16 sentences, measured on the other 48 (accuracy there: mean cosine of the
layer output to float).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.pipeline import compile_model  # noqa: E402
from isa import load_target  # noqa: E402
from runtime.machine import Machine  # noqa: E402

from benchmarks.model_files import (add_digits_dir, add_minilm_dir, digits_files,  # noqa: E402
                                    minilm_files)
HIST = 1 << 16


def setups(adaptive_choice=None):
    """(name, target, options). adaptive_choice: the Center+Offset adaptive slicing per layer, reused by
    the Zero+Offset setups so both encodings run the same slicing."""
    isaac = load_target("isaac")
    base = load_target("raella").replace(input_slices=(1,) * 8, recovery_bits=0, weight_slices=(2, 2, 2, 2),
                                         adaptive_slicing=False)
    co, zo = base.replace(encoding="center_offset"), base.replace(encoding="differential")
    spec = dict(input_slices=(4, 2, 2), recovery_bits=1)
    out = [("ISAAC", isaac, {}), ("+C+O", co, {}), ("Z+O", zo, {}),
           ("+C+O +AWS", co, {"slicing": "adaptive"})]
    if adaptive_choice is not None:
        out += [("Z+O +AWS", zo, {"slicing": adaptive_choice}),
                ("+C+O +AWS +Spec", co.replace(**spec), {"slicing": adaptive_choice}),
                ("Z+O +AWS +Spec", zo.replace(**spec), {"slicing": adaptive_choice})]
    return out


def resolution_bits(hist: np.ndarray, signed: bool, cover=0.999) -> int:
    """Fewest ADC bits (of the given signedness, step 1) that hold `cover` of the column sums."""
    values = np.arange(-HIST, HIST + 1)
    total = hist.sum()
    for b in range(1, 18):
        lo, hi = (-(1 << (b - 1)), (1 << (b - 1)) - 1) if signed else (0, (1 << b) - 1)
        if hist[(values >= lo) & (values <= hi)].sum() >= cover * total:
            return b
    return 18


def measure(prog, feeds, score, noise_levels, seeds=5):
    """One setup's figures. Energy per inference leaves out the one-time weight load (a program-once target
    writes its weights before the first inference). Under noise E the score is measured once per seed
    0..seeds-1 (noise is keyed by seed, sample, instruction and column, so a rerun draws the same noise):
    `noise[E]` is the list of per-seed scores; E = 0 is the noiseless score."""
    m = Machine(prog, hist_range=(-HIST, HIST))
    out = m.run(feeds)
    s = m.stats.to_json()
    hist = sum(np.asarray(h) for k, h in m.stats.histogram().items() if k != "_range")
    clean = score(out)
    row = {"converts_per_mac": s["converts_per_mac"], "saturation_rate": s["saturation_rate"],
           "speculation_success": s["speculation_success"], "score": clean,
           "resolution_bits": resolution_bits(hist, prog.target.adc_signed),
           "energy_pj_per_inference": {k: v / s["samples"] for k, v in s["energy_pj"].items() if k != "weight_writes"},
           "hist": hist}
    row["noise"] = {e: [clean] if e == 0 else [score(Machine(prog, noise=e / 100, seed=seed).run(feeds))
                                               for seed in range(seeds)] for e in noise_levels}
    return row


def spread(scores: list[float]) -> dict:
    """Mean and spread of per-seed scores: sample standard deviation (0 for one seed), min and max."""
    a = np.asarray(scores, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "min": float(a.min()),
            "max": float(a.max()), "seeds": len(a)}


def layer_slicings(compiled) -> dict:
    rep = next(r.report for r in compiled.records if r.name == "slicing")
    return {k: tuple(v["slices"]) for k, v in rep.layers.items()}


# ---- digits ---------------------------------------------------------------------------------------------

def run_digits(files, noise_levels, seeds):
    d = np.load(files["test"])
    calib = np.load(files["calib"])
    feeds, labels = {"image": d["x"]}, d["y"]
    model = files["model"]

    def score(out):
        return float(np.mean(out["logits"].argmax(1) == labels))
    rows, choice, slicings = {}, None, {}
    for pass_ in (0, 1):
        for name, t, opts in setups(choice):
            if name in rows:
                continue
            t0 = time.perf_counter()
            c = compile_model(model, t, calib, options=opts)
            compile_s = time.perf_counter() - t0
            if name == "+C+O +AWS":
                choice = layer_slicings(c)
            slicings[name] = layer_slicings(c)
            rows[name] = measure(c.program, feeds, score, noise_levels, seeds) | {"compile_s": compile_s}
            print(f"  {name}: done", file=sys.stderr)
    return rows, slicings, f"top-1 on {len(labels)} test images", 1 / len(labels)


# ---- MiniLM fully connected layers ---------------------------------------------------------------------

def minilm_fc_layers(files, limit):
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper
    m = onnx.load(str(files["model"]))
    inits = {i.name: i for i in m.graph.initializer}
    layers = [(n.name, n.input[0], numpy_helper.to_array(inits[n.input[1]]))
              for n in m.graph.node if n.op_type == "MatMul" and n.input[1] in inits
              and len(inits[n.input[1]].dims) == 2][:limit]
    for _, a, _ in layers:
        m.graph.output.append(helper.make_tensor_value_info(a, onnx.TensorProto.FLOAT, None))
    s = np.load(files["sentences"])
    feeds = {k: s[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    acts = dict(zip(names, sess.run(None, feeds)))
    out = []
    for name, a, w in layers:
        x = acts[a].astype(np.float32)
        # the Mul by one keeps the layer's output 8-bit (requantised), as inside the encoder
        g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y0"]), helper.make_node("Mul", ["y0", "one"], ["y"])],
                              "fc", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N"] + list(x.shape[1:]))],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w.astype(np.float32), "w"),
                               numpy_helper.from_array(np.ones((), np.float32), "one")])
        out.append((name, helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), x, x @ w))
    return out


def run_minilm_fc(files, noise_levels, seeds, limit):
    layers = minilm_fc_layers(files, limit)
    rows, slicings = {}, {}
    agg = {}
    for lname, model, x, yf in layers:
        calib, test, ref = {"x": x[:16]}, {"x": x[16:]}, yf[16:]

        def score(out):
            a, b = out["y"].reshape(-1, ref.shape[-1]), ref.reshape(-1, ref.shape[-1])
            return float(np.mean(np.sum(a * b, 1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1),
                                                               1e-30)))
        choice = None
        for pass_ in (0, 1):
            for name, t, opts in setups(choice):
                if (lname, name) in rows:
                    continue
                t0 = time.perf_counter()
                # one-layer models: the slicing pass would treat the only layer as "the last"; force the search
                c = compile_model(model, t, calib, options=opts | ({"slicing_last_layer": True}
                                                                    if opts.get("slicing") == "adaptive" else {}))
                comp = time.perf_counter() - t0
                if name == "+C+O +AWS":
                    choice = layer_slicings(c)
                slicings.setdefault(name, {}).update({lname: layer_slicings(c)[next(iter(layer_slicings(c)))]})
                rows[(lname, name)] = measure(c.program, test, score, noise_levels, seeds) | {"compile_s": comp}
        print(f"  {lname}: done", file=sys.stderr)
    for (lname, name), r in rows.items():
        a = agg.setdefault(name, {"n": 0, "hist": 0, "converts_per_mac": [], "saturation_rate": [], "score": [],
                                  "speculation_success": [], "resolution_bits": [], "energy": {}, "noise": {},
                                  "compile_s": 0.0})
        a["hist"] = a["hist"] + r["hist"]
        for k in ("converts_per_mac", "saturation_rate", "score", "resolution_bits"):
            a[k].append(r[k])
        if r["speculation_success"] is not None:
            a["speculation_success"].append(r["speculation_success"])
        for k, v in r["energy_pj_per_inference"].items():
            a["energy"][k] = a["energy"].get(k, 0.0) + v
        for e, v in r["noise"].items():
            a["noise"].setdefault(e, []).append(v)          # per layer: its per-seed scores
        a["compile_s"] += r["compile_s"]
    out = {}
    for name, a in agg.items():
        out[name] = {"converts_per_mac": float(np.mean(a["converts_per_mac"])),
                     "saturation_rate": float(np.mean(a["saturation_rate"])),
                     "speculation_success": float(np.mean(a["speculation_success"])) if a["speculation_success"] else None,
                     "score": float(np.mean(a["score"])), "resolution_bits": int(np.max(a["resolution_bits"])),
                     "energy_pj_per_inference": a["energy"], "noise": {e: [float(x) for x in np.mean(v, axis=0)] for e, v in a["noise"].items()},
                     "hist": a["hist"], "compile_s": a["compile_s"]}
    return out, slicings, f"mean cosine to float on 48 sentences x 64 tokens, {len(layers)} layers (mean)", None


# ---- report --------------------------------------------------------------------------------------------

THESIS = {"ISAAC": "0.25", "+C+O": "0.063", "+C+O +AWS": "0.047", "+C+O +AWS +Spec": "0.018"}


def table(rows, score_name, noise_levels) -> str:
    seeds = max((len(v) for r in rows.values() for v in r["noise"].values()), default=1)
    head = ("| setup | converts/MAC | thesis converts/MAC | saturation | column-sum bits (99.9%) | spec. success | "
            f"{score_name} | " + " | ".join(f"E={e}% (mean ± std, {seeds} seeds)" for e in noise_levels if e)
            + " | energy pJ/inf excl. weight load (ADC, total) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in rows.items():
        e = r["energy_pj_per_inference"]
        spec = f"{r['speculation_success']:.2%}" if r["speculation_success"] is not None else "-"
        cells = [spread(r["noise"][e_]) for e_ in noise_levels if e_]
        lines.append(f"| {name} | {r['converts_per_mac']:.4f} | {THESIS.get(name, '')} | {r['saturation_rate']:.4%} | "
                     f"{r['resolution_bits']} | {spec} | {r['score']:.4f} | "
                     + " | ".join(f"{c['mean']:.4f} ± {c['std']:.4f}" for c in cells)
                     + f" | {e['adc']:.0f}, {sum(e.values()):.0f} |")
    return "\n".join(lines)


def plots(rows, slicings, noise_levels, outdir: Path, title: str, score_name: str, unit: float | None):
    """The figures; `unit`: how much one sample moves the score (1 / test images for top-1), or None."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    outdir.mkdir(parents=True, exist_ok=True)
    main = [n for n in ("ISAAC", "+C+O", "+C+O +AWS", "+C+O +AWS +Spec") if n in rows]
    fig, axes = plt.subplots(1, len(main), figsize=(4 * len(main), 3.2), sharey=True)
    values = np.arange(-HIST, HIST + 1)
    for ax, name in zip(np.atleast_1d(axes), main):
        h = rows[name]["hist"]
        keep = h > 0
        ax.bar(values[keep], h[keep] / h.sum(), width=1.0, color="tab:gray")
        t = load_target("isaac" if name == "ISAAC" else "raella")
        ax.axvspan(t.adc_range[0] - 0.5, t.adc_range[1] + 0.5, color="tab:green", alpha=0.2)
        nz = values[keep]
        ax.set_xlim(max(nz.min(), -400) - 5, min(nz.max(), 400) + 5)
        ax.set_yscale("log")
        ax.set_title(f"{name}\nsaturation {rows[name]['saturation_rate']:.3%}", fontsize=9)
    fig.suptitle(f"{title}: column sums against the ADC range (green)")
    fig.tight_layout()
    fig.savefig(outdir / "column_sums.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(rows)
    ax.bar(range(len(names)), [rows[n]["converts_per_mac"] for n in names],
           color=["tab:blue" if "Z+O" not in n else "tab:orange" for n in names])
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("ADC converts per MAC")
    ax.set_title(f"{title}: converts/MAC (orange: Zero+Offset at the same slicing)")
    fig.tight_layout()
    fig.savefig(outdir / "converts_per_mac.png", dpi=100)
    plt.close(fig)

    # mean and standard deviation over seeds; the setups side by side at each E, so their bars do not hide
    # each other; the y axis spans at least `unit` x 10, so one sample's difference does not look like a trend
    fig, ax = plt.subplots(figsize=(8.5, 4))
    levels = sorted(set(noise_levels) | {0})
    width = 0.6 * (min(np.diff(levels)) if len(levels) > 1 else 1.0) / max(len(names), 1)
    for k, name in enumerate(names):
        cells = [spread(rows[name]["noise"][e]) if e in rows[name]["noise"] else spread([rows[name]["score"]])
                 for e in levels]
        xs = np.asarray(levels, dtype=float) + (k - (len(names) - 1) / 2) * width
        ax.errorbar(xs, [c["mean"] for c in cells], yerr=[c["std"] for c in cells], marker="o", ms=3, capsize=2,
                    label=name, linestyle="--" if "Z+O" in name else "-", lw=1)
    lo, hi = ax.get_ylim()
    if unit and hi - lo < 10 * unit:
        top = min(1.0 + unit / 2, (lo + hi) / 2 + 5 * unit)       # a score of at most 1
        ax.set_ylim(top - 10 * unit, top)
    ax.set_xticks(levels)
    ax.set_xlabel("noise E (%)")
    ax.set_ylabel(score_name)
    seeds = max(len(v) for r in rows.values() for v in r["noise"].values())
    ax.set_title(f"{title}: {score_name} under noise, mean ± std over {seeds} seeds"
                 + (f"\n(one sample changes it by {unit:.4f})" if unit else ""), fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(axis="y", lw=0.3)
    fig.tight_layout()
    fig.savefig(outdir / "accuracy_vs_noise.png", dpi=100)
    plt.close(fig)

    sl = slicings.get("+C+O +AWS", {})
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for i, (layer, s) in enumerate(sl.items()):
        bottom = 0
        for w in reversed(s):                     # least significant slice at the bottom, MSB on top
            ax.bar(i, w, bottom=bottom, color=plt.cm.viridis(w / 4), edgecolor="white")
            ax.text(i, bottom + w / 2, str(w), ha="center", va="center", fontsize=7, color="white")
            bottom += w
    ax.set_xticks(range(len(sl)), list(sl), rotation=60, ha="right", fontsize=6)
    ax.set_ylabel("weight bits per slice (MSB at top)")
    ax.set_title(f"{title}: adaptive weight slicing per layer")
    fig.tight_layout()
    fig.savefig(outdir / "slicings.png", dpi=100)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("digits", "minilm-fc"))
    ap.add_argument("--noise", default="4,8,12", help="noise levels E in percent (the noiseless score is E = 0)")
    ap.add_argument("--seeds", type=int, default=5, help="noise seeds 0..N-1 per level (default 5)")
    ap.add_argument("--layers", type=int, default=36, help="minilm-fc: how many weight MatMuls")
    ap.add_argument("--out")
    add_digits_dir(ap)
    add_minilm_dir(ap)
    args = ap.parse_args(argv)
    noise = [float(v) if "." in v else int(v) for v in args.noise.split(",")]
    out = Path(args.out or ROOT / "benchmarks" / "results" / args.what.replace("-", "_"))
    t0 = time.perf_counter()
    if args.what == "digits":
        rows, slicings, score, unit = run_digits(digits_files(args.digits_dir), noise, args.seeds)
    else:
        rows, slicings, score, unit = run_minilm_fc(minilm_files(args.minilm_dir), noise, args.seeds, args.layers)
    chosen = json.dumps({k: list(v) for k, v in slicings.get("+C+O +AWS", {}).items()})
    # the files hold results only (no timings), so a rerun of the same code writes the same bytes
    cmd = f"python benchmarks/ablation.py {args.what} --noise {args.noise} --seeds {args.seeds}" + (
        f" --layers {args.layers}" if args.what == "minilm-fc" else "")
    text = (f"`{cmd}`\n\n"
            f"{table(rows, score, noise)}\n\n(slicings chosen by +C+O +AWS: {chosen})\n")
    print(text)
    print(f"total {time.perf_counter() - t0:.0f} s, compile " +
          ", ".join(f"{n} {r['compile_s']:.1f} s" for n, r in rows.items()), file=sys.stderr)
    plots(rows, slicings, noise, out, args.what, score, unit)
    (out / "ablation.md").write_text(text)
    (out / "ablation.json").write_text(json.dumps(
        {n: {k: v for k, v in r.items() if k not in ("hist", "compile_s")}
         | {"noise_spread": {e: spread(v) for e, v in r["noise"].items()}} for n, r in rows.items()},
        indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
