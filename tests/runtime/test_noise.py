"""Counter-based noise: draws are functions of their keys, standard normal in distribution."""
from __future__ import annotations

import numpy as np

from runtime import noise as N


def test_draws_depend_on_key_and_counter_only():
    k = N.stream(3, 10, 0)
    a = N.normals(k, np.arange(1000))
    assert np.array_equal(a[200:300], N.normals(k, np.arange(200, 300)))
    assert not np.array_equal(a, N.normals(N.stream(3, 10, 1), np.arange(1000)))
    assert not np.array_equal(a, N.normals(N.stream(4, 10, 0), np.arange(1000)))
    assert a.dtype == np.float32


def test_draws_are_standard_normal():
    z = N.normals(N.stream(0, 1), np.arange(200_000)).astype(np.float64)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(np.mean(z < -1.0) - 0.1587) < 0.005 and abs(np.mean(z > 2.0) - 0.0228) < 0.002
