"""Design-space sweeps (compiler/sweep.py) on the digits CNN: a tiny grid on a few test images, judged against
the same points compiled and run by hand; failing points, resume, the cluster, and bad sweep files."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from compiler.pipeline import compile_model
from compiler.sweep import judge, load_sweep, main as pimsweep, pareto, sweep
from isa import load_target
from runtime.machine import Machine
from tests.conftest import DIGITS, ROOT

N = 12
SWEEP = f"""
[[model]]
name = "digits"
onnx = "{DIGITS / 'digits_cnn.onnx'}"
calib = "{DIGITS / 'digits_calib.npy'}"
data = "{DIGITS / 'digits_test.npz'}"
metric = "top1"
samples = {N}

[base]
target = "raella"
input_slices = [1, 1, 1, 1, 1, 1, 1, 1]
recovery_bits = 0
weight_slices = [2, 2, 2, 2]
adaptive_slicing = false

[[point]]
name = "C+O"

[[point]]
name = "too small"
tiles = 1
imas_per_tile = 1

[[point]]
name = "bad slicing"
weight_slices = [4, 4]
cell_bits = 2

[grid]
adc_bits = [5, 7]
"""


def rows(out):
    with open(out / "results.csv") as f:
        return list(csv.DictReader(f))


def by_hand(adc_bits):
    t = load_target("raella").replace(input_slices=(1,) * 8, recovery_bits=0, weight_slices=(2, 2, 2, 2),
                                      adaptive_slicing=False, adc_bits=adc_bits)
    c = compile_model(DIGITS / "digits_cnn.onnx", t, np.load(DIGITS / "digits_calib.npy"))
    d = np.load(DIGITS / "digits_test.npz")
    m = Machine(c.program)
    y = m.run({"image": d["x"][:N]})["logits"]
    return float(np.mean(y.argmax(1) == d["y"][:N])), m.stats.to_json()


def test_a_sweep_runs_every_point_once_records_failures_and_resumes(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(SWEEP)
    out = tmp_path / "res"
    lines = []
    sweep(f, out, report=lines.append)
    got = rows(out)
    assert [r["label"] for r in got] == [f"{n} adc_bits={b}" for n in ("C+O", "too small", "bad slicing")
                                        for b in (5, 7)]
    assert len(lines) == 6 and len(list((out / "programs").glob("*.pimasm"))) == 2
    for r in got[:2]:
        score, stats = by_hand(int(r["adc_bits"]))
        assert r["error"] == "" and float(r["score"]) == score
        for k in ("converts_per_mac", "saturation_rate", "adc_converts", "samples"):
            assert float(r[k]) == stats[k]
        assert float(r["per_inference.energy_incl_weight_writes_pj"]) == pytest.approx(
            stats["per_inference"]["energy_incl_weight_writes_pj"], rel=1e-12)
        assert float(r["compile_s"]) > 0 and float(r["run_s"]) > 0
    assert got[0]["saturation_rate"] != got[1]["saturation_rate"]            # the grid key reached the target
    assert all("crossbars" in r["error"] and r["score"] == "" for r in got[2:4])    # does not fit
    assert all("weight_slices" in r["error"] for r in got[4:6])                     # no such target
    for name in ("accuracy_energy.png", "accuracy_noise.png", "converts_adc_bits.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # an interruption: the last point's line cut short, one point never written
    log = (out / "points.jsonl").read_text().splitlines()
    kept = [line for line in log if json.loads(line)["label"] != "C+O adc_bits=7"]
    (out / "points.jsonl").write_text("\n".join(kept) + "\n" + '{"point_id": "4a')
    lines.clear()
    sweep(f, out, resume=True, report=lines.append)
    assert sorted(line.split(": ")[0].split("] ")[1] for line in lines) == sorted(
        ["digits C+O adc_bits=7"] + [f"digits {n} adc_bits={b}" for n in ("too small", "bad slicing") for b in (5, 7)])
    again = rows(out)
    assert [r["label"] for r in again] == [r["label"] for r in got]
    assert [r["score"] for r in again] == [r["score"] for r in got]
    assert again[1]["compile_s"] == got[1]["compile_s"]            # the cached program, not a new compile
    assert pimsweep([str(f), "-o", str(out), "--quiet"]) == 1      # not over an earlier sweep without --resume


def test_a_sweep_on_local_workers_gives_the_serial_rows(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(SWEEP.replace("adc_bits = [5, 7]", "adc_bits = [6]").replace(f"samples = {N}", "samples = 6")
                 .replace('name = "too small"', 'name = "noisy"\nnoise = 0.05\nseed = 1').replace(
                     "tiles = 1\nimas_per_tile = 1\n", ""))
    sweep(f, tmp_path / "serial", report=lambda line: None)
    assert pimsweep([str(f), "-o", str(tmp_path / "cluster"), "--workers", "2", "--quiet"]) == 0
    a, b = rows(tmp_path / "serial"), rows(tmp_path / "cluster")
    assert len(a) == 3 and [r["error"] == "" for r in a] == [True, True, False]
    timing = ("compile_s", "run_s")
    assert [{k: v for k, v in r.items() if k not in timing} for r in a] == \
        [{k: v for k, v in r.items() if k not in timing} for r in b]


@pytest.mark.parametrize("text, line, msg", [
    ("[[model]\nname = 1\n", None, "bad TOML"),
    ("[[model]]\nname = 'd'\nonnx = 'm.onnx'\n", 1, "has no 'data'"),
    ("[[model]]\nname = 'd'\nonnx = 'nope.onnx'\ndata = 'x.npz'\nmetric = 'top1'\n", 3, "'onnx': no such file"),
    ("MODEL\n[[point]]\nname = 'a'\n\nadc_bitz = 7\n", 11, "unknown key 'adc_bitz'"),
    ("MODEL\n[base]\nadc_bits = 'seven'\n", 9, "'adc_bits' must be int"),
    ("MODEL\n[grid]\nnoise = 0.1\n", 9, "grid key 'noise' must be a non-empty list"),
    ("MODEL\n[grid]\nschedule = ['fast']\n", 9, "'schedule' must be one of"),
    ("MODEL\n[[point]]\nnoise = 0.1\n[grid]\nnoise = [0.1]\n", 9, "'noise' is set both here and in [grid]"),
    ("MODEL\n[[model]]\nname = 'x'\nonnx = 'm.onnx'\ndata = 'c.npy'\nmetric = 'top1'\n", 12, "no labels (y/label/labels)"),
    ("MODEL\nlabels = 'group'\n", 8, "no labels (group)"),
])
def test_a_bad_sweep_file_is_one_line_naming_the_line_and_key(tmp_path, capsys, text, line, msg):
    (tmp_path / "m.onnx").write_bytes((DIGITS / "digits_cnn.onnx").read_bytes())
    (tmp_path / "x.npz").write_bytes((DIGITS / "digits_test.npz").read_bytes())
    (tmp_path / "c.npy").write_bytes((DIGITS / "digits_calib.npy").read_bytes())
    model = "[[model]]\nname = 'd'\nonnx = 'm.onnx'\ncalib = 'c.npy'\ndata = 'x.npz'\nmetric = 'top1'\n"
    f = tmp_path / "bad.toml"
    f.write_text(text.replace("MODEL", model))
    assert pimsweep([str(f), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and msg in err
    assert (f"{f}:{line}:" in err) if line else "line 1" in err
    assert not (tmp_path / "out").exists()                 # nothing ran


def test_the_ablation_example_is_a_valid_sweep():
    points = load_sweep(ROOT / "examples" / "sweeps" / "raella_ablation.toml")
    names = list(dict.fromkeys(p.name for p in points))
    assert names == ["ISAAC", "+C+O", "Z+O", "+C+O +AWS", "+C+O +AWS +Spec"] and len(points) == 20
    assert not any(p.error for p in points)
    spec = next(p for p in points if p.name == "+C+O +AWS +Spec").target
    assert (spec.encoding, spec.input_slices, spec.recovery_bits, spec.rows) == ("center_offset", (4, 2, 2), 1, 512)
    assert len({p.program for p in points}) == 5                   # noise levels share their setup's program


def test_pareto_front_and_metrics():
    assert pareto([3, 1, 2, 4], [0.9, 0.5, 0.95, 0.99]) == [1, 2, 3]
    y = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    ref = np.array([[0.0, 1.0], [0.0, 1.0], [0.2, 0.8]])
    assert judge("top1", y, np.array([1, 0, 0]), None) == pytest.approx(2 / 3)
    assert judge("agreement", y, None, ref) == pytest.approx(2 / 3)
    cos = np.sum(y * ref, 1) / np.linalg.norm(y, axis=1) / np.linalg.norm(ref, axis=1)
    assert judge("cosine", y, None, ref) == pytest.approx(cos.mean())
    # nearest neighbours by cosine: 0 <-> 2, 1 -> 2
    assert judge("nn", y, np.array([4, 5, 4]), None) == pytest.approx(2 / 3)
    assert judge("nn", y, None, ref) == pytest.approx(1 / 3)     # float's: 0 -> 1, 1 -> 0, 2 -> 0


def test_a_float_metric_sweep_judges_against_onnxruntime_and_keeps_layers(tmp_path):
    """metric "agreement" with no reference file: pimsweep makes onnxruntime's float outputs itself (in a
    results folder that does not exist yet) and judges against them; each row keeps its per-layer stats in
    points.jsonl, which examples/sweeps/real_model_table.py turns into tables."""
    import importlib.util
    f = tmp_path / "s.toml"
    f.write_text(SWEEP.split("[base]")[0].replace('metric = "top1"', 'metric = "agreement"').replace(
        f"samples = {N}", "samples = 6") + '[base]\ntarget = "isaac"\n')
    out = tmp_path / "res"              # pimsweep creates RESULTS_DIR (not the folders above it)
    sweep(f, out, report=lambda line: None)
    (r,) = rows(out)
    from compiler.verify import onnx_float
    x = np.load(DIGITS / "digits_test.npz")["x"][:6]
    ref = onnx_float(DIGITS / "digits_cnn.onnx", {"image": x})["logits"]
    y = Machine(compile_model(DIGITS / "digits_cnn.onnx", "isaac", np.load(DIGITS / "digits_calib.npy")).program
                ).run({"image": x})["logits"]
    assert r["error"] == "" and float(r["score"]) == float(np.mean(y.argmax(1) == ref.argmax(1)))
    (line,) = [json.loads(s) for s in (out / "points.jsonl").read_text().splitlines()]
    assert len(line["layers"]) >= 3 and all("saturation_rate" in layer for layer in line["layers"])
    assert "layers" not in r                                              # the CSV keeps scalars only
    spec = importlib.util.spec_from_file_location("t", ROOT / "examples" / "sweeps" / "real_model_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    summary, layers = table.summary(table.rows(out)).splitlines(), table.layers(table.rows(out)).splitlines()
    assert len(summary) == 3 and f"| {float(r['score']):.4f} (" in summary[2]
    converting = [layer for layer in line["layers"] if layer.get("adc_converts")]
    assert converting and len(layers) == 2 + len(converting) and all(row.count("|") == 3 for row in layers)


def test_results_and_plots_are_replaced_together_or_not_at_all(tmp_path, monkeypatch, capsys):
    """A failure while writing the last plot leaves results.csv and the other plots as the earlier run left
    them (same files, no temp file); outputs are checked before any point runs; no folder above
    RESULTS_DIR is created."""
    import matplotlib.figure
    f = tmp_path / "s.toml"
    f.write_text(SWEEP.split("[[point]]")[0].replace(f"samples = {N}", "samples = 4")
                 + '[[point]]\nname = "C+O"\n[grid]\nadc_bits = [7]\n')
    out = tmp_path / "res"
    sweep(f, out, report=lambda line: None)
    files = ["results.csv", "accuracy_energy.png", "accuracy_noise.png", "converts_adc_bits.png"]
    before = {n: ((out / n).stat().st_ino, (out / n).read_bytes()) for n in files}
    (out / "points.jsonl").write_text("")           # the resumed sweep runs the point again
    real, calls = matplotlib.figure.Figure.savefig, []

    def failing(fig, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("no space left on device")
        return real(fig, *a, **k)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", failing)
    capsys.readouterr()
    assert pimsweep([str(f), "-o", str(out), "--resume", "--quiet"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "no space left" in err[0]
    assert len(calls) == 3
    assert {n: ((out / n).stat().st_ino, (out / n).read_bytes()) for n in files} == before
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    monkeypatch.undo()

    (out / "results.csv").unlink()
    (out / "results.csv").mkdir()                   # an output that is a folder: refused before any work
    (out / "points.jsonl").write_text("")
    assert pimsweep([str(f), "-o", str(out), "--resume", "--quiet"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "is a folder" in err[0] and (out / "points.jsonl").read_text() == ""

    missing = tmp_path / "no" / "such" / "res"
    assert pimsweep([str(f), "-o", str(missing), "--quiet"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "does not exist" in err[0] and not (tmp_path / "no").exists()
