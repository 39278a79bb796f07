"""Adaptive Weight Slicing (RAELLA sec. 4.2, Algorithm 1): the 108 slicings, the order and stop rule, the digits CNN."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.pipeline import compile_model
from isa import load_target
from passes.reference import dequantize_outputs, run_reference
from passes.slicing import choose, slicings
from runtime.machine import Machine
from tests.conftest import DIGITS


def test_there_are_108_slicings_fewest_slices_first():
    s = slicings()
    assert len(s) == 108 and len(set(s)) == 108
    assert all(sum(c) == 8 and all(1 <= w <= 4 for w in c) for c in s)
    assert [len(c) for c in s] == sorted(len(c) for c in s)
    assert s[0] == (4, 4) and s[-1] == (1,) * 8
    assert len(slicings(max_width=2)) == 34        # compositions of 8 into 1s and 2s: Fibonacci(9)


def test_stop_at_the_first_slice_count_that_passes_and_take_its_lowest_error():
    cands = slicings()
    errors = {c: 1.0 for c in cands}
    errors[(4, 2, 2)] = 0.08
    errors[(2, 2, 4)] = 0.05
    errors[(2, 2, 2, 2)] = 0.0                     # better, but it has more slices
    seen = []

    def err(group):
        assert len({len(c) for c in group}) == 1, "one slice count at a time"
        seen.extend(group)
        return [errors[c] for c in group]
    e, s, tried = choose(err, cands, 0.09)
    assert (e, s) == (0.05, (2, 2, 4))
    assert tried == len([c for c in cands if len(c) <= 3]) == len(seen)
    assert all(len(c) <= 3 for c in seen)


def test_nothing_passes_gives_eight_one_bit_slices():
    e, s, tried = choose(lambda group: [1.0] * len(group), slicings(), 0.09)
    assert (e, s, tried) == (None, (1,) * 8, 108)


def test_digits_adaptive_slicing_is_within_budget_and_exact(digits_test):
    x, y = digits_test
    c = compile_model(DIGITS / "digits_cnn.onnx", load_target("raella").replace(encoding="center_offset"),
                      np.load(DIGITS / "digits_calib.npy"), options={"slicing": "adaptive"})
    rep = next(r.report for r in c.records if r.name == "slicing")
    layers = list(rep.layers.values())
    assert layers[-1]["slices"] == [1] * 8
    assert all(v["error"] < 0.09 for v in layers[:-1])
    assert any(len(v["slices"]) < 4 for v in layers)
    ref = dequantize_outputs(c.graph, run_reference(c.graph, {"image": x}))["logits"]
    assert np.array_equal(Machine(c.program, ideal=True).run({"image": x})["logits"], ref)
    acc = np.mean(Machine(c.program).run({"image": x})["logits"].argmax(1) == y)
    assert acc >= 0.985


def test_forced_slicing_applies_to_every_layer(digits_test):
    x, _ = digits_test
    for slicing in [(4, 2, 2), (1, 3, 4), (2,) * 4]:
        c = compile_model(DIGITS / "digits_cnn.onnx", "raella", np.load(DIGITS / "digits_calib.npy"),
                          options={"slicing": slicing})
        writes = [i for i in c.program.code if i.op == "xbwrite"]
        assert writes and all(i.attr("slices") == slicing for i in writes)
        ref = dequantize_outputs(c.graph, run_reference(c.graph, {"image": x[:64]}))["logits"]
        assert np.array_equal(Machine(c.program, ideal=True).run({"image": x[:64]})["logits"], ref)


def test_exact_outputs_equal_the_ideal_crossbars_on_a_grouped_layer():
    """The reference adaptive slicing measures a float32-output layer against: the plain integer product on
    the output's 8-bit grid, which an ideal ADC's sliced crossbars must reproduce (grouped: one block per head)."""
    from ir import Op
    from isa import load_target
    from passes.quantize import fixed_point_vec
    from passes.slicing import exact_outputs, simulate_layer
    rng = np.random.default_rng(3)
    t = load_target("raella")
    w = np.clip(np.rint(rng.normal(0, 40, (16, 3 * 24))), -127, 127).astype(np.int16)     # 3 groups of 16 rows
    op = Op("g", "linear", ["x", "w"], ["y"], {"group": 3})
    mult, shift = fixed_point_vec(np.full(72, 0.002))
    op.attrs["q"] = dict(w=w, bias=rng.integers(-500, 500, 72), zx=120, mult=mult, shift=shift, zy=100, lo=0, hi=255)
    op.attrs["signed_input"] = True
    x = rng.integers(0, 256, (40, 48)).astype(np.uint8)
    got = exact_outputs(op, x)
    assert got.std() > 5                       # a grid that actually resolves the outputs
    for enc in ("center_offset", "differential"):
        assert np.array_equal(simulate_layer(op, x, (4, 2, 2), t, enc, ideal=True)[0], got)


def test_sampled_filters_and_groups_judge_the_same_outputs():
    """A wide or grouped layer is judged on a subset of its filters: the subset's exact outputs are the
    full layer's outputs at those filters (so the error is the same quantity, over fewer outputs)."""
    from ir import Op
    from passes.quantize import fixed_point_vec
    from passes.slicing import MAX_TRIAL_FILTERS, exact_outputs, sample_filters
    rng = np.random.default_rng(5)
    for groups, kg, n in ((1, 20, MAX_TRIAL_FILTERS + 50), (6, 10, 6 * 7)):
        w = rng.integers(-127, 128, (kg, n)).astype(np.int16)
        mult, shift = fixed_point_vec(np.full(n, 0.003))
        op = Op("l", "linear", ["x", "w"], ["y"], {"group": groups})
        op.attrs["q"] = dict(w=w, bias=rng.integers(-99, 99, n), zx=7, mult=mult, shift=shift, zy=3, lo=0, hi=255)
        x = rng.integers(0, 256, (30, groups * kg)).astype(np.uint8)
        trial, cols, rows = sample_filters(op)
        assert trial.attrs["q"]["w"].shape[1] < n
        assert np.array_equal(exact_outputs(trial, x[:, rows]), exact_outputs(op, x)[:, cols])


@pytest.mark.parametrize("enc,flip,signed", [("center_offset", False, False), ("center_offset", False, True),
                                             ("differential", False, False), ("unsigned", True, False),
                                             ("unsigned", False, True)])
def test_layer_simulation_equals_the_runtime_mvm_block_by_block(enc, flip, signed):
    """simulate_layer's own crossbar arithmetic (input slices made once per layer, no event counts) gives
    what the runtime's X.mvm gives crossbar by crossbar, saturation included: same outputs, same count."""
    from dataclasses import replace

    from ir import Op
    from passes.encoding import encode_block
    from passes.quantize import fixed_point_vec
    from passes.slicing import layer_blocks, simulate_layer
    from runtime import crossbar as X
    from runtime import kernels as K
    rng = np.random.default_rng(7)
    t = replace(load_target("raella"), rows=128, cols=40, flip=flip)          # several blocks each way
    w = np.clip(np.rint(rng.normal(5, 60, (300, 30))), -127, 127).astype(np.int16)
    op = Op("l", "linear", ["x", "w"], ["y"], {})
    mult, shift = fixed_point_vec(np.full(30, 0.0005))
    op.attrs["q"] = dict(w=w, bias=rng.integers(-500, 500, 30), zx=90, mult=mult, shift=shift, zy=10, lo=0, hi=255)
    op.attrs["signed_input"] = signed
    x = rng.integers(0, 256, (64, 300)).astype(np.uint8)
    for slices in [(4, 4), (4, 2, 2), (1, 3, 2, 2), (8,)]:      # (8,): int16 levels
        got, sat = simulate_layer(op, x, slices, t, enc)
        lb = layer_blocks(op, t, len(slices))
        parts = [x] if not signed else [np.maximum(x.astype(np.int16) - 90, 0).astype(np.uint8),
                                        np.maximum(90 - x.astype(np.int16), 0).astype(np.uint8)]
        acc, want_sat = np.zeros((64, 30)), 0
        for rows, cols, mask, wb, _, _ in lb.blocks:
            phi, flips = encode_block(wb, mask, slices, enc, t.flip)
            xb = X.program("l", lb.wm, rows, cols, lb.kg, lb.ng, enc, phi, slices, flips)
            for sign, p in zip((1, -1), parts):
                out, ev = X.mvm(xb, p[:, rows[0]:rows[1]], (1,) * 8, t.adc_range)
                acc[:, cols[0]:cols[1]] += sign * out
                want_sat += ev.saturated
        acc += op.attrs["q"]["bias"] - (0 if signed else 90) * lb.wm.astype(np.int64).sum(axis=0)
        q = op.attrs["q"]
        assert want_sat > 0
        assert sat == want_sat
        assert np.array_equal(got, K.requant(acc, q["mult"], q["shift"], q["zy"], q["lo"], q["hi"]))


@pytest.mark.parametrize("budget", [0.09, 0.5, 1e-9])
def test_pruned_trials_choose_what_every_full_error_chooses(budget):
    """trial_errors proves slicings out on their first rows; choose over its errors picks the slicing and error
    that choose over every slicing's full error (simulate_slicings, output_error) picks, and each error it
    does report is the full one. Several slice counts, one saturating layer, several budgets."""
    from dataclasses import replace

    from ir import Op
    from passes.quantize import fixed_point_vec
    from passes.slicing import output_error, simulate_slicings, trial_errors
    rng = np.random.default_rng(3)
    t = replace(load_target("raella"), rows=128, cols=64)
    w = np.clip(np.rint(rng.normal(3, 50, (200, 24))), -127, 127).astype(np.int16)
    op = Op("l", "linear", ["x", "w"], ["y"], {})
    mult, shift = fixed_point_vec(np.full(24, 0.0004))
    op.attrs["q"] = dict(w=w, bias=rng.integers(-300, 300, 24), zx=0, mult=mult, shift=shift, zy=0, lo=0, hi=255)
    x = rng.integers(0, 256, (97, 200)).astype(np.uint8)
    ref = simulate_slicings(op, x, [(1,) * 8], t, "center_offset", ideal=True)[0][0]
    cands = [c for c in slicings() if len(c) <= 3]
    full = {c: output_error(simulate_slicings(op, x, [c], t, "center_offset")[0][0], ref) for c in cands}
    assert len(set(full.values())) > 3                    # the layer saturates: the slicings differ
    cache: dict = {}
    got = {}

    def pruned(group):
        errs = trial_errors(op, x, ref, group, t, "center_offset", budget, cache)
        got.update(zip(group, errs))
        return errs
    assert choose(pruned, cands, budget) == choose(lambda g: [full[c] for c in g], cands, budget)
    assert all(e == full[c] for c, e in got.items() if np.isfinite(e))
    assert any(not np.isfinite(e) for e in got.values())  # something was proved out early


def test_clip_kernel_equals_the_numpy_reference(monkeypatch):
    """slicing_kernel.apply_clips against _apply_clips's NumPy path: the same counts and corrections, bit for
    bit, on sums that clip at both bounds, with flipped (negative) factors and several slicings."""
    from passes import slicing as S
    rng = np.random.default_rng(5)
    nI, m, K, n, nk = 8, 37, 90, 41, 4
    s = rng.integers(-90, 90, (nI * m, K)).astype(np.float32)
    col_k = np.sort(rng.integers(0, nk, K))
    col_f = np.concatenate([rng.permutation(n)[:c] for c in np.bincount(col_k, minlength=nk)])
    assert len(col_f) == K                                # each slicing's columns reach distinct filters
    coef = rng.choice([-16.0, 1.0, 4.0, -64.0], K)
    coef = np.array([coef[np.nonzero(col_k == col_k[i])[0][0]] for i in range(K)])   # one factor per slicing
    ish = 2.0 ** np.arange(nI)[::-1]
    got, want = np.zeros((nk, m, n)), np.zeros((nk, m, n))
    assert S._kernel() is not None
    c1 = S._apply_clips(s, nI, -64, 63, ish, col_k, col_f, coef, got)
    monkeypatch.setenv("PIMC_XBAR", "numpy")
    c2 = S._apply_clips(s, nI, -64, 63, ish, col_k, col_f, coef, want)
    assert c1.sum() > 0 and np.array_equal(c1, c2)
    assert np.array_equal(got, want)
