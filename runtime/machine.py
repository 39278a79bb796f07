"""The machine: executes a program's instructions on its state (buffers, crossbars), batched with NumPy.

One handler per opcode, in a registry (EXEC). Every instruction is validated against the target before the
first run (validate.py); a fault at run time names the instruction's line.
"""
from __future__ import annotations

import numpy as np

from isa import Buf, ConstRef, Instr, Program
from isa.host import memory_budget

from . import banks as BK
from . import crossbar as X
from . import kernels as K
from . import dynamic as D
from . import noise as N
from . import vector as V
from .errors import RuntimeFault
from .schedule import Cells
from .stats import Stats
from .validate import validate

EXEC = {}


def handler(*ops):
    def reg(fn):
        for o in ops:
            EXEC[o] = fn
        return fn
    return reg


CHUNK_BYTES = 1 << 30        # buffers of one chunk, as the automatic chunk size plans them


def _mib(nbytes: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift:
            return f"{nbytes / (1 << shift):.1f} {unit}"
    return f"{nbytes} B"


MAX_NOISE = 100.0          # E = 100: each column sum's spread 100 times its own magnitude, far past any study


class Machine:
    def __init__(self, program: Program, ideal: bool = False, hist_range=None, filename: str = "<program>",
                 sliced: bool = False, noise: float = 0.0, seed: int = 0):
        if not 0 <= noise <= MAX_NOISE:         # NaN fails too
            raise RuntimeFault(f"noise must be in [0, {MAX_NOISE}] (a fraction of a column sum's spread), got {noise}")
        if not isinstance(seed, (int, np.integer)) or not 0 <= seed < 1 << 64:
            raise RuntimeFault(f"seed must be an integer in [0, 2^64), got {seed!r}")
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
        # noise (RAELLA sec. 7.3) keyed per (seed, instruction, input part, global sample row, pass, column) (noise.py): the
        # same program, inputs and seed give the same outputs however the samples are chunked or sharded
        self.noise = X.Noise(noise, seed) if noise and not ideal else None
        self.index = {id(c): i for i, c in enumerate(program.code)}
        self.sample0 = 0          # global index of the running chunk's first sample
        self.capacity = self.t.buffer_kb_per_tile * 1024 * self.t.tiles
        self.inputs = [i for i in program.code if i.op == "input"]
        self.outputs = [i for i in program.code if i.op == "output"]
        # a rewriting target: the cells' levels, in the steady state of one inference after another (schedule.py)
        self.cells = None if self.t.program_once else Cells(program, lambda ins: _encode(self, ins))

    def val(self, ref):
        if isinstance(ref, ConstRef):
            return self.consts[ref.name]
        return self.env[ref.name]

    def run(self, feeds: dict[str, np.ndarray], chunk: int | None = None, progress=None, sample_offset: int = 0,
            previous: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Run the program on every sample of `feeds`, `chunk` samples at a time. chunk None: as many per chunk
        as fit in CHUNK_BYTES of buffers (or in the memory this host can still give, if less), measured on the
        machine's first run, whose first chunk is its first sample alone. Later runs reuse the measure: a chunk
        size that changes from run to run would have the allocator hand back and fault in its memory every
        run. Before the rest of the batch runs, its outputs and one chunk's buffers are checked against that
        memory (fit_chunk). Outputs and stats do not depend on the chunking.

        Shards: `feeds` may be samples [a, b) of a larger batch, run with sample_offset=a; noise is keyed by
        the global sample index, so each sample's outputs are those of one run over the whole batch. Stats of
        the shards' machines merge with Stats.merge into the whole run's. Run-time-written crossbars count a
        write against the previous sample's operand: give that sample's feeds (sample a - 1) as `previous`
        (run first, nothing of it counted), else the shard's first write counts from reset cells."""
        n = len(next(iter(feeds.values())))
        outs: dict[str, list] = {}
        self.loads, self.dyn_levels, self.dyn_meta = [], {}, {}
        if previous is not None and sample_offset > 0:
            self._prime({k: v[-1:] for k, v in previous.items()}, sample_offset - 1)
        per_sample = self.__dict__.get("per_sample")
        size = self.fit_chunk(n, chunk) if per_sample else 1
        start = 0
        while start < n:
            part = {k: v[start:start + size] for k, v in feeds.items()}
            before = {name: self.stats.compute_ns(s) for name, s in self.stats.layers.items()}
            self.sample0 = sample_offset + start
            for k, v in self._run_chunk(part).items():
                outs.setdefault(k, []).append(v)
            self._exposed_writes(before)
            start += size
            if progress:
                progress(min(n, start), n)
            if not per_sample:      # the first sample alone: what one needs, before the rest runs
                per_sample = self.per_sample = max(1, self._env_bytes())
                self.out_per_sample = sum(v.nbytes for v in self.results.values())
                size = self.fit_chunk(n, chunk)
        self.stats.samples += n
        return {k: np.concatenate(v) for k, v in outs.items()}

    def _env_bytes(self) -> int:
        return sum(a.nbytes for a in self.env.values() if isinstance(a, np.ndarray))

    def fit_chunk(self, n: int, chunk: int | None) -> int:
        """Samples per chunk for a batch of n, from the measured bytes per sample: the batch's outputs (held
        until they are joined, then joined: twice) and one chunk's buffers must fit in the memory this host
        can still give (isa/host.py: free memory, ulimit -v / -d), with the buffers held now, which the next
        chunk replaces. A chunk given that does not fit, or a batch where not even one sample does, is one
        RuntimeFault naming the input and the figures, before the rest of the batch runs."""
        budget = memory_budget() + self._env_bytes()
        outs = 2 * n * getattr(self, "out_per_sample", 0)
        room = budget - outs
        size = chunk or max(1, min(CHUNK_BYTES, room // 2) // self.per_sample)   # half: kernels' temporaries
        if size * self.per_sample <= room:
            return size
        name = self.inputs[0].attr("name") if self.inputs else "the batch"
        advice = (f"use --chunk {room // self.per_sample} or less" if chunk and room >= self.per_sample
                  else "run fewer samples at a time")
        raise RuntimeFault(f"input '{name}': {n} samples need {_mib(outs)} for their outputs "
                           f"({self.out_per_sample} B per sample) and {_mib(size * self.per_sample)} of buffers for "
                           f"a chunk of {size} ({self.per_sample} B per sample), more than the {_mib(budget)} this "
                           f"host can still give (free memory, ulimit -v / -d); {advice}")

    def _prime(self, sample: dict[str, np.ndarray], index: int):
        """Run one sample only for what the run-time-written crossbars hold after it; its stats, weight writes
        and outputs are dropped."""
        keep = (self.stats, dict(self.written_by), dict(self.levels), dict(self.xbars))
        self.stats = Stats(self.t, keep[0].hist_range)
        self.sample0 = index
        self._run_chunk(sample)
        self.stats, self.written_by, self.levels, self.xbars = keep
        self.loads = []

    def _exposed_writes(self, before: dict):
        """Run-time writes of the chunk just run on the critical path: what the compute of the layers named in
        `overlap` over the same chunk (their compute now less `before`) does not hide. Every term is linear
        in the chunk's samples, so any chunking gives the same sum."""
        layers = self.stats.layers
        for s, write_ns, overlap in self.loads:
            hidden = sum(self.stats.compute_ns(layers[o]) - before.get(o, 0.0) for o in overlap if o in layers)
            s.rt_exposed_ns += max(0.0, write_ns - hidden)
        self.loads = []

    def _run_chunk(self, feeds) -> dict[str, np.ndarray]:
        self.env = _Env(self)
        self.pulse_rows = {}
        self.windowed = {}
        self.lazy = {}             # im2col outputs not formed (yet) -> a stand-in of their shape (no memory)
        self.acc_bounds, self.acc_arrays = {}, {}      # accumulator -> largest |sum| it can hold, its array
        self.pooled = {}           # maxpool output -> (its input's stand-in, the codes), pooled before requant
        self.feeds = feeds
        self.results = {}
        for ins in self.p.code:
            try:
                EXEC[ins.op](self, ins)
            except RuntimeFault:
                raise
            except (ValueError, IndexError, KeyError, TypeError, MemoryError, OverflowError, FloatingPointError,
                    RuntimeWarning) as e:       # NumPy's overflow or invalid value, as the CLIs raise them
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
    dtype = ins.attr("dtype", "u8")
    if dtype == "i64":
        if x.dtype.kind not in "iub":
            raise m.fault(ins, f"input '{name}' must hold integers (token ids / masks), got {x.dtype}")
        m.env[ins.args[0].name] = x.astype(np.int64)
    elif dtype == "f32":
        m.env[ins.args[0].name] = V.f32(x)
    else:
        m.env[ins.args[0].name] = K.quantize(x, ins.attr("scale"), ins.attr("zero"))


@handler("output")
def _output(m: Machine, ins: Instr):
    q = m.val(ins.args[0])
    scale = ins.attr("scale")
    scale = m.val(scale) if isinstance(scale, ConstRef) else scale
    zero = ins.attr("zero", 0)
    zero = m.val(zero) if isinstance(zero, ConstRef) else zero
    m.results[ins.attr("name")] = K.dequantize(q, scale, zero, ins.attr("axis"))


def _encode(m: Machine, ins: Instr) -> X.Crossbar:
    a = dict(ins.attrs)
    center = m.val(a["center"]) if isinstance(a["center"], ConstRef) else a["center"]
    flip = m.val(a["flip"]).astype(bool) if "flip" in a else None
    # the layer's whole matrix as stored: program gathers (and widens) only this crossbar's block
    return X.program(a.get("layer", ""), m.val(ins.args[0]), a["rows"], a["cols"], a["kg"], a["ng"],
                     a["encoding"], center, a["slices"], flip, a.get("group", 0))


@handler("xbwrite")
def _xbwrite(m: Machine, ins: Instr):
    idx = ins.attr("xb")
    if m.written_by.get(idx) is ins:    # same write again (next batch chunk): the cells already hold it
        return
    m.written_by[idx] = ins
    xb = _encode(m, ins)
    s = m.stats.layer(xb.layer)
    if m.cells is not None:             # rewriting: this pass is every inference of the chunk (schedule.py)
        ev = m.cells.write(idx, xb, ins)
        per = len(next(iter(m.feeds.values())))
        s.cells_written += ev.changed * per
        s.write_pulses += ev.pulses * per
        s.write_ns += ev.ns * per
    else:                               # program-once: blank cells, each crossbar written once
        new = xb.levels()
        old = m.levels.get(idx)
        blank = old is None or old.shape != new.shape          # levels are >= 0: blank cells change where nonzero
        changed = new != 0 if blank else new != old
        s.cells_written += int(np.count_nonzero(changed))
        s.write_pulses += int(new.sum() if blank else np.abs(new - old).sum())
        s.write_ns += int(changed.any(axis=(0, 2)).sum()) * m.t.write_row_ns
        m.levels[idx] = new
    s.logical.add(ins.attr("lxb", idx))
    if idx not in s.crossbars:
        s.crossbars.add(idx)
        s.rows_used.append(xb.rows[1] - xb.rows[0])
        s.cells_used += int(xb.mask.sum()) * len(xb.slices)
    m.xbars[idx] = xb


@handler("im2col")
def _im2col(m: Machine, ins: Instr):
    x = m.val(ins.args[1])
    if x.ndim != 4:
        raise m.fault(ins, f"needs a (C, H, W) buffer, got {list(x.shape[1:])}")
    oh, ow = K.out_hw(x, ins.attr("kernel"), ins.attr("strides"), ins.attr("pads"), ins.attr("dilations"))
    if oh < 1 or ow < 1:        # a program whose windows do not fit its input (hand-edited attributes)
        raise m.fault(ins, f"the dilated kernel does not fit the {x.shape[2]}x{x.shape[3]} input and its pads "
                           f"(output {oh}x{ow})")
    name = ins.args[0].name
    m.windowed[name] = (x, ins)
    (kh, kw), B = ins.attr("kernel"), len(x)
    if name in _lazy_windows(m) and x.shape[1] * kw >= 16:
        # left unformed: every reader is an mvm, which forms the windows itself (X.window_product, which
        # copies runs of kw * C elements: too short below 16) or has them formed (_windows) first; any
        # other read of the buffer forms them too (_Env)
        m.env.pop(name, None)
        m.lazy[name] = np.broadcast_to(np.zeros(1, x.dtype), (B, oh * ow, x.shape[1] * kh * kw))
        return
    m.env[name] = K.im2col(x, ins.attr("kernel"), ins.attr("strides"), ins.attr("pads"), ins.attr("dilations"),
                           ins.attr("fill"))


def _lazy_windows(m: Machine) -> set:
    """im2col outputs that only mvms without a zero point (`signed`) read and only that im2col writes: they
    need not be formed where each reading run is one fused product (a k x k kernel; a 1 x 1 im2col is a view
    or a plain copy)."""
    lazy = m.__dict__.get("lazy_windows")
    if lazy is None:
        writers, readers = _uses(m)
        lazy = m.lazy_windows = {
            c.args[0].name for c in m.p.code
            if c.op == "im2col" and tuple(c.attr("kernel")) != (1, 1) and len(writers[c.args[0].name]) == 1
            and all(r.op == "mvm" and r.args[1].name == c.args[0].name and r.args[0].name != c.args[0].name
                    and r.attr("signed") is None for r in readers.get(c.args[0].name, ()))}
    return lazy


def _windows(m: Machine, name: str) -> np.ndarray:
    """The im2col output `name`, formed now if it was left to its readers."""
    if m.lazy.pop(name, None) is not None:
        x, ins = m.windowed[name]
        m.env[name] = K.im2col(x, ins.attr("kernel"), ins.attr("strides"), ins.attr("pads"), ins.attr("dilations"),
                               ins.attr("fill"))
    return m.env[name]


class _Env(dict):
    """The machine's buffers; an im2col output left unformed is formed when something reads it."""

    def __init__(self, m: Machine):
        super().__init__()
        self.m = m

    def __missing__(self, name):
        if name in self.m.lazy:
            return _windows(self.m, name)
        raise KeyError(name)


def _row_pulses(m: Machine, name: str, islices) -> np.ndarray:
    """DAC pulses per crossbar input row over the batch. For im2col windows they come from the source tensor:
    each pixel's pulses times the windows that read it (one strided sum per kernel offset), pads included."""
    key = (name, islices)
    if key in m.pulse_rows:
        return m.pulse_rows[key]
    if name in m.windowed:
        x, ins = m.windowed[name]
        (kh, kw), (sh, sw), (dh, dw) = ins.attr("kernel"), ins.attr("strides"), ins.attr("dilations")
        t, l, b, r = ins.attr("pads")
        fill = int(X.code_pulses(islices)[ins.attr("fill")]) * len(x)       # a pad reads the fill in every sample
        pm = np.pad(X.row_pulses(x, islices), ((0, 0), (t, b), (l, r)), constant_values=fill)    # (C, Hp, Wp)
        oh = (pm.shape[1] - (kh - 1) * dh - 1) // sh + 1
        ow = (pm.shape[2] - (kw - 1) * dw - 1) // sw + 1
        rows = np.stack([pm[:, ky * dh: ky * dh + (oh - 1) * sh + 1: sh, kx * dw: kx * dw + (ow - 1) * sw + 1: sw]
                         .sum(axis=(1, 2)) for ky in range(kh) for kx in range(kw)], axis=1)
        m.pulse_rows[key] = rows.reshape(-1)
    else:
        x = m.env[name]
        m.pulse_rows[key] = X.row_pulses(x.reshape(-1, x.shape[-1]), islices)
    return m.pulse_rows[key]


def _mvm_runs(m: Machine) -> dict:
    """First instruction of each run of consecutive mvms with the same output and input -> the run."""
    runs = m.__dict__.get("mvm_runs")
    if runs is None:
        runs, code, i = {}, m.p.code, 0
        key = [(tuple(a.name for a in c.args), c.attr("n")) if c.op == "mvm" else None for c in code]
        while i < len(code):
            j = i + 1
            while key[i] is not None and j < len(code) and key[j] == key[i]:
                j += 1
            if key[i] is not None:          # a single mvm too: one product with its windows never formed
                runs[id(code[i])] = code[i:j]
            i = j
        m.mvm_runs = runs
    return runs


def _fuse(m: Machine, ins: Instr, x2: np.ndarray) -> tuple[np.ndarray, int] | None:
    """A run of plain mvms (exact integer products) into one accumulator is one product with their combined
    weights: one BLAS pass over the input instead of one per crossbar. Only where that does no more MACs
    than the crossbars themselves (not for block-diagonal grouped layers), and nothing between the run's
    instructions can read the partial sum. Gives (product, its bound), or None where the run cannot be fused."""
    run = _mvm_runs(m).get(id(ins))
    if run is None:
        return None
    src = ins.args[1].name
    lazy = isinstance(ins.args[1], Buf) and src in m.lazy
    plan = _fuse_plan(m, run, x2.shape[1], m.windowed[src] if lazy else None)
    if plan is None:
        return None
    r0, w, bound, taps = plan
    if not lazy:
        return X.product(x2[:, r0:r0 + len(w)], w), bound
    x, win = m.windowed[src]
    a = [win.attr(k) for k in ("kernel", "strides", "pads", "dilations", "fill")]
    if taps is not None:                # a depthwise conv's crossbars: one multiply-add per kernel offset
        return X.depthwise_window_product(x, taps, bound, *a), bound
    return X.window_product(x, w, r0, *a), bound


def _fuse_plan(m: Machine, run, width: int, windowed):
    """(first row, combined weights, their bound, depthwise taps or None) of a fusable run, or None. Kept from
    chunk to chunk while the same crossbars hold the run's weights: it depends on nothing else."""
    xbars = [m.xbars.get(i.attr("xb")) for i in run]
    cache = m.__dict__.setdefault("fuse_plans", {})
    hit = cache.get(id(run[0]))
    if hit is not None and hit[1] == width and all(a is b for a, b in zip(hit[0], xbars)):
        return hit[2]
    plan = None
    if not any(xb is None or xb.rows[1] > width or i.attr("signed") is not None
               or not X.is_plain(xb, i.attr("islices"), m.adc, m.stats.hist_range, m.sliced, m.noise,
                                 i.attr("recover", 0)) for xb, i in zip(xbars, run)):
        r0 = min(xb.rows[0] for xb in xbars)
        w = X.plain_weights(xbars, run[0].attr("n"))[r0:]
        block_diagonal = w.size > sum((xb.rows[1] - xb.rows[0]) * (xb.cols[1] - xb.cols[0]) for xb in xbars)
        taps = None
        if block_diagonal and windowed is not None:
            x, (kh, kw) = windowed[0], windowed[1].attr("kernel")
            taps = X.depthwise_taps(w, r0, x.shape[1], kh * kw)
        if not block_diagonal or taps is not None:
            plan = (r0, w, X.product_bound(w), taps)
    cache[id(run[0])] = (xbars, width, plan)
    return plan


@handler("mvm")
def _mvm(m: Machine, ins: Instr):
    idx = ins.attr("xb")
    xb = m.xbars.get(idx)
    if xb is None:
        raise m.fault(ins, f"crossbar {idx} has not been written")
    lazy = isinstance(ins.args[1], Buf) and ins.args[1].name in m.lazy     # an unformed im2col output
    x = m.lazy[ins.args[1].name] if lazy else m.val(ins.args[1])            # (then its stand-in)
    r0, r1 = xb.rows
    if x.shape[-1] < r1:
        raise m.fault(ins, f"input has {x.shape[-1]} rows, crossbar {idx} reads rows {r0}:{r1}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    xs = x2[:, r0:r1]                               # a view: the product's cast is the only pass over it
    islices, rec = ins.attr("islices"), ins.attr("recover", 0)
    args = (islices, m.adc, m.stats.hist_range, m.sliced)
    spec = dict(recover=rec, noise=m.noise)       # the template: _mvm_add keys it per instruction and part
    z = ins.attr("signed")
    name = ins.args[0].name
    n = ins.attr("n")
    c0, c1 = xb.cols
    fused = m.__dict__.setdefault("fused", {})     # accumulator -> (its array, the run already added into it)
    first = name not in m.env
    prod = _fuse(m, ins, x2)
    if prod is not None:
        _accumulate(m, name, lead, n, prod[0], prod[1], (0, n), first)
        fused[name] = (m.env[name], _mvm_runs(m)[id(ins)])
    f = fused.get(name)
    if f is not None and f[0] is m.env.get(name) and any(i is ins for i in f[1]):   # only the events remain
        ev = X.mvm_events(xb, len(xs), islices, _row_pulses(m, ins.args[1].name, islices)[r0:r1], rec)
    else:
        if lazy:
            xs = _windows(m, ins.args[1].name).reshape(-1, x.shape[-1])[:, r0:r1]
        ev = _mvm_add(m, ins, xb, xs, lead, args, spec, z, first)
    s = m.stats.layer(xb.layer)
    s.add_events(ev)
    s.buffer_bytes += xs.nbytes + xs.shape[0] * (c1 - c0) * 2
    s.digital_ops += ev.converts          # one shift-add per converted column sum
    m.__dict__.setdefault("mvm_groups", {})[id(ins)] = xb.groups       # runtime/schedule.py times the mvm by it
    s.add_xbar_time(idx, xs.shape[0] * m.t.mvm_ns(islices, rec, 1 if z is None else 2, xb.groups))
    if ev.hist is not None:
        s.hist = ev.hist if s.hist is None else s.hist + ev.hist


def _accumulate(m: Machine, name, lead, n, out, bound, cols, first):
    """Add a (M, c1 - c0) product into columns c0:c1 of accumulator `name`; the first product that covers
    every column becomes the accumulator. It stays float32 while the largest sum it can hold is below 2^24
    (exact plain products only), else it is float64."""
    m.acc_bounds[name] = bound + (0 if first else m.acc_bounds[name])
    if first and cols == (0, n):
        m.env[name] = m.acc_arrays[name] = out.reshape(lead + (n,))
        return
    acc = _acc(m, name, lead, n, first)
    acc[:, cols[0]:cols[1]] += out


def _acc(m: Machine, name, lead, n, first) -> np.ndarray:
    """The (M, n) view of accumulator `name`, made (zeros at first) in the dtype its bound allows."""
    dt = np.float32 if m.acc_bounds[name] < X.EXACT_F32 else np.float64
    if first:
        m.env[name] = np.zeros(lead + (n,), dt)
    elif m.env[name].dtype != dt and dt == np.float64 or not m.env[name].flags.c_contiguous:
        m.env[name] = np.ascontiguousarray(m.env[name], np.float64 if dt == np.float64 else None)
    m.acc_arrays[name] = m.env[name]
    return m.env[name].reshape(-1, n)


def _acc_bound(m: Machine, name) -> float | None:
    """The largest |value| accumulator `name` can hold, where the mvms that made it know it (plain products),
    and nothing else has written the buffer since."""
    a = m.acc_arrays.get(name)
    return m.acc_bounds.get(name) if a is not None and a is m.env.get(name) else None


def _mvm_add(m: Machine, ins: Instr, xb, xs, lead, args, spec, z, first) -> X.MvmEvents:
    """One crossbar's contribution added into its accumulator (the product adds into it in place)."""
    name, n, (c0, c1) = ins.args[0].name, ins.attr("n"), xb.cols
    plain = z is None and X.is_plain(xb, *args, m.noise, spec["recover"])
    bound = X.product_bound(xb.weights) if plain else np.inf
    if z is None:
        spec = _keyed(m, ins, spec, len(xs), 0)
        pulses = _row_pulses(m, ins.args[1].name, args[0])[xb.rows[0]:xb.rows[1]]
        if first and (c0, c1) == (0, n):
            out, ev = X.mvm(xb, xs, *args, pulses, **spec)
            _accumulate(m, name, lead, n, out, bound, (c0, c1), first)
        else:
            m.acc_bounds[name] = bound + (0 if first else m.acc_bounds[name])
            _, ev = X.mvm(xb, xs, *args, pulses, **spec, out=_acc(m, name, lead, n, first)[:, c0:c1])
        return ev
    # inputs around a zero point (RAELLA thesis sec. 2.4) run as their positive and negative parts, one pass each
    v = xs.astype(np.int16) - z
    out, ev = X.mvm(xb, np.maximum(v, 0).astype(np.uint8), *args, **_keyed(m, ins, spec, len(xs), 0))
    neg, ev2 = X.mvm(xb, np.maximum(-v, 0).astype(np.uint8), *args, **_keyed(m, ins, spec, len(xs), 1))
    _accumulate(m, name, lead, n, out - neg, np.inf, (c0, c1), first)
    for f in ("columns", "converts", "saturated", "macs", "dac_pulses", "cell_reads", "spec_converts",
              "spec_failures"):
        setattr(ev, f, getattr(ev, f) + getattr(ev2, f))
    ev.macs //= 2
    return ev


def _keyed(m: Machine, ins: Instr, spec: dict, rows: int, part: int) -> dict:
    """spec with the noise keyed for this instruction and input part, from the chunk's first global row."""
    if spec["noise"] is None:
        return spec
    per = rows // max(1, len(next(iter(m.feeds.values()))))        # input rows per sample (windows)
    key = N.stream(spec["noise"].key, m.index[id(ins)], part)
    return dict(spec, noise=X.Noise(spec["noise"].e, key, m.sample0 * per))


def _layout(acc, chw):
    if chw:
        B = acc.shape[0]
        return acc.reshape(B, chw[1], chw[2], chw[0]).transpose(0, 3, 1, 2)
    return acc


@handler("requant")
def _requant(m: Machine, ins: Instr):
    # psums are exact integers held in floats
    acc, mult = m.val(ins.args[1]), m.val(ins.attr("mult"))
    args = (mult, m.val(ins.attr("shift")), ins.attr("zero"), ins.attr("lo"), ins.attr("hi"), m.val(ins.attr("bias")),
            _acc_bound(m, ins.args[1].name))
    pool = _pool_after(m, ins, acc, mult)
    if pool is None:
        m.digital(ins, _layout(K.requant(acc, *args), ins.attr("chw")), 3)
        return
    # requant is monotone (mult >= 0) and the same at every position, so the max pool that alone reads it
    # takes the max of the accumulators and requantises only the maxima: the same codes, a quarter of the
    # work for a 2 x 2 pool. Counted as written: the requant's full-size output is a stand-in of its shape.
    k = pool.attr("kernel")
    pooled = K.window_reduce(_layout(acc, ins.attr("chw")), k, pool.attr("strides"), pool.attr("pads"),
                             pool.attr("dilations"), -np.inf, np.maximum)             # (B, C, OH, OW)
    y = K.requant(pooled.transpose(0, 2, 3, 1), *args).transpose(0, 3, 1, 2)
    stand_in = np.broadcast_to(np.zeros(1, np.uint8), (len(acc),) + tuple(ins.attr("chw")))
    m.digital(ins, stand_in, 3)
    m.pooled[pool.args[0].name] = (stand_in, y)


def _pool_after(m: Machine, ins: Instr, acc, mult) -> Instr | None:
    """The maxpool right after this requant, where it is the only reader of the requant's output, the
    accumulator holds exact integers as floats, and no multiplier is negative; else None."""
    code, out = m.p.code, ins.args[0].name
    if "index" not in m.__dict__:
        m.index = {id(c): i for i, c in enumerate(code)}
    after = m.index[id(ins)] + 1
    pool = code[after] if after < len(code) else None
    if (pool is None or pool.op != "maxpool" or pool.args[1].name != out or _uses(m)[1].get(out) != [pool]
            or not ins.attr("chw") or acc.dtype.kind != "f" or np.any(np.asarray(mult) < 0)):
        return None
    return pool


def _uses(m: Machine) -> tuple[dict, dict]:
    """Buffer -> the instructions that write it (operand 1), and -> those that read it (any later operand)."""
    uses = m.__dict__.get("uses")
    if uses is None:
        uses = m.uses = ({}, {})
        for c in m.p.code:
            for k, a in enumerate(c.args):
                if isinstance(a, Buf):
                    uses[k > 0].setdefault(a.name, []).append(c)
    return uses


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
    x, table = m.val(ins.args[1]), m.val(ins.attr("table"))
    if table.ndim == 2 and (x.ndim < 2 or table.shape[0] != x.shape[1]):
        raise m.fault(ins, f"a table of {table.shape[0]} channels for codes of shape {list(x.shape[1:])} per sample")
    m.digital(ins, K.lut(x, table))


@handler("maxpool")
def _maxpool(m: Machine, ins: Instr):
    k = ins.attr("kernel")
    x = m.val(ins.args[1])
    done = m.pooled.pop(ins.args[0].name, None)
    if done is not None and done[0] is x:           # pooled before its requant (_requant)
        m.digital(ins, done[1], k[0] * k[1])
        return
    m.digital(ins, K.maxpool(x, k, ins.attr("strides"), ins.attr("pads"), ins.attr("dilations")), k[0] * k[1])


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


@handler("slice")
def _slice(m: Machine, ins: Instr):
    a = dict(ins.attrs)
    m.digital(ins, np.ascontiguousarray(K.slice_axes(m.val(ins.args[1]), a["starts"], a["ends"], a["steps"])), 0)


@handler("upsample")
def _upsample(m: Machine, ins: Instr):
    m.digital(ins, K.upsample(m.val(ins.args[1]), ins.attr("factors")), 0)


@handler("pad")
def _pad(m: Machine, ins: Instr):
    x = m.val(ins.args[1])
    p = ins.attr("pads")
    n = len(p) // 2
    m.digital(ins, np.pad(x, ((0, 0),) + tuple(zip(p[:n], p[n:])), constant_values=ins.attr("fill")), 0)


@handler("softmax")
def _softmax(m: Machine, ins: Instr):
    m.digital(ins, K.softmax(m.val(ins.args[1]), m.val(ins.attr("table")), ins.attr("axis"), ins.attr("mult", 255),
                             ins.attr("zero", 0)), 4)


@handler("lrn")
def _lrn(m: Machine, ins: Instr):
    a = dict(ins.attrs)
    m.digital(ins, K.lrn(m.val(ins.args[1]), a["zx"], a["sx"], a["size"], a["alpha"], a["beta"], a["bias"], a["sy"],
                         a["zero"]), a["size"] + 4)


# ---- the float32 vector unit (runtime/vector.py) ---------------------------------------------------------

def _vact(ins: Instr, y):
    lo, hi = ins.attr("lo"), ins.attr("hi")
    return y if lo is None and hi is None else V.clamp(y, lo, hi)


@handler("quant")
def _quant(m: Machine, ins: Instr):
    smooth = ins.attr("smooth")
    m.digital(ins, V.quant(m.val(ins.args[1]), ins.attr("scale"), ins.attr("zero"),
                           None if smooth is None else m.val(smooth)), 2)


@handler("accf")
def _accf(m: Machine, ins: Instr):
    y = V.scale_acc(m.val(ins.args[1]), m.val(ins.attr("bias")), m.val(ins.attr("scale")))
    m.digital(ins, _vact(ins, _layout(y, ins.attr("chw"))), 2)


@handler("vmatmul")
def _vmatmul(m: Machine, ins: Instr):
    a, b = m.val(ins.args[1]).astype(np.float64) - ins.attr("za"), m.val(ins.args[2]).astype(np.float64) - ins.attr("zb")
    acc = np.rint(a @ b)
    m.digital(ins, _vact(ins, V.scale_acc(acc, 0, ins.attr("scale"))), 2 * a.shape[-1])


@handler("gather")
def _gather(m: Machine, ins: Instr):
    ids, table = m.val(ins.args[1]), m.val(ins.attr("table"))
    if ids.size and (ids.min() < 0 or ids.max() >= len(table)):
        raise m.fault(ins, f"id {int(ids.max() if ids.max() >= len(table) else ids.min())} is outside the "
                           f"table's {len(table)} rows")
    m.digital(ins, V.gather(ids, table, m.val(ins.attr("rowscale"))), 1)


@handler("vmask")
def _vmask(m: Machine, ins: Instr):
    table = ins.attr("table")
    m.digital(ins, V.maskfn(m.val(ins.args[1]), ins.attr("mode"), ins.attr("shape"), ins.attr("on", 0.0),
                            ins.attr("off", 0.0), None if table is None else m.val(table)), 1)


@handler("vunary")
def _vunary(m: Machine, ins: Instr):
    m.digital(ins, V.unary(ins.attr("fn"), m.val(ins.args[1]), ins.attr("p", 0.0), ins.attr("lo"), ins.attr("hi")), 4)


@handler("vbinary")
def _vbinary(m: Machine, ins: Instr):
    m.digital(ins, _vact(ins, V.binary(ins.attr("fn"), m.val(ins.args[1]), m.val(ins.args[2]))), 1)


@handler("vreduce")
def _vreduce(m: Machine, ins: Instr):
    x = m.val(ins.args[1])
    m.digital(ins, V.reduce(ins.attr("fn"), x, ins.attr("axes"), ins.attr("keepdims")), 2)


@handler("vlayernorm")
def _vlayernorm(m: Machine, ins: Instr):
    m.digital(ins, V.layernorm(m.val(ins.args[1]), m.val(ins.attr("gamma")), m.val(ins.attr("beta")),
                               ins.attr("eps")), 8)


@handler("vconcat")
def _vconcat(m: Machine, ins: Instr):
    xs = [m.val(r) for r in ins.args[1:]]
    batch = max(x.shape[0] for x in xs)
    m.digital(ins, V.concat([np.broadcast_to(x, (batch,) + x.shape[1:]) for x in xs], ins.attr("axis")), 0)


@handler("vpad")
def _vpad(m: Machine, ins: Instr):
    m.digital(ins, V.pad(m.val(ins.args[1]), ins.attr("pads"), ins.attr("value")), 0)


@handler("vpool")
def _vpool(m: Machine, ins: Instr):
    k = ins.attr("kernel")
    m.digital(ins, V.pool(ins.attr("fn"), m.val(ins.args[1]), k, ins.attr("strides"), ins.attr("pads"),
                          ins.attr("dilations"), bool(ins.attr("count_include_pad", False))), k[0] * k[1])


@handler("vsoftmax")
def _vsoftmax(m: Machine, ins: Instr):
    m.digital(ins, V.softmax(m.val(ins.args[1]), ins.attr("axis")), 5)


@handler("vhardmax")
def _vhardmax(m: Machine, ins: Instr):
    m.digital(ins, V.hardmax(m.val(ins.args[1]), ins.attr("axis")), 1)


@handler("vexpand")
def _vexpand(m: Machine, ins: Instr):
    m.digital(ins, V.expand(m.val(ins.args[1]), ins.attr("shape")), 0)


# ---- crossbars written at run time (runtime/dynamic.py) --------------------------------------------------

@handler("xbload")
def _xbload(m: Machine, ins: Instr):
    w = m.val(ins.args[1])
    if w.dtype != np.uint8 or w.ndim < 3:
        raise m.fault(ins, f"needs a u8 operand of per-sample rank >= 2, got {w.dtype} {list(w.shape[1:])}")
    name = ins.args[0].name
    cells, pulses, m.dyn_levels[name] = D.write_events(w, ins.attr("zero"), ins.attr("slices"),
                                                       m.dyn_levels.get(name))
    rows = ins.attr("rows")
    if not 1 <= rows <= m.t.rows:
        raise m.fault(ins, f"rows={rows} per crossbar must lie in 1..{m.t.rows}")
    m.dyn_meta[name] = (ins.attr("zero"), tuple(ins.attr("slices")), rows)
    m.env[name] = w
    s = m.stats.layer(ins.attr("layer", ins.op))
    K = w.shape[-2]
    per_sample = min(K, rows) * m.t.write_row_ns      # crossbars are written in parallel, each row by row
    s.rt_write_cells += cells
    s.rt_write_pulses += pulses
    s.rt_write_ns += per_sample * len(w)
    m.loads.append((s, per_sample * len(w), tuple(ins.attr("overlap", ()))))


@handler("dmvm")
def _dmvm(m: Machine, ins: Instr):
    x, w = m.val(ins.args[1]), m.env.get(ins.args[2].name)
    if w is None or ins.args[2].name not in m.dyn_meta:
        raise m.fault(ins, f"crossbars %{ins.args[2].name} have not been written by an xbload")
    if x.shape[-1] != w.shape[-2]:
        raise m.fault(ins, f"input rows {x.shape[-1]} do not match the written operand's {w.shape[-2]} rows")
    islices = ins.attr("islices")
    zw, wslices, rows = m.dyn_meta[ins.args[2].name]
    acc, ev = D.dynamic_mvm(x, ins.attr("za"), w, zw, islices, wslices, rows, m.adc, m.t.adc_signed,
                            ins.attr("recover", 0))
    y = V.scale_acc(acc, 0, ins.attr("scale"))
    m.digital(ins, _vact(ins, y), 1)
    s = m.stats.layer(ins.attr("layer", ins.op))
    s.add_events(ev)
    parts = 2 if ins.attr("za") else 1
    # rows streamed through one crossbar set: operands shared across heads serve them in turn
    rows = x.size // x.shape[-1] // max(1, w.size // (w.shape[-1] * w.shape[-2]))
    s.add_xbar_time(-1, x.shape[0] * rows * m.t.mvm_ns(islices, ins.attr("recover", 0), parts))


# ---- sparse attention on PIM banks (runtime/banks.py) ----------------------------------------------------

def _bank_charge(m: Machine, layer: str, product: str, mode: str, mask: np.ndarray, d: int, bits: int = 8):
    """Bank cycles of one product over its mask: stats per mapping; the layer's time takes the chosen mode,
    the heads (axes between batch and rows) on banks of their own, one bank cycle per crossbar cycle."""
    t, s = m.t, m.stats.layer(layer)
    part = BK.summary(product, mask, d, t.bank_m, t.bank_n, bits)
    BK.add(s.banks, product, mode, part)
    per = BK.cycles(product, mode, mask, d, t.bank_m, t.bank_n, bits)
    s.add_xbar_time(-2, float(per.reshape(len(per), -1).max(axis=1, initial=0).sum()) * t.xbar_cycle_ns)
    s.macs += part["useful_macs"]
    s.cell_reads += BK.pe_reads(product, mode, mask, d, t.bank_m, t.bank_n, bits)


@handler("sddmm", "spmm")
def _bank_product(m: Machine, ins: Instr):
    a, w = m.val(ins.args[1]), m.val(ins.args[2])
    za, mode, layer = ins.attr("za"), ins.attr("mode"), ins.attr("layer", ins.op)
    acc = np.rint((a.astype(np.float64) - za) @ (w.astype(np.float64) - ins.attr("zb")))
    y = _vact(ins, V.scale_acc(acc, 0, ins.attr("scale")))
    m.digital(ins, y, 1)
    if ins.op == "spmm":            # SVM skips the probabilities whose code is the zero point
        _bank_charge(m, layer, "spmm", mode, np.broadcast_to(a != za, y.shape[:-1] + a.shape[-1:]), w.shape[-1])
        return
    masked = m.__dict__.get("masked_sddmm")
    if masked is None:
        masked = m.masked_sddmm = {i.attr("sddmm") for i in m.p.code if i.op == "vtopk"}
    if layer in masked:             # the vtopk that names this layer charges it with its mask
        m.__dict__.setdefault("bank_pending", {})[layer] = (mode, a.shape[-1], y.shape)
    else:
        _bank_charge(m, layer, "sddmm", mode, np.ones(y.shape, bool), a.shape[-1])


@handler("sdpred")
def _sdpred(m: Machine, ins: Instr):
    """Sparse attention's score predictor on the bank holding K^T: every score from the top bits of the codes
    (runtime/kernels.py's predicted_acc), charged as a dense b-bit VMM (runtime/banks.py)."""
    a, w, bits = m.val(ins.args[1]), m.val(ins.args[2]), ins.attr("bits")
    acc = K.predicted_acc(a, ins.attr("za"), w, ins.attr("zb"), bits)
    y = _vact(ins, V.scale_acc(acc, 0, ins.attr("scale")))
    m.digital(ins, y, 1)
    _bank_charge(m, ins.attr("layer", ins.op), "predict", "vmm", np.ones(y.shape, bool), a.shape[-1], bits)


@handler("vtopk")
def _vtopk(m: Machine, ins: Instr):
    x, by = m.val(ins.args[1]), m.val(ins.args[2])
    if x.shape != by.shape:
        raise m.fault(ins, f"scores {list(x.shape[1:])} and the scores the mask is taken from {list(by.shape[1:])} "
                           "differ in shape")
    y, keep = V.topk(x, ins.attr("k"), ins.attr("threshold"), by)
    m.digital(ins, y, 2)
    name = ins.attr("sddmm")
    if name is None:
        return
    mode, d, shape = m.__dict__.get("bank_pending", {}).pop(name, (None, 0, None))
    if mode is None:
        raise m.fault(ins, f"no sddmm of layer '{name}' ran before it")
    if keep.shape != shape:
        raise m.fault(ins, f"scores of shape {list(keep.shape[1:])} do not match sddmm '{name}''s "
                           f"{list(shape[1:])}")
    _bank_charge(m, name, "sddmm", mode, keep, d)
