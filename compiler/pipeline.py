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
from passes.row_groups import RowGroups
from passes.slicing import Slicing
from passes.sparse_attention import SparseAttention
from runtime import parallel

from . import rewriting
from .frontend import as_model, import_onnx, input_names


def default_passes():
    return [FuseActivations(), AttentionPass(), SparseAttention(), Calibrate(), Quantize(), Slicing(), RowGroups(),
            MapCrossbars(), EncodeWeights()]


@dataclass
class Compiled:
    program: Program
    graph: Graph            # the quantised, mapped graph (what the reference evaluates)
    records: list[PassRecord]

    def report(self) -> dict:
        area = self.program.target.chip_area_mm2()
        return {"target": self.program.target.name, "area_mm2": area, "area_mm2_total": sum(area.values()),
                "passes": [r.to_json() for r in self.records]}


F32_MAX = float(np.finfo(np.float32).max)


def check_calib_data(model, calib: dict[str, np.ndarray] | None) -> None:
    """The cheap checks, before any shape probing: every input has an array of numbers of the input's kind
    (real values for a float input: integer codes or strings are refused), finite, inside float32, with the
    model's fixed sizes after the batch. (check_calib, after the model is read, refuses a constant.)"""
    if calib is None:
        return
    import onnx
    for vi in model.graph.input:
        if vi.name not in input_names(model):
            continue
        if vi.name not in calib:
            raise CompileError(f"calibration set has no input '{vi.name}' (has: {', '.join(sorted(calib))})")
        x = calib[vi.name]
        tt = vi.type.tensor_type
        want = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else np.dtype(np.float32)
        where = f"calibration input '{vi.name}'"
        if want.kind == "f" and x.dtype.kind != "f" or want.kind in "iu" and x.dtype.kind not in "iu":
            raise CompileError(f"{where} holds {x.dtype} values, the model takes {want} (give "
                               + ("real values, not quantised codes)" if x.dtype.kind in "iub" else "numbers)"))
        if x.ndim < 1 or len(x) < 1:
            raise CompileError(f"{where} has shape {list(x.shape)}: it needs a batch axis with samples")
        dims = tt.shape.dim[1:] if tt.HasField("shape") else []
        if tt.HasField("shape") and (x.ndim != len(dims) + 1 or any(
                d.HasField("dim_value") and d.dim_value != v for d, v in zip(dims, x.shape[1:]))):
            raise CompileError(f"{where} has shape {list(x.shape)}, the model needs [" + ", ".join(["N"] + [
                str(d.dim_value) if d.HasField("dim_value") else d.dim_param or "?" for d in dims]) + "]")
        if x.dtype.kind == "f":
            if not np.isfinite(x).all():
                raise CompileError(f"{where} holds NaN or infinity")
            lo, hi = float(x.min(initial=0)), float(x.max(initial=0))
            if max(-lo, hi) > F32_MAX:
                raise CompileError(f"{where} holds values up to {max(-lo, hi):.3g}, beyond float32")


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
            raise CompileError(f"calibration input '{name}' has shape {list(got)}, the model needs "
                               f"[{', '.join(['N', *map(str, want)])}]")
        x = calib[name]
        if x.dtype.kind == "f" and not np.any(x):      # a constant c != 0 still spans [min(0, c), max(0, c)]
            raise CompileError(f"calibration input '{name}' is zero throughout: it gives no range to quantise with")
    sizes = {name: len(calib[name]) for name in g.inputs}
    if len(set(sizes.values())) > 1:
        raise CompileError("calibration inputs disagree on the batch size: "
                           + ", ".join(f"'{k}' has {v} samples" for k, v in sizes.items()))


def select_outputs(model, names: str):
    """A copy of the model with only the named outputs (in the model's order)."""
    want = [n.strip() for n in names.split(",") if n.strip()]
    have = [o.name for o in model.graph.output]
    unknown = [n for n in want if n not in have]
    if unknown or not want:
        raise CompileError(f"outputs {names!r}: {', '.join(unknown) or 'none named'} not among the model's outputs "
                           f"({', '.join(have)})")
    m = type(model)()
    m.CopyFrom(model)
    keep = [o for o in m.graph.output if o.name in want]
    del m.graph.output[:]
    m.graph.output.extend(keep)
    return m


def compile_model(model, target: Target | str = "raella", calib=None, options=None, progress=None,
                  shapes: dict | None = None) -> Compiled:
    """shapes: per-sample sizes (batch left out) of inputs whose dimensions the model leaves symbolic; by
    default they come from the calibration data."""
    with parallel.single_blas():
        return _compile(model, target, calib, options, progress, shapes)


def _compile(model, target, calib, options, progress, shapes) -> Compiled:
    t = target if isinstance(target, Target) else load_target(target)
    model = as_model(model)
    if isinstance(calib, np.ndarray):
        names = input_names(model)
        if len(names) != 1:
            raise CompileError(f"the model has {len(names)} inputs; give the calibration set as .npz keyed by "
                               f"{', '.join(names)}")
        calib = {names[0]: calib}
    check_calib_data(model, calib)
    opts = Options.make(options)
    if opts.outputs is not None:
        model = select_outputs(model, opts.outputs)
    g = import_onnx(model, shapes, {k: v.shape[1:] for k, v in (calib or {}).items()})
    check_calib(g, calib)
    t, sched = rewriting.prepare(t, opts)      # sched: None on a program-once target
    ctx = Context(target=t, calib=calib, options=opts)
    records = run_passes(g, default_passes(), ctx, progress)
    if sched is None:
        return Compiled(lower_graph(g, t), g, records)
    records += rewriting.plan(g, ctx, sched, progress)
    t0 = time.perf_counter()
    program = lower_graph(g, t, sched)
    return Compiled(program, g, records + [PassRecord("schedule", time.perf_counter() - t0, sched.report)])
