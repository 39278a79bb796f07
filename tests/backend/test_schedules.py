"""Weight-rewriting schedules (backend/schedule.py): placement in PE rows, writes interleaved with compute,
and outputs bit-identical to a target that holds the whole model."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from compiler.pipeline import compile_model
from ir import CompileError
from isa import load_target, parse_program, print_program
from passes.reference import dequantize_outputs, run_reference
from runtime.machine import Machine
from tests.conftest import DIGITS, digits_compiled

SMALL = Path(__file__).resolve().parents[1] / "runtime" / "aras_small.toml"
N = 48


@lru_cache(maxsize=None)
def scheduled(mode: str, **opts):
    return compile_model(DIGITS / "digits_cnn.onnx", load_target(SMALL), np.load(DIGITS / "digits_calib.npy"),
                         options={"schedule": mode, **opts})


@lru_cache(maxsize=None)
def whole_model_outputs() -> np.ndarray:
    """The same encoding on a target that holds the model: the aras preset, written once."""
    x = np.load(DIGITS / "digits_test.npz")["x"][:N]
    c = compile_model(DIGITS / "digits_cnn.onnx", load_target("aras").replace(program_once=True),
                      np.load(DIGITS / "digits_calib.npy"))
    assert all(i.attr("lxb") is None for i in c.program.code)
    return Machine(c.program).run({"image": x})["logits"]


def report(c):
    return next(r.report for r in c.records if r.name == "schedule")


@pytest.mark.parametrize("mode, opts", [("naive", {}), ("overlap", {}), ("aras", {"weight_reuse": False}),
                                        ("aras", {"bank_select": False})])
def test_every_schedule_gives_the_whole_model_targets_outputs(mode, opts):
    c = scheduled(mode, **opts)
    assert len({i.attr("xb") for i in c.program.code if i.op == "xbwrite"}) <= load_target(SMALL).xbars < \
        report(c).logical_crossbars                                 # the model does not fit: crossbars are rewritten
    x = np.load(DIGITS / "digits_test.npz")["x"][:N]
    out = Machine(parse_program(print_program(c.program))).run({"image": x})["logits"]
    assert np.array_equal(out, whole_model_outputs())


@pytest.mark.parametrize("mode, opts", [("overlap", {}), ("aras", {"reuse_max_clip": 0.2, "reuse_loss_budget": 1.0})])
def test_an_ideal_machine_equals_the_reference_under_a_schedule(mode, opts):
    """A layer's mvms split by rewrites still sum to the exact product; shifted layers (weight reuse with
    generous clip and loss budgets, so some shift) compute what the quantised reference computes."""
    c = scheduled(mode, **opts)
    if opts:
        reuse = next(r.report for r in c.records if r.name == "weight_reuse")
        assert any(lr.delta for lr in reuse.layers.values())
    x = np.load(DIGITS / "digits_test.npz")["x"][:N]
    out = Machine(c.program, ideal=True).run({"image": x})["logits"]
    assert np.array_equal(out, dequantize_outputs(c.graph, run_reference(c.graph, {"image": x}))["logits"])


def test_layers_fill_pe_rows_and_big_ones_are_written_in_parts():
    c = scheduled("overlap")
    t = c.program.target
    code = c.program.code
    for i in code:
        if i.op == "xbwrite":
            assert i.attr("pe") == i.attr("xb") // t.row_xbars
    rep = report(c)
    assert rep.layers["/f/f.7/Conv"]["crossbars"] == 6 and rep.layers["/f/f.7/Conv"]["parts"] >= 2
    # a part's mvms come before the writes that replace them, then the next part's mvms
    lines = [(i.op, i.attr("layer")) for i in code]
    first = lines.index(("mvm", "/f/f.7/Conv"))
    last = len(lines) - 1 - lines[::-1].index(("mvm", "/f/f.7/Conv"))
    assert ("xbwrite", "/f/f.7/Conv") in lines[first:last]
    assert rep.writes == rep.logical_crossbars == 21


def test_naive_writes_wait_for_the_previous_step_and_overlap_does_not():
    naive, overlap = scheduled("naive").program.code, scheduled("overlap").program.code
    waits = [i for i in naive if i.op == "xbwrite" and i.attr("after") is not None]
    assert waits and all(i.attr("after") != i.attr("layer") for i in waits)
    assert not any(i.attr("after") for i in overlap if i.op == "xbwrite")
    # overlap writes the second layer before the first one computes; naive after
    first_mvm = lambda code: next(k for k, i in enumerate(code) if i.op == "mvm")
    second = lambda code: next(k for k, i in enumerate(code) if i.op == "xbwrite" and i.attr("layer") == "/f/f.3/Conv")
    assert second(overlap) < first_mvm(overlap) and first_mvm(naive) < second(naive)


def test_aras_without_its_optimisations_is_overlap():
    bare = scheduled("aras", bank_select=False, replication=False, weight_reuse=False)
    assert print_program(bare.program) == print_program(scheduled("overlap").program)


def test_aras_selects_banks_and_the_baseline_has_fifteen():
    aras, base = scheduled("aras"), scheduled("overlap")
    assert aras.program.target.gbuf_banks_kb == (1, 1, 2, 4, 64, 128, 256, 512, 1024, 2048)
    assert base.program.target.gbuf_banks_kb == (256,) * 15
    for c in (aras, base):
        for i in c.program.code:
            if i.op == "mvm":
                assert i.attr("ibanks") and i.attr("obanks") and not set(i.attr("ibanks")) & set(i.attr("obanks"))


def test_replicas_share_the_windows_and_the_outputs():
    """On the full aras preset digits fits with rows to spare: convs are replicated, results unchanged."""
    c = digits_compiled("aras")
    rep = report(c)
    assert rep.replication["kept"] and rep.layers["/f/f.0/Conv"]["replication"] > 1 and rep.extra_weights_pct > 0
    mvms = [i for i in c.program.code if i.op == "mvm" and i.attr("rep")]
    assert mvms
    holds = {i.attr("xb"): i.attr("lxb") for i in c.program.code if i.op == "xbwrite"}
    for i in mvms:
        assert {holds[x] for x in i.attr("rep")} == {i.attr("lxb")}
    x = np.load(DIGITS / "digits_test.npz")["x"][:N]
    assert np.array_equal(Machine(c.program).run({"image": x})["logits"], whole_model_outputs())


def test_schedule_is_deterministic():
    a = compile_model(DIGITS / "digits_cnn.onnx", load_target(SMALL), np.load(DIGITS / "digits_calib.npy"),
                      options={"schedule": "aras"})
    assert print_program(a.program) == print_program(scheduled("aras").program)


def test_program_once_targets_keep_their_programs():
    for name in ("isaac", "raella"):
        text = print_program(digits_compiled(name).program)
        assert "imas_per_row" not in text and " lxb=" not in text and " pe=" not in text
        code = digits_compiled(name).program.code
        writes = [k for k, i in enumerate(code) if i.op == "xbwrite"]
        assert writes == list(range(writes[0], writes[0] + len(writes)))      # every write before any compute
    with pytest.raises(CompileError, match="program-once"):
        compile_model(DIGITS / "digits_cnn.onnx", "isaac", np.load(DIGITS / "digits_calib.npy"),
                      options={"schedule": "naive"})


@pytest.mark.parametrize("mode", ["overlap", "aras"])
def test_the_plan_times_each_write_as_the_runtime_measures_it(mode):
    """write_timer's steady-state cost of every write of the program equals the runtime's measured write time
    (cells met, two polarity phases), the plan settles on its placement with those costs, and replicas are kept
    only when the plan is faster with them. Without it the plan times every write at the worst case."""
    from passes.aras_reuse import write_timer
    c = scheduled(mode)
    rep = report(c)
    assert rep.timed == "cells"
    if rep.replication:
        assert rep.replication["kept"] == (rep.replication["replicated_ns"] < rep.replication["single_ns"])
    block = {x["xb"]: (op.name, j) for op in c.graph.topo() if op.kind in ("conv", "linear")
             for j, x in enumerate(op.attrs["xbars"])}
    writes = [i for i in c.program.code if i.op == "xbwrite"]
    planned = write_timer(c.graph, c.program.target)([(i.attr("xb"),) + block[i.attr("lxb")] for i in writes])
    m = Machine(c.program)
    m.run({"image": np.load(DIGITS / "digits_test.npz")["x"][:2]})
    measured = [m.cells.events[id(i)].ns for i in writes]
    assert planned == measured and min(measured) < max(measured)
    worst = report(scheduled(mode, cell_timed_plan=False))
    assert worst.timed == "worst case" and worst.planned_ns > rep.planned_ns
