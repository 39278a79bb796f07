"""Program size grows with layers x crossbars, not with conv windows or batch."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compiler.pipeline import compile_model
from isa import print_program


def _cnn(hw: int) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.2, (16, 8, 3, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.normal(0, 0.2, (16, 10)).astype(np.float32), "fc")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Conv", ["b", "w2"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["d"]),
             helper.make_node("GlobalAveragePool", ["d"], ["e"]),
             helper.make_node("Flatten", ["e"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["y"])]
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, hw, hw])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_line_count_does_not_grow_with_resolution():
    rng = np.random.default_rng(1)
    small = print_program(compile_model(_cnn(8), "isaac", rng.random((4, 3, 8, 8)).astype(np.float32)).program)
    big = print_program(compile_model(_cnn(64), "isaac", rng.random((4, 3, 64, 64)).astype(np.float32)).program)
    assert small.count("\n") == big.count("\n")
    assert abs(len(big) - len(small)) < 0.05 * len(small)
