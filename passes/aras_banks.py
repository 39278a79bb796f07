"""Adaptive bank selection for the global buffer (ARAS sec. III, V-A, eq. 1-2).

Contract: for each layer, pick the cheapest set of global-buffer banks that holds its input activations and,
in other banks, its output activations; every bank not picked is power-gated while the layer runs. One small
ILP per layer (PuLP, bundled CBC, one thread, fixed seed, so the same layers give the same banks):

    minimise   sum_b P_b (x_in[b] + x_out[b])
    subject to sum_b C_b x_in[b]  >= input bytes
               sum_b C_b x_out[b] >= output bytes
               x_in[b] + x_out[b] <= 1                  (a bank holds input or output, not both)

with P_b = mw_per_kb * size_kb (static power proportional to size) and C_b = 1024 * size_kb. mw_per_kb is a
project assumption (DEFAULT_MW_PER_KB); results scale with it, the relative savings do not. A layer that no
selection can hold raises CompileError with the bytes missing. Static energy = power x layer duration
(1 mW x 1 ns = 1 pJ), compared with ARAS's baseline buffer (sec. VI: 15 banks of 256 KB), both always on and,
as the seed states for all its configurations, with its unused banks gated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import pulp

from ir import CompileError

from .ilp import solver, var


ADAPTIVE_BANKS_KB = (1, 1, 2, 4, 64, 128, 256, 512, 1024, 2048)     # ARAS sec. III
BASELINE_BANKS_KB = (256,) * 15                                     # ARAS sec. VI
# Project assumption (the papers give no figure): SRAM static power per KB of an enabled bank.
DEFAULT_MW_PER_KB = 0.1


@dataclass(frozen=True)
class LayerActs:
    name: str
    in_bytes: int          # all input activations of the layer that live in the buffer while it runs
    out_bytes: int


@dataclass
class LayerBanks:
    in_banks: list[int]    # indices into BankReport.banks_kb
    out_banks: list[int]
    static_mw: float       # adaptive banks, the rest gated
    gated_baseline_mw: float   # 256 KB banks, only those needed enabled


@dataclass
class BankReport:
    banks_kb: list[int]
    mw_per_kb: float
    baseline_mw: float                 # 15 x 256 KB, always on
    layers: dict[str, LayerBanks] = field(default_factory=dict)

    def static_energy(self, durations_ns: dict[str, float]) -> dict:
        """Static buffer energy in pJ over the layers' durations (ns), and the saving of adaptive banks."""
        missing = sorted(set(self.layers) - set(durations_ns))
        if missing:
            raise CompileError(f"bank selection: no duration for layer(s) {', '.join(missing)}")
        adaptive = sum(lb.static_mw * durations_ns[n] for n, lb in self.layers.items())
        gated = sum(lb.gated_baseline_mw * durations_ns[n] for n, lb in self.layers.items())
        always = sum(self.baseline_mw * durations_ns[n] for n in self.layers)
        return {"adaptive_pj": adaptive, "baseline_pj": always, "gated_baseline_pj": gated,
                "saving_vs_baseline": 1 - adaptive / always if always else 0.0,
                "saving_vs_gated_baseline": 1 - adaptive / gated if gated else 0.0}


def _solve(name: str, in_bytes: int, out_bytes: int, banks_kb: Sequence[int]) -> tuple[list[int], list[int]]:
    n = len(banks_kb)
    cap = [1024 * kb for kb in banks_kb]
    prob = pulp.LpProblem("banks", pulp.LpMinimize)
    xi = [var(prob, f"in_{b}") for b in range(n)]
    xo = [var(prob, f"out_{b}") for b in range(n)]
    prob += pulp.lpSum(banks_kb[b] * (xi[b] + xo[b]) for b in range(n))   # power / mw_per_kb
    prob += pulp.lpSum(cap[b] * xi[b] for b in range(n)) >= in_bytes
    prob += pulp.lpSum(cap[b] * xo[b] for b in range(n)) >= out_bytes
    for b in range(n):
        prob += xi[b] + xo[b] <= 1
    status = prob.solve(solver())
    if pulp.LpStatus[status] != "Optimal":
        raise CompileError(f"layer {name}: its activations ({in_bytes} B in, {out_bytes} B out) fit no selection of "
                           f"banks {list(banks_kb)} KB; {_shortfall(in_bytes, out_bytes, cap)} B missing")
    return ([b for b in range(n) if xi[b].value() > 0.5], [b for b in range(n) if xo[b].value() > 0.5])


def _shortfall(in_bytes: int, out_bytes: int, cap: list[int]) -> int:
    """Fewest bytes left without a bank over all splits of the banks between input and output (a small
    subset-sum over the capacities the input side can reach)."""
    reach = {0}
    for c in cap:
        reach |= {r + c for r in reach}
    total = sum(cap)
    return min(max(0, in_bytes - r) + max(0, out_bytes - (total - r)) for r in reach)


def select_banks(layers: Sequence[LayerActs], banks_kb: Sequence[int] = ADAPTIVE_BANKS_KB,
                 mw_per_kb: float = DEFAULT_MW_PER_KB) -> BankReport:
    """Banks per layer (see the module contract). Identical (in, out) sizes share one solve."""
    rep = BankReport(list(banks_kb), mw_per_kb, mw_per_kb * sum(BASELINE_BANKS_KB))
    kb256 = 1024 * BASELINE_BANKS_KB[0]
    cache: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
    for la in layers:
        key = (la.in_bytes, la.out_bytes)
        if key not in cache:
            cache[key] = _solve(la.name, la.in_bytes, la.out_bytes, banks_kb)
        ins, outs = cache[key]
        gated = -(-la.in_bytes // kb256) + -(-la.out_bytes // kb256)
        if gated > len(BASELINE_BANKS_KB):   # the homogeneous buffer is the reference design; it may be too small
            gated = len(BASELINE_BANKS_KB)
        rep.layers[la.name] = LayerBanks(list(ins), list(outs), mw_per_kb * sum(banks_kb[b] for b in ins + outs),
                                         mw_per_kb * BASELINE_BANKS_KB[0] * gated)
    return rep
