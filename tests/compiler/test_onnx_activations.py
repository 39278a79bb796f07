"""The activation functions of compiler/onnx_activations.py: each compiles in the integer form (a table over
the input's codes) and, where the vector unit has the function, in the float32 vector form; in both, pimrun
ideal equals the quantised reference bit for bit and the result follows onnx's reference evaluator."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from compiler.onnx_activations import FUNCTIONS
from compiler.pipeline import compile_model
from ir import CompileError
from passes.reference import dequantize_outputs, run_reference
from runtime import vector as V
from runtime.machine import Machine
from isa import parse_program, print_program

DOMAIN = {"Asin": (-0.95, 0.95), "Acos": (-0.95, 0.95), "Atanh": (-0.9, 0.9), "Acosh": (1.05, 4.0), "Tan": (-1.2, 1.2)}


def _model(op: str) -> onnx.ModelProto:
    node = helper.make_node(op, ["x"], ["y"], name="f")
    g = helper.make_graph([node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 5])])
    opset = max(onnx.defs.get_schema(op).since_version, 13)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _check(model, x, vector):
    c = compile_model(model, "isaac", x, options={"vector": vector})
    ideal = Machine(parse_program(print_program(c.program)), ideal=True).run({"x": x})["y"]
    ref = dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))["y"]
    assert np.array_equal(ideal, ref)
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    return float(np.abs(ideal - want).max() / np.abs(want).max())


@pytest.mark.parametrize("op", sorted(FUNCTIONS))
def test_function_in_both_forms(op):
    lo, hi = DOMAIN.get(op, (-3.0, 3.0))
    x = np.random.default_rng(0).uniform(lo, hi, (8, 6, 5))
    if op in ("Floor", "Ceil", "Sign"):     # a step function: inputs kept 0.1 (four 8-bit steps) off its jumps
        x = np.floor(x) + np.clip(x - np.floor(x), 0.1, 0.9)
    if op == "Round":                       # likewise off its jumps at the halves
        x = np.round(x) + np.clip(x - np.round(x), -0.4, 0.4)
    x = x.astype(np.float32)
    model = _model(op)
    assert _check(model, x, "int8") <= 0.05
    if FUNCTIONS[op][0] in V.UNARY or FUNCTIONS[op][0] in V.UNARY_P:
        assert _check(model, x, "fp32") <= 0.05
    else:
        with pytest.raises(CompileError, match=f"no '{FUNCTIONS[op][0]}' function"):
            compile_model(model, "isaac", x, options={"vector": "fp32"})
