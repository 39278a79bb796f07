"""Weight encoding per crossbar: Center+Offset and Zero+Offset (RAELLA thesis sec. 4.1), ISAAC's offset binary.

Every filter column stores offsets O = W - phi from a per-filter center phi; the digital side adds
phi * sum(inputs). The same term carries an already-quantised model's weight zero point: its weights
W = code - zero (passes/quantize.py model_weights) span at most 255 per filter, so centers inside that span
keep every offset within 8 bits. unsigned (ISAAC): phi = -128 (per filter, the nearest center that fits
for weights with a zero point), O in [0, 255] on one device per cell; with `flip`, a
physical column whose slice values would sum above half their maximum stores the complements, and the
digital side recovers (2^b - 1) * sum(input slice) - column sum. differential (Zero+Offset): phi = 0,
O+ and O- on the two devices of a 2T2R pair. center_offset (RAELLA): the same pair around each filter's
optimal center (center_offset.py), so offsets are balanced and column sums small. Contract: op.attrs["enc"] gets the encoding and, per
crossbar, the centers and flip flags the backend writes into the program.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ir import Graph

from runtime.crossbar import block_mask, block_weights, flip_flags, slice_values

from .center_offset import optimal_centers
from .mapping import CROSSBAR_OPS


def encode_block(w: np.ndarray, mask: np.ndarray, slices, encoding: str, flip: bool, hist=None, terms=None):
    """Center(s) and flip flags of one crossbar block: (center int or (n,) array, flips or None)."""
    if encoding == "center_offset":
        phi = optimal_centers(w, mask, slices, hist, terms)
    elif encoding == "unsigned":
        phi = unsigned_centers(w, mask)
    else:
        phi = 0
    flips = None
    if encoding == "unsigned" and flip:
        flips = flip_flags(np.where(mask, w - phi, 0), mask, slices)
    return phi, flips


def unsigned_centers(w: np.ndarray, mask: np.ndarray):
    """ISAAC's offset binary: -128, so symmetric int8 weights are stored as W + 128 in 0..255. Weights with a
    zero point (code - zero: up to 9 bits, spanning at most 255 per filter) take, per filter, the center
    nearest -128 that keeps W - center in 0..255."""
    if w.min(initial=0) >= -128 and w.max(initial=0) <= 127:
        return -128
    big = 1 << 30
    lo = np.where(mask, w, big).min(axis=0)
    hi = np.where(mask, w, -big).max(axis=0)
    empty = lo > hi
    return np.where(empty, -128, np.clip(-128, hi - 255, lo)).astype(np.int64)


@dataclass
class EncodingReport:
    encoding: str = ""
    flipped_columns: int = 0
    physical_columns: int = 0
    max_column_sum_bound: dict = field(default_factory=dict)   # layer -> worst stored column total
    center_ms_per_filter: float = 0.0                          # Center+Offset search time per filter-crossbar


class EncodeWeights:
    name = "encode_weights"

    def run(self, g: Graph, ctx) -> EncodingReport:
        t = ctx.target
        enc = ctx.options.encoding or t.encoding
        rep = EncodingReport(encoding=enc)
        spent, filters = 0.0, 0
        for op in g.topo():
            if op.kind not in CROSSBAR_OPS:
                continue
            wm = op.attrs["wm"]
            kg, ng, slices = op.attrs["kg"], op.attrs["ng"], op.attrs["slices"]
            per_xbar, worst = [], 0
            for xb in op.attrs["xbars"]:
                mask = block_mask(xb["rows"], xb["cols"], kg, ng)
                w = block_weights(wm, xb["rows"], xb["cols"], kg, ng)
                t0 = time.perf_counter()
                phi, flips = encode_block(w, mask, slices, enc, t.flip)
                if enc == "center_offset":
                    spent += time.perf_counter() - t0
                    filters += len(phi)
                if flips is not None:
                    rep.flipped_columns += int(flips.sum())
                block = np.abs(np.where(mask, w - np.asarray(phi).reshape(1, -1), 0))
                rep.physical_columns += mask.shape[1] * len(slices)
                worst = max(worst, int(max((v * mask).sum(axis=0).max() for v in slice_values(block, slices))))
                per_xbar.append({"center": phi, "flip": flips})
            op.attrs["enc"] = {"encoding": enc, "xbars": per_xbar}
            rep.max_column_sum_bound[op.name] = worst
        if filters:
            rep.center_ms_per_filter = 1e3 * spent / filters
        return rep

