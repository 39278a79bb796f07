"""ConvTranspose in general (compiler/onnx_conv_transpose.py: spread and pad by constant 0 / 1 matrices, then a
stride-1 conv with the flipped kernel), 2-D and 1-D: output shape and values follow onnxruntime within
8-bit error, and pimrun ideal equals the quantised reference bit for bit."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.onnx_conv_transpose import spread
from compiler.pipeline import compile_model
from isa import parse_program, print_program
from passes.reference import dequantize_outputs, run_reference
from runtime.machine import Machine

RNG = np.random.default_rng(0)


def _model(spatial, k, group=1, **a) -> onnx.ModelProto:
    w = RNG.standard_normal((4, 6 // group) + (k,) * len(spatial)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(RNG.standard_normal(6).astype(np.float32), "b")]
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="up", group=group, **a)
    g = helper.make_graph([node], "ct", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4] + spatial)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


CASES = {
    "stride2_pads": ([5, 6], 3, 1, {"strides": [2, 2], "pads": [1, 0, 1, 2]}),
    "output_padding_dilation": ([4, 5], 3, 1, {"strides": [2, 3], "output_padding": [1, 2], "dilations": [2, 1]}),
    "groups_same_upper": ([5, 5], 3, 2, {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    "output_shape": ([3, 3], 3, 1, {"strides": [3, 2], "output_shape": [10, 8]}),
    "one_d": ([9], 4, 1, {"strides": [2], "pads": [1, 1]}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_follows_onnxruntime_and_is_bit_exact(case):
    spatial, k, group, a = CASES[case]
    m = _model(spatial, k, group, **a)
    x = {"x": np.random.default_rng(1).standard_normal([8, 4] + spatial).astype(np.float32)}
    c = compile_model(m, "isaac", np.concatenate([RNG.standard_normal([32, 4] + spatial).astype(np.float32), x["x"]]))
    ideal = Machine(parse_program(print_program(c.program)), ideal=True).run(x)["y"]
    assert np.array_equal(ideal, dequantize_outputs(c.graph, run_reference(c.graph, x))["y"])
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
    assert ideal.shape == want.shape
    assert np.abs(ideal - want).max() <= 0.05 * np.abs(want).max()


def test_spread_places_pads_and_crops():
    assert spread(3, 2, 1, 0).tolist() == [[0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 1]]
    assert spread(3, 2, -1, -1).tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
