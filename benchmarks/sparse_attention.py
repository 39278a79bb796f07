"""Sparse attention on PIM banks (the ASP-DAC'23 overview, sec. 4.2): bank utilisation by mapping, and
MiniLM's accuracy by K.

    python benchmarks/sparse_attention.py utilisation [--target raella]
    python benchmarks/sparse_attention.py accuracy [--target raella] [--slicing 4,2,2] [--ks 2,4,8,16,32,64]
                                          [--thresholds 3,6] [--programs NAME,...]
    (both write into --out, default benchmarks/results/sparse_attention; --minilm-dir: make_minilm.py's files,
     default examples/minilm/build)

(1) Utilisation of the M x N bank (the target's bank_m x bank_n, head dim d = 32) under the VMM mapping vs
    IP (SDDMM) / SVM (SpMM) at sparsities 0..95%: random unstructured masks (each entry kept with probability
    1 - sparsity, 64 x 12 heads x 64 x 64, seed 0), and top-K masks of MiniLM's pre-softmax scores (scaled,
    key-masked) on the 64 sentences, 6 layers, as the dense naive program computes them (quantised
    reference): over all 64 tokens, and over each sentence's valid tokens only (see sweep). Both products are
    given the same mask. -> utilisation.md, .png, .json
(2) MiniLM (examples/minilm/make_minilm.py) at several K and thresholds, calibrated on the first 16 sentences
    (calib.npz), measured on all 64: mean cosine to minilm_reference.npy and nearest-neighbour same-group rate,
    with an ideal ADC and on the target, beside the dense programs; with each run's bank figures.
    -> accuracy.md, accuracy.jsonl
The rules are fixed before any run (never tuned on the metric). Default weight slicing 4,2,2 for every layer
instead of adaptive slicing, which takes minutes per MiniLM compile (--slicing adaptive restores it).
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
from isa import load_target, parse_program, print_program  # noqa: E402
from passes.reference import run_reference  # noqa: E402
from runtime import banks as B  # noqa: E402
from runtime import vector as V  # noqa: E402
from runtime.machine import Machine  # noqa: E402

from benchmarks.model_files import add_minilm_dir, load_minilm, minilm_files  # noqa: E402

SPARSITIES = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
def metrics(y, ref, group) -> dict:
    a = y / np.linalg.norm(y, axis=1, keepdims=True)
    r = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    sim = a @ a.T
    np.fill_diagonal(sim, -np.inf)
    return {"mean_cosine": float(np.mean(np.sum(a * r, axis=1))),
            "nn_same_group": int(np.sum(group[sim.argmax(1)] == group))}


def scores(c, feeds, chunk=16) -> np.ndarray:
    """The softmax inputs (pre-softmax scores) of a dense program's quantised reference: (layers, B, H, S, S)."""
    names = [op.inputs[0] for op in c.graph.topo() if op.kind == "softmax"]
    out = []
    for s in range(0, len(feeds["input_ids"]), chunk):
        env = run_reference(c.graph, {k: v[s:s + chunk] for k, v in feeds.items()}, keep_all=True)
        out.append(np.stack([env[n] for n in names]))
        del env
    return np.concatenate(out, axis=1)


MASKS = {"random": "random", "topk64": "MiniLM top-K, 64 tokens", "topk_valid": "MiniLM top-K, valid tokens"}


def _totals(parts, m, n) -> dict:
    """Utilisation per product and mapping over several masks (summed cycles and useful MACs)."""
    row, kept, size = {}, sum(int(x.sum()) for x in parts), sum(x.size for x in parts)
    for product, modes in B.PRODUCTS.items():
        sums = [B.summary(product, x, 32, m, n) for x in parts]
        macs = sum(s["useful_macs"] for s in sums)
        for k in modes[:2]:
            row[f"{product}_{k}"] = B.utilisation(macs, sum(s["cycles"][k] for s in sums), m, n)
    return row | {"density": kept / size}


def sweep(sc, lengths, m, n) -> list[dict]:
    """Per sparsity, per mask family (MASKS): density and utilisation of each product under each mapping.
    topk64: K = 64 (1 - sparsity) over the program's 64 tokens (padded keys sit at the float32 minimum and tie,
    so the top-K keeps them in order, as contiguous runs); topk_valid: K = L (1 - sparsity) over each sentence's
    L x L scores among its valid tokens (one bank model call per sentence length)."""
    rng = np.random.default_rng(0)
    S = sc.shape[-1]
    rows = []
    for sp in SPARSITIES:
        keep = 1 - sp / 100
        fams = {"random": [rng.random((64, 12, S, S)) >= sp / 100],
                "topk64": [V.sparse_keep(sc, k=max(1, round(S * keep)))],
                "topk_valid": [V.sparse_keep(sc[:, lengths == L, :, :L, :L], k=max(1, round(L * keep)))
                               for L in np.unique(lengths)]}
        row = {"sparsity": sp}
        for fam, parts in fams.items():
            row |= {f"{fam}_{k}": v for k, v in _totals(parts, m, n).items()}
        rows.append(row)
    return rows


def utilisation_table(rows, m, n) -> str:
    cols = ("density", "sddmm_ip", "sddmm_vmm", "spmm_svm", "spmm_vmm")
    out = [f"Bank {m} x {n} PEs, head dim 32. Utilisation = useful MACs / (cycles x {m * n}); density = kept "
           "fraction of the attention map. Per mask family: density, SDDMM IP, SDDMM VMM, SpMM SVM, SpMM VMM.", "",
           "| sparsity | " + " | ".join(f"{MASKS[f]}: {c}" for f in MASKS for c in cols) + " |",
           "|---" * (1 + len(MASKS) * len(cols)) + "|"]
    for r in rows:
        out.append(f"| {r['sparsity']}% | " + " | ".join(f"{r[f'{f}_{c}']:.3f}" for f in MASKS for c in cols) + " |")
    return "\n".join(out) + "\n"


def plot(rows, path: Path, m, n):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x = [r["sparsity"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, product, sparse in ((axes[0], "sddmm", "ip"), (axes[1], "spmm", "svm")):
        for (fam, label), style in zip(MASKS.items(), ("-", "--", ":")):
            ax.plot(x, [r[f"{fam}_{product}_{sparse}"] for r in rows], "o" + style, color="C0",
                    label=f"{sparse.upper()}, {label}")
            ax.plot(x, [r[f"{fam}_{product}_vmm"] for r in rows], "s" + style, color="C3", label=f"VMM, {label}")
        ax.set_title(f"{product.upper()} on a {m} x {n} bank (head dim 32)")
        ax.set_xlabel("sparsity of the attention map (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("PE utilisation")
    axes[0].set_ylim(0, 1.05)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def configs(ks, thresholds):
    out = [("dense (retransformer)", {}), ("dense (naive)", {"attention": "naive"})]
    out += [(f"topk:{k}", {"sparse_attention": f"topk:{k}"}) for k in ks]
    out += [(f"threshold:{t:g}", {"sparse_attention": f"threshold:{t:g}"}) for t in thresholds]
    return out


def bank_figures(st) -> dict:
    b = st.get("banks")
    if not b:
        return {}
    out = {}
    for product, mode, short in (("sddmm", "ip", "ip"), ("spmm", "svm", "svm")):
        x = b[product]
        out |= {f"{product}_density": x["density"], f"{short}_util": x[mode]["utilisation"],
                f"{product}_vmm_util": x["vmm"]["utilisation"], f"{short}_cycles": x[mode]["cycles"],
                f"{product}_vmm_cycles": x["vmm"]["cycles"], f"{product}_dense_cycles": x["dense"]["cycles"]}
    return out


def accuracy_table(rows, target, slicing) -> str:
    out = [f"MiniLM, 64 sentences (calibration: the first 16), target {target}, weight slicing {slicing}. "
           "Cosine: mean to the float reference; NN: nearest-neighbour same-group count of 64. Bank figures "
           "from the target run (SDDMM: kept scores; SpMM: nonzero probability codes).", "",
           "| program | cosine ideal | NN ideal | cosine target | NN target | SDDMM density | IP util | VMM util | "
           "SpMM density | SVM util | VMM util |", "|---" * 11 + "|"]
    for r in rows:
        b = r.get("banks") or {}
        bank = " | ".join(f"{b[k]:.3f}" if k in b else "-" for k in (
            "sddmm_density", "ip_util", "sddmm_vmm_util", "spmm_density", "svm_util", "spmm_vmm_util"))
        out.append(f"| {r['program']} | {r['ideal']['mean_cosine']:.4f} | {r['ideal']['nn_same_group']}/64 | "
                   f"{r['target']['mean_cosine']:.4f} | {r['target']['nn_same_group']}/64 | {bank} |")
    return "\n".join(out) + "\n"


def run_utilisation(args, out: Path):
    model, feeds, calib, _, _ = load_minilm(args.minilm_dir)
    target = load_target(args.target)
    c = compile_model(model, target, calib, {"slicing": (4, 2, 2), "attention": "naive"})
    util = sweep(scores(c, feeds), feeds["attention_mask"].sum(axis=1), target.bank_m, target.bank_n)
    (out / "utilisation.md").write_text(utilisation_table(util, target.bank_m, target.bank_n))
    plot(util, out / "utilisation.png", target.bank_m, target.bank_n)
    (out / "utilisation.json").write_text(json.dumps({"target": target.name, "rows": util}, indent=1))
    print((out / "utilisation.md").read_text())


def run_accuracy(args, out: Path):
    """Runs the programs asked for, appends each row to accuracy.jsonl, and rewrites accuracy.md from the
    latest row of every program there (so the programs can run in separate processes)."""
    model, feeds, calib, group, ref = load_minilm(args.minilm_dir)
    target = load_target(args.target)
    slicing = "adaptive" if args.slicing == "adaptive" else tuple(int(v) for v in args.slicing.split(","))
    ks = [int(k) for k in args.ks.split(",") if k]
    thresholds = [float(t) for t in args.thresholds.split(",") if t]
    order = [name for name, _ in configs(ks, thresholds)]
    wanted = set(args.programs.split(",")) if args.programs is not None else set(order)   # "": table only
    log = out / "accuracy.jsonl"
    for name, opts in configs(ks, thresholds):
        if name not in wanted:
            continue
        t0 = time.perf_counter()
        c = compile_model(model, target, calib, {"slicing": slicing, **opts})
        row = {"program": name, "on": target.name, "slicing": args.slicing, "options": opts,
               "compile_s": round(time.perf_counter() - t0, 1)}
        prog = parse_program(print_program(c.program))
        for mode, ideal in (("ideal", True), ("target", False)):
            t0 = time.perf_counter()
            m = Machine(prog, ideal=ideal)
            y = m.run(feeds)["embedding"]
            row[mode] = metrics(y, ref, group) | {"run_s": round(time.perf_counter() - t0, 1)}
        row["banks"] = bank_figures(m.stats.to_json())
        print(json.dumps(row), flush=True)
        with log.open("a") as f:
            f.write(json.dumps(row) + "\n")
    rows = {}
    for line in log.read_text().splitlines():
        r = json.loads(line)
        if r["on"] == target.name and r["slicing"] == args.slicing:
            rows[r["program"]] = r
    table = accuracy_table([rows[n] for n in order if n in rows], target.name, args.slicing)
    (out / "accuracy.md").write_text(table)
    print(table)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=("utilisation", "accuracy"))
    ap.add_argument("--target", default="raella")
    ap.add_argument("--slicing", default="4,2,2", help="weight slicing of every layer, or 'adaptive'")
    ap.add_argument("--ks", default="2,4,8,16,32,64")
    ap.add_argument("--thresholds", default="3,6")
    ap.add_argument("--programs", help="accuracy: only these programs (names as in the table)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sparse_attention"))
    add_minilm_dir(ap)
    args = ap.parse_args(argv)
    minilm_files(args.minilm_dir)                      # a missing file ends here, before any output
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (run_utilisation if args.part == "utilisation" else run_accuracy)(args, out)


if __name__ == "__main__":
    main()
