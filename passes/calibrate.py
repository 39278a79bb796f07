"""Activation ranges from the calibration set: float evaluation of the graph, min/max per tensor.
Contract: fills ctx.ranges; the graph is unchanged. A model whose every tensor carries its own
quantisation (QDQ) needs no calibration."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ir import CompileError, Graph
from ir.float_eval import evaluate


@dataclass
class CalibrationReport:
    samples: int
    tensors: int
    from_model: int


class Calibrate:
    name = "calibrate"

    def run(self, g: Graph, ctx) -> CalibrationReport:
        hinted = {n for n, t in g.tensors.items() if t.qhint}
        needed = [n for n, t in g.tensors.items() if not t.is_const and n not in hinted]
        if not needed:
            return CalibrationReport(0, 0, len(hinted))
        if ctx.calib is None:
            raise CompileError(f"{len(needed)} tensors have no quantisation of their own (a float model, or float "
                               "parts of a quantised one): give a calibration set (--calib FILE.npy|FILE.npz)")
        n = len(next(iter(ctx.calib.values())))
        lo, hi, clo, chi = {}, {}, {}, {}
        for start in range(0, n, 64):
            env = evaluate(g, {k: v[start:start + 64] for k, v in ctx.calib.items()}, keep_all=True)
            for name, v in env.items():
                if name in g.tensors and not g.tensors[name].is_const and v.size:
                    lo[name] = min(lo.get(name, np.inf), float(v.min()))
                    hi[name] = max(hi.get(name, -np.inf), float(v.max()))
                    if v.ndim >= 2:      # per channel of the last axis (for smoothing, quantize_vector.py)
                        rows = v.reshape(-1, v.shape[-1])
                        clo[name] = np.minimum(clo.get(name, np.inf), rows.min(axis=0))
                        chi[name] = np.maximum(chi.get(name, -np.inf), rows.max(axis=0))
        ctx.ranges.update({k: (lo[k], hi[k]) for k in lo})
        ctx.channel_ranges.update({k: (clo[k], chi[k]) for k in clo})
        return CalibrationReport(n, len(lo), len(hinted))
