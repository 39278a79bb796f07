"""The corpus of real models (examples/corpus/make_corpus.py), when it has been built: every exported model
compiles on isaac with a small calibration set, the ideal machine equals the quantised integer reference bit
for bit, and the outputs agree with onnxruntime float above a floor on a few eval samples.

The corpus lives in $PIMC_CORPUS (default examples/corpus/build/); build it with
    pip install -e '.[corpus]' && python examples/corpus/make_corpus.py examples/corpus/build
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import pimc
from passes.reference import dequantize_outputs, run_reference

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("PIMC_CORPUS", ROOT / "examples" / "corpus" / "build"))
BUILD = "pip install -e '.[corpus]' && python examples/corpus/make_corpus.py examples/corpus/build"
MODELS = sorted(p.stem for p in CORPUS.glob("*.onnx")) if CORPUS.is_dir() else []
CNN_CALIB, CNN_EVAL = 4, 3          # images: calibration crops (other photos), eval centre crops
TEXT_CALIB, TEXT_EVAL = 8, 8        # sentences: two paraphrase groups each


def _data(name: str, kind: str, n: int):
    p = CORPUS / f"{name}_{kind}.npz"
    if p.exists():
        with np.load(p) as z:
            return {k: z[k][:n] for k in z.files}
    return np.load(CORPUS / f"{name}_{kind}.npy")[:n]


@pytest.mark.skipif(not MODELS, reason=f"corpus not built (no models in {CORPUS}); build it with: {BUILD}")
@pytest.mark.parametrize("name", MODELS)
def test_corpus_model_ideal_equals_reference_and_agrees_with_float(name):
    """Floors (on the samples named above): CNNs' top-1 agreement with float >= 2/3 and mean cosine of the
    logits > 0.95; sentence encoders' mean cosine > 0.98 and nearest neighbour in the same paraphrase group
    for >= 6 of 8 sentences (float: 8 of 8)."""
    info = json.loads((CORPUS / f"{name}.json").read_text())
    cnn = info["family"] == "cnn"
    calib = _data(name, "calib", CNN_CALIB if cnn else TEXT_CALIB)
    ev = _data(name, "eval", CNN_EVAL if cnn else TEXT_EVAL)
    group = None if cnn else ev.pop("group")
    want = np.load(CORPUS / f"{name}_reference.npy")[:len(group) if group is not None else CNN_EVAL]
    prog = pimc.compile(str(CORPUS / f"{name}.onnx"), target="isaac", calib=calib)
    g = prog._compiled.graph
    feeds = {g.inputs[0]: ev} if cnn else ev
    ref = dequantize_outputs(g, run_reference(g, feeds))
    out, _ = pimc.run(prog, feeds, ideal=True)
    assert out.keys() == ref.keys()
    for k in ref:
        assert np.array_equal(out[k], ref[k]), k
    y = next(iter(ref.values())).astype(np.float64)
    cos = np.sum(y * want, 1) / np.linalg.norm(y, axis=1) / np.linalg.norm(want, axis=1)
    if cnn:
        assert np.mean(y.argmax(1) == want.argmax(1)) >= 2 / 3
        assert cos.mean() > 0.95, cos.mean()
    else:
        assert cos.mean() > 0.98, cos.mean()
        sim = y @ y.T / np.outer(np.linalg.norm(y, axis=1), np.linalg.norm(y, axis=1))
        np.fill_diagonal(sim, -np.inf)
        assert np.sum(group[sim.argmax(1)] == group) >= 6
