"""Crossbars read in row groups (partial wordline activation): each group's column sums go through the ADC apart.
Checked against a direct NumPy statement of that arithmetic, the compiled kernels against crossbar.mvm's
NumPy reference bit for bit, and the conversions it costs."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from runtime import crossbar as X
from tests.runtime.test_crossbar import _xbar
from tests.runtime.test_xbar_kernels import _both, _same


def _direct(w, x, slices, islices, adc, group):
    """sum over row groups, input slices and weight slices of 2^shifts x clip(group's column sum): Zero+Offset
    cells (the magnitude on the device of its sign), one signed ADC reading pos - neg."""
    lo, hi = adc
    out = np.zeros((len(x), w.shape[1]))
    for a in range(0, len(w), group):
        wg, xg = w[a:a + group], x[:, a:a + group].astype(np.int64)
        for xs, si in zip(X.slice_values(xg, islices), X.slice_shifts(islices)):
            for sj, wd in zip(X.slice_shifts(slices), slices):
                lv = ((np.maximum(wg, 0) >> sj) & ((1 << wd) - 1)) - ((np.maximum(-wg, 0) >> sj) & ((1 << wd) - 1))
                out += np.clip(xs @ lv, lo, hi) * float(1 << (si + sj))
    return out


@pytest.mark.parametrize("rows,group", [(128, 32), (100, 16), (37, 8)])
def test_grouped_mvm_clips_each_group_apart(rows, group):
    rng = np.random.default_rng(rows)
    w = rng.integers(-127, 128, size=(rows, 12))
    x = rng.integers(0, 256, size=(25, rows)).astype(np.uint8)
    slices, islices, adc = (2, 2, 2, 2), (1,) * 8, (-31, 31)
    xb = dataclasses.replace(_xbar(w, "differential", slices), group=group)
    res = _both(xb, x, islices, adc)
    _same(res)
    out, ev = res[0]
    assert np.array_equal(out, _direct(w, x, slices, islices, adc, group))
    whole, ev_whole = X.mvm(_xbar(w, "differential", slices), x, islices, adc)
    assert not np.array_equal(whole, out)               # the groups clip less than the whole crossbar
    assert ev["saturated"] < ev_whole.saturated
    assert ev["converts"] == ev_whole.converts * -(-rows // group)
    assert ev["columns"] == ev_whole.columns and ev["macs"] == ev_whole.macs


@pytest.mark.parametrize("enc,flip,recover,noise", [("unsigned", True, 0, None), ("differential", False, 1, None),
                                                    ("unsigned", False, 0, 0.1)])
def test_kernels_equal_reference_with_groups(enc, flip, recover, noise):
    """Every path (NumPy reference, GEMM, bit planes) with speculation, flips, noise and a histogram."""
    rng = np.random.default_rng(3)
    w = rng.integers(-127, 128, size=(96, 10))
    x = rng.integers(0, 256, size=(40, 96)).astype(np.uint8)
    xb = program = _xbar(w, enc, (2, 2, 2, 2), flip)
    xb = dataclasses.replace(program, group=24)
    adc = (0, 63) if enc == "unsigned" else (-32, 31)
    _same(_both(xb, x, (4, 2, 2) if recover else (1,) * 8, adc, hist_range=(-40, 100), recover=recover,
                noise=X.Noise(noise, 9, row0=4) if noise else None))


def test_groups_with_an_ideal_adc_are_the_integer_product():
    rng = np.random.default_rng(1)
    w = rng.integers(-128, 128, size=(70, 9))
    x = rng.integers(0, 256, size=(11, 70)).astype(np.uint8)
    xb = X.program("L", w, (0, 70), (0, 9), 70, 9, "unsigned", -128, (2, 2, 2, 2), None, group=16)
    assert xb.group == 16 and xb.groups == 5
    out, ev = X.mvm(xb, x, (1,) * 8, None, sliced=True)
    assert np.array_equal(out, x.astype(np.int64) @ w)
    assert X.program("L", w, (0, 70), (0, 9), 70, 9, "unsigned", -128, (2, 2, 2, 2), None, group=70).group == 0


def test_column_bounds_are_the_largest_group_sum():
    w = np.full((64, 2), 127)
    xb = X.program("L", w, (0, 64), (0, 2), 64, 2, "differential", 0, (2, 2, 2, 2), None, group=16)
    lo, hi = X.column_bounds(xb, (1,) * 8)
    assert hi.max() == 16 * 3 and lo.min() == 0
    assert X.is_plain(xb, (1,) * 8, (-64, 63)) and not X.is_plain(dataclasses.replace(xb, group=0), (1,) * 8, (-64, 63))
