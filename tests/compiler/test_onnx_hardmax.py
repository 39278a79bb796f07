"""Hardmax (compiler/onnx_hardmax.py): one `vhardmax` on the float32 vector unit, 1 at the first maximum along
the axis (ties go to the lowest index), equal to onnxruntime's output exactly; the integer form has none."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from compiler.pipeline import compile_model
from ir import CompileError
from isa import parse_program, print_program
from passes.reference import dequantize_outputs, run_reference
from runtime import vector as V
from runtime.machine import Machine


def _model(axis: int):
    g = helper.make_graph([helper.make_node("Hardmax", ["x"], ["y"], axis=axis)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_hardmax_equals_onnxruntime_ties_included(axis):
    rng = np.random.default_rng(axis % 3)
    x = rng.integers(-2, 3, (6, 3, 5)).astype(np.float32)          # small integers: many ties
    x[0] = 7.0                                                       # a sample that is one tie throughout
    m = _model(axis)
    c = compile_model(m, "isaac", x)
    text = print_program(c.program)
    assert "vhardmax" in text
    out = Machine(parse_program(text), ideal=True).run({"x": x})["y"]
    assert np.array_equal(out, dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))["y"])
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.array_equal(out, want)


def test_the_first_maximum_wins():
    assert np.array_equal(V.hardmax(np.array([[1, 3, 3, 0]], np.float32), 1), [[0, 1, 0, 0]])


def test_the_integer_form_has_no_hardmax():
    with pytest.raises(CompileError, match=r"no quantised form for op .hardmax. \(it runs on the float32 vector unit"):
        compile_model(_model(-1), "isaac", np.ones((2, 3, 5), np.float32), {"vector": "int8"})
