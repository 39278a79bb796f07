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


def test_speculation_fails_at_both_bounds_and_recovers_exactly():
    # one 2-bit weight slice pair per column: +3 on every row (column 0), -3 on every row (column 1)
    w = np.array([[3, -3]] * 8)
    xb = _xbar(w, "differential", slices=(4, 4))
    x = np.full((2, 8), 0x30, np.uint8)        # high 4-bit slice = 3 on every row, low slice 0
    x[1] = 0x10                                 # high slice 1: sums +-24, inside the 7-bit range
    out, ev = X.mvm(xb, x, (4, 4), (-64, 63), recover=1)
    # row 0: +-3*3*8 = +-72 hits 63 and -64 -> both columns fail and recover from 1-bit slices
    # (per bit: +-3*8 = +-24, inside the range), so the result is exact
    assert np.array_equal(out, x.astype(np.int64) @ w)
    assert ev.spec_failures == 2 and ev.saturated == 0
    assert ev.spec_converts == 2 * 2 * 2 * 2                 # samples x spec slices x weight slices x filters
    assert ev.converts == ev.spec_converts + 2 * 4           # each failed column converts 4 more times


def test_a_sum_exactly_on_a_bound_also_fails_speculation():
    w = np.array([[3]] * 7)
    xb = _xbar(w, "differential", slices=(4, 4))
    x = np.full((1, 7), 0x30, np.uint8)          # 3 * 3 * 7 = 63: exactly the top code
    out, ev = X.mvm(xb, x, (4, 4), (-64, 63), recover=1)
    assert ev.spec_failures == 1 and np.array_equal(out, x.astype(np.int64) @ w)


def test_recovery_keeps_a_saturated_sum():
    w = np.array([[3]] * 30)
    xb = _xbar(w, "differential", slices=(4, 4))
    x = np.full((1, 30), 0x10, np.uint8)          # per bit: 3 * 30 = 90 > 63 even in recovery
    out, ev = X.mvm(xb, x, (4, 4), (-64, 63), recover=1)
    assert ev.spec_failures == 1 and ev.saturated == 1
    assert out[0, 0] == 63 * 16                   # bit 4 of the high slice, clipped at 63


def test_noise_is_seeded_and_grows_with_E():
    rng = np.random.default_rng(2)
    w = rng.integers(-127, 128, (256, 16))
    x = rng.integers(0, 256, (64, 256)).astype(np.uint8)
    xb = _xbar(w, "differential", slices=(2, 2, 2, 2))
    exact = x.astype(np.int64) @ w
    a, _ = X.mvm(xb, x, (1,) * 8, (-64, 63), noise=X.Noise(0.05, 7))
    b, _ = X.mvm(xb, x, (1,) * 8, (-64, 63), noise=X.Noise(0.05, 7))
    c, _ = X.mvm(xb, x, (1,) * 8, (-64, 63), noise=X.Noise(0.12, 7))
    z, _ = X.mvm(xb, x, (1,) * 8, (-64, 63), noise=X.Noise(0.0, 7))
    other, _ = X.mvm(xb, x, (1,) * 8, (-64, 63), noise=X.Noise(0.05, 8))
    clean, _ = X.mvm(xb, x, (1,) * 8, (-64, 63))
    assert np.array_equal(a, b) and np.array_equal(z, clean) and not np.array_equal(a, other)
    assert 0 < np.abs(a - exact).mean() < np.abs(c - exact).mean()
    # a row's draws are keyed by its global index: the last 14 rows alone, at row0 50, draw the same
    tail, _ = X.mvm(xb, x[50:], (1,) * 8, (-64, 63), noise=X.Noise(0.05, 7, row0=50))
    assert np.array_equal(tail, a[50:])
