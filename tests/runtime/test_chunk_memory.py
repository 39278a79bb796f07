"""A batch is checked against the memory this host can still give before all of it runs (Machine.fit_chunk):
a --chunk whose buffers cannot fit is one line naming the input and the figures; the automatic chunk shrinks
to fit, with the same outputs. The limit is one the test sets: RLIMIT_DATA in a pimrun process of its own
(what `ulimit -d` does), or the budget itself."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

import runtime.machine as machine
from isa import print_program
from runtime.errors import RuntimeFault
from tests.conftest import cli_with_data_limit, digits_compiled

ROOT = Path(__file__).resolve().parents[2]


def pimrun_limited(extra_mib: int, *argv) -> subprocess.CompletedProcess:
    return cli_with_data_limit("runtime.cli", "runtime.machine", extra_mib, *argv)


@pytest.fixture(scope="module")
def batch(tmp_path_factory, digits_test):
    d = tmp_path_factory.mktemp("mem")
    (d / "p.pimasm").write_text(print_program(digits_compiled("isaac").program))
    np.save(d / "x.npy", np.concatenate([digits_test[0]] * 8))      # 4320 samples, 100 KiB of buffers each
    return d


def test_a_chunk_too_large_for_the_limit_is_one_line_before_the_batch_runs(batch):
    r = pimrun_limited(256, batch / "p.pimasm", "--input", batch / "x.npy", "--chunk", 4320, "--quiet",
                       "-o", batch / "y.npy")
    err = r.stderr.splitlines()
    assert r.returncode == 1 and len(err) == 1, r.stderr
    assert err[0].startswith("pimrun: error: input 'image': 4320 samples need") and "a chunk of 4320" in err[0]
    assert "use --chunk" in err[0] and not (batch / "y.npy").exists()
    fits = int(err[0].split("use --chunk ")[1].split()[0])
    assert 1 <= fits < 4320


def test_the_automatic_chunk_fits_the_limit_with_the_same_outputs(batch):
    r = pimrun_limited(256, batch / "p.pimasm", "--input", batch / "x.npy", "--quiet", "-o", batch / "y.npy")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    m = machine.Machine(digits_compiled("isaac").program)
    want = m.run({"image": np.load(batch / "x.npy")})["logits"]
    assert np.array_equal(np.load(batch / "y.npy"), want)


@pytest.mark.parametrize("budget_kib", [150, 400, 3000])
def test_fit_chunk_keeps_outputs_and_buffers_within_the_budget(monkeypatch, digits_test, budget_kib):
    prog = digits_compiled("isaac").program
    x = digits_test[0][:60]
    want = machine.Machine(prog).run({"image": x})["logits"]
    monkeypatch.setattr(machine, "memory_budget", lambda: budget_kib << 10)
    m = machine.Machine(prog)
    sizes = []
    real = m._run_chunk
    monkeypatch.setattr(m, "_run_chunk", lambda feeds: sizes.append(len(feeds["image"])) or real(feeds))
    assert np.array_equal(m.run({"image": x})["logits"], want)
    assert sizes[0] == 1 and sum(sizes) == 60
    assert max(sizes) * m.per_sample <= (budget_kib << 10) + m.per_sample
    with pytest.raises(RuntimeFault, match=r"input 'image': 60 samples need .* a chunk of 60 "):
        machine.Machine(prog).run({"image": x}, chunk=60)


def test_outputs_larger_than_the_budget_are_refused(monkeypatch, digits_test):
    prog = digits_compiled("isaac").program
    monkeypatch.setattr(machine, "memory_budget", lambda: 0)
    m = machine.Machine(prog)
    m.out_per_sample, m.per_sample = 1 << 20, 1000        # as if each sample gave 1 MiB of outputs
    with pytest.raises(RuntimeFault, match=r"input 'image': 60 samples need 120\.0 MiB for their outputs .* run "
                                           r"fewer samples at a time"):
        m.run({"image": digits_test[0][:60]})
