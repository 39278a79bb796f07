"""The composed reductions of compiler/onnx_reduce.py (ReduceMin, ReduceL1, ReduceSumSquare, ReduceLogSum,
ReduceLogSumExp) and ReduceProd (the vector unit's `prod`) over axes within a sample, kept or dropped: pimrun ideal equals the quantised reference bit
for bit and follows onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from compiler.pipeline import compile_model
from isa import parse_program, print_program
from passes.reference import dequantize_outputs, run_reference
from runtime.machine import Machine


def _model(op, axes, keepdims) -> onnx.ModelProto:
    node = helper.make_node(op, ["x", "axes"], ["y"], name="r", keepdims=keepdims)
    g = helper.make_graph([node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [helper.make_tensor("axes", TensorProto.INT64, [len(axes)], axes)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("op", ["ReduceMin", "ReduceL1", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp",
                                "ReduceProd"])
def test_follows_onnxruntime_and_is_bit_exact(op, keepdims):
    m = _model(op, [1, -1], keepdims)
    rng = np.random.default_rng(0)
    lo = 0.1 if op == "ReduceLogSum" else -2.0        # log of a sum of positive values
    c = compile_model(m, "isaac", rng.uniform(lo, 2, (32, 3, 4, 5)).astype(np.float32))
    x = {"x": rng.uniform(lo, 2, (8, 3, 4, 5)).astype(np.float32)}
    ideal = Machine(parse_program(print_program(c.program)), ideal=True).run(x)["y"]
    assert np.array_equal(ideal, dequantize_outputs(c.graph, run_reference(c.graph, x))["y"])
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
    assert ideal.shape == want.shape
    assert np.abs(ideal - want).max() <= 0.05 * np.abs(want).max()


@pytest.mark.parametrize("p,attrs", [(2, {"kernel_shape": [3, 3]}),
                                     (1, {"kernel_shape": [2, 3], "strides": [2, 1], "pads": [1, 0, 0, 1]}),
                                     (3, {"kernel_shape": [3], "auto_pad": "SAME_UPPER"})])
def test_lp_pool_follows_onnxruntime(p, attrs):
    shape = [3, 9] if len(attrs["kernel_shape"]) == 1 else [3, 6, 7]
    g = helper.make_graph([helper.make_node("LpPool", ["x"], ["y"], p=p, **attrs)], "lp",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    x = {"x": np.random.default_rng(p).uniform(-2, 2, (6, *shape)).astype(np.float32)}
    for vector in ("int8", "fp32"):
        c = compile_model(m, "isaac", x["x"], {"vector": vector})
        ideal = Machine(parse_program(print_program(c.program)), ideal=True).run(x)["y"]
        assert np.array_equal(ideal, dequantize_outputs(c.graph, run_reference(c.graph, x))["y"])
        want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
        assert ideal.shape == want.shape
        assert np.abs(ideal - want).max() <= 0.05 * np.abs(want).max()
