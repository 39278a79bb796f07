"""The elementwise converters of compiler/onnx_elementwise.py on run-time values: Max / Min / Mean between
activations and against constants, comparisons, Not and Where built from them (an expanded LeakyRelu), in the
integer and the float32 vector form: pimrun ideal equals the quantised reference bit for bit and follows
onnx's reference evaluator within 8-bit error."""
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

N = helper.make_node
SHAPE = [4, 6]


def _model(nodes, inits=(), inputs=("a", "b")) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "ew", [helper.make_tensor_value_info(i, TensorProto.FLOAT, ["N"] + SHAPE)
                                         for i in inputs],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"] + SHAPE)],
                          [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _feeds(inputs, n=16, seed=0):
    rng = np.random.default_rng(seed)
    return {i: rng.uniform(-2, 2, [n] + SHAPE).astype(np.float32) for i in inputs}


CASES = {
    "max2": ([N("Max", ["a", "b"], ["y"])], ()),
    "min3": ([N("Min", ["a", "b", "c"], ["y"])], (("c", np.linspace(-1, 1, 6)),)),
    "max_scalar": ([N("Max", ["a", "z"], ["y"])], (("z", 0.25),)),
    "min_scalar": ([N("Min", ["z", "a"], ["y"])], (("z", -0.5),)),
    "mean": ([N("Mean", ["a", "b", "c"], ["y"])], (("c", np.linspace(-1, 1, 6)),)),
    "leaky_expanded": ([N("Less", ["a", "z"], ["m"]), N("Mul", ["a", "s"], ["as"]), N("Where", ["m", "as", "a"], ["y"])],
                       (("z", 0.0), ("s", 0.1))),
    "select": ([N("GreaterOrEqual", ["a", "b"], ["m"]), N("Not", ["m"], ["n"]), N("Where", ["n", "a", "b"], ["y"])], ()),
    "cast_like": ([N("CastLike", ["a", "b"], ["c"]), N("Add", ["c", "b"], ["y"])], ()),
}


@pytest.mark.parametrize("vector", ["int8", "fp32"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bit_exact_and_close(case, vector):
    nodes, inits = CASES[case]
    inputs = ("a",) if case in ("max_scalar", "min_scalar", "leaky_expanded") else ("a", "b")
    m = _model(nodes, inits, inputs)
    c = compile_model(m, "isaac", _feeds(inputs, 32, 1), options={"vector": vector})
    x = _feeds(inputs, 16, 2)
    ideal = Machine(parse_program(print_program(c.program)), ideal=True).run(x)["y"]
    ref = dequantize_outputs(c.graph, run_reference(c.graph, x))["y"]
    assert np.array_equal(ideal, ref)
    want = ReferenceEvaluator(m).run(None, x)[0]
    assert np.abs(ideal - want).max() <= 0.05 * np.abs(want).max()


def test_where_with_an_infinite_branch_is_refused():
    m = _model([N("Less", ["a", "b"], ["m"]), N("Where", ["m", "a", "ninf"], ["y"], name="mask")],
               (("ninf", -np.inf),))
    with pytest.raises(FrontendError, match=r"mask \(Where\): branch ninf holds an infinity"):
        compile_model(m, "isaac", _feeds(("a", "b")))


@pytest.mark.parametrize("case", ["runtime", "per_element"])
def test_pow_with_a_tensor_exponent_runs_on_the_vector_unit(case):
    """Pow whose exponent is computed at run time or differs per element: x ** y in float32 on the vector unit
    (a constant scalar exponent stays a table); ideal equals the reference and follows onnx's evaluator."""
    if case == "runtime":
        nodes, inits, inputs = [N("Abs", ["a"], ["p"]), N("Pow", ["p", "b"], ["y"])], (), ("a", "b")
    else:
        nodes, inits, inputs = [N("Abs", ["a"], ["p"]), N("Pow", ["p", "e"], ["y"])], (("e", np.linspace(0.5, 2, 6)),), ("a",)
    m = _model(nodes, inits, inputs)
    c = compile_model(m, "isaac", _feeds(inputs, 32, 1))
    text = print_program(c.program)
    assert "fn=pow" in text and "vbinary" in text
    x = _feeds(inputs, 16, 2)
    ideal = Machine(parse_program(text), ideal=True).run(x)["y"]
    assert np.array_equal(ideal, dequantize_outputs(c.graph, run_reference(c.graph, x))["y"])
    want = ReferenceEvaluator(m).run(None, x)[0]
    assert np.abs(ideal - want).max() <= 0.05 * np.abs(want).max()


def _equal_model():
    """Where(Equal(a, b) or Equal(a, -inf), a, 0) and not (a <= b): ties, a -inf constant, And / Or / Not."""
    nodes = [N("Equal", ["a", "b"], ["e"]), N("Equal", ["a", "ninf"], ["masked"]), N("Or", ["e", "masked"], ["hit"]),
             N("LessOrEqual", ["a", "b"], ["le"]), N("Not", ["le"], ["gt"]), N("And", ["gt", "gt"], ["gt2"]),
             N("Cast", ["gt2"], ["gtf"], to=TensorProto.FLOAT), N("Where", ["hit", "a", "zero"], ["w"]),
             N("Add", ["w", "gtf"], ["y"])]
    return _model(nodes, (("ninf", -np.inf), ("zero", 0.0)))


def test_equal_on_run_time_values_runs_exactly_on_the_vector_unit():
    m = _equal_model()
    rng = np.random.default_rng(4)
    x = {k: rng.integers(-2, 3, [16] + SHAPE).astype(np.float32) for k in ("a", "b")}     # many ties
    x["a"][0, 0, :3] = np.finfo(np.float32).min            # a program's stand-in for a mask's -inf
    c = compile_model(m, "isaac", x)
    text = print_program(c.program)
    assert "fn=equal" in text
    ideal = Machine(parse_program(text), ideal=True).run(x)["y"]
    assert np.array_equal(ideal, dequantize_outputs(c.graph, run_reference(c.graph, x))["y"])
    want = ReferenceEvaluator(m).run(None, {k: v for k, v in x.items()})[0]
    want[0, 0, :3] = np.finfo(np.float32).min              # (onnx compares with -inf itself)
    assert np.array_equal(ideal, want)


def test_equal_has_no_integer_form():
    with pytest.raises(Exception, match=r"'equal' has no quantised form \(8-bit codes cannot tell"):
        compile_model(_equal_model(), "isaac", _feeds(("a", "b")), options={"vector": "int8"})


@pytest.mark.parametrize("fmod", [0, 1])
def test_mod_of_run_time_values_on_the_vector_unit(fmod):
    """The remainder with the dividend's sign (fmod 1) or the divisor's (fmod 0), as onnx's evaluator gives it."""
    m = _model([N("Mod", ["a", "b"], ["y"], fmod=fmod)])
    x = _feeds(("a", "b"), 16, 3)
    x["b"] = np.where(np.abs(x["b"]) < 0.3, 0.7, x["b"]).astype(np.float32)     # no divisor near 0
    c = compile_model(m, "isaac", x)
    text = print_program(c.program)
    assert f"fn={'fmod' if fmod else 'mod'}" in text
    ideal = Machine(parse_program(text), ideal=True).run(x)["y"]
    assert np.array_equal(ideal, dequantize_outputs(c.graph, run_reference(c.graph, x))["y"])
    assert np.allclose(ideal, ReferenceEvaluator(m).run(None, x)[0], rtol=0, atol=1e-6)
