"""Ops that ONNX defines as functions of other ops, without a converter here (compiler/onnx_functions.py):
SwiGLU (a plain function body) and GroupNormalization (a body built for the node's attributes and input
types) compile from onnx's own definitions and run ideal equal to the reference and close to onnx's reference evaluator;
a refusal inside a body names the user's node; an op onnx defines no body for stays an unsupported op."""
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


def _model(node, x_shape, inits=(), opset=24) -> onnx.ModelProto:
    nodes = node if isinstance(node, list) else [node]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x_shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _check(m, x):
    c = compile_model(m, "isaac", x)
    out = Machine(parse_program(print_program(c.program)), ideal=True).run({"x": x})["y"]
    assert np.array_equal(out, dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))["y"])
    want = ReferenceEvaluator(m).run(None, {"x": x})[0]      # (onnxruntime lacks the newest opsets)
    assert np.abs(out - want).max() <= 0.05 * np.abs(want).max()


def test_swiglu_from_its_function_body():
    x = np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32)
    nodes = [helper.make_node("Sin", ["x"], ["s"]), helper.make_node("SwiGLU", ["x", "s"], ["y"], alpha=1.5)]
    _check(_model(nodes, (8,), opset=28), x)


def test_group_normalization_from_its_context_dependent_body():
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array((1 + rng.standard_normal(4) / 4).astype(np.float32), "s"),
             numpy_helper.from_array((rng.standard_normal(4) / 4).astype(np.float32), "b")]
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=2, epsilon=1e-5)
    _check(_model(node, (4, 3, 5), inits, opset=21), rng.standard_normal((6, 4, 3, 5)).astype(np.float32))


def test_a_refusal_inside_a_body_names_the_users_node():
    c = numpy_helper.from_array(np.ones((2, 8), np.float32), "c")        # one row per sample: refused
    with pytest.raises(FrontendError, match=r"^node y/SwiGLU/Mul__1 \(Mul\): constant c of shape \[2, 8\] reaches"):
        compile_model(_model(helper.make_node("SwiGLU", ["x", "c"], ["y"]), (8,), [c], opset=28), "isaac",
                      np.ones((2, 8), np.float32))


def test_an_op_without_a_body_stays_unsupported():
    with pytest.raises(FrontendError, match=r"^unsupported op\(s\) Det at node\(s\) computing 'y' \(Det\)$"):
        compile_model(_model(helper.make_node("Det", ["x"], ["y"]), (3, 3)), "isaac", np.ones((2, 3, 3), np.float32))
