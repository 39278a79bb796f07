"""Partial weight reuse (ARAS sec. V-C): cells and pulses against a direct loop, the exact zero-point fold, the pass."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from backend.lower import lower_graph
from compiler.pipeline import compile_model
from ir import CompileError
from isa import load_target, print_program
from passes.aras_reuse import (CENTERS, WeightReuse, apply_shift, rewrite_cost, shift_codes,
                               steady_costs)
from passes.manager import Context
from passes.reference import dequantize_outputs, run_reference
from runtime.machine import Machine
from tests.compiler.cnn_blocks import Net
from tests.conftest import digits_compiled


@pytest.mark.parametrize("slices", [(2, 2, 2, 2), (4, 4), (1,) * 8, (3, 3, 2)])
def test_rewrite_cost_matches_a_loop_over_cells(slices):
    rng = np.random.default_rng(len(slices))
    old = rng.integers(0, 256, (7, 5))
    new = np.where(rng.random((7, 5)) < 0.3, old, rng.integers(0, 256, (7, 5)))
    mask = rng.random((7, 5)) < 0.8
    cells = changed = pulses = 0
    for o, n in zip(old[mask], new[mask]):
        top = 8
        for w in slices:                       # most significant cell first
            top -= w
            lo, hi = (int(o) >> top) % (1 << w), (int(n) >> top) % (1 << w)
            cells += 1
            changed += lo != hi
            pulses += abs(hi - lo)
    got = rewrite_cost(old, new, slices, mask)
    assert (got.cells, got.changed, got.pulses) == (cells, changed, pulses)
    assert got.skipped == cells - changed
    assert rewrite_cost(old, old, slices).pulses == 0


def test_steady_state_costs_count_what_the_previous_writes_left():
    a = np.array([[1, 2], [3, 0]])
    b = np.arange(9).reshape(3, 3) % 4
    imgs = {("A", 0): (a, np.ones((2, 2), bool)), ("B", 0): (b, np.ones((3, 3), bool))}
    costs = steady_costs([(0, "A", 0), (0, "B", 0)], lambda n, j: imgs[n, j], (4, 4))
    # A overwrites B's top-left 2x2; B overwrites A there and finds its own levels everywhere else
    d = np.abs(a - b[:2, :2])
    assert (costs["A"].cells, costs["A"].pulses, costs["A"].changed) == (4, d.sum(), np.count_nonzero(d))
    assert (costs["B"].cells, costs["B"].pulses, costs["B"].changed) == (9, d.sum(), np.count_nonzero(d))


def _model_with_nonnegative_conv():
    """conv -> relu -> conv whose weights are all >= 0 (codes 128..255: a shift down clips nothing) -> head."""
    n = Net("reuse", c=2, hw=8, seed=7)
    x = n.act(n.conv("x", 6))
    w = np.abs(n.rng.normal(0, 0.3, (8, 6, 3, 3))).astype(np.float32)
    x = n.act(n.node("Conv", [x, n.const(w, "w"), n.const(np.zeros(8, np.float32), "b")], ch=8,
                     kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    return n.model(n.head(x))


def test_unclipped_shift_is_bit_exact_and_moves_the_stored_codes():
    rng = np.random.default_rng(8)
    calib = rng.uniform(-1, 1, (16, 2, 8, 8)).astype(np.float32)
    x = rng.uniform(-1, 1, (12, 2, 8, 8)).astype(np.float32)
    c = compile_model(_model_with_nonnegative_conv(), "aras", calib)
    before = run_reference(c.graph, {"x": x})
    g = copy.deepcopy(c.graph)
    op = [o for o in g.topo() if o.kind == "conv"][1]
    codes = op.attrs["q"]["w"].astype(np.int64) + 128
    assert codes.min() >= 128 and shift_codes(codes, -40)[1] == 0
    apply_shift(op, -40, flip=True)
    after = run_reference(g, {"x": x})
    assert all(np.array_equal(before[k], after[k]) for k in before)
    p = lower_graph(g, load_target("aras"))
    writes = [i for i in p.code if i.op == "xbwrite" and i.attr("layer") == op.name]
    assert writes and all(i.attr("center") == -128 + 40 for i in writes)
    y = Machine(p, ideal=True).run({"x": x})
    y0 = Machine(c.program, ideal=True).run({"x": x})
    assert all(np.array_equal(y[k], y0[k]) for k in y0)


@pytest.fixture(scope="module")
def digits_graph():
    return digits_compiled("aras").graph


def _reuse(graph, **kw):
    g = copy.deepcopy(graph)
    return g, WeightReuse(**kw).run(g, Context(target=load_target("aras")))


def test_pass_reports_clipping_and_stays_exact_with_it(digits_graph, digits_test):
    g, rep = _reuse(digits_graph, max_clip=1.0, slots=4)
    first = [o for o in digits_graph.topo() if o.kind in ("conv", "linear")][0].name
    assert rep.layers[first].delta == 0 and rep.center in CENTERS
    shifted = [n for n, lr in rep.layers.items() if lr.delta]
    assert shifted and rep.clipped > 0
    for name in shifted:
        lr = rep.layers[name]
        codes = digits_graph.ops[name].attrs["q"]["w"].astype(np.int64) + 128 + lr.delta
        assert lr.clipped == np.count_nonzero((codes < 0) | (codes > 255)) and lr.center == rep.center
        assert g.ops[name].attrs["enc"]["xbars"][0]["center"] == -128 - lr.delta
    assert rep.pulses_before == sum(lr.pulses_before for lr in rep.layers.values())
    x = digits_test[0][:64]
    p = lower_graph(g, load_target("aras"))
    out = Machine(p, ideal=True).run({"image": x})["logits"]
    ref = run_reference(g, {"image": x})
    assert np.array_equal(out, dequantize_outputs(g, ref)["logits"])


def test_the_chosen_center_skips_the_most_cells(digits_graph):
    _, rep = _reuse(digits_graph, max_clip=1.0, slots=4)
    chosen = sum(lr.skipped_after for lr in rep.layers.values())
    assert chosen >= sum(lr.skipped_before for lr in rep.layers.values())
    assert rep.pulses_after <= rep.pulses_before
    for c in CENTERS:
        _, one = _reuse(digits_graph, centers=(c,), max_clip=1.0, slots=4)
        if one.pulses_after <= rep.pulses_before:      # candidates that save no pulses are not taken
            assert sum(lr.skipped_after for lr in one.layers.values()) <= chosen
    # a clip budget of zero shifts nothing here: every layer has weights at both ends of int8
    _, none = _reuse(digits_graph, max_clip=0.0, slots=4)
    assert none.center is None and none.pulses_after == none.pulses_before and none.clipped == 0


def test_deterministic_and_needs_the_unsigned_encoding(digits_graph):
    t = load_target("aras")
    texts = [print_program(lower_graph(_reuse(digits_graph, max_clip=0.05, slots=4)[0], t)) for _ in range(2)]
    assert texts[0] == texts[1]
    g = copy.deepcopy(digits_graph)
    last = [o for o in g.topo() if o.kind in ("conv", "linear")][-1]
    last.attrs["enc"]["encoding"] = "differential"
    with pytest.raises(CompileError, match=f"node {last.name}: .* needs the unsigned encoding"):
        _reuse(g)


def _reuse_on_data(graph, calib, **kw):
    g = copy.deepcopy(graph)
    return g, WeightReuse(**kw).run(g, Context(target=load_target("aras"), calib={"image": calib}))


def test_candidates_are_measured_on_held_apart_samples_and_chosen_within_the_loss_budget(digits_graph, digits_test):
    """A5: every candidate's output loss is the program's own (the quantised reference with its shifts against
    none), on the last quarter of the calibration set; the chosen one is within the budget, and of those the
    most skipped cells."""
    calib = digits_test[0][:64]
    held = calib[48:]
    g, rep = _reuse_on_data(digits_graph, calib, max_clip=1.0, slots=4, loss_budget=0.09)
    assert rep.held_apart == 16 and len(rep.candidates) == 1 + len(CENTERS)
    assert rep.candidates[0].center is None and rep.candidates[0].loss == 0.0
    base = dequantize_outputs(digits_graph, run_reference(digits_graph, {"image": held}))["logits"]
    for cand in rep.candidates[1:]:         # recompute one candidate's loss directly
        if cand.clipped:
            one = copy.deepcopy(digits_graph)
            WeightReuse(centers=(cand.center,), max_clip=1.0, slots=4, loss_budget=1e9).run(
                one, Context(target=load_target("aras"), calib={"image": calib}))
            y = dequantize_outputs(one, run_reference(one, {"image": held}))["logits"]
            want = np.linalg.norm(y.astype(np.float64) - base) / np.linalg.norm(base.astype(np.float64))
            assert cand.loss == cand.output_error == pytest.approx(want, rel=1e-9)
            assert cand.top1_changed == pytest.approx(np.mean(y.argmax(1) != base.argmax(1)))
            break
    else:
        pytest.fail("no candidate clipped anything")
    ok = [c for c in rep.candidates if c.loss <= 0.09 and c.pulses <= rep.candidates[0].pulses]
    assert rep.center == max(ok, key=lambda c: (c.skipped, -c.loss)).center
    assert rep.center is not None and any(c.loss > 0.09 for c in rep.candidates)
    layer = next(lr for lr in rep.layers.values() if lr.delta)
    assert set(layer.candidates) == set(CENTERS)
    assert all(0 <= v["skip_ratio"] <= 1 and v["layer_error"] >= 0 for v in layer.candidates.values())
    assert any(v["clipped"] and v["layer_error"] > 0 for v in layer.candidates.values())


def test_a_zero_loss_budget_takes_only_a_center_that_changes_no_output(digits_graph, digits_test):
    _, rep = _reuse_on_data(digits_graph, digits_test[0][:64], max_clip=1.0, slots=4, loss_budget=0.0)
    chosen = next(c for c in rep.candidates if c.center == rep.center)
    assert chosen.loss == 0.0


def test_weights_with_a_zero_point_are_shifted_exactly_around_their_own_centers(digits_test):
    """--weights asymmetric: each filter's stored codes are its own 8-bit codes (per-filter centers, the zero
    point); the shift moves those codes and every filter's center, and the program still equals its reference."""
    from passes.aras_reuse import center_matrix
    d = Path(__file__).resolve().parents[2] / "examples" / "digits"
    c = compile_model(d / "digits_cnn.onnx", "aras", np.load(d / "digits_calib.npy"), {"weights": "asymmetric"})
    g, rep = _reuse(c.graph, max_clip=1.0, slots=4)
    shifted = [n for n, lr in rep.layers.items() if lr.delta]
    assert shifted and rep.center in CENTERS
    for name in shifted:
        before, after, lr = c.graph.ops[name], g.ops[name], rep.layers[name]
        assert np.ndim(before.attrs["enc"]["xbars"][0]["center"]) == 1      # per filter: a zero point each
        for e0, e1 in zip(before.attrs["enc"]["xbars"], after.attrs["enc"]["xbars"]):
            assert np.array_equal(np.asarray(e1["center"]), np.asarray(e0["center"]) - lr.delta)
        stored = before.attrs["wm"] - center_matrix(before) + lr.delta
        assert lr.clipped == np.count_nonzero((stored < 0) | (stored > 255))
        assert abs(float(np.mean(stored)) - rep.center) <= 0.5       # the mean before clipping
    x = digits_test[0][:32]
    p = lower_graph(g, load_target("aras"))
    out = Machine(p, ideal=True).run({"image": x})["logits"]
    assert np.array_equal(out, dequantize_outputs(g, run_reference(g, {"image": x}))["logits"])
