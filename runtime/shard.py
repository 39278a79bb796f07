"""Sharded runs on a Dask `distributed` cluster: the batch is cut into contiguous shards of samples, each shard
runs on a fresh Machine in a worker process, the outputs are concatenated in sample order and the shards' event
counters merged into one Stats, so outputs and stats equal a single-process run's.

- The program goes to every worker once (scattered with broadcast) and stays in the workers' memory; a shard's
  task carries only its slice of the inputs.
- A worker that dies mid-run loses nothing: its shards are plain tasks (their inputs travel in the task, not
  as scattered data), so the scheduler runs them again on another worker, and a shard is counted once, when
  its result reaches the client.
- Noise: a shard passes its first sample's global index (`sample_offset`) to Machine.run where the machine
  takes one (counter-based noise keyed by the sample index gives the same draws however the batch is cut);
  without it, noisy runs over more than one shard are refused rather than silently different.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import logging
from contextlib import contextmanager

import numpy as np

from . import banks as B
from .errors import RuntimeFault
from .machine import Machine
from .stats import LayerStats, Stats

SHARDS_PER_WORKER = 4      # several shards per worker: progress, load balance, and little to redo on a death
ONCE = ("crossbars", "rows_used", "cells_used")                 # what a machine counts once, whatever its batch
WEIGHT_LOAD = ("crossbar_writes", "write_pulses", "write_ns")   # a program-once target's one-time weight load
TAKES_OFFSET = "sample_offset" in inspect.signature(Machine.run).parameters


def cuts(n: int, shards: int) -> list[tuple[int, int]]:
    """[lo, hi) sample ranges of `shards` near-equal contiguous shards covering range(n) (none empty)."""
    k = max(1, min(n, shards))
    edges = [n * i // k for i in range(k + 1)]
    return list(zip(edges, edges[1:]))


def run_shard(program, feeds: dict, offset: int, opts: dict):
    """Run one shard (samples offset.. of the batch) on a fresh machine: (outputs, Stats)."""
    opts = dict(opts)
    chunk = opts.pop("chunk", None)
    m = Machine(program, **opts)
    kw = {"sample_offset": offset} if TAKES_OFFSET else {}
    return m.run(feeds, chunk=chunk, **kw), m.stats


def merge(parts: list[Stats]) -> Stats:
    """One Stats for the whole batch from its shards' (in sample order). Counters are summed (per-crossbar
    times key by key, histograms bin by bin, bank records as runtime/banks.py adds them); what every shard's
    machine counts once, whatever its batch (the crossbars written, rows and cells used, and on a program-once
    target the weight load), is taken once. Means, rates and per-inference figures are formed from the merged
    counters by Stats.to_json, as for one machine. Time sums are exact (order-free) while they are whole
    numbers of ns, as with the bundled targets; fractional figures could differ in the last bit."""
    first = parts[0]
    once = ONCE + (WEIGHT_LOAD if first.t.program_once else ())
    out = Stats(first.t, first.hist_range)
    for p in parts:
        out.samples += p.samples
        for name, s in p.layers.items():
            if name not in out.layers:
                out.layers[name] = copy.deepcopy(s)
                continue
            o = out.layers[name]
            for f in dataclasses.fields(LayerStats):
                k, v = f.name, getattr(s, f.name)
                if k == "name" or k in once:
                    continue
                if k == "banks":
                    if v:
                        B.add(o.banks, v["product"], v["mode"], v)
                elif k == "xbar_ns":
                    for xb, ns in v.items():
                        o.xbar_ns[xb] = o.xbar_ns.get(xb, 0.0) + ns
                elif isinstance(v, np.ndarray) or v is None:
                    cur = getattr(o, k)
                    setattr(o, k, v if cur is None else cur if v is None else cur + v)
                elif isinstance(v, (int, float)):
                    setattr(o, k, getattr(o, k) + v)
                else:                 # a new kind of counter: decide how it merges rather than guess
                    raise TypeError(f"shard.merge: no rule for LayerStats.{k} ({type(v).__name__})")
    return out


@contextmanager
def client(workers: int | None = None, scheduler: str | None = None, timeout: float = 10):
    """A distributed Client: on the cluster at `scheduler` (tcp://HOST:PORT), or on a local cluster of
    `workers` single-threaded processes started here and stopped on exit."""
    from distributed import Client, LocalCluster
    if scheduler:
        try:
            c = Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as e:
            raise RuntimeFault(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
        with c:
            yield c
        return
    if not workers or workers < 1:
        raise RuntimeFault(f"--workers must be >= 1, got {workers}")
    with LocalCluster(n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as c:
        yield c


def run(c, program, feeds: dict[str, np.ndarray], ideal=False, chunk=None, noise=0.0, seed=0, hist_range=None,
        filename="<program>", shards=None, progress=None) -> tuple[dict[str, np.ndarray], Stats]:
    """Run `program` on the batch `feeds` over the cluster of client `c`: (outputs, Stats), equal to
    Machine(program, ...).run(feeds, chunk) on one process. `shards` defaults to SHARDS_PER_WORKER per worker;
    progress(done, total) counts samples whose shard has come back, in the order shards finish."""
    from distributed import as_completed
    n = len(next(iter(feeds.values())))
    if shards is None:
        shards = SHARDS_PER_WORKER * max(1, sum(c.nthreads().values()))
    parts = cuts(n, shards)
    if noise and not ideal and len(parts) > 1 and not TAKES_OFFSET:
        raise RuntimeFault("--noise over several shards needs noise keyed by the sample index "
                           "(Machine.run(sample_offset=...)), which this runtime lacks: run noisy batches "
                           "without --workers/--scheduler")
    opts = dict(ideal=ideal, hist_range=hist_range, filename=filename, noise=noise, seed=seed, chunk=chunk)
    [prog] = c.scatter([program], broadcast=True)
    futs = {c.submit(run_shard, prog, {k: v[lo:hi] for k, v in feeds.items()}, lo, opts, pure=False): i
            for i, (lo, hi) in enumerate(parts)}
    results: list = [None] * len(parts)
    done = 0
    try:
        for f in as_completed(futs):
            i = futs[f]
            results[i] = f.result()
            f.release()
            done += parts[i][1] - parts[i][0]
            if progress:
                progress(done, n)
    finally:
        for f in futs:
            f.cancel()
        prog.release()
    outs = {k: np.concatenate([r[0][k] for r in results]) for k in results[0][0]}
    return outs, merge([r[1] for r in results])
