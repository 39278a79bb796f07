"""The compile driver: ONNX -> IR -> passes -> backend -> isa.Program, with every pass's report."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from backend.lower import lower_graph
from ir import CompileError, Graph
from isa import Program, Target, load_target
from passes.attention import AttentionPass
from passes.calibrate import Calibrate
from passes.encoding import EncodeWeights
from passes.fuse import FuseActivations
from passes.manager import Context, PassRecord, run_passes
from passes.options import Options
from passes.mapping import MapCrossbars
from passes.quantize import Quantize
from passes.slicing import Slicing
from passes.sparse_attention import SparseAttention

from . import rewriting
from .frontend import as_model, import_onnx, input_names


def default_passes():
    return [FuseActivations(), AttentionPass(), SparseAttention(), Calibrate(), Quantize(), Slicing(), MapCrossbars(),
            EncodeWeights()]


@dataclass
class Compiled:
    program: Program
    graph: Graph            # the quantised, mapped graph (what the reference evaluates)
    records: list[PassRecord]

    def report(self) -> dict:
        return {"target": self.program.target.name, "passes": [r.to_json() for r in self.records]}


def check_calib(g: Graph, calib: dict[str, np.ndarray] | None) -> None:
    if calib is None:
        return
    for name in g.inputs:
        if name not in calib:
            raise CompileError(f"calibration set has no input '{name}' (has: {', '.join(sorted(calib))})")
        want = g.tensors[name].shape
        got = calib[name].shape
        if calib[name].dtype.kind == "f" and not np.isfinite(calib[name]).all():
            raise CompileError(f"calibration input '{name}' holds NaN or infinity")
        if tuple(got[1:]) != tuple(want) or len(got) < 1 or got[0] < 1:
            raise CompileError(f"calibration input '{name}' has shape {list(got)}, the model needs [N, "
                               f"{', '.join(map(str, want))}]")
    sizes = {name: len(calib[name]) for name in g.inputs}
    if len(set(sizes.values())) > 1:
        raise CompileError("calibration inputs disagree on the batch size: "
                           + ", ".join(f"'{k}' has {v} samples" for k, v in sizes.items()))


def compile_model(model, target: Target | str = "raella", calib=None, options=None, progress=None,
                  shapes: dict | None = None) -> Compiled:
    """shapes: per-sample sizes (batch left out) of inputs whose dimensions the model leaves symbolic; by
    default they come from the calibration data."""
    t = target if isinstance(target, Target) else load_target(target)
    model = as_model(model)
    if isinstance(calib, np.ndarray):
        names = input_names(model)
        if len(names) != 1:
            raise CompileError(f"the model has {len(names)} inputs; give the calibration set as .npz keyed by "
                               f"{', '.join(names)}")
        calib = {names[0]: calib}
    g = import_onnx(model, shapes, {k: v.shape[1:] for k, v in (calib or {}).items()})
    check_calib(g, calib)
    opts = Options.make(options)
    t, sched = rewriting.prepare(t, opts)      # sched: None on a program-once target
    ctx = Context(target=t, calib=calib, options=opts)
    records = run_passes(g, default_passes(), ctx, progress)
    if sched is None:
        return Compiled(lower_graph(g, t), g, records)
    records += rewriting.plan(g, ctx, sched, progress)
    t0 = time.perf_counter()
    program = lower_graph(g, t, sched)
    return Compiled(program, g, records + [PassRecord("schedule", time.perf_counter() - t0, sched.report)])
