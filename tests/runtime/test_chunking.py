"""Outputs and stats do not depend on how the batch is split: into chunks, or into shards run by separate
machines with their sample offsets and merged stats (noise included: its draws are keyed by sample)."""
from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pytest

from compiler.pipeline import compile_model
from runtime.io import _default
from runtime.machine import Machine
from runtime import shard
from tests.compiler import transformer_blocks as tb
from tests.conftest import digits_compiled


def _json(stats) -> str:
    return json.dumps(stats.to_json(), default=_default) + str(stats.histogram())


def _chunked(prog, feeds, chunk, **kw):
    m = Machine(prog, **kw)
    y = m.run(feeds, chunk=chunk)
    return b"".join(v.tobytes() for v in y.values()), _json(m.stats)


def _sharded(prog, feeds, cuts, **kw):
    """Samples [a, b) per shard on a machine of its own, as a Dask worker runs them (runtime/shard.py)."""
    parts = [shard.run_shard(prog, {k: v[a:b] for k, v in feeds.items()}, a, kw,
                             {k: v[a - 1:a] for k, v in feeds.items()} if a else None)
             for a, b in zip(cuts, cuts[1:])]
    y = {k: np.concatenate([o[k] for o, _ in parts]) for k in parts[0][0]}
    return b"".join(v.tobytes() for v in y.values()), _json(shard.merge([st for _, st in parts]))


@lru_cache(maxsize=None)
def _attention_program(mode: str):
    """The torch-like encoder with its attention in run-time-written crossbars, on raella."""
    feeds = tb.sentences(9, seed=7)
    c = compile_model(tb.MODELS["torch_like"](), "raella", {k: v[:4] for k, v in feeds.items()}, {"attention": mode})
    return c.program, feeds


def _cases(digits_test):
    yield digits_compiled("raella").program, {"image": digits_test[0][:9]}
    yield _attention_program("retransformer")


@pytest.mark.parametrize("noise", [0.0, 0.08])
def test_chunk_size_changes_no_byte(digits_test, noise):
    for prog, feeds in _cases(digits_test):
        kw = dict(noise=noise, seed=5, hist_range=(-64, 63))
        whole = _chunked(prog, feeds, 9, **kw)
        assert _chunked(prog, feeds, 1, **kw) == whole
        assert _chunked(prog, feeds, 7, **kw) == whole
        assert _chunked(prog, feeds, None, **kw) == whole


@pytest.mark.parametrize("noise", [0.0, 0.08])
def test_shards_with_offsets_merge_into_one_run(digits_test, noise):
    for prog, feeds in _cases(digits_test):
        kw = dict(noise=noise, seed=5, hist_range=(-64, 63))
        whole = _chunked(prog, feeds, 9, **kw)
        assert _sharded(prog, feeds, [0, 4, 9], **kw) == whole
        assert _sharded(prog, feeds, [0, 1, 2, 7, 9], **kw) == whole


def test_noise_seeds_differ(digits_test):
    prog, feeds = next(_cases(digits_test))
    a, b = _chunked(prog, feeds, 9, noise=0.08, seed=5), _chunked(prog, feeds, 9, noise=0.08, seed=6)
    assert a[0] != b[0]
