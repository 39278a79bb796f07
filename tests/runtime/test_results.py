"""What a run reports (runtime/results.py): every figure pimc and pimrun print is a field of the stats JSON, one
figure per name; on a rewriting target the batch totals and per-inference figures are the schedule's."""
from __future__ import annotations

import json
import re
from functools import lru_cache

import numpy as np
import pytest

from compiler.cli import main as pimc_main
from isa import parse_program, print_program
from runtime.cli import main as pimrun_main
from runtime.machine import Machine
from runtime.results import stats_json
from tests.backend.test_schedules import SMALL, scheduled
from tests.conftest import DIGITS, digits_compiled

X = np.load(DIGITS / "digits_test.npz")["x"][:6]


def number(text: str, pattern: str) -> float:
    """The number that the regex `pattern` (with one group) finds in the printed text."""
    m = re.search(pattern, text)
    assert m, (pattern, text)
    return float(m.group(1))


@lru_cache(maxsize=None)
def pimrun(program_text: str) -> tuple[str, dict]:
    """pimrun's printed summary and its --stats JSON for a program on X."""
    import tempfile
    from pathlib import Path
    from contextlib import redirect_stdout
    from io import StringIO
    with tempfile.TemporaryDirectory() as d:
        p, x, s = Path(d) / "p.pimasm", Path(d) / "x.npy", Path(d) / "s.json"
        p.write_text(program_text)
        np.save(x, X)
        out = StringIO()
        with redirect_stdout(out):
            assert pimrun_main([str(p), "--input", str(x), "--stats", str(s)]) == 0
        return out.getvalue(), json.loads(s.read_text())


def test_a_rewriting_target_prints_each_figure_once_as_the_json_has_it():
    text, s = pimrun(print_program(scheduled("aras").program))
    sc, pi = s["schedule"], s["per_inference"]
    assert number(text, r"(\d+) logical \(weight blocks\)") == s["logical_crossbars"] == 21
    assert number(text, r"(\d+) physical of") == s["physical_crossbars"] <= s["chip_crossbars"] == 4
    assert number(text, r"of (\d+) on the chip") == s["chip_crossbars"]
    assert number(text, r"(\d+) crossbar writes per inference") == sc["crossbar_writes"] > s["physical_crossbars"]
    assert number(text, r"(\d+) write pulses") == sc["write_pulses"] > 0      # the program rewrites crossbars
    assert number(text, r"(\d+) cells changed") == sc["cells_changed"] > 0
    assert number(text, r"including weight writes ([\d.]+) uJ") == pytest.approx(
        pi["energy_incl_weight_writes_pj"] / 1e6, abs=5e-4)
    assert number(text, r"\(weight writes ([\d.]+) uJ\)") == pytest.approx(sc["energy_pj"]["weight_writes"] / 1e6,
                                                                           abs=5e-4)
    assert number(text, r"steady state\): ([\d.]+) us") == pytest.approx(sc["time_ns"] / 1e3, abs=0.05)
    # no figure twice under one name: no bare "energy", no "crossbars N"
    assert "uJ/inference" not in text and not re.search(r"crossbars \d", text)


def test_a_rewriting_targets_totals_are_the_schedules_times_the_samples():
    m = Machine(parse_program(print_program(scheduled("overlap").program)))
    m.run({"image": X})
    s = stats_json(m)
    sc, pi, n = s["schedule"], s["per_inference"], len(X)
    assert pi["energy_incl_weight_writes_pj"] == sc["energy_pj_total"]
    assert pi["energy_excl_weight_writes_pj"] == pytest.approx(sc["energy_pj_total"] - sc["energy_pj"]["weight_writes"])
    assert pi["time_ns"] == sc["time_ns"] and s["time_ns"] == pytest.approx(n * sc["time_ns"])
    assert s["energy_pj_total"] == pytest.approx(n * sc["energy_pj_total"], rel=1e-12)
    assert sc["energy_pj"]["weight_writes"] > 0
    assert s["energy_pj"]["weight_writes"] == pytest.approx(n * sc["energy_pj"]["weight_writes"], rel=1e-12)
    assert s["write_pulses"] == n * sc["write_pulses"] > 0 and s["cells_written"] == n * sc["cells_changed"]


def test_a_model_that_fits_rewrites_nothing_and_says_so():
    """On the aras preset the digits CNN fits (replicated): every crossbar is written with the block it holds,
    so steady-state writes change no cell, and the summary says why the pulses are 0."""
    text, s = pimrun(print_program(digits_compiled("aras").program))
    sc = s["schedule"]
    assert len({e[1] for e in sc["timeline"]}) <= sc["pe_rows"]
    assert sc["crossbar_writes"] == s["physical_crossbars"] > s["logical_crossbars"] == 21    # replicas
    assert sc["write_pulses"] == sc["cells_changed"] == s["write_pulses"] == 0
    assert "already holds the weights it is written with" in text
    assert sc["dram_bytes"] > 0
    assert number(text, r"([\d.]+) MB from DRAM") == pytest.approx(sc["dram_bytes"] / 1e6, abs=5e-4)


def test_a_program_once_target_prints_the_weight_load_once_and_energy_without_it():
    text, s = pimrun(print_program(digits_compiled("isaac").program))
    pi = s["per_inference"]
    assert "schedule" not in s
    assert number(text, r"(\d+) logical") == number(text, r"(\d+) physical") == s["physical_crossbars"] == 21
    assert number(text, r"excluding weight writes ([\d.]+) uJ") == pytest.approx(
        pi["energy_excl_weight_writes_pj"] / 1e6, abs=5e-4)
    assert number(text, r"(\d+) cells, ") == s["cells_written"] > 0
    assert number(text, r"(\d+) write pulses") == s["write_pulses"] > 0
    assert number(text, r"write pulses, ([\d.]+) uJ") == pytest.approx(s["energy_pj"]["weight_writes"] / 1e6, abs=5e-4)
    assert (pi["energy_incl_weight_writes_pj"] - pi["energy_excl_weight_writes_pj"]) * len(X) == pytest.approx(
        s["energy_pj"]["weight_writes"])


@pytest.mark.parametrize("target", [str(SMALL), "isaac"])
def test_pimc_prints_the_crossbars_pimrun_counts(target, tmp_path, capsys):
    out = tmp_path / "p.pimasm"
    assert pimc_main([str(DIGITS / "digits_cnn.onnx"), "-o", str(out), "--target", target,
                      "--calib", str(DIGITS / "digits_calib.npy")]) == 0
    text = capsys.readouterr().out
    _, s = pimrun(out.read_text())
    assert number(text, r"(\d+) logical \(weight blocks\)") == s["logical_crossbars"]
    assert number(text, r"(\d+) physical of") == s["physical_crossbars"]
    assert number(text, r"physical of (\d+) on") == s["chip_crossbars"]
    if "schedule" in s:
        assert number(text, r"(\d+) crossbar writes per inference") == s["schedule"]["crossbar_writes"]
    else:
        assert "crossbar writes" not in text
