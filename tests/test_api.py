"""The Python API (pimc package): what the CLIs do, from a script."""
import subprocess
import sys

import numpy as np
import pytest

import pimc
from ir import CompileError
from tests.conftest import DIGITS


@pytest.fixture(scope="module")
def prog():
    return pimc.compile(DIGITS / "digits_cnn.onnx", target="isaac", calib=np.load(DIGITS / "digits_calib.npy"))


def test_compile_save_load_run(prog, tmp_path, digits_test):
    x, y = digits_test
    prog.save(tmp_path / "d.pimasm")
    loaded = pimc.load(tmp_path / "d.pimasm")
    assert loaded.text == prog.text and loaded.target.name == "isaac"
    outs, stats = pimc.run(loaded, x[:40])
    ideal, _ = pimc.run(prog, {"image": x[:40]}, ideal=True)
    assert np.array_equal(outs["logits"], ideal["logits"])        # isaac's flip keeps every sum in the ADC
    assert stats.samples == 40 and stats["macs"] == stats.to_json()["macs"] > 0
    assert (outs["logits"].argmax(1) == y[:40]).mean() > 0.9
    assert '"converts_per_mac"' in stats.dumps()
    assert prog.report["passes"] and loaded.report is None


def test_run_matches_pimrun(prog, tmp_path, digits_test):
    x, _ = digits_test
    prog.save(tmp_path / "d.pimasm")
    np.save(tmp_path / "x.npy", x[:8])
    subprocess.run([sys.executable, "-m", "runtime.cli", str(tmp_path / "d.pimasm"), "--input", str(tmp_path / "x.npy"),
                    "-o", str(tmp_path / "y.npy"), "--quiet"], check=True)
    outs, _ = pimc.run(str(tmp_path / "d.pimasm"), x[:8])
    assert np.array_equal(np.load(tmp_path / "y.npy"), outs["logits"])


def test_verify(prog, digits_test):
    x, y = digits_test
    v = pimc.verify(prog, x[:32], y[:32])
    assert v["ideal_equals_reference"] is True and v["samples"] == 32


def test_bad_option_is_a_compile_error():
    with pytest.raises(CompileError, match="unknown compile option"):
        pimc.compile(DIGITS / "digits_cnn.onnx", target="isaac", calib=None, speculate=False)
    assert any(name == "attention" for name, *_ in pimc.options())


@pytest.mark.parametrize("cli", ["compiler.cli", "runtime.cli"])
def test_version(cli):
    r = subprocess.run([sys.executable, "-m", cli, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and pimc.__version__ in r.stdout
