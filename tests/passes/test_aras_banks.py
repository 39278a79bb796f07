"""Adaptive bank selection (ARAS sec. V-A): the ILP against brute force, the infeasible error, determinism, energy."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from ir import CompileError
from passes.aras_banks import ADAPTIVE_BANKS_KB, LayerActs, select_banks


def brute(in_b: int, out_b: int, banks_kb):
    """(least total KB enabled, least bytes missing) over every bank -> {off, input, output} assignment."""
    best, missing = None, None
    for assign in itertools.product((0, 1, 2), repeat=len(banks_kb)):
        cin = sum(1024 * kb for kb, a in zip(banks_kb, assign) if a == 1)
        cout = sum(1024 * kb for kb, a in zip(banks_kb, assign) if a == 2)
        short = max(0, in_b - cin) + max(0, out_b - cout)
        missing = short if missing is None else min(missing, short)
        if not short:
            kb = sum(kb for kb, a in zip(banks_kb, assign) if a)
            best = kb if best is None else min(best, kb)
    return best, missing


@pytest.mark.parametrize("banks", [(1, 1, 2, 4, 64, 128), (2, 3, 5, 7, 11), (4, 4, 4, 8, 16, 32, 64)])
def test_ilp_matches_brute_force(banks):
    rng = np.random.default_rng(sum(banks))
    cap = 1024 * sum(banks)
    layers = [LayerActs(f"l{i}", int(rng.integers(0, cap // 2)), int(rng.integers(0, cap // 2))) for i in range(12)]
    layers.append(LayerActs("exact", 1024 * banks[0], 1024 * banks[1]))         # fills two banks to the byte
    feasible = [la for la in layers if brute(la.in_bytes, la.out_bytes, banks)[0] is not None]
    assert len(feasible) >= 8
    mw = 0.25
    rep = select_banks(feasible, banks, mw)
    for la in feasible:
        lb = rep.layers[la.name]
        assert not set(lb.in_banks) & set(lb.out_banks)
        assert sum(1024 * banks[b] for b in lb.in_banks) >= la.in_bytes
        assert sum(1024 * banks[b] for b in lb.out_banks) >= la.out_bytes
        assert lb.static_mw == pytest.approx(mw * brute(la.in_bytes, la.out_bytes, banks)[0], rel=1e-12)


def test_infeasible_layer_names_the_missing_bytes():
    banks = (1, 1, 2, 4)
    # 2500 B of input and 5500 B of output: 8 KB of banks hold 8000 B, but no split of them serves both
    want = brute(2500, 5500, banks)
    assert want[0] is None and want[1] > 0
    with pytest.raises(CompileError, match=rf"layer conv7: .* {want[1]} B missing"):
        select_banks([LayerActs("ok", 10, 10), LayerActs("conv7", 2500, 5500)], banks)
    total = 1024 * sum(ADAPTIVE_BANKS_KB)
    want = brute(total - 1024 + 5, 1500, ADAPTIVE_BANKS_KB)
    assert want[0] is None and want[1] > 0
    with pytest.raises(CompileError, match=rf"layer huge: .* {want[1]} B missing"):
        select_banks([LayerActs("huge", total - 1024 + 5, 1500)])


def test_deterministic_and_static_energy():
    rng = np.random.default_rng(1)
    layers = [LayerActs(f"l{i}", int(rng.integers(1, 900_000)), int(rng.integers(1, 900_000))) for i in range(10)]
    a, b = select_banks(layers), select_banks(layers)
    assert a == b
    dur = {la.name: float(rng.integers(1_000, 100_000)) for la in layers}
    e = a.static_energy(dur)
    assert e["baseline_pj"] == pytest.approx(a.mw_per_kb * 15 * 256 * sum(dur.values()))
    assert e["adaptive_pj"] == pytest.approx(sum(a.layers[n].static_mw * d for n, d in dur.items()))
    # (a layer may need more KB than whole 256 KB banks would give: 745 KB of output takes the 1 MB bank)
    assert 0 < e["saving_vs_baseline"] < 1 and e["saving_vs_gated_baseline"] < e["saving_vs_baseline"]
    with pytest.raises(CompileError, match="no duration for layer"):
        a.static_energy({"l0": 1.0})
