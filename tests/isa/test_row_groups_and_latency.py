"""The program text carries row groups (xbwrite group=g), and the target key compute_latency (what
xbar_cycle_ns covers: one input slice or a whole input vector) is parsed, carried and used by the time model."""
from __future__ import annotations

import pytest

from compiler.pipeline import compile_model
from isa import AsmError, load_target, parse_program, print_program
from runtime.errors import RuntimeFault
from runtime.machine import Machine
from tests.passes.test_row_groups import _mlp


def test_group_attribute_roundtrips_and_is_checked():
    model, x = _mlp()
    text = print_program(compile_model(model, "aras", x[:16], options={"row_group": 32}).program)
    assert "group=32" in text
    q = parse_program(text)
    assert print_program(q) == text
    assert {i.attr("group") for i in q.code if i.op == "xbwrite"} == {32, None}   # 24-row crossbars: all rows
    bad = text.replace("group=32", "group=999", 1)
    with pytest.raises(RuntimeFault, match="group=999"):
        Machine(parse_program(bad)).run({"x": x[:2]})


def test_compute_latency_key_is_parsed_and_refused_when_unknown(tmp_path):
    src = (load_target.__globals__["PRESETS"] / "aras.toml").read_text()
    assert load_target("aras").compute_latency == "per_slice"
    f = tmp_path / "t.toml"
    f.write_text(src.replace("[timing]", '[timing]\ncompute_latency = "per_vector"'))
    t = load_target(f)
    assert t.compute_latency == "per_vector" and t.to_dict()["compute_latency"] == "per_vector"
    assert "compute_latency" not in load_target("aras").to_dict()        # a default stays out of the header
    f.write_text(src.replace("[timing]", '[timing]\ncompute_latency = "per_bit"'))
    with pytest.raises(AsmError, match="compute_latency"):
        load_target(f)


def test_compute_latency_sets_the_crossbar_time():
    t = load_target("aras")
    v = t.replace(compute_latency="per_vector")
    assert t.mvm_ns((1,) * 8) == 8 * t.xbar_cycle_ns and v.mvm_ns((1,) * 8) == t.xbar_cycle_ns
    assert t.mvm_ns((1,) * 8, parts=2, groups=4) == 64 * t.xbar_cycle_ns
    model, x = _mlp()
    times = {}
    for name, target in (("slice", t.replace(program_once=True)), ("vector", v.replace(program_once=True))):
        prog = compile_model(model, target, x[:16], options={"row_group": 0}).program
        text = print_program(prog)
        assert ("compute_latency" in text) == (name == "vector")       # the header carries the reading
        m = Machine(parse_program(text))
        m.run({"x": x[:4]})
        times[name] = sum(max(s.xbar_ns.values(), default=0.0) for s in m.stats.layers.values())
    assert times["slice"] == 8 * times["vector"] > 0
