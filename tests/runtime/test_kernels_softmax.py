"""The integer softmax kernel: 255 x e / sum(e) by default; a model's own output grid through mult and zero."""
from __future__ import annotations

import numpy as np

from runtime import kernels as K


def _float(x, scale, mult, zero):
    v = (x.astype(np.float64) - x.max(-1, keepdims=True)) * scale
    p = np.exp(v) / np.exp(v).sum(-1, keepdims=True)
    return np.clip(np.floor(mult * p + 0.5) + zero, 0, 255)


def test_default_grid_and_model_grids_follow_the_float_softmax():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (200, 7)).astype(np.uint8)
    scale = 0.05
    table = K.softmax_table(scale)
    for mult, zero in ((255, 0), (254, 0), (256, 0), (254, 3)):
        got = K.softmax(x, table, -1, mult, zero).astype(np.int64)
        want = _float(x, scale, mult, zero)
        assert np.abs(got - want).max() <= 1 and np.mean(got == want) > 0.99, (mult, zero)
    assert np.array_equal(K.softmax(x, table, -1), K.softmax(x, table, -1, 255, 0))


def test_a_grid_that_overflows_is_clamped():
    x = np.array([[255, 0, 0]], np.uint8)         # one certain class: 256 x 1 rounds past 255
    assert K.softmax(x, K.softmax_table(1.0), -1, 256, 0)[0, 0] == 255
