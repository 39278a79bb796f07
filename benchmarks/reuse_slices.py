"""Why partial weight reuse (ARAS sec. V-C) saves few pulses here: write pulses by cell, most significant first.

Consecutive MiniLM weight matrices (their first 384 x 384 codes), quantised as pimc does (symmetric
per-output-channel int8, stored as W + 128 in four 2-bit cells), each written over the one before, with and
without shifting every layer's mean code to 96 (ARAS sec. V-C). Prints the pulses of each cell position
and the mean codes.

    python benchmarks/reuse_slices.py [--minilm-dir examples/minilm/build] [--center 96]

The model is examples/minilm/make_minilm.py's minilm_l6.onnx.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from passes.aras_reuse import cell_levels  # noqa: E402

from benchmarks.model_files import add_minilm_dir, minilm_files  # noqa: E402


def codes(w: np.ndarray) -> np.ndarray:
    s = np.abs(w).max(0, keepdims=True) / 127
    return np.clip(np.round(w / np.where(s > 0, s, 1)), -127, 127).astype(np.int64) + 128


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_minilm_dir(ap)
    ap.add_argument("--center", type=int, default=96, help="the mean code every layer is shifted to")
    args = ap.parse_args(argv)
    center = args.center
    m = onnx.load(minilm_files(args.minilm_dir)["model"])
    mats = [numpy_helper.to_array(t) for t in m.graph.initializer]
    mats = [codes(w)[:384, :384] for w in mats if w.ndim == 2 and w.dtype == np.float32 and min(w.shape) >= 384
            and w.shape[0] <= 1536]
    print(f"{len(mats)} weight matrices; mean codes {min(c.mean() for c in mats):.1f}..{max(c.mean() for c in mats):.1f}")
    for shift in (False, True):
        cs = [np.clip(c + center - int(round(c.mean())), 0, 255) if shift else c for c in mats]
        pulses = sum(np.abs(cell_levels(a, (2, 2, 2, 2)) - cell_levels(b, (2, 2, 2, 2))).reshape(4, -1).sum(1)
                     for a, b in zip(cs, cs[1:]))
        print(f"{'shifted to ' + str(center) if shift else 'unshifted':14s} pulses by cell (MSB first) "
              f"{pulses.tolist()}, shares {np.round(pulses / pulses.sum(), 3).tolist()}, total {int(pulses.sum())}")


if __name__ == "__main__":
    main()
