"""Transformers end to end on small BERT-style encoders (transformer_blocks.py):

  float IR == onnxruntime (1e-5, any batch)  ->  token masks recognised as maskfn ops (or rejected)
  attention pass (retransformer | naive | digital) keeps the float meaning (1e-6), on the encoders and on
  random small attention blocks  ->  ideal machine == quantised reference bit for bit, program text
  deterministic and round-tripping  ->  run-time crossbar writes of X / X^T, K^T / V or none  ->  the CLIs.
"""
from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from compiler.cli import main as pimc
from compiler.frontend import import_onnx
from compiler.pipeline import compile_model
from ir import CompileError, FrontendError
from ir.float_eval import evaluate
from isa import load_target, parse_program, print_program
from passes.attention import MODES, AttentionPass
from passes.manager import Context
from passes.reference import dequantize_outputs, run_reference
from runtime.cli import main as pimrun
from runtime.errors import RuntimeFault
from runtime.machine import Machine

try:
    from . import transformer_blocks as tb
except ImportError:
    import transformer_blocks as tb

TARGETS = ("isaac", "raella")
F32_MIN = float(np.finfo(np.float32).min)
WRITTEN = {"retransformer": {"X", "X^T"}, "naive": {"K^T", "V"}, "digital": set()}


def _rel(a, b) -> float:
    """Largest deviation relative to the reference's largest magnitude."""
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


@lru_cache(maxsize=None)
def model(form: str) -> onnx.ModelProto:
    return tb.MODELS[form]()


def _ort(m, feeds) -> np.ndarray:
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def _float(g, feeds) -> np.ndarray:
    return evaluate(g, feeds)[g.outputs[0]]


def _attention(g, mode):
    return AttentionPass().run(g, Context(load_target("isaac"), options={"attention": mode}))


# ---- frontend ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("form", sorted(tb.MODELS))
def test_float_ir_matches_onnxruntime_at_any_batch(form):
    g = import_onnx(model(form))               # one import serves every batch
    assert set(g.inputs) == set(tb.INPUTS)
    for n, holes in ((1, False), (5, False), (5, True)):
        feeds = tb.sentences(n, seed=10 + n, holes=holes)
        want = _ort(model(form), feeds)
        got = _float(g, feeds)
        assert got.shape == want.shape
        assert _rel(got, want) < 1e-5, (form, n)


def _maskfns(g):
    return [op for op in g.ops.values() if op.kind == "maskfn"]


@pytest.mark.parametrize("form,bias_off,pooled", [("torch_like", F32_MIN, True), ("hf_old_mask", -10000.0, True),
                                                  ("decomposed", F32_MIN, True), ("hidden_states", F32_MIN, False)])
def test_mask_arithmetic_becomes_maskfn_ops(form, bias_off, pooled):
    g = import_onnx(model(form))
    # the integer inputs are read only by embedding lookups and token-mask ops: no exporter arithmetic is left
    assert [op.kind for op in g.consumers("input_ids")] == ["gather"]
    assert [op.kind for op in g.consumers("token_type_ids")] == ["gather"]
    assert {op.kind for op in g.consumers("attention_mask")} == {"maskfn"}
    by_mode = {}
    for op in _maskfns(g):
        by_mode.setdefault(op.attrs["mode"], []).append(op)
    # the additive attention bias: one select along the key axis, read by every layer's score Add
    bias = [op for op in by_mode["select"] if op.attrs["axis"] == 3]
    assert len(bias) == 1
    a = bias[0].attrs
    assert (a["shape"], a["on"], a["off"]) == ((1, 1, tb.SEQ), 0.0, bias_off)
    assert [c.kind for c in g.consumers(bias[0].outputs[0])] == ["add"] * tb.LAYERS
    if not pooled:
        assert len(_maskfns(g)) == 1
        return
    # mean pooling: the float mask (a select along the tokens) and the clipped token count (a count table)
    pool = [op for op in by_mode["select"] if op.attrs["axis"] == 1]
    assert len(pool) == 1 and (pool[0].attrs["on"], pool[0].attrs["off"]) == (1.0, 0.0)
    (count,) = by_mode["count"]
    table = np.asarray(count.attrs["table"])
    assert table.shape == (tb.SEQ + 1, tb.HIDDEN)
    want = np.maximum(np.arange(tb.SEQ + 1, dtype=np.float32), np.float32(1e-9))
    assert np.array_equal(table, np.repeat(want[:, None], tb.HIDDEN, 1).astype(np.float64))
    assert len(_maskfns(g)) == 3


@pytest.mark.parametrize("how,why", [("neighbours", "neither a per-token select nor a function of the valid"),
                                     ("inputs", "over 2 inputs (attention_mask, token_type_ids)")])
def test_mask_arithmetic_of_no_known_form_is_a_frontend_error(how, why):
    with pytest.raises(FrontendError, match=r"tensor \S+: .*" + why.replace("(", r"\(").replace(")", r"\)")):
        import_onnx(tb.mixed_mask_model(how))


# ---- the attention pass on the float graph --------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", sorted(tb.MODELS))
def test_attention_pass_keeps_the_float_meaning(form, mode):
    feeds = tb.sentences(5, seed=3)
    g = import_onnx(model(form))
    before = _float(g, feeds)
    rep = _attention(g, mode)
    # every layer's block is found, and each is placed as asked (these forms all allow the reordering)
    assert [(b["mode"], b["heads"], b["head_dim"], b["why_not_reordered"]) for b in rep.blocks] == \
        [(mode, tb.HEADS, tb.HEAD_DIM, None)] * tb.LAYERS
    crossbar = [op for op in g.ops.values() if op.kind == "matmul" and op.attrs.get("crossbar")]
    assert len(crossbar) == (0 if mode == "digital" else 2 * tb.LAYERS)
    assert {op.attrs["written"] for op in crossbar} == WRITTEN[mode]
    if mode == "retransformer":      # the reordering's per-head products are grouped linears (one block per head)
        assert sum(op.kind == "linear" and op.attrs.get("group") == tb.HEADS for op in g.ops.values()) \
            == 2 * tb.LAYERS
    assert _rel(_float(g, feeds), before) < 1e-6


SEEDS = range(9)       # mask (none, Where, old HF) x bias cycle with the seed; sizes, scale and dense are drawn


@pytest.mark.parametrize("seed", SEEDS)
def test_attention_pass_on_random_blocks(seed):
    """ReTransformer's reordering on random small blocks: the reordered float graph equals the original, and for each
    mode the ideal machine equals the quantised reference of the rewritten graph bit for bit."""
    m, p = tb.attention_block(seed)
    feeds = tb.block_feeds(p, 5, seed=100 + seed)
    assert _rel(_float(import_onnx(m), feeds), _ort(m, feeds)) < 1e-5
    for mode in MODES:
        g = import_onnx(m)
        before = _float(g, feeds)
        rep = _attention(g, mode)
        assert [(b["mode"], b["heads"], b["head_dim"]) for b in rep.blocks] == [(mode, p["H"], p["d"])], p
        assert _rel(_float(g, feeds), before) < 1e-6, (mode, p)
        c = compile_model(m, "isaac", tb.block_feeds(p, 4, seed=200 + seed), {"attention": mode, "vector": "fp32"})
        prog = parse_program(print_program(c.program))
        assert {i.attr("what") for i in prog.code if i.op == "xbload"} == WRITTEN[mode]
        out = Machine(prog, ideal=True).run(feeds)["y"]
        assert np.array_equal(out, dequantize_outputs(c.graph, run_reference(c.graph, feeds))["y"]), (mode, p)


@pytest.mark.parametrize("mode", ["retransformer", "naive"])
def test_attention_placement_holds_without_vector_ops(mode):
    """A block with no mask and no layernorm gets the integer form (vector=auto); the products the attention
    pass placed on run-time-written crossbars must still be written there, not silently run digitally."""
    m, p = tb.attention_block(0)                    # no mask: no op that only the float32 vector unit has
    c = compile_model(m, "isaac", tb.block_feeds(p, 4, seed=1), {"attention": mode})
    assert {i.attr("what") for i in c.program.code if i.op == "xbload"} == WRITTEN[mode]


def test_a_block_that_cannot_be_reordered_stays_naive_and_says_why():
    m, p = tb.attention_block(4, scale_q=True)      # Q scaled before Q K^T: Q is no longer a linear's layout
    feeds = tb.block_feeds(p, 3, seed=5)
    g = import_onnx(m)
    before = _float(g, feeds)
    (b,) = _attention(g, "retransformer").blocks
    assert b["mode"] == "naive" and "q is not" in b["why_not_reordered"]
    assert _rel(_float(g, feeds), before) < 1e-6
    assert {op.attrs["written"] for op in g.ops.values() if op.attrs.get("crossbar")} == {"K^T", "V"}


def _written_per_inference(g, rep_block, mode) -> int:
    """Values the placed block writes into crossbars per inference, from the rewritten graph."""
    sm = next(op for op in g.ops.values() if op.name == rep_block["softmax"])
    pv = g.consumers(sm.outputs[0])[0]
    qk = next(op for op in g.ops.values() if op.kind == "matmul" and op is not pv and op.attrs.get("crossbar")
              and g.consumers(op.outputs[0]) and _reaches(g, op.outputs[0], sm.name))
    return sum(int(np.prod(g.tensors[op.inputs[1]].shape)) for op in (qk, pv))


def _reaches(g, t, op_name, depth=4) -> bool:
    for c in g.consumers(t):
        if c.name == op_name or depth and _reaches(g, c.outputs[0], op_name, depth - 1):
            return True
    return False


@pytest.mark.parametrize("case", ["torch_like", "block_d_ne_hd", "fallback"])
@pytest.mark.parametrize("mode", ["retransformer", "naive"])
def test_attention_report_counts_the_values_written(case, mode):
    """The pass report's run-time writes per inference are the elements of the operands the rewritten graph
    writes into crossbars (K^T and V, or X^T and X)."""
    if case == "torch_like":
        g = import_onnx(model("torch_like"))
    else:
        g = import_onnx(tb.attention_block(4, scale_q=case == "fallback")[0])   # seed 4: D = 12, H*d = 9
    rep = _attention(g, mode)
    assert rep.blocks
    for b in rep.blocks:
        assert b["writes"][b["mode"]]["values"] == _written_per_inference(g, b, b["mode"]), (case, b)


def test_unknown_attention_mode_is_a_compile_error():
    with pytest.raises(CompileError, match="attention='sparse'"):
        _attention(import_onnx(model("hidden_states")), "sparse")


# ---- compiled programs -----------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def compiled(mode: str, target: str):
    """(Compiled, program text) of the torch-like encoder, calibrated on the first 4 sentences."""
    c = compile_model(model("torch_like"), target, CALIB, {"attention": mode})
    return c, print_program(c.program)


SENTENCES = tb.sentences(12, seed=7)
CALIB = {k: v[:4] for k, v in SENTENCES.items()}


@lru_cache(maxsize=None)
def ran(mode: str, target: str):
    """(outputs, stats JSON) of the ideal machine on the parsed program text, all 12 sentences."""
    m = Machine(parse_program(compiled(mode, target)[1]), ideal=True)
    return m.run(SENTENCES), m.stats.to_json()


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("mode", MODES)
def test_ideal_equals_reference_and_the_text_is_deterministic(mode, target):
    c, text = compiled(mode, target)
    again = compile_model(model("torch_like"), target, CALIB, {"attention": mode})
    assert print_program(again.program) == text
    assert parse_program(text) == c.program and print_program(parse_program(text)) == text
    out, _ = ran(mode, target)
    ref = dequantize_outputs(c.graph, run_reference(c.graph, SENTENCES))
    assert list(out) == ["embedding"] and out["embedding"].shape == (12, tb.HIDDEN)
    assert out["embedding"].dtype == ref["embedding"].dtype
    assert np.array_equal(out["embedding"], ref["embedding"])
    # one compile, any batch: a sample's bits do not depend on the batch it runs in
    one = Machine(parse_program(text), ideal=True).run({k: v[5:6] for k, v in SENTENCES.items()})
    assert np.array_equal(one["embedding"][0], out["embedding"][5])
    # and the 8-bit program stays close to the float model (the MiniLM bar, measured ~0.998 here)
    want = _ort(model("torch_like"), SENTENCES)
    y = out["embedding"]
    cos = (y * want).sum(1) / np.linalg.norm(y, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.mean() >= 0.99


@pytest.mark.parametrize("form", sorted(set(tb.MODELS) - {"torch_like"}))
def test_other_forms_compile_and_run_bit_exact(form):
    m = model(form)
    c = compile_model(m, "isaac", tb.sentences(4, seed=1), {})
    text = print_program(c.program)
    assert print_program(parse_program(text)) == text
    feeds = tb.sentences(6, seed=2, holes=True)
    out = Machine(parse_program(text), ideal=True).run(feeds)
    ref = dequantize_outputs(c.graph, run_reference(c.graph, feeds))
    name = m.graph.output[0].name
    assert list(out) == [name] and out[name].shape == _ort(m, feeds).shape
    assert np.array_equal(out[name], ref[name])


@pytest.mark.parametrize("which,bad,rows", [("input_ids", tb.VOCAB, tb.VOCAB), ("input_ids", -1, tb.VOCAB),
                                             ("token_type_ids", 2, 2)])
def test_an_id_outside_the_embedding_table_is_a_runtime_fault(which, bad, rows):
    m = Machine(parse_program(compiled("digital", "isaac")[1]), ideal=True)
    feeds = {k: v[:3].copy() for k, v in SENTENCES.items()}
    feeds[which][1, 0] = bad
    with pytest.raises(RuntimeFault, match=rf":[1-9]\d*: gather: id {bad} is outside the table's {rows} rows"):
        m.run(feeds)


def _written_source(g, t: str) -> str:
    """Back from a crossbar operand through layout and quant ops to the tensor it carries."""
    p = g.producer(t)
    while p is not None and p.kind in ("reshape", "transpose", "quant"):
        t = p.inputs[0]
        p = g.producer(t)
    return p.kind if p is not None else "input"


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("mode", MODES)
def test_runtime_crossbar_writes(mode, target):
    c, text = compiled(mode, target)
    prog = parse_program(text)
    loads = [i for i in prog.code if i.op == "xbload"]
    assert {i.attr("what") for i in loads} == WRITTEN[mode]
    assert len(loads) == sum(i.op == "dmvm" for i in prog.code) == (0 if mode == "digital" else 2 * tb.LAYERS)
    assert sum(i.op == "vmatmul" for i in prog.code) == (2 * tb.LAYERS if mode == "digital" else 0)
    # what is written: ReTransformer writes only the block input X (a layernorm's output here), never an
    # intermediate result; naive writes K and V, outputs of linear layers
    g = c.graph
    sources = {_written_source(g, op.inputs[1]) for op in g.ops.values()
               if op.kind == "matmul" and op.attrs.get("crossbar")}
    assert sources == {"retransformer": {"layernorm"}, "naive": {"linear"}, "digital": set()}[mode]
    _, stats = ran(mode, target)
    if mode == "digital":
        assert stats["runtime_write_cells"] == stats["runtime_write_pulses"] == 0
        return
    assert stats["runtime_write_cells"] > 0 and stats["runtime_write_pulses"] > 0
    # the writes overlap earlier stages: part of their time is hidden
    assert 0 < stats["exposed_write_ns"] < stats["runtime_write_ns"]
    if mode == "retransformer":      # X^T's writes run under stages 1-2: the Q linear and Q W_K^T
        xt = next(i for i in loads if i.attr("what") == "X^T")
        assert len(xt.attr("overlap")) == 2 and xt.attr("overlap")[1].endswith(".QWkT")


@pytest.mark.parametrize("mode", ["naive", "retransformer"])
def test_exposed_writes_do_not_depend_on_the_chunking(mode):
    """Each chunk's run-time writes are set against that chunk's overlapping compute, so one chunk, five, or
    the default split (one sentence, then the rest) give the same stats; so does a second run's share."""
    prog = parse_program(compiled(mode, "raella")[1])
    one = Machine(prog, ideal=True)
    one.run(SENTENCES, chunk=12)
    want = one.stats.to_json()
    assert want["exposed_write_ns"] > 0
    for chunk in (5, None):
        m = Machine(prog, ideal=True)
        m.run(SENTENCES, chunk=chunk)
        assert m.stats.to_json() == want, chunk
    one.run(SENTENCES, chunk=12)
    assert one.stats.to_json()["exposed_write_ns"] == 2 * want["exposed_write_ns"]


# ---- the CLIs --------------------------------------------------------------------------------------------------

def test_pimc_then_pimrun_on_the_torch_like_encoder(tmp_path, capsys):
    path, prog = tmp_path / "enc.onnx", tmp_path / "enc.pimasm"
    onnx.save(model("torch_like"), path)
    np.savez(tmp_path / "calib.npz", **CALIB)
    np.savez(tmp_path / "x.npz", **SENTENCES)
    assert pimc([str(path), "-o", str(prog), "--target", "isaac", "--calib", str(tmp_path / "calib.npz"),
                 "--quiet"]) == 0
    assert prog.read_text() == compiled("retransformer", "isaac")[1]          # the default is ReTransformer
    out, stats = tmp_path / "out.npz", tmp_path / "s.json"
    assert pimrun([str(prog), "--input", str(tmp_path / "x.npz"), "-o", str(out), "--stats", str(stats),
                   "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    y = np.load(out)
    assert list(y.files) == ["embedding"] and y["embedding"].shape == (12, tb.HIDDEN)
    assert np.allclose(np.linalg.norm(y["embedding"], axis=1), 1.0, atol=1e-5)     # L2-normalised on the machine
    assert np.array_equal(y["embedding"], ran("retransformer", "isaac")[0]["embedding"])   # isaac: never saturates
    s = json.loads(stats.read_text())
    assert s["samples"] == 12 and s["runtime_write_cells"] > 0
