"""Fixed-point multipliers and activation quantisation parameters."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from passes.quantize import common_shift, fixed_point, qparams
from runtime.kernels import requant


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-9, 1e4))
def test_fixed_point_is_within_one_part_in_2_30(m):
    mult, shift = fixed_point(m)
    assert 1 <= shift <= 62
    assert abs(mult / 2 ** shift - m) <= m * 2 ** -29 + 2 ** -62


def test_requant_rounds_half_up():
    mult, shift = fixed_point(0.5)
    acc = np.array([-3, -1, 1, 3, 5])
    assert requant(acc, mult, shift, 10, 0, 255).tolist() == [9, 10, 11, 12, 13]


def test_qparams_cover_the_range_with_an_integer_zero():
    for lo, hi in [(-1.0, 3.0), (0.0, 6.0), (-5.0, -1.0), (2.0, 4.0)]:
        s, z = qparams(lo, hi)
        assert isinstance(z, int) and 0 <= z <= 255       # real 0 is the code z exactly
        assert s * (0 - z) <= min(lo, 0) + s / 2 and s * (255 - z) >= max(hi, 0) - s / 2


def test_common_shift_shares_one_shift():
    (a, b), shift = common_shift(0.7, 0.002)
    assert a / 2 ** shift == pytest.approx(0.7, rel=1e-8) and b / 2 ** shift == pytest.approx(0.002, rel=1e-6)
    assert math.log2(a) < 31
