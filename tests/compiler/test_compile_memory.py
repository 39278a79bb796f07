"""A compile's memory under a limit the test sets (RLIMIT_DATA, what `ulimit -d` does, in a process of its
own): a large-input CNN compiles within a bound, and a calibration set of the wrong shape is one line before
the model's shapes are probed, however large the model's input (benchmarks/compile_memory.py's CNN)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from compile_memory import cnn  # noqa: E402

from tests.conftest import cli_with_data_limit  # noqa: E402


def pimc_limited(extra_mib: int, *argv) -> subprocess.CompletedProcess:
    return cli_with_data_limit("compiler.cli", "onnx, compiler.pipeline", extra_mib, *argv)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("cnn")
    for h in (512, 1024):
        onnx.save(cnn(h), d / f"cnn{h}.onnx")
    rng = np.random.default_rng(1)
    np.save(d / "calib512.npy", rng.normal(size=(2, 3, 512, 512)).astype(np.float32))
    np.save(d / "calib_wrong.npy", rng.normal(size=(2, 3, 1000, 1000)).astype(np.float32))
    return d


def test_a_512x512_cnn_compiles_within_400_mib(models):
    r = pimc_limited(400, models / "cnn512.onnx", "-o", models / "p.pimasm", "--target", "isaac", "--calib",
                     models / "calib512.npy", "--quiet")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert (models / "p.pimasm").read_text().startswith("pimasm 1\n")


def test_a_calibration_shape_mismatch_on_a_1024x1024_cnn_is_one_line_within_100_mib(models):
    r = pimc_limited(100, models / "cnn1024.onnx", "-o", models / "q.pimasm", "--target", "isaac", "--calib",
                     models / "calib_wrong.npy", "--quiet")
    err = r.stderr.splitlines()
    assert r.returncode == 1 and len(err) == 1, r.stderr
    assert err[0].startswith("pimc: error: calibration input 'x' has shape [2, 3, 1000, 1000]")
    assert not (models / "q.pimasm").exists()



def test_a_compile_that_runs_out_of_memory_says_so_in_one_line(models, monkeypatch, capsys):
    """An allocation that fails while a node is converted is 'out of memory', never mistaken for an
    unsupported form of the node (where the limit itself first bites varies: OpenBLAS may end the process
    with its own message, so the failure is raised here)."""
    from compiler import onnx_ops
    from compiler.cli import main as pimc

    def conv(fe, node):
        raise MemoryError("Unable to allocate 13.5 MiB for an array")
    monkeypatch.setitem(onnx_ops.CONVERTERS, "Conv", conv)
    code = pimc([str(models / "cnn512.onnx"), "-o", str(models / "r.pimasm"), "--target", "isaac", "--calib",
                 str(models / "calib512.npy"), "--quiet"])
    err = capsys.readouterr().err.splitlines()
    assert code == 1 and err == ["pimc: error: out of memory (Unable to allocate 13.5 MiB for an array)"]
    assert not (models / "r.pimasm").exists()
