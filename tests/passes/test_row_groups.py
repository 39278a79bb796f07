"""The ADC-aware mapping (passes/row_groups.py): per layer the fewest row-group turns within the saturation
budget, a forced group honoured, an unreachable budget said, and `pimrun --ideal` still the integer reference."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from compiler.pipeline import compile_model
from isa import load_target, parse_program, print_program
from passes.reference import dequantize_outputs, run_reference
from passes.row_groups import candidates
from runtime.machine import Machine


def _mlp(k=256, n=24, m=10, seed=0):
    """Two Gemm layers (k -> n, relu, n -> m) with positive weights: sums that a narrow ADC cannot hold."""
    rng = np.random.default_rng(seed)
    w1 = rng.uniform(0, 1, (k, n)).astype(np.float32)
    w2 = rng.normal(0, 1, (n, m)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Gemm", ["r", "w2"], ["y"])], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, m])],
        [onnx.numpy_helper.from_array(w1, "w1"), onnx.numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.uniform(0, 1, (40, k)).astype(np.float32)
    return model, x


def _report(c):
    return next(r.report for r in c.records if r.name == "row_groups")


def _ideal_is_reference(c, x):
    ref = dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))["y"]
    assert np.array_equal(Machine(parse_program(print_program(c.program)), ideal=True).run({"x": x})["y"], ref)


def test_candidates_fewest_turns_first():
    assert candidates(128) == [0, 64, 32, 16, 8, 4, 2, 1]
    assert candidates(1) == [0]


def test_chosen_groups_meet_the_budget_and_keep_ideal_exact():
    model, x = _mlp()
    c = compile_model(model, "aras", x[:16])
    rep = _report(c)
    first = rep.layers[next(iter(rep.layers))]
    assert first["group"] > 0 and first["turns"] > 1          # 128 rows of positive weights clip a 6-bit ADC
    for e in rep.layers.values():
        assert e["within_budget"] and e["loss"] <= rep.saturation_budget
    assert not rep.over_budget
    text = print_program(c.program)
    assert f"group={first['group']}" in text
    _ideal_is_reference(c, x)
    # the loss it measured: clipping what the chosen group still clips, less than reading all rows at once
    whole = _report(compile_model(model, "aras", x[:16], options={"row_group": 0}))
    name = next(iter(rep.layers))
    assert whole.layers[name]["loss"] > rep.saturation_budget >= first["loss"]
    assert whole.mode == "forced"
    assert first["converts_per_mac"] == pytest.approx(whole.layers[name]["converts_per_mac"] * first["turns"], rel=0.01)
    # and the target run saturates less, at the conversions' price
    runs = []
    for prog in (c.program, compile_model(model, "aras", x[:16], options={"row_group": 0}).program):
        m = Machine(prog)
        m.run({"x": x})
        runs.append(m.stats.to_json())
    assert runs[0]["saturation_rate"] < runs[1]["saturation_rate"]
    assert runs[0]["adc_converts"] > runs[1]["adc_converts"]
    assert runs[0]["per_inference"]["time_ns"] > runs[1]["per_inference"]["time_ns"]


def test_forced_group_is_honoured():
    model, x = _mlp()
    c = compile_model(model, "aras", x[:16], options={"row_group": 16})
    rep = _report(c)
    assert rep.mode == "forced" and all(e["group"] == 16 for e in rep.layers.values())
    writes = [i for i in c.program.code if i.op == "xbwrite"]
    # a crossbar of more than 16 rows is read in groups of 16; one of 24 rows (the second layer) too
    assert writes and all(i.attr("group") == 16 for i in writes if i.attr("rows")[1] - i.attr("rows")[0] > 16)
    _ideal_is_reference(c, x)
    per_layer = compile_model(model, "aras", x[:16], options={"row_group": {list(rep.layers)[0]: 8}})
    assert [e["group"] for e in _report(per_layer).layers.values()] == [8, 0]
    with pytest.raises(Exception, match="row group"):
        compile_model(model, "aras", x[:16], options={"row_group": 1000})


def test_a_budget_no_group_meets_is_said():
    model, x = _mlp()
    t = load_target("aras").replace(adc_bits=1)              # one bit: a single row of 2-bit cells clips
    with pytest.warns(UserWarning, match="saturation budget"):
        c = compile_model(model, t, x[:16])
    rep = _report(c)
    assert rep.over_budget and all(not rep.layers[n]["within_budget"] for n in rep.over_budget)
    _ideal_is_reference(c, x)


def test_isaac_needs_no_groups():
    """ISAAC's flipped columns keep every sum within its 8-bit ADC: nothing changes."""
    model, x = _mlp()
    c = compile_model(model, "isaac", x[:16])
    assert all(e["group"] == 0 and e["loss"] == 0.0 for e in _report(c).layers.values())
    assert "group=" not in print_program(c.program)
