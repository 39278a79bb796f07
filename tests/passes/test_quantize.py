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


# ---- weights whose bias would not fit the accumulator ----------------------------------------------------------

def _linear(W, b):
    from ir import Graph, Tensor
    g = Graph()
    g.add_tensor(Tensor("x", (W.shape[0],)))
    g.add_tensor(Tensor("y", (W.shape[1],)))
    op = g.add_op("linear", "fc", ["x", g.const("W", W), g.const("b", b)], ["y"])
    return g, op


def test_a_near_zero_channel_with_a_large_bias_gets_a_coarser_scale():
    """BatchNorm folded into near-zero weights: channel 1's bias would need 2^40 codes at max|w| / 127; its scale
    grows until |bias| <= 2^30, the others keep max|w| / 127, and the report says what it cost."""
    from passes.quantize import BIAS_LIMIT, QuantizeReport, quantise_weights
    rng = np.random.default_rng(0)
    W = rng.normal(0, 0.3, (64, 4))
    W[:, 1] *= 1e-9
    W[:, 3] = 0.0                                       # an all-zero channel with a bias far beyond 2^31 codes
    b = np.array([0.2, 2.5, -0.1, -7e6])
    sx = 1 / 255
    rep = QuantizeReport()
    wi, sw, bias = quantise_weights(_linear(W, b)[1], _linear(W, b)[0], sx, rep)
    amax = np.abs(W).max(0)
    assert np.array_equal(sw[[0, 2]], amax[[0, 2]] / 127)
    assert np.abs(bias).max() <= BIAS_LIMIT and abs(bias[1]) >= BIAS_LIMIT - 1
    assert sw[1] == pytest.approx(2.5 / (sx * (BIAS_LIMIT - 1)), rel=1e-12)
    assert np.all(wi[:, 3] == 0) and bias[3] * sx * sw[3] == pytest.approx(-7e6, rel=1e-9)
    r = rep.raised_scales["fc"]
    assert r["channels"] == [1] and r["bias"] == [2.5]       # the all-zero channel lost nothing: not listed
    assert r["scale_factor"][0] == pytest.approx(sw[1] / (amax[1] / 127), rel=1e-12)
    assert r["weight_rms_error"][0] == pytest.approx(np.sqrt(np.mean((wi[:, 1] * sw[1] - W[:, 1]) ** 2)) / amax[1])
    # the bound on the pre-activation change holds for any input on the grid
    x = rng.integers(0, 256, (500, 64)) * sx
    err = np.abs(x @ (wi[:, 1] * sw[1] - W[:, 1]) + bias[1] * sx * sw[1] - b[1])
    assert err.max() <= r["output_error_bound"][0] <= 2.5 * 64 * 2.0 ** -23


def test_ordinary_weights_are_not_raised():
    from passes.quantize import QuantizeReport, quantise_weights
    W = np.random.default_rng(1).normal(0, 0.3, (16, 8))
    g, op = _linear(W, np.full(8, 3.0))
    rep = QuantizeReport()
    _, sw, _ = quantise_weights(op, g, 1 / 255, rep)
    assert np.array_equal(sw, np.abs(W).max(0) / 127) and rep.raised_scales == {}


# ---- an output that concatenates parts of very different ranges -------------------------------------------------

def _two_heads():
    """x [N, 3, 8, 8] -> conv 4 -> relu -> (conv 2 x 100: box-like values in the hundreds, conv 3 -> sigmoid:
    scores in [0, 1]) -> Concat(axis 1) -> y [N, 5, 8, 8], YOLOv8's head in small (found on nudenet's
    YOLOv8n, whose class scores one 8-bit scale for the whole output rounded to 0)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(4)
    f = lambda *s: (rng.standard_normal(s) / np.sqrt(np.prod(s[1:]))).astype(np.float32)   # noqa: E731
    inits = [numpy_helper.from_array(f(4, 3, 3, 3), "w1"), numpy_helper.from_array(f(2, 4, 1, 1) * 100, "wb"),
             numpy_helper.from_array(f(3, 4, 1, 1), "ws")]
    N = helper.make_node
    graph = helper.make_graph(
        [N("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]), N("Relu", ["c"], ["r"]), N("Conv", ["r", "wb"], ["box"]),
         N("Conv", ["r", "ws"], ["s"]), N("Sigmoid", ["s"], ["score"]), N("Concat", ["box", "score"], ["y"], axis=1)],
        "heads", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("target", ["isaac", "raella"])
def test_an_output_concat_keeps_each_parts_scale(target):
    """The scores keep their own scale: each within 1/255 of onnxruntime's plus the upstream error (< 0.03; one
    scale for the whole output, 1.6 here, left errors up to 0.79); the ideal machine equals the quantised
    reference bit for bit; the output carries one scale and zero per channel."""
    import onnxruntime as ort
    from compiler.pipeline import compile_model
    from isa import parse_program, print_program
    from passes.reference import dequantize_outputs, run_reference
    from runtime.machine import Machine
    m = _two_heads()
    rng = np.random.default_rng(5)
    c = compile_model(m, target, rng.standard_normal((16, 3, 8, 8)).astype(np.float32))
    t = c.graph.tensors[c.graph.outputs[0]]
    assert np.ndim(t.scale) == 1 and len(t.scale) == 5 and t.scale[0] > 100 * t.scale[4]
    x = rng.standard_normal((6, 3, 8, 8)).astype(np.float32)
    ref = dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))["y"]
    out = Machine(parse_program(print_program(c.program)), ideal=True).run({"x": x})["y"]
    assert np.array_equal(out, ref)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(ref[:, 2:] - want[:, 2:]).max() < 0.03
    assert np.abs(ref[:, :2] - want[:, :2]).max() < 0.03 * np.abs(want[:, :2]).max()


@pytest.mark.parametrize("target,encoding", [("isaac", None), ("raella", None), ("raella", "differential")])
def test_asymmetric_weights_keep_a_zero_point_per_channel_and_stay_bit_exact(target, encoding, digits_test):
    """--weights asymmetric (R0): each output channel's codes are code - zero with code in 0..255 (so a span of
    at most 255) on a scale over the channel's range; the weights' rms error falls against symmetric codes, and
    every encoding stores them so that ideal equals the quantised reference bit for bit."""
    from compiler.pipeline import compile_model
    from passes.reference import dequantize_outputs, run_reference
    from runtime.machine import Machine
    from tests.conftest import DIGITS
    calib, x = np.load(DIGITS / "digits_calib.npy"), digits_test[0][:64]
    opts = {"encoding": encoding} if encoding else {}
    sym = compile_model(DIGITS / "digits_cnn.onnx", target, calib, opts)
    asym = compile_model(DIGITS / "digits_cnn.onnx", target, calib, opts | {"weights": "asymmetric"})
    wide = 0
    for op in asym.graph.topo():
        if op.kind in ("conv", "linear"):
            w = op.attrs["q"]["w"].astype(np.int64)
            rows = w.reshape(w.shape[0], -1) if op.kind == "conv" else w.T
            assert np.all(rows.max(1) - rows.min(1) <= 255) and np.abs(w).max() <= 255
            wide += int(np.abs(w).max() > 127)
    assert wide > 0                 # codes beyond int8's: the zero points are real
    err = [next(r.report for r in c.records if r.name == "quantize").weight_rms_error for c in (sym, asym)]
    assert np.mean(list(err[1].values())) < np.mean(list(err[0].values()))
    ideal = Machine(asym.program, ideal=True).run({"image": x})["logits"]
    assert np.array_equal(ideal, dequantize_outputs(asym.graph, run_reference(asym.graph, {"image": x}))["logits"])
    assert np.mean(ideal.argmax(1) == digits_test[1][:64]) >= 0.95
