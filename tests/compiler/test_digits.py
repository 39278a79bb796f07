"""The digits CNN on all 540 real test images: bit-exactness, accuracy, determinism, program size."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.pipeline import compile_model
from passes.reference import dequantize_outputs, run_reference
from isa import parse_program, print_program
from runtime.machine import Machine
from tests.conftest import DIGITS, digits_compiled


@pytest.mark.parametrize("target", ["isaac", "raella"])
def test_ideal_equals_reference_and_accuracy(target, digits_test):
    x, y = digits_test
    c = digits_compiled(target)
    prog = parse_program(print_program(c.program))
    ref = dequantize_outputs(c.graph, run_reference(c.graph, {"image": x}))["logits"]
    ideal = Machine(prog, ideal=True).run({"image": x})["logits"]
    assert np.array_equal(ideal, ref)
    real = Machine(prog).run({"image": x})["logits"]
    acc = np.mean(real.argmax(1) == y)
    assert acc >= 0.985, acc


def test_isaac_real_target_equals_ideal(digits_test):
    """ISAAC's flip encoding keeps every column sum inside the 8-bit ADC, so nothing saturates."""
    x, _ = digits_test
    prog = digits_compiled("isaac").program
    m = Machine(prog, sliced=True)          # force the per-slice ADC path, not the provably-safe shortcut
    real = m.run({"image": x[:96]})["logits"]
    assert m.stats.to_json()["saturated_converts"] == 0
    assert np.array_equal(real, Machine(prog, ideal=True).run({"image": x[:96]})["logits"])


def test_sliced_path_equals_shortcut_on_raella(digits_test):
    x, _ = digits_test
    prog = digits_compiled("raella").program
    a, b = Machine(prog), Machine(prog, sliced=True)
    assert np.array_equal(a.run({"image": x[:64]})["logits"], b.run({"image": x[:64]})["logits"])
    assert a.stats.to_json()["saturated_converts"] == b.stats.to_json()["saturated_converts"] > 0


def test_compile_is_deterministic():
    calib = np.load(DIGITS / "digits_calib.npy")
    a = print_program(compile_model(DIGITS / "digits_cnn.onnx", "raella", calib).program)
    b = print_program(compile_model(DIGITS / "digits_cnn.onnx", "raella", calib.copy()).program)
    assert a == b


@pytest.mark.parametrize("target", ["isaac", "raella"])
def test_program_is_compact(target):
    text = print_program(digits_compiled(target).program)
    assert len(text) <= 2 * (DIGITS / "digits_cnn.onnx").stat().st_size


def test_any_batch_size(digits_test):
    x, _ = digits_test
    prog = digits_compiled("raella").program
    one = Machine(prog).run({"image": x[:1]})["logits"]
    many = Machine(prog).run({"image": x[:33]}, chunk=8)["logits"]
    assert one.shape == (1, 10) and many.shape == (33, 10)
    assert np.array_equal(one[0], many[0])


def test_stats_fields(digits_test):
    x, _ = digits_test
    m = Machine(digits_compiled("isaac").program)
    m.run({"image": x[:8]})
    s = m.stats.to_json()
    for k in ("macs", "adc_converts", "converts_per_mac", "saturated_converts", "saturation_rate", "logical_crossbars",
              "physical_crossbars", "rows_used", "utilisation", "cells_written", "write_pulses", "cycles", "energy_pj", "layers"):
        assert k in s
    assert set(s["energy_pj"]) == {"adc", "dac", "crossbar", "buffers", "digital", "weight_writes", "runtime_writes",
                                "static"}
    g = digits_compiled("isaac").graph
    macs = 0
    for op in g.ops.values():
        if op.kind in ("conv", "linear"):
            w = op.attrs["q"]["w"]
            out = g.tensors[op.outputs[0]].shape
            macs += int(np.prod(out)) * (int(np.prod(w.shape[1:])) if op.kind == "conv" else w.shape[0])
    assert s["macs"] == 8 * macs        # real MACs: the zeros of block-diagonal packing are not counted
    assert s["converts_per_mac"] == pytest.approx(s["adc_converts"] / s["macs"])
    assert sum(r["adc_converts"] for r in s["layers"]) == s["adc_converts"]
    assert all(v >= 0 for v in s["energy_pj"].values()) and s["energy_pj"]["adc"] > 0
    # the chip's area by the same components, from the preset's derived per-unit areas
    t = digits_compiled("isaac").program.target
    assert s["area_mm2"] == t.chip_area_mm2() and set(s["area_mm2"]) == {"adc", "dac", "crossbar", "buffers", "digital"}
    assert s["area_mm2"]["adc"] == pytest.approx(t.xbars * t.adcs_per_xbar * t.area_adc_um2 / 1e6)
    assert s["area_mm2_total"] == pytest.approx(sum(s["area_mm2"].values())) and s["area_mm2_total"] > 0
