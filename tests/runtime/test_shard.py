"""Sharded runs (runtime/shard.py): shards merged equal one machine's run, on a real Dask cluster too, and a
worker killed mid-run loses nothing and counts nothing twice."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from functools import lru_cache

import numpy as np
import pytest

from compiler.pipeline import compile_model
from isa import load_target, print_program
from runtime import shard
from runtime.cli import main as pimrun
from runtime.errors import RuntimeFault
from runtime.machine import Machine
from runtime.schedule import account
from tests.conftest import DIGITS, ROOT, digits_compiled

HIST = (-300, 300)


@lru_cache(maxsize=None)
def program(target: str):
    if target == "aras_small":          # a rewriting target: writes per inference, and a schedule's account
        return compile_model(DIGITS / "digits_cnn.onnx", load_target(ROOT / "tests" / "runtime" / "aras_small.toml"),
                             np.load(DIGITS / "digits_calib.npy")).program
    return digits_compiled(target).program


def images(n):
    return {"image": np.load(DIGITS / "digits_test.npz")["x"][:n]}


def single(prog, feeds, **kw):
    m = Machine(prog, hist_range=HIST, **kw)
    return m, m.run(feeds)


@pytest.mark.parametrize("target, n, shards", [("isaac", 60, 7), ("raella", 12, 5), ("aras_small", 30, 4)])
def test_merged_shards_equal_one_machine(target, n, shards):
    prog, feeds = program(target), images(n)
    m, outs = single(prog, feeds)
    parts = [shard.run_shard(prog, {"image": feeds["image"][a:b]}, a, {"hist_range": HIST})
             for a, b in shard.cuts(n, shards)]
    merged = shard.merge([p[1] for p in parts])
    assert np.array_equal(np.concatenate([p[0]["logits"] for p in parts]), outs["logits"])
    assert json.dumps(merged.to_json()) == json.dumps(m.stats.to_json())
    assert merged.histogram() == m.stats.histogram()
    if m.cells is not None:
        probe = Machine(prog)
        probe.run({"image": feeds["image"][:1]})
        probe.stats = merged
        assert json.dumps(account(probe)) == json.dumps(account(m))


def test_cuts_cover_the_batch_in_order():
    assert shard.cuts(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert shard.cuts(2, 8) == [(0, 1), (1, 2)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def cluster():
    """A scheduler and two workers started with distributed's CLI on free localhost ports:
    (address, worker processes)."""
    pytest.importorskip("distributed")
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    procs = [_spawn("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")]
    try:
        workers = [_spawn("worker", addr, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                          "--host", "127.0.0.1") for _ in range(2)]
        procs += workers
        yield addr, workers
    finally:
        for p in reversed(procs):
            p.kill()
        for p in procs:
            p.wait(timeout=30)


def test_a_worker_killed_mid_run_loses_nothing(cluster):
    addr, workers = cluster
    prog, feeds = program("isaac"), images(120)
    m, outs = single(prog, feeds)
    killed = []

    def progress(done, total):
        if not killed:                  # the first shard is back, most are still to run: kill a worker now
            assert done < total
            workers[1].kill()
            workers[1].wait(timeout=30)
            killed.append(done)
        seen.append(done)
    seen = []
    with shard.client(scheduler=addr) as c:
        c.wait_for_workers(2, timeout=45)
        got, stats = shard.run(c, prog, feeds, hist_range=HIST, shards=24, progress=progress)
        deadline = time.monotonic() + 20
        while len(c.scheduler_info()["workers"]) > 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(c.scheduler_info()["workers"]) == 1        # the scheduler saw the death
    assert killed and seen[-1] == 120 and len(seen) == 24
    assert np.array_equal(got["logits"], outs["logits"])
    assert json.dumps(stats.to_json()) == json.dumps(m.stats.to_json())
    assert stats.histogram() == m.stats.histogram()


def test_pimrun_on_a_scheduler_and_on_local_workers_writes_the_single_run_files(cluster, tmp_path):
    addr, _ = cluster
    path = tmp_path / "d.pimasm"
    path.write_text(print_program(program("raella")))
    data = tmp_path / "x.npz"
    np.savez(data, x=images(16)["image"])
    runs = {"one": [], "scheduler": ["--scheduler", addr], "local": ["--workers", "2"]}
    for name, extra in runs.items():
        assert pimrun([str(path), "--input", str(data), "-o", str(tmp_path / f"{name}.npy"),
                       "--stats", str(tmp_path / f"{name}.json"), "--quiet", *extra]) == 0
    for name in ("scheduler", "local"):
        assert (tmp_path / f"{name}.npy").read_bytes() == (tmp_path / "one.npy").read_bytes()
        assert (tmp_path / f"{name}.json").read_bytes() == (tmp_path / "one.json").read_bytes()


def test_noise_over_shards_repeats_the_single_run(cluster):
    addr, _ = cluster
    prog, feeds = program("isaac"), images(12)
    with shard.client(scheduler=addr) as c:
        got, stats = shard.run(c, prog, feeds, noise=0.05, seed=3, shards=3)
    m = Machine(prog, noise=0.05, seed=3)
    assert np.array_equal(got["logits"], m.run(feeds)["logits"])
    assert json.dumps(stats.to_json()) == json.dumps(m.stats.to_json())


def test_bad_cluster_options_are_one_line_errors(tmp_path, capsys):
    path = tmp_path / "d.pimasm"
    path.write_text(print_program(program("isaac")))
    data = tmp_path / "x.npy"
    np.save(data, images(2)["image"])
    for extra in (["--workers", "0"], ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"]):
        assert pimrun([str(path), "--input", str(data), *extra]) == 1
        err = capsys.readouterr().err
        assert "--workers must be >= 1 and cannot go with --scheduler" in err and err.count("\n") == 1
    with pytest.raises(RuntimeFault, match="cannot reach the Dask scheduler"):
        with shard.client(scheduler=f"tcp://127.0.0.1:{_free_port()}", timeout=1):    # nothing listens there
            pass
