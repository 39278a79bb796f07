"""The compiled kernel (runtime/xbar_kernels.py) against crossbar.mvm's NumPy reference, bit for bit: outputs
and every event, over encodings, slicings, ADCs, speculation, histograms, noise and block-diagonal crossbars."""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import crossbar as X
from runtime.io import _default
from runtime.machine import Machine
from tests.conftest import digits_compiled

from tests.runtime.test_crossbar import _xbar


MODES = ["numpy", "gemm", "planes"]      # the NumPy reference, then each compiled path


def _both(xb, x, *args, **kw):
    res = []
    try:
        for mode in MODES:
            os.environ["PIMC_XBAR"] = mode
            out, ev = X.mvm(xb, x, *args, **kw)
            res.append((out, dataclasses.asdict(ev)))
    finally:
        os.environ.pop("PIMC_XBAR")
    return res


def _same(res):
    (a, ea), *others = res
    ha = ea.pop("hist")
    for b, eb in others:
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
        hb = eb.pop("hist")
        assert ea == eb
        assert (ha is None and hb is None) or np.array_equal(ha, hb)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 140), st.integers(1, 24), st.sampled_from(["unsigned", "differential", "center"]),
       st.sampled_from([(2, 2, 2, 2), (4, 2, 2), (1,) * 8, (3, 1, 2, 2), (4, 4)]), st.booleans(),
       st.sampled_from([(1,) * 8, (4, 2, 2), (4, 4), (2, 2, 2, 2)]), st.sampled_from([0, 1, 2]),
       st.sampled_from([None, (-64, 63), (0, 255), (-20, 20)]), st.booleans(), st.sampled_from([0.0, 0.05, 0.3]),
       st.integers(0, 2 ** 31), st.sampled_from([1, 2]))
def test_kernel_equals_reference(rows, n, enc, slices, flip, islices, recover, adc, hist, e, seed,
                                 groups):
    rng = np.random.default_rng(seed)
    rows, n = rows * groups, n * groups
    lo = -127 if enc != "unsigned" else -128
    w = rng.integers(lo, 128, size=(rows, n))
    center = None
    if enc == "center":                       # Center+Offset: offsets around a per-filter center
        enc, center = "differential", rng.integers(-60, 60, n)
        w = np.clip(w // 2 + center, -128, 127)
    xb = _xbar(w, enc, slices, flip and enc == "unsigned", center, groups)
    x = rng.integers(0, 256, size=(37, rows)).astype(np.uint8)
    x[rng.random(x.shape) < 0.4] = 0          # zero codes skip their rows in the kernel
    x[rng.random(x.shape) < 0.1] = 255
    recover = recover if adc is not None else 0
    kw = dict(hist_range=(-70, 300) if hist else None, sliced=True, recover=recover,
              noise=X.Noise(e, seed, row0=seed % 1000) if e else None)
    _same(_both(xb, x, islices, adc, **kw))
    if adc is not None and not hist and not e:      # only the columns that can reach a bound
        _same(_both(xb, x, islices, adc, recover=recover))


@pytest.mark.parametrize("target", ["isaac", "raella", "aras"])
def test_kernel_equals_reference_on_a_program(monkeypatch, digits_test, target):
    """A whole program (digits CNN, 12 images): outputs and the stats JSON, with noise and a histogram."""
    prog, x = digits_compiled(target).program, digits_test[0]
    outs = []
    for mode in MODES:
        monkeypatch.setenv("PIMC_XBAR", mode)
        m = Machine(prog, hist_range=(-64, 255), noise=0.05, seed=3)
        y = m.run({"image": x[:12]}, chunk=5)["logits"]
        outs.append((y.tobytes(), json.dumps(m.stats.to_json(), default=_default), str(m.stats.histogram())))
    assert all(o == outs[0] for o in outs[1:])


@pytest.mark.parametrize("noise", [None, 0.2])
@pytest.mark.parametrize("spread", [20, 3])
def test_many_blocks_over_threads(noise, spread):
    """Enough rows for the GEMM path's row blocks to spread over the threads, columns failing often enough
    for both of its recovery forms (dot products and row planes), with and without noise; small codes
    (spread 3) leave the high input slice zero on most rows of a block."""
    rng = np.random.default_rng(5)
    w = rng.integers(-100, 100, size=(300, 50))
    xb = _xbar(w, "differential", (4, 2, 2), False, None, 1)
    x = np.abs(rng.normal(0, spread, size=(3000, 300))).astype(np.uint8)
    x[rng.random(x.shape) < 0.5] = 0
    kw = dict(recover=1, noise=X.Noise(noise, 7, row0=11) if noise else None)
    _same(_both(xb, x, (4, 2, 2), (-64, 63), **kw))


def test_read_only_codes():
    """Codes the caller cannot write to (a memory-mapped input, a broadcast view) run as any others."""
    rng = np.random.default_rng(2)
    xb = _xbar(rng.integers(-100, 100, size=(40, 6)), "differential", (4, 2, 2), False, None, 1)
    x = rng.integers(0, 256, size=(9, 40)).astype(np.uint8)
    ro = x.copy()
    ro.flags.writeable = False
    for mode in ("gemm", "planes"):
        os.environ["PIMC_XBAR"] = mode
        try:
            assert np.array_equal(X.mvm(xb, ro, (4, 2, 2), (-64, 63), recover=1)[0],
                                  X.mvm(xb, x, (4, 2, 2), (-64, 63), recover=1)[0])
        finally:
            os.environ.pop("PIMC_XBAR")
