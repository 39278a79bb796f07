"""Lowering: the quantised, mapped, encoded graph -> an isa.Program.

Buffers are named t0, t1, ... in topological order, constants L<i>.<what> for op i, so the text depends
only on the graph. A program-once target programs every crossbar first (xbwrite), then computes. Convs
stream their windows through `im2col` + `mvm`, so program size grows with layers x crossbars, never with
windows or batch.
"""
from __future__ import annotations

import numpy as np

from ir import CompileError, Graph, Op
from isa import Buf, Program, Target

from .lower_vector import VLOWER, bounds

from .schedule import ScheduleOptions, schedule_program

CROSSBAR_OPS = ("conv", "linear")


def _narrow(a: np.ndarray) -> np.ndarray:
    """Smallest integer dtype holding the values (keeps the data section compact)."""
    for dt in (np.int8, np.int16, np.int32, np.int64):
        if a.min(initial=0) >= np.iinfo(dt).min and a.max(initial=0) <= np.iinfo(dt).max:
            return a.astype(dt)
    return a


class Lowering:
    def __init__(self, g: Graph, target: Target):
        self.g, self.p = g, Program(target)
        self.buf: dict[str, Buf] = {}
        self.ops = g.topo()
        self.index = {op.name: i for i, op in enumerate(self.ops)}

    def b(self, tensor: str):
        """Operand for a tensor: its buffer, or a constant (quantised codes) in the data section."""
        t = self.g.tensors[tensor]
        if t.is_const:
            name = f"c.{len(self.p.consts)}"
            return self.p.add_const(name, np.asarray(t.data, dtype=np.uint8))
        if tensor not in self.buf:
            self.buf[tensor] = Buf(f"t{len(self.buf)}")
        return self.buf[tensor]

    def const(self, op: Op, what: str, data):
        return self.p.add_const(f"L{self.index[op.name]}.{what}", data)

    def run(self) -> Program:
        g, p = self.g, self.p
        for name in g.inputs:
            t = g.tensors[name]
            if t.dtype in ("f32", "i64"):     # the vector unit reads it as float32 / integer ids
                p.emit("input", self.b(name), name=name, shape=t.shape, scale=1.0, zero=0, dtype=t.dtype)
                continue
            if t.dtype != "u8":
                raise CompileError(f"input {name} is not quantised")
            p.emit("input", self.b(name), name=name, shape=t.shape, scale=float(t.scale), zero=t.zero)
        for op in self.ops:
            if op.kind in CROSSBAR_OPS:
                self._program_crossbars(op)
        for op in self.ops:
            vector = op.kind not in CROSSBAR_OPS and (g.tensors[op.outputs[0]].dtype == "f32" or op.kind == "quant")
            fn = (VLOWER if vector else LOWER).get(op.kind)
            if fn is None:
                raise CompileError(f"node {op.name}: the backend has no lowering for '{op.kind}'")
            fn(self, op)
        for name, onnx_name in zip(g.outputs, g.output_names):
            t = g.tensors[name]
            if t.dtype == "i32":
                p.emit("output", self.b(name), name=onnx_name, scale=self.const(self.producer(name), "oscale",
                       np.asarray(t.scale, np.float64)), axis=t.qaxis)
            elif t.dtype == "f32":
                p.emit("output", self.b(name), name=onnx_name, scale=1.0)
            elif np.ndim(t.scale):      # per-channel u8 codes (passes/quantize.py: an output concat's parts)
                op = self.producer(name)
                p.emit("output", self.b(name), name=onnx_name, axis=t.qaxis,
                       scale=self.const(op, "oscale", np.asarray(t.scale, np.float64)),
                       zero=self.const(op, "ozero", np.asarray(t.zero, np.int32)))
            else:
                p.emit("output", self.b(name), name=onnx_name, scale=float(t.scale), zero=t.zero)
        if not p.target.program_once:      # rewriting target: place and interleave the writes (schedule.py)
            schedule_program(p, g, self.ops, getattr(self, "schedule", None) or ScheduleOptions())
        return p

    def producer(self, tensor):
        return self.g.producer(tensor)

    def _program_crossbars(self, op: Op):
        w = self.const(op, "w", _narrow(op.attrs["wm"]))
        enc = op.attrs["enc"]
        for xb, e in zip(op.attrs["xbars"], enc["xbars"]):
            attrs = dict(xb=xb["xb"], layer=op.name, rows=xb["rows"], cols=xb["cols"], kg=op.attrs["kg"],
                         ng=op.attrs["ng"], encoding=enc["encoding"], slices=op.attrs["slices"])
            group = op.attrs.get("row_group", 0)
            if group and group < xb["rows"][1] - xb["rows"][0]:      # rows read in groups (passes/row_groups.py)
                attrs["group"] = group
            center = e["center"]
            attrs["center"] = int(center) if np.ndim(center) == 0 else self.const(op, f"xb{xb['xb']}.center", _narrow(center))
            if e["flip"] is not None and e["flip"].any():
                attrs["flip"] = self.const(op, f"xb{xb['xb']}.flip", e["flip"].astype(np.uint8))
            self.p.emit("xbwrite", w, **attrs)


LOWER = {}


def lower(*kinds):
    def reg(fn):
        for k in kinds:
            LOWER[k] = fn
        return fn
    return reg


@lower("conv", "linear")
def _crossbar_op(L: Lowering, op: Op):
    g, q = L.g, op.attrs["q"]
    x = L.b(op.inputs[0])
    src = x
    attrs = {}
    if op.kind == "conv":
        a = op.attrs
        src = Buf(f"{L.b(op.outputs[0]).name}.win")
        L.p.emit("im2col", src, x, kernel=a["kernel"], strides=a["strides"], pads=a["pads"],
                 dilations=a["dilations"], fill=q["zx"], layer=op.name)
        out_shape = g.tensors[op.outputs[0]].shape
        attrs["chw"] = out_shape
    wm = op.attrs["wm"]
    acc = Buf(f"{L.b(op.outputs[0]).name}.acc")
    n = wm.shape[1]
    islices, recover = op.attrs.get("islices") or (L.p.target.input_slices, L.p.target.recovery_bits)
    spec = {"recover": recover} if recover else {}
    signed = op.attrs.get("signed_input", False)
    if signed:
        spec["signed"] = q["zx"]
    for xb in op.attrs["xbars"]:
        L.p.emit("mvm", acc, src, xb=xb["xb"], n=n, islices=islices, layer=op.name, **spec)
    # unsigned: the mvm sums W * x over input codes, and the zero-point term -zx * sum(W) folds into the bias;
    # signed: the mvm already sums W * (x - zx)
    bias = q["bias"] - (0 if signed else q["zx"]) * wm.astype(np.int64).sum(axis=0)
    y = L.b(op.outputs[0])
    if g.tensors[op.outputs[0]].dtype == "f32":       # to the float32 vector unit
        act = bounds(*q["act"]) if "act" in q else {}
        L.p.emit("accf", y, acc, bias=L.const(op, "bias", _narrow(bias)), scale=L.const(op, "scale", q["oscale"]),
                 layer=op.name, **act, **attrs)
    elif "mult" in q:
        L.p.emit("requant", y, acc, bias=L.const(op, "bias", _narrow(bias)), mult=L.const(op, "mult", q["mult"]),
                 shift=L.const(op, "shift", _narrow(q["shift"])), zero=q["zy"], lo=q["lo"], hi=q["hi"],
                 layer=op.name, **attrs)
    else:
        L.p.emit("accout", y, acc, bias=L.const(op, "bias", _narrow(bias)), layer=op.name, **attrs)


@lower("add")
def _add(L, op):
    q = op.attrs["q"]
    L.p.emit("add", L.b(op.outputs[0]), L.b(op.inputs[0]), L.b(op.inputs[1]), za=q["za"], ma=q["ma"], zb=q["zb"],
             mb=q["mb"], shift=q["shift"], zero=q["zy"], lo=q["lo"], hi=q["hi"], layer=op.name)


@lower("mul", "matmul")
def _mul(L, op):
    q = op.attrs["q"]
    L.p.emit(op.kind, L.b(op.outputs[0]), L.b(op.inputs[0]), L.b(op.inputs[1]), za=q["za"], zb=q["zb"],
             mult=q["mult"], shift=q["shift"], zero=q["zy"], lo=q["lo"], hi=q["hi"], layer=op.name)


@lower("relu", "clip", "unary")
def _lut(L, op):
    L.p.emit("lut", L.b(op.outputs[0]), L.b(op.inputs[0]), table=L.const(op, "table", op.attrs["q"]["table"]),
             layer=op.name)


@lower("maxpool")
def _maxpool(L, op):
    a = op.attrs
    L.p.emit("maxpool", L.b(op.outputs[0]), L.b(op.inputs[0]), kernel=a["kernel"], strides=a["strides"],
             pads=a["pads"], dilations=a["dilations"], layer=op.name)


@lower("gmaxpool")
def _gmaxpool(L, op):
    L.p.emit("gmaxpool", L.b(op.outputs[0]), L.b(op.inputs[0]), layer=op.name)


@lower("avgpool")
def _avgpool(L, op):
    a, q = op.attrs, op.attrs["q"]
    L.p.emit("avgpool", L.b(op.outputs[0]), L.b(op.inputs[0]), kernel=a["kernel"], strides=a["strides"],
             pads=a["pads"], dilations=a["dilations"], count_include_pad=bool(a["count_include_pad"]),
             zx=q["zx"], mult=q["mult"], shift=q["shift"], zero=q["zy"], layer=op.name)


@lower("gavgpool")
def _gavgpool(L, op):
    q = op.attrs["q"]
    L.p.emit("gavgpool", L.b(op.outputs[0]), L.b(op.inputs[0]), zx=q["zx"], mult=q["mult"], shift=q["shift"],
             zero=q["zy"], layer=op.name)


@lower("concat")
def _concat(L, op):
    q = op.attrs["q"]
    L.p.emit("concat", L.b(op.outputs[0]), *[L.b(i) for i in op.inputs], axis=op.attrs["axis"], zx=q["zx"],
             mult=q["mult"], shift=q["shift"], zero=q["zy"], layer=op.name)


@lower("reshape")
def _reshape(L, op):
    L.p.emit("reshape", L.b(op.outputs[0]), L.b(op.inputs[0]), shape=op.attrs["shape"], layer=op.name)


@lower("transpose")
def _transpose(L, op):
    L.p.emit("transpose", L.b(op.outputs[0]), L.b(op.inputs[0]), perm=op.attrs["perm"], layer=op.name)


@lower("slice")
def _slice(L, op):
    a = op.attrs
    L.p.emit("slice", L.b(op.outputs[0]), L.b(op.inputs[0]), starts=a["starts"], ends=a["ends"], steps=a["steps"],
             layer=op.name)


@lower("upsample")
def _upsample(L, op):
    L.p.emit("upsample", L.b(op.outputs[0]), L.b(op.inputs[0]), factors=op.attrs["factors"], layer=op.name)


@lower("pad")
def _pad(L, op):
    L.p.emit("pad", L.b(op.outputs[0]), L.b(op.inputs[0]), pads=op.attrs["pads"], fill=op.attrs["q"]["fill"],
             layer=op.name)


@lower("softmax")
def _softmax(L, op):
    q = op.attrs["q"]
    grid = {"mult": q["mult"], "zero": q["zero"]} if "mult" in q else {}    # a quantised model's own output grid
    L.p.emit("softmax", L.b(op.outputs[0]), L.b(op.inputs[0]), axis=op.attrs["axis"],
             table=L.const(op, "table", q["table"]), **grid, layer=op.name)


@lower("lrn")
def _lrn(L, op):
    a, q = op.attrs, op.attrs["q"]
    L.p.emit("lrn", L.b(op.outputs[0]), L.b(op.inputs[0]), size=a["size"], alpha=float(a["alpha"]),
             beta=float(a["beta"]), bias=float(a["bias"]), zx=q["zx"], sx=float(q["sx"]), sy=float(q["sy"]),
             zero=q["zy"], layer=op.name)


def lower_graph(g: Graph, target: Target, schedule: ScheduleOptions | None = None) -> Program:
    L = Lowering(g, target)
    L.schedule = schedule
    return L.run()
