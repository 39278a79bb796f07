"""X.window_product (the windows of a conv formed in float blocks, (ky, kx, c) order) against im2col + product,
and the machine's im2col left unformed where fused products read it."""
from __future__ import annotations

import numpy as np
import pytest

from runtime import crossbar as X
from runtime import kernels as K
from runtime import machine as MM
from runtime.machine import Machine
from tests.conftest import digits_compiled


@pytest.mark.parametrize("wmax", [127, 3000])                 # float32 below 2^24, float64 above
def test_window_product_equals_im2col_product(wmax, monkeypatch):
    monkeypatch.setattr(X, "BLOCK_ROWS_ELEMS", 1 << 9)         # many blocks, split over the threads
    rng = np.random.default_rng(4)
    for i in range(30):
        B, C = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        x = rng.integers(0, 256, (B, C, int(rng.integers(3, 9)), int(rng.integers(3, 9)))).astype(np.uint8)
        if i % 2:                                                # channels-last in memory, as requant leaves it
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        k, s, d = [tuple(int(v) for v in rng.integers(1, 4 if j == 0 else 3, 2)) for j in range(3)]
        pads = tuple(int(v) for v in rng.integers(0, 3, 4))
        fill = int(rng.integers(0, 256))
        cols = K.im2col(x, k, s, pads, d, fill)
        K_ = cols.shape[-1]
        r0 = int(rng.integers(0, K_))
        w = rng.integers(-wmax, wmax + 1, (int(rng.integers(1, K_ - r0 + 1)), int(rng.integers(1, 9))))
        want = cols.reshape(-1, K_)[:, r0:r0 + len(w)].astype(np.int64) @ w
        got = X.window_product(x, w, r0, k, s, pads, d, fill)
        assert got.dtype == X.product(cols.reshape(-1, K_)[:, r0:r0 + len(w)], w).dtype
        assert np.array_equal(got, want)


@pytest.mark.parametrize("target, ideal", [("isaac", True), ("isaac", False), ("raella", True), ("raella", False)])
def test_unformed_windows_change_nothing(target, ideal, digits_test, monkeypatch):
    x = digits_test[0][:20]
    prog = digits_compiled(target).program
    lazy = Machine(prog, ideal=ideal)
    a = lazy.run({"image": x}, chunk=8)["logits"]
    assert MM._lazy_windows(lazy)
    monkeypatch.setattr(MM, "_lazy_windows", lambda m: set())
    formed = Machine(prog, ideal=ideal)
    b = formed.run({"image": x}, chunk=8)["logits"]
    assert np.array_equal(a, b)
    assert lazy.stats.to_json() == formed.stats.to_json()


def test_depthwise_window_product_equals_im2col_product():
    rng = np.random.default_rng(6)
    for i in range(30):
        B, C, ng = int(rng.integers(1, 5)), int(rng.integers(1, 6)), int(rng.integers(1, 3))
        x = rng.integers(0, 256, (B, C, int(rng.integers(3, 9)), int(rng.integers(3, 9)))).astype(np.uint8)
        if i % 2:
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        k, s, d = [tuple(int(v) for v in rng.integers(1, 4 if j == 0 else 3, 2)) for j in range(3)]
        pads = tuple(int(v) for v in rng.integers(0, 3, 4))
        fill = int(rng.integers(0, 256))
        T = k[0] * k[1]
        per = rng.integers(-200, 201, (C, T, ng))                  # filter c * ng + j reads channel c only
        w = np.zeros((C * T, C * ng), np.int64)
        for c in range(C):
            w[c * T:(c + 1) * T, c * ng:(c + 1) * ng] = per[c]
        r0 = int(rng.integers(0, T))                               # rows above r0 hold zeros here
        w[:r0] = 0
        cols = K.im2col(x, k, s, pads, d, fill).reshape(-1, C * T)
        want = cols.astype(np.int64) @ w
        taps = X.depthwise_taps(w[r0:], r0, C, T)
        got = X.depthwise_window_product(x, taps, X.product_bound(w), k, s, pads, d, fill)
        assert np.array_equal(got, want)
        if C > 1:                                                  # a weight across channels: not depthwise
            w[0, -1] = 1
            assert X.depthwise_taps(w, 0, C, T) is None
