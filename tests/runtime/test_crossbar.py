"""Sliced crossbar arithmetic against plain integer products, ADC clipping, flips, centers."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import crossbar as X


def _xbar(w, encoding, slices=(2, 2, 2, 2), flip=False, center=None, groups=1):
    kg, n = w.shape[0] // groups, w.shape[1]
    wm = np.concatenate([w[g * kg:(g + 1) * kg, g * (n // groups):(g + 1) * (n // groups)] for g in range(groups)], 1)
    center = (-128 if encoding == "unsigned" else 0) if center is None else center
    mask = X.block_mask((0, w.shape[0]), (0, n), kg, n // groups)
    offs = np.where(mask, X.block_weights(wm, (0, w.shape[0]), (0, n), kg, n // groups) - center, 0)
    flips = X.flip_flags(offs, mask, slices) if flip else None
    return X.program("L", wm, (0, w.shape[0]), (0, n), kg, n // groups, encoding, center, slices, flips)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 130), st.integers(1, 20), st.sampled_from(["unsigned", "differential"]),
       st.sampled_from([(2, 2, 2, 2), (4, 2, 2), (1,) * 8, (3, 3, 2)]), st.booleans(),
       st.sampled_from([(1,) * 8, (4, 2, 2), (2, 2, 2, 2)]), st.integers(0, 2 ** 31))
def test_wide_adc_sliced_mvm_is_the_integer_product(rows, n, enc, slices, flip, islices, seed):
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, size=(rows, n))
    x = rng.integers(0, 256, size=(17, rows)).astype(np.uint8)
    xb = _xbar(w, enc, slices, flip and enc == "unsigned")
    out, ev = X.mvm(xb, x, islices, (-(1 << 29), 1 << 29), sliced=True)
    assert np.array_equal(out, x.astype(np.int64) @ w)
    assert ev.saturated == 0 and ev.converts == 17 * len(islices) * len(slices) * n
    ideal, _ = X.mvm(xb, x, islices, None)
    assert np.array_equal(ideal, out)


def test_isaac_flip_keeps_column_sums_in_8_bits():
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, size=(128, 32))
    w[:, :4] = 127                                    # columns that would overflow without the flip
    xb = _xbar(w, "unsigned", flip=True)
    lo, hi = X.column_bounds(xb, (1,) * 8)
    assert lo.min() >= 0 and hi.max() <= 255 and xb.flip.any()
    x = np.full((5, 128), 255, np.uint8)
    out, ev = X.mvm(xb, x, (1,) * 8, (0, 255), sliced=True)
    assert ev.saturated == 0 and np.array_equal(out, x.astype(np.int64) @ w)
    plain = _xbar(w, "unsigned", flip=False)
    _, ev2 = X.mvm(plain, x, (1,) * 8, (0, 255), sliced=True)
    assert ev2.saturated > 0


def test_converts_per_mac_is_a_quarter_at_full_rows():
    xb = _xbar(np.ones((128, 32), dtype=np.int64), "unsigned", flip=True)
    _, ev = X.mvm(xb, np.ones((10, 128), np.uint8), (1,) * 8, (0, 255))
    assert ev.converts / ev.macs == pytest.approx(0.25)


def test_saturation_clips_and_counts_at_both_bounds():
    w = np.array([[3], [3], [3], [-3], [-3], [-3]])
    xb = _xbar(w, "differential", slices=(4, 4))
    x = np.array([[15, 15, 15, 0, 0, 0], [0, 0, 0, 15, 15, 15]], np.uint8)
    out, ev = X.mvm(xb, x, (4, 4), (-64, 63), sliced=True)
    # low slice sums: +-3*15*3 = +-135 -> clipped to 63 / -64; high weight slices are 0
    assert ev.saturated == 2
    assert out[0, 0] == 63 + 16 * 0 and out[1, 0] == -64


def test_block_diagonal_groups_do_not_mix():
    rng = np.random.default_rng(1)
    w = np.zeros((18, 4), dtype=np.int64)
    w[:9, :2] = rng.integers(-127, 128, (9, 2))
    w[9:, 2:] = rng.integers(-127, 128, (9, 2))
    xb = _xbar(w, "unsigned", flip=True, groups=2)
    assert xb.mask.sum() == 36
    x = rng.integers(0, 256, (7, 18)).astype(np.uint8)
    out, ev = X.mvm(xb, x, (1,) * 8, (0, 255), sliced=True)
    assert np.array_equal(out, x.astype(np.int64) @ w) and ev.macs == 7 * 36


def test_offsets_outside_8_bits_are_refused():
    with pytest.raises(ValueError):
        _xbar(np.array([[200]]), "unsigned")
