"""The normalisations of compiler/onnx_norm.py (float32 vector form): LayerNormalization over two trailing
axes with its Mean and InvStdDev outputs, RMSNormalization, InstanceNormalization, MeanVarianceNormalization,
LpNormalization and LogSoftmax. pimrun ideal equals the quantised reference bit for bit and follows onnx's reference evaluator;
normalising over the batch axis is refused."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from compiler.pipeline import compile_model
from ir import FrontendError
from isa import parse_program, print_program
from passes.reference import dequantize_outputs, run_reference
from runtime.machine import Machine

SHAPE = [3, 4, 5]
RNG = np.random.default_rng(0)
W = RNG.uniform(0.5, 1.5, (4, 5)).astype(np.float32)
B = RNG.uniform(-0.5, 0.5, (4, 5)).astype(np.float32)


def _model(op, outs=("y",), inits=(), opset=23, **a) -> onnx.ModelProto:
    node = helper.make_node(op, ["x"] + [k for k, _ in inits], list(outs), name="norm", **a)
    g = helper.make_graph([node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"] + SHAPE)],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs],
                          [numpy_helper.from_array(v, k) for k, v in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


CASES = {
    "layernorm_axis2_stats": ("LayerNormalization", ("y", "mean", "inv"), (("w", W), ("b", B)), {"axis": 2}),
    "rmsnorm_axis2": ("RMSNormalization", ("y",), (("w", W),), {"axis": -2}),
    "mvn": ("MeanVarianceNormalization", ("y",), (), {"axes": [2, 3]}),
    "instancenorm": ("InstanceNormalization", ("y",), (("s", W[:3, 0].copy()), ("b", B[:3, 0].copy())),
                     {"epsilon": 1e-3}),
    "l2norm": ("LpNormalization", ("y",), (), {"axis": 1, "p": 2}),
    "l1norm": ("LpNormalization", ("y",), (), {"axis": -1, "p": 1}),
    "log_softmax": ("LogSoftmax", ("y",), (), {"axis": 2}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bit_exact_and_close(case):
    op, outs, inits, a = CASES[case]
    m = _model(op, outs, inits, **a)
    calib = {"x": RNG.standard_normal([32] + SHAPE).astype(np.float32)}
    c = compile_model(m, "isaac", calib)
    x = {"x": np.random.default_rng(1).standard_normal([8] + SHAPE).astype(np.float32)}
    ideal = Machine(parse_program(print_program(c.program)), ideal=True).run(x)
    ref = dequantize_outputs(c.graph, run_reference(c.graph, x))
    want = ReferenceEvaluator(m).run(None, x)
    if case == "l1norm":    # onnx's reference evaluator sums x, not |x|, for p = 1 (onnx 1.23)
        want = [x["x"] / np.abs(x["x"]).sum(-1, keepdims=True)]
    for name, w in zip(outs, want):
        assert np.array_equal(ideal[name], ref[name])
        assert np.abs(ideal[name] - w).max() <= 0.05 * np.abs(w).max(), name


def test_normalising_over_the_batch_axis_is_refused():
    with pytest.raises(FrontendError, match=r"norm \(LogSoftmax\): normalising over the batch axis"):
        compile_model(_model("LogSoftmax", axis=0), "isaac", np.zeros([2] + SHAPE, np.float32))
