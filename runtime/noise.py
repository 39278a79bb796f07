"""Counter-based Gaussian noise: each column sum's draw is a pure function of its key, never of call order.

A draw is keyed by a 64-bit stream (the seed and the instruction, `stream`) and a counter (the sample's
global row, the pass and the physical column; crossbar.py numbers them). splitmix64 of (stream + counter x
golden ratio) gives 64 random bits; the top 16 pick a quantile of the standard normal from a table. So the
draw for a given sample is the same whatever the chunking or the process that runs it, and the compiled
kernel (xbar_kernels.py) and the NumPy reference compute identical values: integer mixing and a table look-up,
no transcendental function whose last bit could differ between libm and NumPy's own loops. The table's 2^16
midpoint quantiles reach +-4.17 sigma, and steps of under 4e-5 sigma near the center; the ADC rounds the
noisy sum to an integer anyway.
"""
from __future__ import annotations

from functools import lru_cache
from statistics import NormalDist

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)
TABLE_BITS = 16


def mix(z):
    """splitmix64's finaliser on uint64 (scalar or array; wraps modulo 2^64)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * M1
        z = (z ^ (z >> np.uint64(27))) * M2
    return z ^ (z >> np.uint64(31))


def stream(seed: int, *ids: int) -> int:
    """A stream key from the seed and ids (instruction index, input part...): chained splitmix64 steps."""
    z = np.uint64(seed & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        for i in ids:
            z = mix(z + GOLDEN * np.uint64(i + 1))
    return int(z)


@lru_cache(maxsize=1)
def table() -> np.ndarray:
    """Standard normal quantiles at the midpoints (k + 1/2) / 2^16, float32."""
    n = 1 << TABLE_BITS
    inv = NormalDist().inv_cdf
    return np.array([inv((k + 0.5) / n) for k in range(n)], dtype=np.float32)


def normals(key: int, counters: np.ndarray) -> np.ndarray:
    """float32 standard normal draws for uint64 `counters` of stream `key`."""
    with np.errstate(over="ignore"):
        z = mix(np.uint64(key) + np.asarray(counters, np.uint64) * GOLDEN)
    return table()[(z >> np.uint64(64 - TABLE_BITS)).astype(np.intp)]
