"""Adaptive replication (ARAS sec. V-B): Algorithm 1 and the ILP on hand-made windows, the ILP against brute force."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from passes.aras_replication import LayerLoad, candidates, heuristic, ilp, makespan, replicate


def brute(layers, free):
    """Least makespan over every prefix written now and every factor vector within both row budgets."""
    k0 = candidates(layers, free)
    best = None
    for now in range(1, k0 + 1):
        ranges = [range(1, (free // l.rows if l.replicable else 1) + 1) for l in layers[:k0]]
        for rs in itertools.product(*ranges):
            a = sum(l.rows * r for l, r in zip(layers[:now], rs))
            b = sum(l.rows * r for l, r in zip(layers[1:k0], rs[1:]))
            if a <= free and b <= free:
                m = makespan(layers, now, rs)
                best = m if best is None else min(best, m)
    return best


def test_delaying_the_last_layer_can_lose():
    # A: 8 windows on 1 row; B: one step, not replicable. All now: A x3 (B keeps a row) -> 2 + max(3 + 1, 3) = 6.
    # Algorithm 1 delays B to give A a fourth copy: 2 + max(2, 2 + 2) + 1 = 7.
    layers = [LayerLoad("A", 1, 8, 1, 2), LayerLoad("B", 1, 1, 1, 2, replicable=False)]
    rep = replicate(layers, 4)
    assert (rep.heuristic.factors, rep.heuristic.now, rep.heuristic.makespan) == ([4, 1], 1, 7)
    assert (rep.ilp.factors, rep.ilp.now, rep.ilp.makespan) == ([3, 1], 2, 6)
    assert rep.chosen_method == "ilp" and rep.chosen is rep.ilp
    assert rep.ilp.extra_weights_pct == pytest.approx(100.0 * 2 / 2)


def test_heuristic_stops_at_the_following_write():
    # C does not fit; its write (3) is the threshold: A reaches latency 3 at r = 3 and stops, leaving a row that
    # would still shorten the wait for C's write (A x4: 3 + max(2 + 1, 2 + 3) = 8 against 3 + max(3 + 1, 3 + 3) = 9)
    layers = [LayerLoad("A", 1, 8, 1, 3), LayerLoad("B", 2, 1, 1, 3, replicable=False), LayerLoad("C", 10, 1, 1, 3)]
    h, o = heuristic(layers, 6), ilp(layers, 6)
    assert (h.factors, h.now, h.makespan) == ([3, 1], 2, 9)
    assert (o.factors, o.now, o.makespan) == ([4, 1], 2, 8) and o.makespan == brute(layers, 6)


def test_layer_too_large_is_written_partially():
    layers = [LayerLoad("big", 50, 100, 1, 10), LayerLoad("next", 1, 100, 1, 10)]
    rep = replicate(layers, 20)
    assert rep.heuristic.partial and rep.ilp.partial and rep.chosen.factors == [1]


def test_ilp_is_optimal_and_never_worse_than_the_heuristic():
    rng = np.random.default_rng(0)
    worse = 0
    for _ in range(30):
        n = int(rng.integers(1, 5))
        layers = [LayerLoad(f"l{i}", int(rng.integers(1, 4)), int(rng.integers(1, 13)), int(rng.choice([1, 2, 5])),
                            int(rng.choice([5, 10, 20])), bool(rng.random() < 0.8)) for i in range(n)]
        free = int(rng.integers(max(l.rows for l in layers[:1]), 12))
        rep = replicate(layers, free)
        assert rep.ilp.makespan == brute(layers, free)
        assert rep.ilp.makespan <= rep.heuristic.makespan
        assert rep.chosen.makespan == min(rep.ilp.makespan, rep.heuristic.makespan)
        worse += rep.ilp.makespan < rep.heuristic.makespan
    assert worse > 0          # the cases are not all ones the heuristic already solves


def test_deterministic_on_a_cnn_sized_window():
    # ARAS-like numbers: 576 PE rows, 96 x 8 ns per window, 768 us writes
    shapes = [(1, 50176), (6, 50176), (12, 12544), (24, 12544), (48, 3136), (96, 3136), (96, 3136), (200, 784)]
    layers = [LayerLoad(f"c{i}", r, w, 96 * 8, 768_000) for i, (r, w) in enumerate(shapes)]
    a, b = replicate(layers, 576), replicate(layers, 576)
    assert a == b
    for p in (a.heuristic, a.ilp):
        assert sum(l.rows * r for l, r in zip(layers[:p.now], p.factors)) <= 576
        assert p.makespan == makespan(layers, p.now, p.factors)
    assert a.ilp.makespan < makespan(layers, len(shapes), [1] * len(shapes))
