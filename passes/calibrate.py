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


def check_nan(g: Graph, env: dict[str, np.ndarray]) -> None:
    """Name the first node (in order) whose float result holds NaN, and why: a constant input that is not
    finite, an input that overflowed to infinity, or an operation undefined on these values."""
    for op in g.topo():
        y = env.get(op.outputs[0])
        if y is None or y.dtype.kind != "f" or not np.isnan(y).any():
            continue
        where = f"node {op.name} ({op.attrs.get('fn', op.kind)}) gives NaN on the calibration data"
        for name in op.inputs:
            t = g.tensors.get(name)
            x = env[name] if name in env else t.data if t is not None else None
            if x is not None and np.asarray(x).dtype.kind == "f" and not np.isfinite(x).all():
                raise CompileError(f"{where}: its constant {name} holds NaN or infinity" if t is not None and t.is_const
                                   else f"{where}: its input {name} holds infinity (an overflow before this node)")
        raise CompileError(f"{where}: an operation undefined on these values (a log or square root of a negative, "
                           "0/0, an inverse sine beyond 1)")


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
        nan = []

        def fold(name, v):      # each tensor into its range as it is computed: only the live ones are held
            if name in g.tensors and not g.tensors[name].is_const and v.size:
                vlo, vhi = float(v.min()), float(v.max())
                if np.isnan(vlo) or np.isnan(vhi):      # min and max carry a NaN: named below
                    nan.append(name)
                    return
                lo[name] = min(lo.get(name, np.inf), vlo)
                hi[name] = max(hi.get(name, -np.inf), vhi)
                if v.ndim >= 2:      # per channel of the last axis (for smoothing, quantize_vector.py)
                    rows = v.reshape(-1, v.shape[-1])
                    clo[name] = np.minimum(clo.get(name, np.inf), rows.min(axis=0))
                    chi[name] = np.maximum(chi.get(name, -np.inf), rows.max(axis=0))

        for start in range(0, n, 64):
            chunk = {k: v[start:start + 64] for k, v in ctx.calib.items()}
            with np.errstate(all="ignore"):     # a NaN is named below; an infinity by Quantize's range check
                evaluate(g, chunk, visit=fold)
                if nan:     # where it began: this chunk again, every tensor kept
                    check_nan(g, evaluate(g, chunk, keep_all=True))
        ctx.ranges.update({k: (lo[k], hi[k]) for k in lo})
        ctx.channel_ranges.update({k: (clo[k], chi[k]) for k in clo})
        return CalibrationReport(n, len(lo), len(hinted))
