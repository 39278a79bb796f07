"""The machine: executes a program's instructions on its state (buffers, crossbars), batched with NumPy.

One handler per opcode, in a registry (EXEC). Every instruction is validated against the target before the
first run (validate.py); a fault at run time names the instruction's line.
"""
from __future__ import annotations

import numpy as np

from isa import ConstRef, Instr, Program

from . import crossbar as X
from . import kernels as K
from .errors import RuntimeFault
from .stats import Stats
from .validate import validate

EXEC = {}


def handler(*ops):
    def reg(fn):
        for o in ops:
            EXEC[o] = fn
        return fn
    return reg


class Machine:
    def __init__(self, program: Program, ideal: bool = False, hist_range=None, filename: str = "<program>",
                 sliced: bool = False, noise: float = 0.0, seed: int = 0):
        self.p = program
        self.sliced = sliced      # form every slice's column sums even where no column can saturate
        self.t = program.target
        self.ideal = ideal
        self.file = filename
        validate(program, filename)
        self.consts = {k: c.data for k, c in program.consts.items()}
        self.xbars: dict[int, X.Crossbar] = {}
        self.written_by: dict[int, Instr] = {}
        self.levels: dict[int, np.ndarray] = {}      # what each crossbar's cells hold (for pulses)
        self.stats = Stats(self.t, hist_range)
        self.env: dict[str, np.ndarray] = {}
        self.adc = None if ideal else self.t.adc_range
        # R6 noise, seeded: the same program, inputs, seed and chunk size give the same outputs
        self.noise = X.Noise(noise, np.random.default_rng(seed)) if noise and not ideal else None
        self.capacity = self.t.buffer_kb_per_tile * 1024 * self.t.tiles
        self.inputs = [i for i in program.code if i.op == "input"]
        self.outputs = [i for i in program.code if i.op == "output"]

    def val(self, ref):
        if isinstance(ref, ConstRef):
            return self.consts[ref.name]
        return self.env[ref.name]

    def run(self, feeds: dict[str, np.ndarray], chunk: int = 256, progress=None) -> dict[str, np.ndarray]:
        n = len(next(iter(feeds.values())))
        outs: dict[str, list] = {}
        for start in range(0, n, chunk):
            part = {k: v[start:start + chunk] for k, v in feeds.items()}
            for k, v in self._run_chunk(part).items():
                outs.setdefault(k, []).append(v)
            if progress:
                progress(min(n, start + chunk), n)
        self.stats.samples += n
        return {k: np.concatenate(v) for k, v in outs.items()}

    def _run_chunk(self, feeds) -> dict[str, np.ndarray]:
        self.env = {}
        self.pulse_rows = {}
        self.windowed = {}
        self.feeds = feeds
        self.results = {}
        for ins in self.p.code:
            try:
                EXEC[ins.op](self, ins)
            except RuntimeFault:
                raise
            except (ValueError, IndexError, KeyError, TypeError, MemoryError, OverflowError, FloatingPointError) as e:
                raise RuntimeFault(f"{self.file}:{ins.line}: {ins.op}: {e}") from None
        return self.results

    def fault(self, ins: Instr, msg: str) -> RuntimeFault:
        return RuntimeFault(f"{self.file}:{ins.line}: {ins.op}: {msg}")

    def digital(self, ins: Instr, out: np.ndarray, ops_per_elem: int = 1):
        per_sample = out.nbytes // max(1, out.shape[0]) if out.dtype == np.uint8 else 0
        if per_sample > self.capacity:
            raise self.fault(ins, f"result of {per_sample} B per sample exceeds the target's buffers "
                                  f"({self.capacity} B)")
        s = self.stats.layer(ins.attr("layer", ins.op))
        s.digital_ops += out.size * ops_per_elem
        s.buffer_bytes += out.nbytes * 2
        self.env[ins.args[0].name] = out


@handler("input")
def _input(m: Machine, ins: Instr):
    name = ins.attr("name")
    x = m.feeds[name]
    shape = tuple(ins.attr("shape"))
    if x.shape[1:] != shape:
        raise m.fault(ins, f"input '{name}' has shape {list(x.shape[1:])} per sample, the program expects {list(shape)}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise m.fault(ins, f"input '{name}' holds NaN or infinity")
    m.env[ins.args[0].name] = K.quantize(x, ins.attr("scale"), ins.attr("zero"))


@handler("output")
def _output(m: Machine, ins: Instr):
    q = m.val(ins.args[0])
    scale = ins.attr("scale")
    scale = m.val(scale) if isinstance(scale, ConstRef) else scale
    m.results[ins.attr("name")] = K.dequantize(q, scale, ins.attr("zero", 0), ins.attr("axis"))


@handler("xbwrite")
def _xbwrite(m: Machine, ins: Instr):
    idx = ins.attr("xb")
    if m.written_by.get(idx) is ins:    # same write again (next batch chunk): the cells already hold it
        return
    m.written_by[idx] = ins
    a = dict(ins.attrs)
    center = m.val(a["center"]) if isinstance(a["center"], ConstRef) else a["center"]
    flip = m.val(a["flip"]).astype(bool) if "flip" in a else None
    xb = X.program(a.get("layer", ""), m.val(ins.args[0]).astype(np.int64), a["rows"], a["cols"], a["kg"], a["ng"],
                   a["encoding"], center, a["slices"], flip)
    new = xb.levels()
    old = m.levels.get(idx)
    if old is None or old.shape != new.shape:
        old = np.zeros_like(new)
    changed = new != old
    s = m.stats.layer(xb.layer)
    s.crossbar_writes += int(changed.sum())
    s.write_pulses += int(np.abs(new - old).sum())
    s.write_ns += int(changed.any(axis=(0, 2)).sum()) * m.t.write_row_ns
    if idx not in s.crossbars:
        s.crossbars.add(idx)
        s.rows_used.append(xb.rows[1] - xb.rows[0])
        s.cells_used += int(xb.mask.sum()) * len(xb.slices)
    m.xbars[idx] = xb
    m.levels[idx] = new


@handler("im2col")
def _im2col(m: Machine, ins: Instr):
    x = m.val(ins.args[1])
    if x.ndim != 4:
        raise m.fault(ins, f"needs a (C, H, W) buffer, got {list(x.shape[1:])}")
    m.env[ins.args[0].name] = K.im2col(x, ins.attr("kernel"), ins.attr("strides"), ins.attr("pads"),
                                       ins.attr("dilations"), ins.attr("fill"))
    m.windowed[ins.args[0].name] = (x, ins)


def _row_pulses(m: Machine, name: str, islices) -> np.ndarray:
    """DAC pulses per crossbar input row over the batch. For im2col windows they come from the source tensor:
    each pixel's pulses times the windows that read it (one strided sum per kernel offset), pads included."""
    key = (name, islices)
    if key in m.pulse_rows:
        return m.pulse_rows[key]
    per_code = X.code_pulses(islices)
    if name in m.windowed:
        x, ins = m.windowed[name]
        (kh, kw), (sh, sw), (dh, dw) = ins.attr("kernel"), ins.attr("strides"), ins.attr("dilations")
        src = K.pad_hw(x, ins.attr("pads"), ins.attr("fill"))
        pm = per_code[src].sum(axis=0, dtype=np.int64)                      # (C, Hp, Wp)
        oh = (src.shape[2] - (kh - 1) * dh - 1) // sh + 1
        ow = (src.shape[3] - (kw - 1) * dw - 1) // sw + 1
        rows = np.stack([pm[:, ky * dh: ky * dh + (oh - 1) * sh + 1: sh, kx * dw: kx * dw + (ow - 1) * sw + 1: sw]
                         .sum(axis=(1, 2)) for ky in range(kh) for kx in range(kw)], axis=1)
        m.pulse_rows[key] = rows.reshape(-1)
    else:
        x = m.env[name]
        m.pulse_rows[key] = per_code[x.reshape(-1, x.shape[-1])].sum(axis=0, dtype=np.int64)
    return m.pulse_rows[key]


@handler("mvm")
def _mvm(m: Machine, ins: Instr):
    idx = ins.attr("xb")
    xb = m.xbars.get(idx)
    if xb is None:
        raise m.fault(ins, f"crossbar {idx} has not been written")
    x = m.val(ins.args[1])
    r0, r1 = xb.rows
    if x.shape[-1] < r1:
        raise m.fault(ins, f"input has {x.shape[-1]} rows, crossbar {idx} reads rows {r0}:{r1}")
    lead = x.shape[:-1]
    xs = x.reshape(-1, x.shape[-1])[:, r0:r1]      # a view: the matmul's cast is the only pass over it
    args = (ins.attr("islices"), m.adc, m.stats.hist_range, m.sliced)
    spec = dict(recover=ins.attr("recover", 0), noise=m.noise)
    z = ins.attr("signed")
    if z is None:
        pulses = _row_pulses(m, ins.args[1].name, ins.attr("islices"))[r0:r1]
        out, ev = X.mvm(xb, xs, *args, pulses, **spec)
    else:   # R0: inputs around a zero point run as their positive and negative parts, one pass each
        v = xs.astype(np.int16) - z
        out, ev = X.mvm(xb, np.maximum(v, 0).astype(np.uint8), *args, **spec)
        neg, ev2 = X.mvm(xb, np.maximum(-v, 0).astype(np.uint8), *args, **spec)
        out = out - neg
        for f in ("columns", "converts", "saturated", "macs", "dac_pulses", "cell_reads", "spec_converts",
                  "spec_failures"):
            setattr(ev, f, getattr(ev, f) + getattr(ev2, f))
        ev.macs //= 2
    name = ins.args[0].name
    n = ins.attr("n")
    c0, c1 = xb.cols
    if name not in m.env and (c0, c1) == (0, n):     # the first crossbar covers every column: no copy
        m.env[name] = out.reshape(lead + (n,))
    else:
        if name not in m.env:
            m.env[name] = np.zeros(lead + (n,), dtype=np.float64)
        elif m.env[name].dtype != np.float64:        # float32 is exact for one crossbar, not for their sum
            m.env[name] = m.env[name].astype(np.float64)
        m.env[name][..., c0:c1] += out.reshape(lead + (c1 - c0,))
    s = m.stats.layer(xb.layer)
    s.macs += ev.macs
    s.adc_converts += ev.converts
    s.columns += ev.columns
    s.saturated_converts += ev.saturated
    s.spec_converts += ev.spec_converts
    s.spec_failures += ev.spec_failures
    s.dac_pulses += ev.dac_pulses
    s.cell_reads += ev.cell_reads
    s.buffer_bytes += xs.nbytes + out.size * 2
    s.digital_ops += ev.converts          # one shift-add per converted column sum
    passes = (1 if z is None else 2) * (len(ins.attr("islices")) + (8 if ins.attr("recover") else 0))
    s.add_xbar_time(idx, xs.shape[0] * passes * m.t.xbar_cycle_ns)
    if ev.hist is not None:
        s.hist = ev.hist if s.hist is None else s.hist + ev.hist


def _layout(acc, chw):
    if chw:
        B = acc.shape[0]
        return acc.reshape(B, chw[1], chw[2], chw[0]).transpose(0, 3, 1, 2)
    return acc


@handler("requant")
def _requant(m: Machine, ins: Instr):
    # psums are exact integers held in floats
    y = K.requant(m.val(ins.args[1]), m.val(ins.attr("mult")), m.val(ins.attr("shift")), ins.attr("zero"),
                  ins.attr("lo"), ins.attr("hi"), m.val(ins.attr("bias")))
    m.digital(ins, _layout(y, ins.attr("chw")), 3)


@handler("accout")
def _accout(m: Machine, ins: Instr):
    acc = m.val(ins.args[1]).astype(np.int64) + m.val(ins.attr("bias"))
    m.digital(ins, _layout(acc, ins.attr("chw")), 1)


@handler("add")
def _add(m: Machine, ins: Instr):
    a = dict(ins.attrs)
    m.digital(ins, K.add(m.val(ins.args[1]), a["za"], a["ma"], m.val(ins.args[2]), a["zb"], a["mb"], a["shift"],
                         a["zero"], a["lo"], a["hi"]), 3)


@handler("mul")
def _mul(m: Machine, ins: Instr):
    a = dict(ins.attrs)
    m.digital(ins, K.mul(m.val(ins.args[1]), a["za"], m.val(ins.args[2]), a["zb"], a["mult"], a["shift"], a["zero"],
                         a["lo"], a["hi"]), 3)


@handler("matmul")
def _matmul(m: Machine, ins: Instr):
    a = dict(ins.attrs)
    x, y = m.val(ins.args[1]).astype(np.float64) - a["za"], m.val(ins.args[2]).astype(np.float64) - a["zb"]
    acc = np.rint(x @ y).astype(np.int64)
    m.digital(ins, K.requant(acc, a["mult"], a["shift"], a["zero"], a["lo"], a["hi"]), 2 * x.shape[-1])


@handler("lut")
def _lut(m: Machine, ins: Instr):
    m.digital(ins, K.lut(m.val(ins.args[1]), m.val(ins.attr("table"))))


@handler("maxpool")
def _maxpool(m: Machine, ins: Instr):
    k = ins.attr("kernel")
    m.digital(ins, K.maxpool(m.val(ins.args[1]), k, ins.attr("strides"), ins.attr("pads"), ins.attr("dilations")),
              k[0] * k[1])


@handler("gmaxpool")
def _gmaxpool(m: Machine, ins: Instr):
    x = m.val(ins.args[1])
    m.digital(ins, x.max(axis=(2, 3), keepdims=True), x.shape[2] * x.shape[3])


@handler("avgpool")
def _avgpool(m: Machine, ins: Instr):
    a = dict(ins.attrs)
    k = a["kernel"]
    m.digital(ins, K.avgpool(m.val(ins.args[1]), a["zx"], k, a["strides"], a["pads"], a["dilations"],
                             a["count_include_pad"], a["mult"], a["shift"], a["zero"], 0, 255), k[0] * k[1] + 2)


@handler("gavgpool")
def _gavgpool(m: Machine, ins: Instr):
    a = dict(ins.attrs)
    x = m.val(ins.args[1])
    m.digital(ins, K.global_avgpool(x, a["zx"], a["mult"], a["shift"], a["zero"], 0, 255), x.shape[2] * x.shape[3] + 2)


@handler("concat")
def _concat(m: Machine, ins: Instr):
    a = dict(ins.attrs)
    xs = [m.val(r) for r in ins.args[1:]]
    batch = max(x.shape[0] for x in xs)
    parts = [K.rescale(np.broadcast_to(x, (batch,) + x.shape[1:]), zx, mu, sh, a["zero"])
             for x, zx, mu, sh in zip(xs, a["zx"], a["mult"], a["shift"])]
    m.digital(ins, np.concatenate(parts, axis=a["axis"]), 2)


@handler("reshape")
def _reshape(m: Machine, ins: Instr):
    x = m.val(ins.args[1])
    m.env[ins.args[0].name] = x.reshape((x.shape[0],) + tuple(ins.attr("shape")))


@handler("transpose")
def _transpose(m: Machine, ins: Instr):
    m.digital(ins, np.ascontiguousarray(m.val(ins.args[1]).transpose(ins.attr("perm"))), 0)


@handler("pad")
def _pad(m: Machine, ins: Instr):
    x = m.val(ins.args[1])
    p = ins.attr("pads")
    n = len(p) // 2
    m.digital(ins, np.pad(x, ((0, 0),) + tuple(zip(p[:n], p[n:])), constant_values=ins.attr("fill")), 0)


@handler("softmax")
def _softmax(m: Machine, ins: Instr):
    m.digital(ins, K.softmax(m.val(ins.args[1]), m.val(ins.attr("table")), ins.attr("axis")), 4)


@handler("lrn")
def _lrn(m: Machine, ins: Instr):
    a = dict(ins.attrs)
    m.digital(ins, K.lrn(m.val(ins.args[1]), a["zx"], a["sx"], a["size"], a["alpha"], a["beta"], a["bias"], a["sy"],
                         a["zero"]), a["size"] + 4)
