"""benchmarks/ablation.py: noisy scores per seed that a rerun reproduces, reported as mean and spread."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.ablation import measure, spread, table
from tests.conftest import DIGITS, digits_compiled


def test_noisy_scores_are_per_seed_and_a_rerun_reproduces_them():
    d = np.load(DIGITS / "digits_test.npz")
    feeds, labels = {"image": d["x"][:24]}, d["y"][:24]

    def score(out):
        return float(np.mean(out["logits"].argmax(1) == labels))
    prog = digits_compiled("isaac").program
    a = measure(prog, feeds, score, [0, 30], seeds=3)
    b = measure(prog, feeds, score, [0, 30], seeds=3)
    assert a["noise"] == b["noise"] and len(a["noise"][30]) == 3 and a["noise"][0] == [a["score"]]
    assert "weight_writes" not in a["energy_pj_per_inference"]          # the one-time load is not per inference
    s = spread(a["noise"][30])
    assert s["mean"] == pytest.approx(np.mean(a["noise"][30])) and s["seeds"] == 3
    assert s["std"] == pytest.approx(np.std(a["noise"][30], ddof=1)) and s["min"] <= s["mean"] <= s["max"]
    assert spread([0.5]) == {"mean": 0.5, "std": 0.0, "min": 0.5, "max": 0.5, "seeds": 1}
    text = table({"ISAAC": a}, "top-1", [0, 30])
    assert f"{s['mean']:.4f} ± {s['std']:.4f}" in text and "3 seeds" in text
