"""PIM banks for sparse attention (the ASP-DAC'23 overview, sec. 4.2): cycles and PE utilisation per mapping.

A bank is an M x N PE array (target keys bank_m, bank_n). Its dense primitive (VMM) multiplies a 1 x M
input by the M x N block it holds in one cycle. Sparse attention masks the score matrix; the two products
then need only the kept entries:
- SDDMM, scores = Q K^T on the kept entries, K stored. VMM: the bank holds M head dims of N keys; per query
  row, every block of N consecutive keys with any kept entry costs ceil(d / M) cycles (the block's other
  columns idle). IP mode: the bank is one MN-wide inner product, one kept score per ceil(d / MN) cycles.
- SpMM, out = P V on the nonzero probabilities, V stored. VMM: the bank holds M keys of N head dims; per
  output row, every block of M consecutive keys with any nonzero probability costs ceil(d / N) cycles. SVM
  mode: one nonzero probability times one V row (1 x MN) per ceil(d / MN) cycles.
- dense: the VMM mapping with nothing skipped (what the unmasked product costs).
- predict, the score predictor (runtime/kernels.py's predicted_acc): every score, before any mask is known, so the
  dense VMM mapping (K stored), with b-bit operands instead of 8-bit ones. Project assumption, stated: the
  bank feeds its inputs bit-serially and holds a weight's bits in separate cells, so a b-bit VMM takes b/8 of
  an 8-bit one's cycle (cycles: the dense count times b/8, rounded up per head) and reads b/8 of its cells
  under b/8 of its input bits (PE reads: the dense count times (b/8)^2). At b = 8 it costs the dense SDDMM.
Utilisation = useful MACs (kept entries x d; the predictor's b-bit MACs count b/8) / (cycles x M x N). Masks
are (..., rows, keys) boolean arrays; every function returns cycles per leading index (summed over rows),
vectorised over the whole mask.
"""
from __future__ import annotations

import numpy as np

PRODUCTS = {"sddmm": ("ip", "vmm", "dense"), "spmm": ("svm", "vmm", "dense"), "predict": ("vmm",)}


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _blocks(mask: np.ndarray, width: int) -> np.ndarray:
    """Blocks of `width` consecutive keys with any entry set, counted per leading index."""
    S = mask.shape[-1]
    pad = _ceil(S, width) * width - S
    m = np.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, pad)]) if pad else mask
    return m.reshape(m.shape[:-1] + (-1, width)).any(axis=-1).sum(axis=(-2, -1))


def cycles(product: str, mapping: str, mask: np.ndarray, d: int, m: int, n: int, bits: int = 8) -> np.ndarray:
    """Bank cycles of one product under one mapping, per leading index of mask (..., rows, keys); `bits`: the
    predictor's operand width."""
    if mapping not in PRODUCTS.get(product, ()):
        raise ValueError(f"{product} has no '{mapping}' mapping (one of {', '.join(PRODUCTS.get(product, ()))})")
    mask = np.asarray(mask, bool)
    if product == "predict":
        return -(-cycles("sddmm", "dense", mask, d, m, n) * bits // 8)
    if mapping in ("ip", "svm"):
        return mask.sum(axis=(-2, -1)) * _ceil(d, m * n)
    width, per = (n, _ceil(d, m)) if product == "sddmm" else (m, _ceil(d, n))
    if mapping == "dense":
        return np.full(mask.shape[:-2], mask.shape[-2] * _ceil(mask.shape[-1], width) * per, dtype=np.int64)
    return _blocks(mask, width) * per


def utilisation(useful_macs: int, cycles_: int, m: int, n: int) -> float:
    return useful_macs / (cycles_ * m * n) if cycles_ else 0.0


def pe_reads(product: str, mode: str, mask: np.ndarray, d: int, m: int, n: int, bits: int = 8) -> int:
    """PE cell reads of one product in one mode over a whole mask: every PE of the bank each cycle; the
    predictor's b-bit VMM reads (b/8)^2 of the dense product's (see the module docstring)."""
    if product == "predict":
        return -(-int(cycles("sddmm", "dense", mask, d, m, n).sum()) * m * n * bits * bits // 64)
    return int(cycles(product, mode, mask, d, m, n).sum()) * m * n


def summary(product: str, mask: np.ndarray, d: int, m: int, n: int, bits: int = 8) -> dict:
    """{mapping: total cycles} and the useful MACs of one product over a whole mask (the predictor's: every
    score, b-bit MACs counted b/8 each)."""
    mask = np.asarray(mask, bool)
    out = {k: int(cycles(product, k, mask, d, m, n, bits).sum()) for k in PRODUCTS[product]}
    if product == "predict":            # every score, whatever the mask
        return {"cycles": out, "useful_macs": mask.size * d * bits // 8, "kept": int(mask.size),
                "entries": int(mask.size), "bits": bits}
    return {"cycles": out, "useful_macs": int(mask.sum()) * d, "kept": int(mask.sum()), "entries": int(mask.size)}


def add(record: dict, product: str, mode: str, part: dict) -> None:
    """Accumulate one instruction's summary into a layer's bank record."""
    if not record:
        record.update(product=product, mode=mode, useful_macs=0, kept=0, entries=0,
                      cycles={k: 0 for k in PRODUCTS[product]}, **({"bits": part["bits"]} if "bits" in part else {}))
    for k in ("useful_macs", "kept", "entries"):
        record[k] += part[k]
    for k, v in part["cycles"].items():
        record["cycles"][k] += v


def report(record: dict, m: int, n: int) -> dict:
    """A layer's bank record with cycles and PE utilisation per mapping (the chosen mode first)."""
    cyc = record["cycles"]
    order = [record["mode"]] + [k for k in cyc if k != record["mode"]]
    return {"product": record["product"], "mode": record["mode"], "bank": [m, n],
            **({"bits": record["bits"]} if "bits" in record else {}),
            "density": record["kept"] / record["entries"] if record["entries"] else 0.0,
            "useful_macs": record["useful_macs"],
            **{k: {"cycles": cyc[k], "utilisation": utilisation(record["useful_macs"], cyc[k], m, n)} for k in order}}
