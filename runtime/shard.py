"""Sharded runs on a Dask `distributed` cluster: the batch is cut into contiguous shards of samples, each shard
runs on a fresh Machine in a worker process, the outputs are concatenated in sample order and the shards' event
counters merged into one Stats, so outputs and stats equal a single-process run's.

- The program goes to every worker once (scattered with broadcast) and stays in the workers' memory; a shard's
  task carries only its slice of the inputs.
- A worker that dies mid-run loses nothing: its shards are plain tasks (their inputs travel in the task, not
  as scattered data), so the scheduler runs them again on another worker, and a shard is counted once, when
  its result reaches the client.
- Noise is keyed by the global sample index, so a shard passes its first sample's index (`sample_offset`);
  it also passes the sample before it (`previous`), against which run-time-written crossbars count their
  first write, as in one run.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager

import numpy as np

from .errors import RuntimeFault
from .machine import Machine
from .stats import Stats

SHARDS_PER_WORKER = 4      # several shards per worker: progress, load balance, and little to redo on a death


def cuts(n: int, shards: int) -> list[tuple[int, int]]:
    """[lo, hi) sample ranges of `shards` near-equal contiguous shards covering range(n) (none empty)."""
    k = max(1, min(n, shards))
    edges = [n * i // k for i in range(k + 1)]
    return list(zip(edges, edges[1:]))


def run_shard(program, feeds: dict, offset: int, opts: dict, previous: dict | None = None):
    """Run one shard (samples offset.. of the batch) on a fresh machine: (outputs, Stats). `previous` is the
    sample before the shard, so that run-time writes count against the operand a one-process run had."""
    opts = dict(opts)
    chunk = opts.pop("chunk", None)
    m = Machine(program, **opts)
    return m.run(feeds, chunk=chunk, sample_offset=offset, previous=previous), m.stats


def merge(parts: list[Stats]) -> Stats:
    """One Stats for the whole batch from its shards' (in sample order), as Stats.merge defines it."""
    out = Stats(parts[0].t, parts[0].hist_range)
    for p in parts:
        out.merge(p)
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
    opts = dict(ideal=ideal, hist_range=hist_range, filename=filename, noise=noise, seed=seed, chunk=chunk)
    [prog] = c.scatter([program], broadcast=True)
    futs = {c.submit(run_shard, prog, {k: v[lo:hi] for k, v in feeds.items()}, lo, opts,
                     {k: v[lo - 1:lo] for k, v in feeds.items()} if lo else None, pure=False): i
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
