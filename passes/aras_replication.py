"""Adaptive replication of conv weights (ARAS sec. V-B, Algorithm 1).

Contract: given the upcoming layers in execution order and the PE rows free now, decide which of them to
write now, which to delay until the first one has finished, and the replication factor of each (r copies of
a conv layer's weights compute r windows at once). Two methods answer it: `heuristic` (Algorithm 1 as the
seed describes it) and `ilp` (the optimum of the window model below; PuLP/CBC, one thread, fixed seed);
`replicate` runs both and keeps the lower modelled makespan as `chosen` (then the fewer extra weights, then
the heuristic).

Window model. The candidates are the longest prefix of the layers that fits the free rows F unreplicated
(k0 layers; the layers after them only "follow"). Phase A: candidates 0..k-1 (k >= 1) are written now with
factors r_i, sum_{i<k} rows_i r_i <= F. Phase B: candidates k..k0-1 are written once layer 0 has computed and
released its rows, with factors s_i, sum_{1<=i<k} rows_i r_i + sum_{i>=k} rows_i s_i <= F (the following
layers are written at the same time, in rows not modelled). A crossbar write takes the same time however many
crossbars write at once (ARAS sec. III), so a batch of writes lasts its slowest layer's write: W_A over phase A,
W_B over phase B and the following layers. Layer i computes in L_i(r) = ceil(windows_i / r) * window_ns_i,
one layer after another:

    makespan = W_A + max(sum_{i<k} L_i(r_i), L_0(r_0) + W_B) + sum_{k<=i<k0} L_i(s_i)

i.e. until every candidate has computed and what follows is written. Delaying a candidate frees rows to
replicate slow layers but makes it wait for a write; computing faster than the following write gains nothing.
When layer 0 alone does not fit, it is written partially, unreplicated (Algorithm 1, lines 2-3).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pulp

from .ilp import solver, var


@dataclass(frozen=True)
class LayerLoad:
    name: str
    rows: int              # PE rows its weights need, unreplicated
    windows: int           # compute steps (conv windows; 1 for a layer computed in one step)
    window_ns: float       # latency of one step
    write_ns: float        # time to write its weights
    replicable: bool = True    # conv layers; a linear layer has one window
    weights: int = 0           # weights it writes unreplicated (rows stand in when 0)

    def latency(self, r: int) -> float:
        return -(-self.windows // r) * self.window_ns

    def can_grow(self, r: int) -> bool:
        return self.replicable and r < self.windows


@dataclass
class ReplicationPlan:
    factors: list[int]     # per candidate layer (phase A or B); layers after the candidates are not listed
    now: int               # candidates written now (phase A); the rest of `factors` are delayed (phase B)
    makespan: float
    extra_weights_pct: float   # weights written beyond one copy of each candidate, % of one copy
    partial: bool = False      # layer 0 did not fit and is written partially


@dataclass
class ReplicationReport:
    layers: list[str]
    free_rows: int
    heuristic: ReplicationPlan
    ilp: ReplicationPlan
    chosen_method: str
    chosen: ReplicationPlan


def candidates(layers: Sequence[LayerLoad], free_rows: int) -> int:
    k, used = 0, 0
    while k < len(layers) and used + layers[k].rows <= free_rows:
        used += layers[k].rows
        k += 1
    return k


def makespan(layers: Sequence[LayerLoad], now: int, factors: Sequence[int]) -> float:
    """The window model of the module docstring, for `factors` of the first len(factors) layers."""
    k0 = len(factors)
    lat = [layers[i].latency(r) for i, r in enumerate(factors)]
    w_a = max(l.write_ns for l in layers[:now])
    w_b = max((l.write_ns for l in layers[now:]), default=0.0)
    return w_a + max(sum(lat[:now]), lat[0] + w_b) + sum(lat[now:k0])


def _plan(layers, now, factors, free_rows, partial=False) -> ReplicationPlan:
    k0 = len(factors)
    a = sum(layers[i].rows * factors[i] for i in range(now))
    b = sum(layers[i].rows * factors[i] for i in range(1, k0))
    if not partial and (a > free_rows or b > free_rows):
        raise AssertionError(f"replication plan {factors} (now {now}) exceeds {free_rows} free rows")
    one = sum(l.weights or l.rows for l in layers[:k0])
    extra = sum((r - 1) * (l.weights or l.rows) for l, r in zip(layers, factors))
    return ReplicationPlan(list(factors), now, makespan(layers, now, factors), 100.0 * extra / one if one else 0.0,
                           partial)


def _partial(layers, free_rows) -> ReplicationPlan:
    return _plan(layers, 1, [1], free_rows, partial=True)


def _allocate(layers, r, idx, spare, threshold, budget=None):
    """Give one replica at a time to the slowest layer of idx still above `threshold` whose rows fit the spare
    rows (and, for layers other than 0, `budget`, the rows phase B leaves them). Returns the spare left."""
    while True:
        fits = [i for i in idx if layers[i].rows <= spare and (budget is None or i == 0 or layers[i].rows <= budget)]
        slow = [i for i in fits if layers[i].can_grow(r[i]) and layers[i].latency(r[i]) > threshold]
        if not slow:
            return spare
        i = max(slow, key=lambda j: (layers[j].latency(r[j]), -j))
        r[i] += 1
        spare -= layers[i].rows
        if budget is not None and i:
            budget -= layers[i].rows


def heuristic(layers: Sequence[LayerLoad], free_rows: int) -> ReplicationPlan:
    """Algorithm 1: write every candidate unreplicated; give the spare rows, one replica at a time, to the
    slowest candidate still slower than the write of the layers that follow; while a candidate other than the
    last stays above that, delay the last candidate and hand its rows over too. Delayed candidates get the same
    allocation in phase B."""
    k0 = candidates(layers, free_rows)
    if k0 == 0:
        return _partial(layers, free_rows)
    r, k = [1] * k0, k0
    while True:
        follow = max((l.write_ns for l in layers[k:]), default=0.0)
        spare = free_rows - sum(layers[i].rows * r[i] for i in range(k))
        budget = free_rows - sum(layers[i].rows * r[i] for i in range(1, k)) - sum(l.rows for l in layers[k:k0])
        spare = _allocate(layers, r, range(k), spare, follow, budget)
        above = [i for i in range(k - 1) if layers[i].latency(r[i]) > follow and layers[i].can_grow(r[i])]
        freed = spare + layers[k - 1].rows * r[k - 1]
        if k == 1 or not any(layers[i].rows <= freed for i in above):
            break
        k -= 1
        r[k] = 1
    budget = free_rows - sum(layers[i].rows * r[i] for i in range(1, k0))
    _allocate(layers, r, range(k, k0), budget, max((l.write_ns for l in layers[k0:]), default=0.0))
    return _plan(layers, k, r, free_rows)


def _options(layer: LayerLoad, free_rows: int) -> list[int]:
    """The smallest factor of each distinct latency (no other factor can be optimal)."""
    top = free_rows // layer.rows if layer.replicable and layer.rows > 0 else 1
    out, seen = [], set()
    for r in range(1, max(1, min(layer.windows, top)) + 1):
        if layer.latency(r) not in seen:
            seen.add(layer.latency(r))
            out.append(r)
    return out


def ilp(layers: Sequence[LayerLoad], free_rows: int) -> ReplicationPlan:
    """The exact optimum of the window model: which candidates go now, and every factor."""
    k0 = candidates(layers, free_rows)
    if k0 == 0:
        return _partial(layers, free_rows)
    cand = layers[:k0]
    opts = [_options(l, free_rows) for l in cand]
    prob = pulp.LpProblem("replication", pulp.LpMinimize)
    y = [var(prob, f"now_{i}") for i in range(k0)]
    za = [{r: var(prob, f"a_{i}_{r}") for r in opts[i]} for i in range(k0)]
    zb = [{r: var(prob, f"b_{i}_{r}") for r in opts[i]} for i in range(1, k0)]
    zb.insert(0, {})
    lat_a = [pulp.lpSum(l.latency(r) * v for r, v in za[i].items()) for i, l in enumerate(cand)]
    lat_b = pulp.lpSum(l.latency(r) * v for i, l in enumerate(cand) for r, v in zb[i].items())
    rows_a = [pulp.lpSum(l.rows * r * v for r, v in za[i].items()) for i, l in enumerate(cand)]
    rows_b = pulp.lpSum(l.rows * r * v for i, l in enumerate(cand) for r, v in zb[i].items())
    w_a, w_b, m = (var(prob, v, "Continuous", 0) for v in ("w_a", "w_b", "makespan"))
    # among plans of equal makespan, the one writing the fewest rows: replication that cannot shorten the
    # window only costs writes (ARAS sec. V-B). Latencies are whole multiples of a window's >= 1 ns, so a weight of
    # 1e-3 ns per row (a few hundred rows at most) never trades makespan for rows.
    prob += m + 1e-3 * (pulp.lpSum(rows_a) + rows_b)
    prob += y[0] == 1
    for i, l in enumerate(cand):
        prob += pulp.lpSum(za[i].values()) == y[i]
        if i:
            prob += pulp.lpSum(zb[i].values()) == 1 - y[i]
            prob += y[i] <= y[i - 1]
        prob += w_a >= l.write_ns * y[i]
        prob += w_b >= l.write_ns * (1 - y[i])
    for l in layers[k0:]:
        prob += w_b >= l.write_ns
    prob += pulp.lpSum(rows_a) <= free_rows
    prob += pulp.lpSum(rows_a[1:]) + rows_b <= free_rows
    prob += m >= w_a + pulp.lpSum(lat_a) + lat_b
    prob += m >= w_a + lat_a[0] + w_b + lat_b
    status = prob.solve(solver())
    if pulp.LpStatus[status] != "Optimal":    # r = 1 everywhere, all now, is always feasible
        raise RuntimeError(f"replication ILP: {pulp.LpStatus[status]}")
    now = sum(1 for v in y if v.value() > 0.5)
    factors = [next(r for r, v in (za[i] if i < now else zb[i]).items() if v.value() > 0.5) for i in range(k0)]
    return _plan(layers, now, factors, free_rows)


def replicate(layers: Sequence[LayerLoad], free_rows: int) -> ReplicationReport:
    layers = list(layers)
    if not layers:
        raise ValueError("replicate needs at least one layer")
    h, o = heuristic(layers, free_rows), ilp(layers, free_rows)
    better = (o.makespan, o.extra_weights_pct) < (h.makespan, h.extra_weights_pct)
    method, chosen = ("ilp", o) if better else ("heuristic", h)
    return ReplicationReport([l.name for l in layers], free_rows, h, o, method, chosen)
