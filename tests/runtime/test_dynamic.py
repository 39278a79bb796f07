"""Run-time-written crossbars (runtime/dynamic.py): the compiled path against the NumPy reference, bit for bit
(outputs and every event), and both against the exact product where no column sum can reach the ADC's bounds."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import dynamic as D


def _run(mode, *args):
    os.environ["PIMC_XBAR"] = mode
    try:
        y, ev = D.dynamic_mvm(*args)
    finally:
        os.environ.pop("PIMC_XBAR")
    return y, dataclasses.asdict(ev)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2 ** 31), st.sampled_from([(3, 5), (2, 1, 4), (2, 3, 7)]), st.integers(1, 40),
       st.integers(1, 24), st.sampled_from([0, 131]), st.sampled_from([0, 128]),
       st.sampled_from([(4, 2, 2), (1,) * 8, (4, 4)]), st.sampled_from([(4, 4), (2, 2, 2, 2), (4, 2, 2)]),
       st.sampled_from([4, 16, 64]), st.sampled_from([(-64, 63), (0, 127), (-8, 7)]), st.booleans(),
       st.sampled_from([0, 1, 2]), st.booleans())
def test_compiled_equals_reference(seed, lead, M, K, za, zw, islices, wslices, rows, adc, signed, recover,
                                   shared):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, size=lead + (M, K)).astype(np.uint8)
    a[rng.random(a.shape) < 0.3] = za                   # zero codes: rows that add nothing
    wl = (lead[0],) + (1,) * (len(lead) - 1) if shared else lead     # one operand for every head, or one each
    w = rng.integers(0, 256, size=wl + (K, 9)).astype(np.uint8)
    args = (a, za, w, zw, islices, wslices, rows, adc, signed, recover)
    ref, got = _run("numpy", *args), _run("numba", *args)
    assert ref[0].tobytes() == got[0].tobytes()
    assert ref[1] == got[1]


def test_exact_where_nothing_saturates():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(4, 2, 33, 70)).astype(np.uint8)
    w = rng.integers(0, 256, size=(4, 2, 70, 12)).astype(np.uint8)
    exact = np.matmul(a.astype(np.int64) - 120, w.astype(np.int64) - 128)
    for mode in ("numpy", "numba"):
        y, ev = _run(mode, a, 120, w, 128, (4, 2, 2), (4, 4), 64, (-10 ** 6, 10 ** 6), True, 1)
        assert np.array_equal(y, exact) and ev["saturated"] == ev["spec_failures"] == 0
