"""The float32 vector form of CNN ops that a transformer-style model can mix in (PaddleOCR's SVTR recogniser: a
MobileNetV3 backbone with HardSigmoid / HardSwish gates, average and global pools and a concat, then
attention, so the whole model runs in the vector form): windowed pools as `vpool`, global pools as
reductions, HardSigmoid as multiply-add-clip, HardSwish on the vector unit, Concat as `vconcat`. Each runs
ideal equal to the quantised reference bit for bit, matches the NumPy float64 evaluation closely, and the
vector unit's pooling equals a direct float32 computation."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.pipeline import compile_model
from isa import parse_program, print_program
from passes.reference import dequantize_outputs, run_reference
from runtime import vector as V
from runtime.machine import Machine

N = helper.make_node


def backbone() -> onnx.ModelProto:
    """x [N, 4, 9, 8] -> conv 3x3 (8) -> HardSwish -> AveragePool 3x2 stride 3x2 and MaxPool 2x2 stride 1
    pads 1 (count_include_pad 0) -> Concat -> GlobalAveragePool -> HardSigmoid gate times the concat -> y."""
    rng = np.random.default_rng(8)
    inits = [numpy_helper.from_array((rng.standard_normal((8, 4, 3, 3)) / 6).astype(np.float32), "w"),
             numpy_helper.from_array((rng.standard_normal(8) * 0.2).astype(np.float32), "b")]
    nodes = [N("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), N("HardSwish", ["c"], ["h"]),
             N("AveragePool", ["h"], ["a"], kernel_shape=[3, 2], strides=[3, 2], name="avg"),
             N("MaxPool", ["h"], ["m0"], kernel_shape=[3, 2], strides=[3, 2], name="max"),
             N("Concat", ["a", "m0"], ["cat"], axis=1, name="cat"),
             N("GlobalAveragePool", ["cat"], ["g"]),
             N("HardSigmoid", ["g"], ["gate"], alpha=1 / 6, beta=0.5, name="gate"),
             N("Mul", ["cat", "gate"], ["y"])]
    graph = helper.make_graph(nodes, "backbone", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 9, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16, 3, 4])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    return m


def _x(n, seed):
    return np.random.default_rng(seed).standard_normal((n, 4, 9, 8)).astype(np.float32)


@pytest.mark.parametrize("vector", ["fp32", "int8"])
def test_cnn_ops_in_both_forms(vector):
    m = backbone()
    c = compile_model(m, "isaac", _x(16, 1), {"vector": vector})
    text = print_program(c.program)
    if vector == "fp32":
        assert "vpool" in text and "vconcat" in text
    x = _x(4, 2)
    ideal = Machine(parse_program(text), ideal=True).run({"x": x})["y"]
    ref = dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))["y"]
    assert np.array_equal(ideal, ref)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    err = np.abs(ideal - want).max() / np.abs(want).max()
    assert err < 0.05, err


def test_vector_pool_is_direct_float32():
    x = np.random.default_rng(3).standard_normal((2, 3, 7, 5)).astype(np.float32)
    got = V.pool("avg", x, (3, 2), (2, 2), (1, 0, 1, 1), (1, 1), count_include_pad=False)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 1)))
    ones = np.pad(np.ones((7, 5), np.float32), ((1, 1), (0, 1)))
    oh, ow = (7 + 2 - 3) // 2 + 1, (5 + 1 - 2) // 2 + 1
    want = np.empty((2, 3, oh, ow), np.float32)
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 2].astype(np.float64)
            want[:, :, i, j] = win.sum(axis=(2, 3)) / ones[2 * i:2 * i + 3, 2 * j:2 * j + 2].sum()
    assert got.dtype == np.float32 and np.abs(got - want).max() < 1e-6
    mx = V.pool("max", x, (3, 2), (2, 2), (1, 0, 1, 1), (1, 1))
    xm = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 1)), constant_values=-np.inf)
    assert np.array_equal(mx, np.array([[[[xm[b, ch, 2 * i:2 * i + 3, 2 * j:2 * j + 2].max() for j in range(ow)]
                                          for i in range(oh)] for ch in range(3)] for b in range(2)]))
