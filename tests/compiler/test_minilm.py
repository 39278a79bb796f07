"""The real MiniLM-L6 end to end (built by examples/minilm/make_minilm.py): the three int64 inputs, all 64
sentences judged against onnxruntime's float embeddings, calibrated on the first 16 sentences only (calib.npz)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from compiler.pipeline import compile_model
from isa import load_target, parse_program, print_program
from passes.reference import dequantize_outputs, run_reference
from runtime.machine import Machine

from tests.conftest import MAKE_MINILM, MINILM, ROOT

MODEL = MINILM / "minilm_l6.onnx"
FILES = (MODEL, MINILM / "minilm_sentences.npz", MINILM / "minilm_reference.npy", MINILM / "calib.npz")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
pytestmark = pytest.mark.skipif(not all(f.exists() for f in FILES),
                                reason=f"no MiniLM example in {MINILM}; to run these tests: {MAKE_MINILM}")


@lru_cache(maxsize=None)
def data():
    d = np.load(MINILM / "minilm_sentences.npz")
    return {k: d[k] for k in INPUTS}, d["group"], np.load(MINILM / "minilm_reference.npy")


def calib() -> dict:
    c = np.load(MINILM / "calib.npz")
    return {k: c[k] for k in INPUTS}


def compiled(attention: str):
    return compile_model(MODEL, "isaac", calib(), options={"attention": attention})


def judge(emb, ref, group):
    cos = (emb * ref).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(ref, axis=1)
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    return float(cos.mean()), int((group[sim.argmax(1)] == group).sum())


def test_built_files_follow_sentences_txt():
    """make_minilm.py's contract: the sentences of sentences.txt in order, one group a line (4 each), the
    float reference's rows unit length (the model L2-normalises), calib.npz the first 16 sentences' inputs."""
    lines = [ln for ln in (ROOT / "examples" / "minilm" / "sentences.txt").read_text().splitlines() if ln.strip()]
    d = np.load(MINILM / "minilm_sentences.npz")
    assert d["text"].tolist() == [s.strip() for ln in lines for s in ln.split("|")]
    assert d["group"].tolist() == [g for g in range(len(lines)) for _ in range(4)]
    feeds, _, ref = data()
    assert ref.shape == (64, 384) and np.allclose(np.linalg.norm(ref, axis=1), 1, atol=1e-5)
    assert all(np.array_equal(v, feeds[k][:16]) for k, v in calib().items())


def test_minilm_retransformer_end_to_end():
    """One compile (the costly part): --ideal on all 64 sentences against onnxruntime's embeddings and, bit
    for bit, against the quantised reference; the real target on 8 sentences; the run-time writes counted."""
    feeds, group, ref = data()
    c = compiled("retransformer")
    prog = parse_program(print_program(c.program))
    emb = Machine(prog, ideal=True).run(feeds)["embedding"]
    few = {k: v[40:48] for k, v in feeds.items()}
    want = dequantize_outputs(c.graph, run_reference(c.graph, few))["embedding"]
    assert np.array_equal(emb[40:48], want)                 # bit for bit, on sentences outside the calibration
    cos, nn = judge(emb, ref, group)
    assert cos >= 0.99 and nn == 64, (cos, nn)
    written = {i.attr("what") for i in prog.code if i.op == "xbload"}
    assert written == {"X", "X^T"}                           # only the block input is written at run time
    m = Machine(prog)
    real = m.run({k: v[:8] for k, v in feeds.items()})["embedding"]
    cos, _ = judge(real, ref[:8], group[:8])
    assert cos >= 0.98, cos
    st = m.stats.to_json()
    assert st["runtime_write_cells"] > 0 and 0 <= st["exposed_write_ns"] <= st["runtime_write_ns"] > 0


def test_minilm_schedules_change_time_never_results():
    """MiniLM's ~11 M weights do not fit the aras target (2304 crossbars), so every schedule rewrites
    crossbars during inference; each gives the outputs of the same encoding on a target that holds the model
    (weight reuse off: its shift changes the stored codes). Calibrated on 4 sentences to keep compiles short."""
    feeds, _, _ = data()
    calib = {k: v[:4] for k, v in feeds.items()}
    few = {k: v[20:21] for k, v in feeds.items()}
    aras = load_target("aras")
    whole = Machine(compile_model(MODEL, aras.replace(program_once=True, tiles=4096), calib).program).run(few)
    for schedule in ("naive", "overlap", "aras"):
        c = compile_model(MODEL, aras, calib, options={"schedule": schedule, "weight_reuse": False})
        report = next(r.report for r in c.records if r.name == "schedule")
        assert report.logical_crossbars > aras.xbars                # rewritten during inference
        out = Machine(parse_program(print_program(c.program))).run(few)
        assert np.array_equal(out["embedding"], whole["embedding"]), schedule


def test_minilm_on_aras_maps_for_its_6_bit_adc():
    """The aras preset's 6-bit ADC cannot resolve 128 rows of 2-bit cells (MiniLM collapses to cosine 0.01
    reading every row at once, benchmarks/results/row_groups.md); with the default flags the compiler reads the
    rows in groups whose clipping stays within the saturation budget, and the target's output follows float."""
    feeds, group, ref = data()
    c = compile_model(MODEL, "aras", calib())
    rep = next(r.report for r in c.records if r.name == "row_groups")
    assert not rep.over_budget and any(0 < lr["group"] < 128 for lr in rep.layers.values())
    few = slice(40, 46)                                      # outside the calibration sentences
    m = Machine(parse_program(print_program(c.program)))
    emb = m.run({k: v[few] for k, v in feeds.items()})["embedding"]
    cos, _ = judge(emb, ref[few], group[few])
    assert cos >= 0.98, cos
    assert m.stats.to_json()["saturation_rate"] < 1e-4
