"""Center+Offset (RAELLA thesis sec. 4.1): D on signed values, eq. 4.1, eq. 4.2 against brute force, end to end."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.pipeline import compile_model
from passes.reference import dequantize_outputs, run_reference
from isa import load_target
from passes.center_offset import D, optimal_centers
from runtime import crossbar as X
from runtime.machine import Machine
from tests.conftest import DIGITS


def test_D_keeps_bits_with_sign():
    # 0b1011_0110 = 182: bits 7..4 -> 0b1011 = 11, bits 3..2 -> 0b01 = 1, bits 1..0 -> 0b10 = 2
    assert [int(D(7, 4, 182)), int(D(3, 2, 182)), int(D(1, 0, 182))] == [11, 1, 2]
    assert [int(D(7, 4, -182)), int(D(3, 2, -182)), int(D(1, 0, -182))] == [-11, -1, -2]
    assert int(D(3, 0, 0)) == 0


def test_eq_4_1_center_plus_offset_identity():
    rng = np.random.default_rng(3)
    w = rng.integers(-127, 128, (64, 5))
    x = rng.integers(0, 256, (9, 64))
    phi = optimal_centers(w, np.ones_like(w, bool), (4, 2, 2))
    wp, wn = np.maximum(w - phi, 0), np.maximum(phi - w, 0)
    assert np.array_equal(x @ w, phi[None] * x.sum(1, keepdims=True) + x @ (wp - wn))


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("slices", [(4, 2, 2), (2, 2, 2, 2), (1,) * 8, (3, 3, 2)])
def test_eq_4_2_matches_brute_force(slices, wide):
    """wide: uint8 codes minus a zero point per filter (an already-quantised model's weights), -255..255 over
    the block, each filter spanning at most 255: the centers search the wider grid."""
    rng = np.random.default_rng(sum(slices) * len(slices))
    w = np.clip(np.rint(rng.normal(rng.integers(-30, 30), 25, (40, 6))), -127, 127).astype(np.int64)
    if wide:
        w = rng.integers(0, 256, (40, 6)) - np.array([0, 255, 30, 200, 128, 5])[None, :]
        assert w.min() < -127 and w.max() > 127
    mask = np.ones_like(w, bool)
    mask[30:, 3] = False                                     # one filter with fewer devices in this crossbar
    got = optimal_centers(w, mask, slices)
    shifts = X.slice_shifts(slices)
    for n in range(w.shape[1]):
        col = w[mask[:, n], n]

        def cost(p):
            return sum(2 ** l * sum(int(D(l + s - 1, l, v - p)) for v in col) ** 4 for l, s in zip(shifts, slices))
        costs = {p: cost(p) for p in range(int(col.min()), int(col.max()) + 1)}
        best = min(costs.values())
        assert costs[int(got[n])] == best and got[n] == min(p for p, c in costs.items() if c == best)


def test_center_offset_reduces_saturation_and_stays_exact(digits_test):
    x, y = digits_test
    calib = np.load(DIGITS / "digits_calib.npy")
    rates = {}
    for enc in ("differential", "center_offset"):
        t = load_target("raella").replace(encoding=enc, adaptive_slicing=False, weight_slices=(2, 2, 2, 2),
                                          input_slices=(1,) * 8, recovery_bits=0)
        c = compile_model(DIGITS / "digits_cnn.onnx", t, calib)
        ref = dequantize_outputs(c.graph, run_reference(c.graph, {"image": x[:128]}))["logits"]
        assert np.array_equal(Machine(c.program, ideal=True).run({"image": x[:128]})["logits"], ref)
        m = Machine(c.program)
        m.run({"image": x[:128]})
        rates[enc] = m.stats.to_json()["saturation_rate"]
    assert rates["center_offset"] < rates["differential"] / 4
