"""The PIM bank model of sparse attention (runtime/banks.py) against a direct loop over rows and key blocks."""
from __future__ import annotations

import math

import numpy as np
import pytest

from runtime import banks as B


def loop_cycles(product: str, mapping: str, mask: np.ndarray, d: int, m: int, n: int) -> int:
    """One (rows, keys) mask, the mapping's rule spelled out entry by entry."""
    rows, keys = mask.shape
    total = 0
    for r in range(rows):
        if mapping in ("ip", "svm"):
            total += sum(math.ceil(d / (m * n)) for j in range(keys) if mask[r, j])
            continue
        width, per = (n, math.ceil(d / m)) if product == "sddmm" else (m, math.ceil(d / n))
        for j0 in range(0, keys, width):
            if mapping == "dense" or mask[r, j0:j0 + width].any():
                total += per
    return total


EXACT = ("sddmm", "spmm")       # the masked products (the predictor has a test of its own)


@pytest.mark.parametrize("product", EXACT)
@pytest.mark.parametrize("d,m,n", [(32, 4, 8), (12, 2, 4), (7, 3, 2)])
def test_cycles_match_a_direct_loop(product, d, m, n):
    rng = np.random.default_rng(d)
    mask = rng.random((2, 3, 5, 11)) < 0.3          # 11 keys: the last block is partial
    for mapping in B.PRODUCTS[product]:
        got = B.cycles(product, mapping, mask, d, m, n)
        want = [[loop_cycles(product, mapping, mask[i, h], d, m, n) for h in range(3)] for i in range(2)]
        assert got.tolist() == want, mapping


def test_full_mask_fills_every_mapping_when_mn_is_the_head_dim():
    mask = np.ones((1, 16, 64), bool)
    for product in B.PRODUCTS:
        modes = B.PRODUCTS[product]
        s = B.summary(product, mask, 32, 4, 8)
        for k in modes:
            assert B.utilisation(s["useful_macs"], s["cycles"][k], 4, 8) == 1.0, (product, k)


@pytest.mark.parametrize("density", [0.05, 0.3, 0.7])
def test_ip_and_svm_stay_full_while_vmm_falls(density):
    mask = np.random.default_rng(1).random((4, 64, 64)) < density
    for product in EXACT:
        sparse_mode, vmm, _ = B.PRODUCTS[product]
        s = B.summary(product, mask, 32, 4, 8)
        u_sparse = B.utilisation(s["useful_macs"], s["cycles"][sparse_mode], 4, 8)
        u_vmm = B.utilisation(s["useful_macs"], s["cycles"][vmm], 4, 8)
        assert u_sparse == 1.0 and u_vmm >= density - 1e-12 and u_vmm < 1.0
        assert u_sparse >= u_vmm


def test_utilisation_of_ip_is_never_below_vmm_on_any_mask():
    rng = np.random.default_rng(2)
    for _ in range(20):
        mask = rng.random((3, 9, 40)) < rng.random()
        for product in EXACT:
            sparse_mode, vmm, _ = B.PRODUCTS[product]
            s = B.summary(product, mask, 32, 4, 8)
            assert s["cycles"][sparse_mode] <= s["cycles"][vmm] <= s["cycles"]["dense"]


def test_unknown_mapping_is_refused():
    with pytest.raises(ValueError, match="no 'svm' mapping"):
        B.cycles("sddmm", "svm", np.ones((1, 2, 2), bool), 32, 4, 8)


@pytest.mark.parametrize("bits", [1, 3, 4, 8])
def test_predictor_is_the_dense_product_at_b_bits(bits):
    """Every score whatever the mask, b/8 of the dense SDDMM's cycles (rounded up per head), (b/8)^2 of its PE
    reads; its b-bit MACs count b/8 in the utilisation; at 8 bits it is the dense SDDMM."""
    mask = np.random.default_rng(3).random((2, 3, 5, 11)) < 0.2
    d, m, n = 12, 2, 4
    dense = B.cycles("sddmm", "dense", mask, d, m, n)
    assert B.cycles("predict", "vmm", mask, d, m, n, bits).tolist() == \
        [[math.ceil(c * bits / 8) for c in row] for row in dense.tolist()]
    assert dense.tolist() == [[5 * math.ceil(11 / n) * math.ceil(d / m)] * 3] * 2
    assert B.pe_reads("predict", "vmm", mask, d, m, n, bits) == math.ceil(dense.sum() * m * n * bits ** 2 / 64)
    s = B.summary("predict", mask, d, m, n, bits)
    assert s["entries"] == s["kept"] == mask.size and s["bits"] == bits
    assert s["useful_macs"] == mask.size * d * bits // 8
    u = B.utilisation(s["useful_macs"], s["cycles"]["vmm"], m, n)
    dense_u = B.utilisation(mask.size * d, int(dense.sum()), m, n)
    assert u <= dense_u and (u == dense_u) == (bits in (4, 8))    # 60 dense cycles per head: 60 b / 8 whole
