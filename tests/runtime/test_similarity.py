"""Cosine metrics of embedding outputs, on vectors whose answers are known by construction."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.similarity import cosines, nearest_same_group


def test_cosines_ignore_scale_and_score_a_zero_row_zero():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(5, 8))
    y = ref * np.array([[1], [3], [0.5], [-2], [0]])              # scaled, one flipped, one zero
    assert np.allclose(cosines(y, ref), [1, 1, 1, -1, 0])
    orth = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert np.allclose(cosines(orth, orth[::-1]), [0, 0])


def test_cosines_need_equal_shapes():
    with pytest.raises(ValueError, match=r"\[2, 3\] and \[2, 4\]"):
        cosines(np.ones((2, 3)), np.ones((2, 4)))


def test_nearest_same_group_counts_by_angle_and_excludes_self():
    # two tight clusters far apart in angle, one member scaled up: cosine ignores the scale (Euclidean would not)
    a, b = np.array([1.0, 0.05]), np.array([0.05, 1.0])
    y = np.stack([a, 40 * (a + [0, 0.01]), b, b + [0.02, 0]])
    assert nearest_same_group(y, np.array([0, 0, 1, 1])) == 4
    assert nearest_same_group(y, np.array([0, 1, 0, 1])) == 0          # every nearest neighbour in the other
    assert nearest_same_group(y, np.array([7, 7, 7, 9])) == 2          # rows 0, 1 (self never counts)


def test_nearest_same_group_matches_a_brute_force_count():
    rng = np.random.default_rng(1)
    y, g = rng.normal(size=(30, 6)), rng.integers(0, 4, 30)
    want = 0
    for i in range(30):
        best = max((j for j in range(30) if j != i),
                   key=lambda j: y[i] @ y[j] / np.linalg.norm(y[i]) / np.linalg.norm(y[j]))
        want += g[best] == g[i]
    assert nearest_same_group(y, g) == want


def test_nearest_same_group_needs_one_group_per_row():
    with pytest.raises(ValueError):
        nearest_same_group(np.ones((3, 2)), np.array([0, 1]))
    with pytest.raises(ValueError):
        nearest_same_group(np.ones((1, 2)), np.array([0]))
