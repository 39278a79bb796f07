"""3-D Conv, MaxPool, AveragePool and ConvTranspose (compiler/onnx_windows3d.py): each compiled for ISAAC runs
ideal equal to the quantised reference bit for bit and follows onnxruntime within the 8-bit step, through the
strides, dilations, paddings, groups and ceil modes that change how the 2-D ops are put together."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.pipeline import compile_model
from ir import FrontendError
from isa import parse_program, print_program
from passes.reference import dequantize_outputs, run_reference
from runtime.machine import Machine

X = (3, 5, 6, 7)         # C, D, H, W


def model(op: str, weight=None, **attrs) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(weight, "w")] if weight is not None else []
    ins = ["x", "w"] if weight is not None else ["x"]
    g = helper.make_graph([helper.make_node(op, ins, ["y"], name="n", **attrs)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *X])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])


def check(m: onnx.ModelProto, vector: str = "auto") -> None:
    x = np.random.default_rng(0).standard_normal((4, *X)).astype(np.float32)
    c = compile_model(m, "isaac", x, {"vector": vector})      # calibrated on what it runs: no value clips
    out = Machine(parse_program(print_program(c.program)), ideal=True).run({"x": x})["y"]
    assert np.array_equal(out, dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))["y"])
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert out.shape == want.shape
    assert np.abs(out - want).max() <= 0.05 * np.abs(want).max()


def _w(shape, seed=1):
    return (np.random.default_rng(seed).standard_normal(shape) / 4).astype(np.float32)


@pytest.mark.parametrize("attrs", [
    {},
    {"strides": [2, 1, 2], "pads": [1, 0, 1, 0, 1, 1]},
    {"dilations": [2, 1, 2], "strides": [1, 2, 1]},
    {"auto_pad": "SAME_UPPER", "strides": [2, 3, 1]},
    {"group": 3},
])
def test_conv3d(attrs):
    w = _w((6, X[0] // attrs.get("group", 1), 2, 3, 2))
    check(model("Conv", w, **attrs))


def test_conv3d_on_the_vector_unit():
    check(model("Conv", _w((4, 3, 3, 2, 2)), strides=[2, 2, 1]), vector="fp32")


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("attrs", [
    {"kernel_shape": [2, 2, 2]},
    {"kernel_shape": [3, 2, 3], "strides": [2, 2, 2], "pads": [1, 0, 1, 1, 1, 0]},
    {"kernel_shape": [2, 3, 2], "strides": [2, 2, 3], "ceil_mode": 1},
    {"kernel_shape": [2, 2, 2], "dilations": [2, 1, 2], "pads": [1, 1, 1, 1, 1, 1], "count_include_pad": 1},
])
def test_pool3d(op, attrs):
    if op == "MaxPool":
        attrs = {k: v for k, v in attrs.items() if k != "count_include_pad"}
    check(model(op, **attrs))


@pytest.mark.parametrize("attrs", [{"strides": [2, 2, 2]}, {"strides": [1, 2, 1], "pads": [1, 0, 0, 0, 1, 1], "group": 3}])
def test_conv_transpose3d(attrs):
    check(model("ConvTranspose", _w((X[0], 2, 2, 3, 2)), **attrs))


def test_a_window_larger_than_the_input_is_one_frontend_error():
    with pytest.raises(FrontendError, match=r"^node n \(Conv\): the window \[9, 1, 1\] \(dilated\) is larger than"):
        compile_model(model("Conv", _w((2, 3, 3, 1, 1)), dilations=[4, 1, 1]), "isaac",
                      np.ones((2, *X), np.float32))
