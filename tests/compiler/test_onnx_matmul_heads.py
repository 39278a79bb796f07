"""MatMul by a constant with one weight per head (compiler/onnx_matmul_heads.py): one linear op, grouped where
the activation has the heads and shared where it has one; ideal equals the reference bit for bit and follows
onnxruntime within the 8-bit step, in the integer and the float32 vector forms."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.pipeline import compile_model
from ir import FrontendError
from isa import parse_program, print_program
from passes.reference import dequantize_outputs, run_reference
from runtime.machine import Machine


def _model(a_shape, w_shape):
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal(w_shape).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *a_shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("vector", ["auto", "fp32"])
@pytest.mark.parametrize("a_shape,w_shape", [
    ((3, 5, 4), (3, 4, 2)),            # one weight per head, the activation has the heads: grouped
    ((1, 5, 4), (1, 3, 4, 2)),         # the activation has one head: shared by every weight
    ((3, 2, 5, 4), (3, 1, 4, 2)),      # the heads on an outer axis, a second axis of one
])
def test_matmul_by_per_head_weights(a_shape, w_shape, vector):
    m = _model(a_shape, w_shape)
    x = np.random.default_rng(1).standard_normal((4, *a_shape)).astype(np.float32)
    c = compile_model(m, "isaac", x, {"vector": vector})
    out = Machine(parse_program(print_program(c.program)), ideal=True).run({"x": x})["y"]
    assert np.array_equal(out, dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))["y"])
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert out.shape == want.shape
    assert np.abs(out - want).max() <= 0.05 * np.abs(want).max()


def test_a_weight_per_sample_is_refused():
    with pytest.raises(FrontendError, match=r"constant right operand w of shape \[2, 4, 3\] for x \[N, 3, 4\]; only "):
        compile_model(_model((3, 4), (2, 4, 3)), "isaac", np.ones((2, 3, 4), np.float32))
