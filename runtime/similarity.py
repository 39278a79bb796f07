"""How good an embedding model's outputs are, by cosine similarity: to a float reference, and as retrieval
(does each row's nearest neighbour share its group)."""
from __future__ import annotations

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)    # a zero row stays zero


def cosines(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of y and ref (same shape [N, ...]); a zero row scores 0."""
    if y.shape != ref.shape:
        raise ValueError(f"shapes {list(y.shape)} and {list(ref.shape)} differ")
    return np.sum(_unit(y) * _unit(ref), axis=1)


def nearest_same_group(y: np.ndarray, group: np.ndarray) -> int:
    """How many rows of y (N >= 2) have, as their most cosine-similar other row, one of the same group."""
    if len(y) != len(group) or len(y) < 2:
        raise ValueError(f"{len(y)} rows against {len(group)} group ids (need the same number, at least 2)")
    u = _unit(y)
    sim = u @ u.T
    np.fill_diagonal(sim, -np.inf)                    # excluding self
    group = np.asarray(group)
    return int(np.sum(group[sim.argmax(1)] == group))
