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
# banks of 2 x 4 PEs: MN equals the model's head dim (8), as 4 x 8 does for MiniLM's 32
TARGET = load_target("isaac").replace(bank_m=2, bank_n=4)


@lru_cache(maxsize=None)
def compiled(rule: str | None, attention: str = "retransformer"):
    opts = {"attention": attention} | ({"sparse_attention": rule} if rule else {})
    c = compile_model(MODELS["torch_like"](), TARGET, CALIB, opts)
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
    assert ops.count("vtopk") == ops.count("sddmm") == ops.count("spmm") == 2
    assert ops.count("xbload") == 4 and "dmvm" not in ops              # K^T and V stored in the banks
    assert {i.attr("mode") for i in prog.code if i.op in ("sddmm", "spmm")} == {"ip", "svm"}


@pytest.mark.parametrize("rule,attention", [("topk:3", "retransformer"), ("threshold:1.5", "naive"),
                                            ("topk:5", "digital")])
def test_ideal_equals_the_quantised_reference_bit_for_bit(rule, attention):
    c, prog = compiled(rule, attention)
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
    assert len(layers) == 4 and all(r["time_ns"] > 0 and r["macs"] > 0 for r in layers)


def test_vtopk_needs_exactly_one_rule():
    _, prog = compiled("topk:3")
    text = "\n".join(line.replace(" k=3", " k=3 threshold=1.0") if line.startswith("vtopk") else line
                     for line in print_program(prog).splitlines())
    assert "threshold=1.0" in text
    with pytest.raises(RuntimeFault, match="exactly one of k"):
        Machine(parse_program(text))


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
    assert "vtopk" in prog.read_text()
    assert pimrun([str(prog), "--input", str(tmp_path / "x.npz"), "--ideal", "--stats", str(stats), "--quiet"]) == 0
    banks = json.loads(stats.read_text())["banks"]
    assert banks["sddmm"]["density"] == pytest.approx(4 / SEQ) and banks["spmm"]["mode"] == "svm"
