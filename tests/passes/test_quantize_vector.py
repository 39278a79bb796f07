"""--vector auto's choice (passes/quantize_vector.wants_vector): a float model with no crossbar or matrix op
runs on the float32 vector unit, where 8-bit codes would only lose what its ops need (a value on a
threshold, a softmax row far above another); one with a crossbar op, one whose ops lack a float form, or
one that states its own quantisation keeps the integer form."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.pipeline import compile_model
from isa import parse_program, print_program
from passes.reference import dequantize_outputs, run_reference
from runtime.machine import Machine

N = helper.make_node


def _model(nodes, inits=(), shape=("N", 4)) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run(m, x, calib=None):
    """(vector form of the quantize pass, ideal output, onnxruntime's output); ideal equals the reference."""
    c = compile_model(m, "isaac", x if calib is None else calib)
    (rec,) = [r for r in c.records if r.name == "quantize"]
    ideal = Machine(parse_program(print_program(c.program)), ideal=True).run({"x": x})["y"]
    ref = dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))["y"]
    assert np.array_equal(ideal, ref)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    return rec.report.vector, ideal, want


def test_a_threshold_on_a_value_runs_exactly_in_float32():
    # 2.0 lies on the threshold: ThresholdedRelu gives 0 there, which an 8-bit code of 2.0 could not promise
    x = np.array([[-1.0, 0.0, 2.0, 3.5]], np.float32)
    vector, ideal, want = _run(_model([N("ThresholdedRelu", ["x"], ["y"], alpha=2.0)]), x)
    assert vector == "fp32"
    assert np.array_equal(ideal, want) and ideal[0, 2] == 0


def test_a_softmax_row_far_above_another_keeps_its_spread():
    x = np.array([[0.0, 1.0, 2.0, 3.0], [10000.0, 10001.0, 10002.0, 10003.0]], np.float32)
    vector, ideal, want = _run(_model([N("Softmax", ["x"], ["y"], axis=-1)]), x)
    assert vector == "fp32"
    assert np.abs(ideal - want).max() < 1e-6


def test_a_model_with_a_crossbar_op_keeps_the_integer_form():
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32), "w")
    x = np.random.default_rng(1).standard_normal((16, 4)).astype(np.float32)
    vector, ideal, want = _run(_model([N("MatMul", ["x", "w"], ["h"]), N("Relu", ["h"], ["y"])], [w]), x)
    assert vector == "int8"
    assert np.abs(ideal - want).max() <= 0.05 * np.abs(want).max()


@pytest.mark.parametrize("op", ["Selu", "Shrink"])
def test_an_op_without_a_float_form_keeps_the_integer_form(op):
    x = np.random.default_rng(2).standard_normal((16, 4)).astype(np.float32)
    vector, ideal, want = _run(_model([N(op, ["x"], ["y"])]), x)
    assert vector == "int8"
    assert np.abs(ideal - want).max() <= 0.05 * np.abs(want).max()


def test_a_model_with_its_own_quantisation_keeps_the_integer_form():
    s, z = numpy_helper.from_array(np.float32(0.02), "s"), numpy_helper.from_array(np.uint8(128), "z")
    nodes = [N("QuantizeLinear", ["x", "s", "z"], ["q"]), N("DequantizeLinear", ["q", "s", "z"], ["d"]),
             N("Sigmoid", ["d"], ["y"])]
    x = np.random.default_rng(3).uniform(-2, 2, (16, 4)).astype(np.float32)
    vector, ideal, want = _run(_model(nodes, [s, z]), x)
    assert vector == "int8"
    assert np.abs(ideal - want).max() <= 0.05
