"""Weight encodings' centers for weights with a zero point (code - zero, up to 9 bits)."""
from __future__ import annotations

import numpy as np

from passes.encoding import encode_block, unsigned_centers


def test_offset_binary_keeps_symmetric_weights_at_minus_128():
    w = np.random.default_rng(0).integers(-127, 128, (32, 4))
    assert unsigned_centers(w, np.ones_like(w, bool)) == -128


def test_offset_binary_fits_every_filter_of_codes_minus_zero_points():
    rng = np.random.default_rng(1)
    zero = np.array([0, 255, 200, 17, 128])
    w = rng.integers(0, 256, (64, 5)) - zero[None, :]
    w[:, 0] = np.arange(64) * 4 - 128                # a filter spanning -128..124: -128 itself fits
    mask = np.ones_like(w, bool)
    mask[40:, 2] = False
    phi = unsigned_centers(w, mask)
    offsets = np.where(mask, w - phi[None, :], 0)
    assert offsets.min() >= 0 and offsets.max() <= 255
    assert phi[0] == -128                            # the nearest center to -128 that fits
    # uint8 codes spanning the full 0..255: the center is -zero and the cells hold the model's codes
    full = np.arange(256)[:, None] - zero[None, :]
    assert np.array_equal(unsigned_centers(full, np.ones_like(full, bool)), -zero)


def test_zero_offset_and_center_offset_store_8_bit_offsets():
    rng = np.random.default_rng(2)
    w = rng.integers(0, 256, (48, 6)) - np.array([0, 255, 40, 99, 128, 250])[None, :]
    mask = np.ones_like(w, bool)
    for enc in ("differential", "center_offset"):
        phi, _ = encode_block(w, mask, (4, 2, 2), enc, False)
        offsets = w - np.asarray(phi).reshape(1, -1)
        assert np.abs(offsets).max() <= 255, enc
