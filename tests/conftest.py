"""Shared fixtures: the bundled digits CNN, compiled once per target for the whole session."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"
SHARED_MODELS = ROOT.parent / "shared" / "models"


@lru_cache(maxsize=None)
def digits_compiled(target: str):
    from compiler.pipeline import compile_model
    return compile_model(DIGITS / "digits_cnn.onnx", target, np.load(DIGITS / "digits_calib.npy"))


@pytest.fixture(scope="session")
def digits_test():
    d = np.load(DIGITS / "digits_test.npz")
    return d["x"], d["y"]
