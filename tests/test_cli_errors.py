"""The CLIs fail cleanly: non-zero exit, exactly one line on stderr, no traceback, no output file left.

Each case runs `python -m compiler.cli` (pimc) or `python -m runtime.cli` (pimrun) from the repository
root, writing into an `out/` folder of its own that must still be empty afterwards (no program, no
half-written temp file). A success case checks that the same command line does write its file.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"
MODEL = DIGITS / "digits_cnn.onnx"
CALIB = DIGITS / "digits_calib.npy"


def run(module: str, *args, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PIM_DEBUG"}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def pimc(*args):
    return run("compiler.cli", *args)


def pimrun(*args):
    return run("runtime.cli", *args)


def assert_clean_failure(r: subprocess.CompletedProcess, prog: str, out: Path, *needles: str) -> str:
    # progress lines (off a terminal, for work over a couple of seconds) may come before the one error line
    lines = [ln for ln in r.stderr.splitlines() if not re.fullmatch(rf"{prog}: .* \(\d+ s\)", ln)]
    assert r.returncode == 1, (r.returncode, r.stderr)             # 1: a user error; 2 would be an internal one
    assert len(lines) == 1, f"stderr has {len(lines)} lines:\n{r.stderr}"
    line = lines[0]
    assert line.startswith(f"{prog}: error: "), line
    assert "Traceback" not in r.stderr + r.stdout
    assert "internal error" not in line
    for n in needles:
        assert n in line, (n, line)
    left = sorted(p.name for p in out.iterdir())
    assert not left, f"files left in the output folder: {left}"
    return line


@pytest.fixture
def out(tmp_path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


@lru_cache(maxsize=None)
def program_text() -> str:
    from compiler.pipeline import compile_model
    from isa import print_program
    return print_program(compile_model(MODEL, "isaac", np.load(CALIB)).program)


@pytest.fixture
def program(tmp_path) -> Path:
    p = tmp_path / "d.pimasm"
    p.write_text(program_text())
    return p


@pytest.fixture
def images(tmp_path) -> Path:
    p = tmp_path / "x.npy"
    np.save(p, np.load(DIGITS / "digits_test.npz")["x"][:4])
    return p


# ---- pimc ------------------------------------------------------------------------------------------------

def test_pimc_success_writes_the_program(out):
    r = pimc(MODEL, "-o", out / "d.pimasm", "--target", "isaac", "--calib", CALIB, "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert sorted(p.name for p in out.iterdir()) == ["d.pimasm"]        # no temp file beside it
    from isa import parse_program
    assert parse_program((out / "d.pimasm").read_text()) == parse_program(program_text())


def test_pimc_corrupt_onnx(tmp_path, out):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    assert_clean_failure(pimc(bad, "-o", out / "d.pimasm", "--calib", CALIB), "pimc", out, "corrupt.onnx")


def test_pimc_truncated_onnx(tmp_path, out):
    data = MODEL.read_bytes()
    bad = tmp_path / "trunc.onnx"
    bad.write_bytes(data[:len(data) // 2])
    assert_clean_failure(pimc(bad, "-o", out / "d.pimasm", "--calib", CALIB), "pimc", out, "trunc.onnx")


def test_pimc_missing_model(tmp_path, out):
    assert_clean_failure(pimc(tmp_path / "none.onnx", "-o", out / "d.pimasm", "--calib", CALIB), "pimc", out,
                         "none.onnx")


def test_pimc_unsupported_op(tmp_path, out):
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    g = helper.make_graph([helper.make_node("Det", ["x"], ["y"], name="det0")], "g", [x], [y])
    path = tmp_path / "det.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    calib = tmp_path / "c.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((4, 3, 3)).astype(np.float32))
    assert_clean_failure(pimc(path, "-o", out / "d.pimasm", "--calib", calib), "pimc", out, "Det")


def test_pimc_float_model_without_calib(out):
    assert_clean_failure(pimc(MODEL, "-o", out / "d.pimasm"), "pimc", out, "--calib")


def test_pimc_misshaped_calib(tmp_path, out):
    calib = tmp_path / "c.npy"
    np.save(calib, np.zeros((4, 3, 3), np.float32))
    assert_clean_failure(pimc(MODEL, "-o", out / "d.pimasm", "--calib", calib), "pimc", out, "[4, 3, 3]",
                         "[N, 1, 16, 16]")


def test_pimc_calib_with_nan(tmp_path, out):
    x = np.load(CALIB).copy()
    x[0, 0, 0, 0] = np.nan
    calib = tmp_path / "c.npy"
    np.save(calib, x)
    assert_clean_failure(pimc(MODEL, "-o", out / "d.pimasm", "--calib", calib), "pimc", out, "NaN")


def test_pimc_calib_not_an_array(tmp_path, out):
    calib = tmp_path / "c.npy"
    calib.write_bytes(b"not numpy at all")
    assert_clean_failure(pimc(MODEL, "-o", out / "d.pimasm", "--calib", calib), "pimc", out, "c.npy")


def test_pimc_unknown_target(out):
    assert_clean_failure(pimc(MODEL, "-o", out / "d.pimasm", "--calib", CALIB, "--target", "nope"), "pimc", out,
                         "unknown target 'nope'")


def test_pimc_bad_toml_target(tmp_path, out):
    t = tmp_path / "bad.toml"
    t.write_text('name = "x"\nrows = [\n')
    assert_clean_failure(pimc(MODEL, "-o", out / "d.pimasm", "--calib", CALIB, "--target", t), "pimc", out,
                         "bad target TOML")


def test_pimc_target_toml_with_a_wrong_type(tmp_path, out):
    t = tmp_path / "t.toml"
    t.write_text(re.sub(r"(?m)^rows\s*=\s*\d+", 'rows = "128"', (ROOT / "isa" / "targets" / "isaac.toml").read_text()))
    assert_clean_failure(pimc(MODEL, "-o", out / "d.pimasm", "--calib", CALIB, "--target", t), "pimc", out,
                         "'rows' must be int")


def test_pimc_output_path_is_a_directory(out):
    (out / "d.pimasm").mkdir()
    r = pimc(MODEL, "-o", out / "d.pimasm", "--target", "isaac", "--calib", CALIB, "--quiet")
    (out / "d.pimasm").rmdir()
    assert_clean_failure(r, "pimc", out, "d.pimasm")


# ---- pimrun ----------------------------------------------------------------------------------------------

def test_pimrun_success_writes_the_outputs(program, images, out):
    r = pimrun(program, "--input", images, "-o", out / "y.npy", "--stats", out / "s.json", "--quiet")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["s.json", "y.npy"]
    assert np.load(out / "y.npy").shape == (4, 10)


def test_pimrun_wrong_input_shape(tmp_path, program, out):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((3, 1, 8, 8), np.float32))
    assert_clean_failure(pimrun(program, "--input", x, "-o", out / "y.npy"), "pimrun", out, "[3, 1, 8, 8]",
                         "[N, 1, 16, 16]")


def test_pimrun_wrong_dtype(tmp_path, program, out):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((3, 1, 16, 16), np.int64))
    assert_clean_failure(pimrun(program, "--input", x, "-o", out / "y.npy"), "pimrun", out, "int64")


def test_pimrun_input_with_nan(tmp_path, program, out):
    x = np.zeros((3, 1, 16, 16), np.float32)
    x[1, 0, 2, 2] = np.inf
    x[2, 0, 3, 3] = np.nan
    p = tmp_path / "x.npy"
    np.save(p, x)
    assert_clean_failure(pimrun(program, "--input", p, "-o", out / "y.npy"), "pimrun", out, "2 NaN or infinite")


def test_pimrun_missing_input_file(tmp_path, program, out):
    assert_clean_failure(pimrun(program, "--input", tmp_path / "none.npy", "-o", out / "y.npy"), "pimrun", out,
                         "none.npy")


def test_pimrun_program_with_a_syntax_error(tmp_path, images, out):
    lines = program_text().splitlines(keepends=True)
    i = next(i for i, ln in enumerate(lines) if ln.startswith("im2col "))
    lines[i] = re.sub(r"(%[\w.]+), ", r"\1 ", lines[i], count=1)          # drop the comma between operands
    p = tmp_path / "syn.pimasm"
    p.write_text("".join(lines))
    assert_clean_failure(pimrun(p, "--input", images, "-o", out / "y.npy"), "pimrun", out,
                         f"syn.pimasm:{i + 1}:", "unexpected '%'", "','")


def test_pimrun_program_breaking_the_target(tmp_path, images, out):
    from isa import load_target
    n = load_target("isaac").xbars
    lines = program_text().splitlines(keepends=True)
    i = next(i for i, ln in enumerate(lines) if ln.startswith("xbwrite "))
    lines[i] = re.sub(r"\bxb=\d+", f"xb={n}", lines[i], count=1)
    p = tmp_path / "big.pimasm"
    p.write_text("".join(lines))
    assert_clean_failure(pimrun(p, "--input", images, "-o", out / "y.npy"), "pimrun", out,
                         f"big.pimasm:{i + 1}: xbwrite: crossbar index {n}", f"{n} crossbars")


def test_pimrun_not_a_program(tmp_path, images, out):
    p = tmp_path / "bin.pimasm"
    p.write_bytes(MODEL.read_bytes()[:1000])
    assert_clean_failure(pimrun(p, "--input", images, "-o", out / "y.npy"), "pimrun", out, "bin.pimasm")


def test_pimrun_missing_program(tmp_path, images, out):
    assert_clean_failure(pimrun(tmp_path / "none.pimasm", "--input", images, "-o", out / "y.npy"), "pimrun", out,
                         "none.pimasm")


# ---- what a new user runs into ---------------------------------------------------------------------------

def test_pimrun_on_an_onnx_model_says_to_compile_it(out, images):
    line = assert_clean_failure(pimrun(MODEL, "--input", images, "-o", out / "y.npy"), "pimrun", out,
                                "not a .pimasm program", "pimc")
    assert "codec" not in line


@pytest.mark.parametrize("tool", ["pimc", "pimrun"])
def test_output_into_a_missing_folder_is_refused(tmp_path, out, program, images, tool):
    missing = tmp_path / "no" / "such"
    r = pimc(MODEL, "-o", missing / "d.pimasm", "--target", "isaac", "--calib", CALIB) if tool == "pimc" else \
        pimrun(program, "--input", images, "-o", missing / "y.npy")
    assert_clean_failure(r, tool, out, "does not exist")
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("name", ["y", "y.out", "y.npy"])
def test_output_without_npy_suffix_holds_the_array(out, program, images, name):
    r = pimrun(program, "--input", images, "-o", out / name, "--quiet")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == [name]          # no stray temp file
    assert np.load(out / name).shape == (4, 10)


def test_timeline_on_a_program_once_target_fails_before_the_batch_runs(tmp_path, out, program):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 3), np.float32))     # would fail the shape check if the batch were reached
    assert_clean_failure(pimrun(program, "--input", bad, "--timeline", out / "t.png"), "pimrun", out,
                         "--timeline", "program-once")


def _two_input_model(tmp_path) -> Path:
    """y = a + b, both [N, 4]."""
    import onnx
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"], name="add")], "two",
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4]) for n in "ab"],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_pimc_calib_batches_disagree(tmp_path, out):
    calib = tmp_path / "c.npz"
    rng = np.random.default_rng(0)
    np.savez(calib, a=rng.standard_normal((3, 4)).astype(np.float32), b=rng.standard_normal((5, 4)).astype(np.float32))
    assert_clean_failure(pimc(_two_input_model(tmp_path), "-o", out / "t.pimasm", "--calib", calib), "pimc", out,
                         "disagree on the batch size", "'a' has 3 samples", "'b' has 5 samples")


def test_pimrun_input_batches_disagree(tmp_path, out):
    rng = np.random.default_rng(0)
    calib = tmp_path / "c.npz"
    np.savez(calib, a=rng.standard_normal((3, 4)).astype(np.float32), b=rng.standard_normal((3, 4)).astype(np.float32))
    prog = tmp_path / "t.pimasm"
    assert pimc(_two_input_model(tmp_path), "-o", prog, "--calib", calib, "--target", "isaac").returncode == 0
    feeds = tmp_path / "x.npz"
    np.savez(feeds, a=rng.standard_normal((3, 4)).astype(np.float32), b=rng.standard_normal((2, 4)).astype(np.float32))
    assert_clean_failure(pimrun(prog, "--input", feeds, "-o", out / "y.npz"), "pimrun", out, "'a' has 3 samples",
                         "'b' has 2")
