"""The vector unit's scale_acc: the fused compiled pass equals NumPy's float64 formula bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

from runtime import vector as V


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 6, 4096), (70000, 1), (2, 40000)])
@pytest.mark.parametrize("per_channel", [True, False])
def test_fused_scale_acc_equals_formula(dtype, shape, per_channel):
    rng = np.random.default_rng(sum(shape))
    acc = np.rint(rng.normal(0, 3e6, shape)).astype(dtype)
    n = shape[-1]
    bias = rng.integers(-5000, 5000, n) if per_channel else 17
    scale = rng.random(n) * 1e-4 if per_channel else 3.1e-5
    assert acc.size >= V.FUSED_MIN
    want = ((acc.astype(np.float64) + np.asarray(bias, np.float64)) * np.asarray(scale, np.float64)).astype(np.float32)
    got = V.scale_acc(acc, bias, scale)
    assert got.dtype == np.float32 and got.tobytes() == want.tobytes()
    assert V.scale_acc(acc, bias, scale, (-1.0, 1.0)).max() <= 1.0
