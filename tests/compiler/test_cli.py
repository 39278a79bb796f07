"""The main job through both CLIs: compile with report, plots and verification; run with stats."""
from __future__ import annotations

import json

import numpy as np

from compiler.cli import main as pimc
from isa import load_target
from runtime.cli import main as pimrun
from tests.conftest import DIGITS


def test_compile_verify_report_plots_then_run(tmp_path, capsys):
    prog, rep, plots = tmp_path / "d.pimasm", tmp_path / "r.json", tmp_path / "plots"
    plots.mkdir()
    test = DIGITS / "digits_test.npz"
    assert pimc([str(DIGITS / "digits_cnn.onnx"), "-o", str(prog), "--target", "raella", "--calib",
                 str(DIGITS / "digits_calib.npy"), "--report", str(rep), "--plots", str(plots),
                 "--verify", str(test)]) == 0
    out = capsys.readouterr()
    assert "bit for bit: yes" in out.out
    # off a terminal: at most plain progress lines naming the phase, never a bar's carriage returns
    assert "\r" not in out.err and all(line.startswith("pimc: ") and " s)" in line for line in out.err.splitlines())
    r = json.loads(rep.read_text())
    assert [p["pass"] for p in r["passes"]] == ["fuse_activations", "attention", "sparse_attention", "calibrate",
                                               "quantize", "slicing", "row_groups", "map_crossbars", "encode_weights"]
    assert r["area_mm2"] == load_target("raella").chip_area_mm2() and r["area_mm2_total"] > 0
    v = r["verification"]
    assert v["ideal_equals_reference"] is True
    assert set(v["levels"]) == {"float (onnxruntime)", "quantised reference", "pimrun ideal", "pimrun target"}
    assert v["levels"]["pimrun target"]["accuracy"] >= 0.985
    for name in ("converts_saturation.png", "column_sums.png", "energy.png"):
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    outp, stats = tmp_path / "y.npy", tmp_path / "s.json"
    assert pimrun([str(prog), "--input", str(test), "-o", str(outp), "--stats", str(stats)]) == 0
    printed = capsys.readouterr().out
    assert "top-1 accuracy" in printed
    y = np.load(outp)
    assert y.shape == (540, 10)
    s = json.loads(stats.read_text())
    assert s["samples"] == 540 and len(s["layers"]) > 5
    assert s["area_mm2"] == r["area_mm2"] and f"chip area {s['area_mm2_total']:.1f} mm2" in printed
    acc = float(printed.split("top-1 accuracy ")[1].split()[0])
    assert acc == round(float(np.mean(y.argmax(1) == np.load(test)["y"])), 4)


def test_npz_output_keyed_by_output_name(tmp_path):
    prog = tmp_path / "d.pimasm"
    assert pimc([str(DIGITS / "digits_cnn.onnx"), "-o", str(prog), "--target", "isaac", "--calib",
                 str(DIGITS / "digits_calib.npy"), "--quiet"]) == 0
    x = np.load(DIGITS / "digits_test.npz")["x"][:5]
    np.save(tmp_path / "x.npy", x)
    assert pimrun([str(prog), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npz"), "--ideal",
                   "--quiet"]) == 0
    assert list(np.load(tmp_path / "y.npz").files) == ["logits"]


def test_help_imports_nothing_heavy():
    """pimc --help answers before onnx, numpy or the IR are imported."""
    import subprocess
    import sys
    code = ("import sys, runpy; sys.argv = ['pimc', '--help']\n"
            "try:\n    runpy.run_module('compiler.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('onnx', 'numpy', 'networkx', 'ir', 'lark') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip().splitlines()[-1] == "[]"
