"""Sparse attention (passes/sparse_attention.py): the score mask, the bank products, bit-exactness."""
from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from compiler.pipeline import compile_model
from ir import CompileError
from isa import load_target, parse_program, print_program
from passes.reference import dequantize_outputs, run_reference
from passes.sparse_attention import parse_rule
from runtime import vector as V
from runtime.errors import RuntimeFault
from runtime.machine import Machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "compiler"))
from transformer_blocks import HEAD_DIM, HEADS, SEQ, MODELS, sentences  # noqa: E402

CALIB, FEEDS = sentences(16, 0), sentences(12, 1)
# banks of 2 x 4 PEs: MN equals the model's head dim (8); test_ip_utilisation_is_measured_against_the_bank_width
# varies it
TARGET = load_target("isaac").replace(bank_m=2, bank_n=4)


@lru_cache(maxsize=None)
def compiled(rule: str | None, attention: str = "retransformer", mask: str = "predict", bits: int = 4,
             target=TARGET):
    opts = {"attention": attention} | ({"sparse_attention": rule, "sparse_mask": mask, "predict_bits": bits}
                                       if rule else {})
    c = compile_model(MODELS["torch_like"](), target, CALIB, opts)
    return c, parse_program(print_program(c.program))


def run(prog, ideal=True):
    m = Machine(prog, ideal=ideal)
    return m.run(FEEDS), m.stats.to_json()


def test_topk_keeps_exactly_k_per_row_even_with_ties():
    x = np.random.default_rng(0).integers(-3, 3, (5, 7, 16)).astype(np.float32)      # many ties
    for k in (1, 4, 15, 16, 40):
        y, keep = V.topk(x, k=k)
        assert (keep.sum(-1) == min(k, 16)).all()
        kth = np.sort(x, axis=-1)[..., ::-1][..., min(k, 16) - 1:min(k, 16)]
        assert (x[keep] >= np.broadcast_to(kth, x.shape)[keep]).all()        # nothing kept below the k-th value
        assert (y[~keep] == np.finfo(np.float32).min).all() and (y[keep] == x[keep]).all()
        assert (V.softmax(y, -1)[~keep] == 0).all()                             # softmax: exact zeros


def test_threshold_keeps_the_entries_within_t_of_the_row_max():
    x = np.random.default_rng(1).normal(0, 3, (4, 9, 20)).astype(np.float32)
    _, keep = V.topk(x, threshold=2.5)
    assert np.array_equal(keep, x >= x.max(-1, keepdims=True) - np.float32(2.5))
    assert keep.any(-1).all()


@pytest.mark.parametrize("rule", ["topk", "topk:0", "threshold:-1", "random:3", "topk:x"])
def test_bad_rules_are_compile_errors(rule):
    with pytest.raises(CompileError, match="sparse attention rule"):
        parse_rule(rule)


def test_pass_forces_naive_and_emits_bank_instructions():
    c, prog = compiled("topk:3")
    rec = {r.name: r.report for r in c.records}
    sp = rec["sparse_attention"]
    assert sp.forced_naive and sp.attention == "naive" and len(sp.blocks) == 2
    assert all(b["mode"] == "naive" for b in rec["attention"].blocks)
    ops = [i.op for i in prog.code]
    assert ops.count("vtopk") == ops.count("sddmm") == ops.count("spmm") == ops.count("sdpred") == 2
    assert ops.count("xbload") == 4 and "dmvm" not in ops              # K^T and V stored in the banks
    assert {i.attr("mode") for i in prog.code if i.op in ("sddmm", "spmm")} == {"ip", "svm"}


@pytest.mark.parametrize("rule,attention,mask", [("topk:3", "retransformer", "predict"),
                                                 ("threshold:1.5", "naive", "predict"),
                                                 ("topk:5", "digital", "predict"), ("topk:3", "naive", "oracle")])
def test_ideal_equals_the_quantised_reference_bit_for_bit(rule, attention, mask):
    c, prog = compiled(rule, attention, mask)
    y, _ = run(prog)
    ref = dequantize_outputs(c.graph, run_reference(c.graph, FEEDS))
    assert set(y) == set(ref) and all(np.array_equal(y[k], ref[k]) for k in ref)


def test_topk_of_every_key_is_the_dense_naive_program():
    """K = SEQ keeps every score: the same numbers as the dense naive program with an ideal ADC."""
    _, sparse = compiled(f"topk:{SEQ}", "naive")
    _, dense = compiled(None, "naive")
    ys, yd = run(sparse)[0], run(dense)[0]
    assert all(np.array_equal(ys[k], yd[k]) for k in yd)
    assert not all(np.array_equal(ys[k], run(compiled("topk:2")[1])[0][k]) for k in yd)   # and K matters


def test_stats_charge_the_kept_entries_and_compare_mappings():
    k = 3
    _, prog = compiled(f"topk:{k}")
    _, st = run(prog, ideal=False)
    sd, sp = st["banks"]["sddmm"], st["banks"]["spmm"]
    rows = len(FEEDS["input_ids"]) * HEADS * SEQ * 2                       # two layers
    assert sd["useful_macs"] == rows * k * HEAD_DIM                      # exactly K kept scores per query row
    assert sd["density"] == pytest.approx(k / SEQ)
    assert sp["density"] <= k / SEQ                                     # masked probabilities are zero codes
    for b, mode in ((sd, "ip"), (sp, "svm")):
        assert b["mode"] == mode and b[mode]["utilisation"] >= b["vmm"]["utilisation"]
        assert b[mode]["cycles"] <= b["vmm"]["cycles"] <= b["dense"]["cycles"]
    assert sd["bank"] == sp["bank"] == [2, 4]                          # the geometry travels in the header
    layers = [r for r in st["layers"] if "banks" in r]
    assert len(layers) == 6 and all(r["time_ns"] > 0 and r["macs"] > 0 for r in layers)
    # the predictor: every score, a dense 4-bit VMM: half the dense SDDMM's cycles, a quarter of its PE reads
    pr = st["banks"]["predict"]
    assert pr["bits"] == 4 and pr["density"] == 1.0 and pr["vmm"]["cycles"] > 0
    assert pr["vmm"]["cycles"] * 2 == sd["dense"]["cycles"] and pr["useful_macs"] * 2 == rows * SEQ * HEAD_DIM
    pred = [r for r in layers if r["banks"]["product"] == "predict"]
    assert len(pred) == 2 and all(r["energy_pj"]["crossbar"] > 0 for r in pred)
    assert sum(r["energy_pj"]["crossbar"] for r in pred) == pytest.approx(
        sd["dense"]["cycles"] * 8 / 4 * TARGET.e_cell_read)              # 2 x 4 PEs x dense cycles / 4


def test_vtopk_needs_exactly_one_rule():
    _, prog = compiled("topk:3")
    text = "\n".join(line.replace(" k=3", " k=3 threshold=1.0") if line.startswith("vtopk") else line
                     for line in print_program(prog).splitlines())
    assert "threshold=1.0" in text
    with pytest.raises(RuntimeFault, match="exactly one of k"):
        Machine(parse_program(text))


def predicted_scores_numpy(c, env, op):
    """The predictor's scores spelled out with bit masks (runtime/kernels.py's predicted_acc uses shifts): the top 4
    bits of each u8 code plus 8, minus the zero points, times the scale, in float32."""
    q = op.attrs["q"]
    a, k = env[op.inputs[0]].astype(np.int64), env[op.inputs[1]].astype(np.int64)
    acc = ((a & 0xF0) + 8 - q["za"]) @ ((k & 0xF0) + 8 - q["zb"])
    return (acc.astype(np.float64) * q["oscale"]).astype(np.float32)


def test_predictor_mask_equals_a_numpy_reference():
    c, _ = compiled("topk:3", "naive")
    env = run_reference(c.graph, FEEDS, keep_all=True)
    preds = [op for op in c.graph.ops.values() if op.kind == "matmul" and op.attrs.get("sparse") == "predict"]
    topks = [op for op in c.graph.ops.values() if op.kind == "topk"]
    assert len(preds) == len(topks) == 2
    for op in preds:
        assert np.array_equal(env[op.outputs[0]], predicted_scores_numpy(c, env, op))
    for t in topks:
        x, by = (env[i] for i in t.inputs)
        assert not np.array_equal(x, by)                      # the mask comes from another tensor than the scores
        want = np.zeros(by.shape, bool)                        # top 3 of the prediction, ties to the lower key
        np.put_along_axis(want, np.argsort(-by.astype(np.float64), axis=-1, kind="stable")[..., :3], True, -1)
        y = env[t.outputs[0]]
        assert np.array_equal(y, np.where(want, x, np.finfo(np.float32).min))
        assert not np.array_equal(want, np.argsort(np.argsort(-x, -1, kind="stable"), -1) < 3)   # not the oracle's


def test_predictor_agrees_with_the_oracle_at_8_bits_and_departs_below():
    """8 bits: the prediction is the exact score, so the program's outputs are the oracle's bit for bit."""
    oracle = run(compiled("topk:2", "naive", "oracle")[1])[0]
    full = run(compiled("topk:2", "naive", "predict", 8)[1])[0]
    low = run(compiled("topk:2", "naive", "predict", 1)[1])[0]
    assert all(np.array_equal(full[k], oracle[k]) for k in oracle)
    assert not all(np.array_equal(low[k], oracle[k]) for k in oracle)


def test_oracle_mask_has_no_predictor():
    c, prog = compiled("topk:3", "naive", "oracle")
    assert "sdpred" not in [i.op for i in prog.code]
    assert all(i.args[1].name == i.args[2].name for i in prog.code if i.op == "vtopk")
    assert "predict" not in run(prog, ideal=False)[1]["banks"]


@pytest.mark.parametrize("m,n", [(2, 4), (4, 4), (3, 4)])
def test_ip_utilisation_is_measured_against_the_bank_width(m, n):
    """Head width 8: full on a 2 x 4 bank, 8/16 on 4 x 4, 8/12 on 3 x 4 (one score per ceil(8 / MN) = 1
    cycle); the VMM mapping's figure from the mask, block by block."""
    t = TARGET.replace(bank_m=m, bank_n=n)
    c, prog = compiled("topk:3", "naive", target=t)
    st = run(prog, ideal=False)[1]["banks"]["sddmm"]
    assert st["bank"] == [m, n]
    assert st["ip"]["utilisation"] == pytest.approx(HEAD_DIM / (m * n) if m * n >= HEAD_DIM else 1.0)
    assert (st["ip"]["utilisation"] < 1) == (m * n > HEAD_DIM)
    env = run_reference(c.graph, FEEDS, keep_all=True)
    keep = np.concatenate([V.sparse_keep(env[op.inputs[1]], k=3) for op in c.graph.topo() if op.kind == "topk"])
    vmm = sum(int(np.ceil(HEAD_DIM / m)) * int(keep[..., j:j + n].any(-1).sum()) for j in range(0, SEQ, n))
    assert st["vmm"]["cycles"] == vmm
    assert st["vmm"]["utilisation"] == pytest.approx(keep.sum() * HEAD_DIM / (vmm * m * n))


def test_asm_round_trip_keeps_the_predictor():
    _, prog = compiled("threshold:1.5", "naive", "predict", 3)
    text = print_program(prog)
    assert print_program(parse_program(text)) == text
    pred = [i for i in parse_program(text).code if i.op == "sdpred"]
    assert len(pred) == 2 and {i.attr("bits") for i in pred} == {3}
    bad = text.replace(" bits=3", " bits=9", 1)
    with pytest.raises(RuntimeFault, match="bits=9"):
        Machine(parse_program(bad))


def test_cli_flag_compiles_runs_and_reports(tmp_path, capsys):
    import json

    import onnx

    from compiler.cli import main as pimc
    from runtime.cli import main as pimrun
    model, prog, stats = tmp_path / "m.onnx", tmp_path / "m.pimasm", tmp_path / "s.json"
    onnx.save(MODELS["torch_like"](), model)
    np.savez(tmp_path / "calib.npz", **CALIB)
    np.savez(tmp_path / "x.npz", **FEEDS)
    base = [str(model), "-o", str(prog), "--target", "isaac", "--calib", str(tmp_path / "calib.npz"), "--quiet"]
    assert pimc(base + ["--sparse-attention", "topk:0"]) != 0
    err = capsys.readouterr().err.strip()
    assert "sparse attention rule 'topk:0'" in err and len(err.splitlines()) == 1
    assert pimc(base + ["--sparse-attention", "topk:4"]) == 0
    assert "vtopk" in prog.read_text() and "sdpred" in prog.read_text() and "bits=4" in prog.read_text()
    assert pimc(base + ["--sparse-attention", "topk:4", "--predict-bits", "9"]) != 0
    err = capsys.readouterr().err.strip()
    assert "predict_bits=9" in err and len(err.splitlines()) == 1
    assert pimc(base + ["--sparse-attention", "topk:4", "--sparse-mask", "oracle"]) == 0
    assert "sdpred" not in prog.read_text()
    assert pimc(base + ["--sparse-attention", "topk:4"]) == 0
    assert pimrun([str(prog), "--input", str(tmp_path / "x.npz"), "--ideal", "--stats", str(stats), "--quiet"]) == 0
    banks = json.loads(stats.read_text())["banks"]
    assert banks["sddmm"]["density"] == pytest.approx(4 / SEQ) and banks["spmm"]["mode"] == "svm"
