"""1-D Conv, MaxPool and AveragePool (compiler/onnx_windows1d.py: the 2-D forms on a height of 1): the output
shape and values follow onnxruntime within 8-bit error, and pimrun ideal equals the quantised reference."""
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

RNG = np.random.default_rng(0)
C, L = 4, 19


def _model(op, **a) -> onnx.ModelProto:
    inits, ins = [], ["x"]
    if op == "Conv":
        g = a.get("group", 1)
        inits = [numpy_helper.from_array(RNG.standard_normal((6, C // g, 3)).astype(np.float32), "w"),
                 numpy_helper.from_array(RNG.standard_normal(6).astype(np.float32), "b")]
        ins += ["w", "b"]
    node = helper.make_node(op, ins, ["y"], name="win", **a)
    g = helper.make_graph([node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", C, L])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


CASES = {
    "conv_pads_stride_dilation": ("Conv", {"pads": [2, 1], "strides": [2], "dilations": [2]}),
    "conv_groups_same": ("Conv", {"group": 2, "auto_pad": "SAME_UPPER"}),
    "maxpool_ceil": ("MaxPool", {"kernel_shape": [3], "strides": [2], "ceil_mode": 1}),
    "avgpool_pads": ("AveragePool", {"kernel_shape": [4], "pads": [1, 2], "count_include_pad": 1}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_follows_onnxruntime_and_is_bit_exact(case):
    op, a = CASES[case]
    m = _model(op, **a)
    c = compile_model(m, "isaac", RNG.standard_normal((32, C, L)).astype(np.float32))
    x = {"x": np.random.default_rng(1).standard_normal((8, C, L)).astype(np.float32)}
    ideal = Machine(parse_program(print_program(c.program)), ideal=True).run(x)["y"]
    assert np.array_equal(ideal, dequantize_outputs(c.graph, run_reference(c.graph, x))["y"])
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
    assert ideal.shape == want.shape
    assert np.abs(ideal - want).max() <= 0.05 * np.abs(want).max()
