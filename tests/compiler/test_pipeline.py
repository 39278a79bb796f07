"""Numbers a user hands the compiler: calibration data that cannot give a range (constant, integer codes,
strings, beyond float32, misshaped) is one CompileError before any shape probing; weights, biases and scales
that cannot be represented are one error naming the node or tensor; whatever compiles runs with finite
outputs and ideal == reference, with no NumPy warning on the way."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import compiler.pipeline as pipeline
from compiler.pipeline import compile_model
from ir import CompileError, FrontendError
from isa import parse_program, print_program
from passes.reference import dequantize_outputs, run_reference
from runtime.machine import Machine

from conftest import DIGITS

MODEL = DIGITS / "digits_cnn.onnx"


def small(kind: str, W: np.ndarray, b: np.ndarray):
    """x -> Gemm or 1x1 Conv -> Relu -> Gemm: a layer whose output feeds another (requantised)."""
    shape = ["N", 8] if kind == "gemm" else ["N", 8, 3, 3]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    if kind == "gemm":
        first = [helper.make_node("Gemm", ["x", "w", "b"], ["h"])]
    else:
        first = [helper.make_node("Conv", ["x", "w4", "b"], ["h4"]), helper.make_node("Flatten", ["h4"], ["h"])]
    nodes = first + [helper.make_node("Relu", ["h"], ["r"]), helper.make_node("Gemm", ["r", "w2"], ["y"])]
    w2 = np.ones((4 if kind == "gemm" else 36, 3), np.float32)
    inits = [numpy_helper.from_array(W, "w"), numpy_helper.from_array(W.T.reshape(4, 8, 1, 1).copy(), "w4"),
             numpy_helper.from_array(b, "b"), numpy_helper.from_array(w2, "w2")]
    g = helper.make_graph(nodes, "g", [x], [y], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


EXTREME = st.sampled_from([1e30, -1e30, 3e38, -3e38, np.inf, -np.inf, np.nan, 1e-45, 1e20, -1e10, 0.0])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["gemm", "conv"]), where=st.sampled_from(["w", "b"]), value=EXTREME,
       at=st.integers(0, 3), seed=st.integers(0, 99))
def test_extreme_weights_and_biases_compile_right_or_fail_naming_the_node(kind, where, value, at, seed):
    rng = np.random.default_rng(seed)
    W, b = rng.normal(size=(8, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    (W[at] if where == "w" else b)[at] = value
    x = rng.normal(size=(6, 8) if kind == "gemm" else (6, 8, 3, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # a NumPy warning is a failure: checks name the cause instead
        try:
            c = compile_model(small(kind, W, b), "isaac", x)
        except (CompileError, FrontendError) as e:
            assert "\n" not in str(e)
            assert ("Gemm" in str(e) or "Conv" in str(e) or "tensor" in str(e)), str(e)
            return
        prog = parse_program(print_program(c.program))
        ideal = Machine(prog, ideal=True).run({"x": x})
    ref = dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))
    for k in ref:
        assert np.array_equal(ideal[k], ref[k])
        assert np.isfinite(ideal[k]).all()


@pytest.mark.parametrize("make, needle", [
    (lambda s: np.random.default_rng(0).integers(-128, 127, s).astype(np.int8), "int8 values"),
    (lambda s: np.random.default_rng(0).integers(0, 255, s).astype(np.uint8), "uint8 values"),
    (lambda s: np.full(s, "a", "<U3"), "<U3 values"),
    (lambda s: np.ones(s, np.complex64), "complex64 values"),
    (lambda s: np.ones(s, bool), "bool values"),
    (lambda s: np.random.default_rng(0).normal(size=s) * 1e39, "beyond float32"),
    (lambda s: np.ones((s[0], 3, 3)), "has shape"),
    (lambda s: np.ones((0,) + s[1:], np.float32), "samples"),
])
def test_calibration_that_gives_no_range_is_refused_before_shape_probing(monkeypatch, make, needle):
    def probe(*a, **k):
        raise AssertionError("shapes were probed before the calibration was checked")
    monkeypatch.setattr(pipeline, "import_onnx", probe)
    with pytest.raises(CompileError, match=needle):
        compile_model(MODEL, "isaac", make((4, 1, 16, 16)))


def test_a_calibration_set_of_zeros_is_refused():
    with pytest.raises(CompileError, match="zero throughout"):
        compile_model(MODEL, "isaac", np.zeros((3, 1, 16, 16), np.float32))


@pytest.mark.parametrize("value", [3.5, -1e-20])
def test_a_constant_nonzero_calibration_set_still_spans_a_range(value):
    """A constant c gives the range [min(0, c), max(0, c)]: usable (onnx's own test inputs are often ones)."""
    compile_model(MODEL, "isaac", np.full((3, 1, 16, 16), value, np.float32))


def test_calibration_values_near_float32_max_are_refused_where_they_overflow():
    x = (np.random.default_rng(0).uniform(-1, 1, size=(4, 1, 16, 16)) * 3e38).astype(np.float32)
    with pytest.raises(CompileError, match="overflows float32"):
        compile_model(MODEL, "isaac", x)


@settings(max_examples=15, deadline=None)
@given(budget=st.sampled_from([float("nan"), float("inf"), -1.0, -1e-9, 1e9]))
def test_an_error_budget_out_of_range_is_refused(budget):
    with pytest.raises(CompileError, match="error_budget"):
        compile_model(MODEL, "raella", np.load(DIGITS / "digits_calib.npy"), options={"error_budget": budget})


def test_outputs_option_compiles_the_named_outputs_only():
    """--outputs: an exporter's echo of its int64 token ids (refused: a program cannot compute it) left out by
    name; an unknown name is one CompileError listing the model's outputs."""
    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((10, 3)).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("Gather", ["w", "ids"], ["y"]), helper.make_node("Identity", ["ids"], ["echo"])],
                          "echo", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 4])],
                          [helper.make_tensor_value_info("echo", TensorProto.INT64, ["N", 4]),
                           helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 3])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    ids = np.random.default_rng(0).integers(0, 10, (8, 4))
    with pytest.raises(FrontendError, match=r"^output echo is computed from the integer inputs alone .* \(leave it "
                                            r"out: --outputs\)"):
        compile_model(m, "isaac", ids)
    c = compile_model(m, "isaac", ids, {"outputs": "y"})
    assert c.graph.output_names == ["y"] and [o.name for o in m.graph.output] == ["echo", "y"]
    with pytest.raises(CompileError, match=r"^outputs 'z': z not among the model's outputs \(echo, y\)"):
        compile_model(m, "isaac", ids, {"outputs": "z"})
