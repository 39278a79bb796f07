"""Static checks of a program against its instruction set and target, before anything runs.

Structure (opcode, operands, attribute types), references (constants defined, buffers written before
they are read), and the target's bounds: crossbar index, rows and columns per crossbar, slice widths
against cell and DAC bits, the weight block inside its constant, per-sample buffer sizes.
"""
from __future__ import annotations

import numpy as np

from isa import Buf, ConstRef, Instr, Program
from isa.instructions import SPECS

from .crossbar import block_mask, block_weights
from .errors import RuntimeFault

CODES = ("zero", "zx", "za", "zb", "lo", "hi", "fill", "signed")   # zero points, clamps, fills of u8 codes
BANK_MODES = {"sddmm": ("ip", "vmm"), "spmm": ("svm", "vmm")}     # runtime/banks.py
# Ranges of integer attributes (each entry of an ints attribute): windows a real layer uses, and fixed-point
# multipliers below 2^31 (passes/quantize.fixed_point), so products of codes, window sums and multipliers stay
# inside int64.
ATTR_RANGES = {"kernel": (1, 1024), "strides": (1, 1024), "dilations": (1, 1024), "pads": (0, 1024),
               "mult": (-(1 << 31) + 1, (1 << 31) - 1), "n": (1, 1 << 24)}
CONST_RANGES = {"mult": (-(1 << 31) + 1, (1 << 31) - 1), "bias": (-(1 << 31), (1 << 31) - 1)}
MAX_SHIFT = 62          # rounding right shifts work on int64: 1 << (shift - 1) must stay positive


def _type_ok(v, want: str) -> bool:
    for w in want.split("|"):
        if w == "int" and isinstance(v, int) and not isinstance(v, bool):
            return True
        if w == "float" and isinstance(v, (int, float)) and not isinstance(v, bool):
            return True
        if w == "bool" and isinstance(v, bool):
            return True
        if w == "str" and isinstance(v, str):
            return True
        if w == "ints" and isinstance(v, tuple) and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            return True
        if w == "strs" and isinstance(v, tuple) and all(isinstance(x, str) for x in v):
            return True
        if w == "const" and isinstance(v, ConstRef):
            return True
    return False


def validate(p: Program, filename: str = "<program>") -> None:
    t = p.target
    written: set[str] = set()
    xbars: dict[int, Instr] = {}

    for ins in p.code:
        def fail(msg):
            raise RuntimeFault(f"{filename}:{ins.line}: {ins.op}: {msg}")
        spec = SPECS.get(ins.op)
        if spec is None:
            fail(f"unknown instruction (known: {', '.join(sorted(SPECS))})")
        kinds = list(spec.args)
        if kinds and kinds[-1].endswith("*"):
            if len(ins.args) < len(kinds):
                fail(f"takes at least {len(kinds)} operands, got {len(ins.args)}")
            kinds = kinds[:-1] + [kinds[-1][:-1]] * (len(ins.args) - len(kinds) + 1)
        elif len(ins.args) != len(kinds):
            fail(f"takes {len(kinds)} operands, got {len(ins.args)}")
        for i, (kind, a) in enumerate(zip(kinds, ins.args)):
            if kind == "const" and not isinstance(a, ConstRef) or kind == "buf" and not isinstance(a, Buf) \
                    or not isinstance(a, (Buf, ConstRef)):
                fail(f"operand {i + 1} must be a {'%buffer' if kind == 'buf' else '@constant'}")
            if isinstance(a, ConstRef) and a.name not in p.consts:
                fail(f"constant @{a.name} is not defined")
            reads = i > 0 or ins.op == "output"       # operand 1 is the destination, except output's source
            if isinstance(a, Buf) and reads and a.name not in written and ins.op != "mvm":
                fail(f"buffer %{a.name} is read before it is written")
        attrs = dict(ins.attrs)
        for k in attrs:
            if k not in spec.required and k not in spec.optional:
                fail(f"unknown attribute '{k[:40]}'")
        for k, want in {**spec.required, **spec.optional}.items():
            if k not in attrs:
                if k in spec.required:
                    fail(f"missing attribute '{k}'")
                continue
            if not _type_ok(attrs[k], want):
                fail(f"attribute '{k}' must be {want}, got {_short(attrs[k])}")
            if isinstance(attrs[k], ConstRef) and attrs[k].name not in p.consts:
                fail(f"constant @{attrs[k].name} is not defined")
        for k, v in attrs.items():
            ints = v if isinstance(v, tuple) else (v,)
            if any(isinstance(x, int) and not -2 ** 63 <= x < 2 ** 63 for x in ints):
                fail(f"attribute '{k}' does not fit in 64 bits")
            if k in CODES and ins.op != "output" and any(isinstance(x, int) and not 0 <= x <= 255 for x in ints):
                fail(f"attribute '{k}' is a u8 code and must lie in 0..255, got {_short(v)}")
            lo, hi = ATTR_RANGES.get(k, (None, None))
            if lo is not None and any(isinstance(x, int) and not lo <= x <= hi for x in ints):
                fail(f"attribute '{k}' must lie in {lo}..{hi}, got {_short(v)}")
            if k in CONST_RANGES and isinstance(v, ConstRef):
                c, (lo, hi) = p.consts[v.name].data, CONST_RANGES[k]
                if c.size and (c.dtype.kind not in "iu" or c.min() < lo or c.max() > hi):
                    fail(f"{k} constant @{v.name} must hold integers in {lo}..{hi}")
        if "lo" in attrs and "hi" in attrs and attrs["lo"] > attrs["hi"]:
            fail(f"clamp range lo={attrs['lo']} > hi={attrs['hi']}")
        if "shift" in attrs:
            sh = attrs["shift"]
            sh = np.asarray(p.consts[sh.name].data if isinstance(sh, ConstRef) else sh)
            if sh.size and (sh.dtype.kind not in "iu" or sh.min() < 0 or sh.max() > MAX_SHIFT):
                fail(f"shift must hold integers in 0..{MAX_SHIFT}")
        if ins.op == "xbwrite":
            _check_xbwrite(ins, attrs, p, fail)
            xbars[attrs["xb"]] = ins
        if ins.op == "mvm":
            if ins.args[1].name not in written:
                fail(f"buffer %{ins.args[1].name} is read before it is written")
            xb = attrs["xb"]
            if xb not in xbars:
                fail(f"crossbar {xb} is used before it is written")
            w = xbars[xb]
            cols = dict(w.attrs)["cols"]
            if cols[1] > attrs["n"] and _holds(w, ins):      # another block: _check_schedule says which
                fail(f"crossbar {xb} holds filters {cols[0]}:{cols[1]}, beyond the psum width n={attrs['n']}")
            _check_slices(attrs["islices"], t.dac_bits, "islices", "dac_bits", fail)
            _check_mvm_resources(attrs, t, fail)
            if not 0 <= attrs.get("recover", 0) <= t.dac_bits:
                fail(f"recover={attrs['recover']} must be in 0..{t.dac_bits} (dac_bits of the target)")
            if not written.__contains__(ins.args[0].name):
                written.add(ins.args[0].name)
        if ins.op == "vtopk" and (("k" in attrs) == ("threshold" in attrs) or attrs.get("k", 1) < 1
                                  or attrs.get("threshold", 0) < 0):
            fail("needs exactly one of k (>= 1) or threshold (>= 0)")
        if ins.op == "lut":
            tb = p.consts[attrs["table"].name].data
            if tb.ndim not in (1, 2) or tb.shape[-1] != 256:
                fail(f"table must hold 256 entries, or [C, 256] (one row per channel), got shape {list(tb.shape)}")
        if ins.op == "sdpred" and not 1 <= attrs["bits"] <= 8:
            fail(f"bits={attrs['bits']} must lie in 1..8")
        if ins.op in BANK_MODES and attrs["mode"] not in BANK_MODES[ins.op]:
            fail(f"mode must be one of {', '.join(BANK_MODES[ins.op])}, got {attrs['mode']!r}")
        if ins.op == "input":
            if not 0 < attrs["scale"] < float("inf"):
                fail(f"scale must be a positive finite number, got {attrs['scale']!r}")
            size = int(np.prod(attrs["shape"]))
            cap = t.buffer_kb_per_tile * 1024 * t.tiles
            if size > cap:
                fail(f"input of {size} B per sample exceeds the target's buffers ({cap} B)")
        if spec.args and spec.args[0] == "buf" and ins.op not in ("mvm", "output"):
            written.add(ins.args[0].name)
    for op in ("input", "output"):      # a truncated program can validate line by line with nothing to run
        if not any(ins.op == op for ins in p.code):
            raise RuntimeFault(f"{filename}: the program has no '{op}' instruction (is it cut short?)")
    _check_schedule(p, filename)
    _check_coverage(p, filename)


def _short(v) -> str:
    text = repr(list(v) if isinstance(v, tuple) else v)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_coverage(p: Program, filename: str) -> None:
    """Every accumulator is fully formed, each weight exactly once, before anything reads it: the mvms into it
    add the blocks of its layer's weight matrix (the xbwrite resident on their crossbar) and, when the
    accumulator is first read, every (row, filter) weight of those matrices has been added once. A deleted mvm
    is named at the reading line, a duplicated one at its own line; an mvm into an accumulator already read is
    refused. Crossbars written at run time (xbload) are not blocks of a constant and are not tracked."""
    resident: dict[int, Instr] = {}
    cover: dict[str, dict[str, tuple[np.ndarray, int]]] = {}    # acc -> weight constant -> (added, first line)
    read_at: dict[str, int] = {}
    untracked: set[str] = set()

    def fail(ins, msg):
        raise RuntimeFault(f"{filename}:{ins.line}: {ins.op}: {msg}")
    for ins in p.code:
        if ins.op == "xbwrite":
            resident[ins.attr("xb")] = ins
            continue
        if ins.op == "mvm":
            acc, w = ins.args[0].name, resident.get(ins.attr("xb"))
            if acc in read_at:
                fail(ins, f"adds into %{acc} after line {read_at[acc]} read it: an accumulator is formed once")
            if w is None:
                untracked.add(acc)
                continue
            const = w.args[0].name
            kg, ng = w.attr("kg"), w.attr("ng")
            shape = p.consts[const].data.shape
            added, first = cover.setdefault(acc, {}).setdefault(const, (np.zeros(shape, bool), ins.line))
            (r0, r1), (c0, c1) = w.attr("rows"), w.attr("cols")
            local = np.arange(r0, r1)[:, None] - (np.arange(c0, c1)[None, :] // ng) * kg
            ok = (local >= 0) & (local < kg)
            rows, cols = local[ok], np.broadcast_to(np.arange(c0, c1), local.shape)[ok]
            if added[rows, cols].any():
                fail(ins, f"adds rows {r0}:{r1} x filters {c0}:{c1} of @{const} into %{acc} a second time")
            added[rows, cols] = True
            continue
        reads = ins.args[:1] if ins.op == "output" else ins.args[1:]
        for a in reads:
            if not isinstance(a, Buf) or a.name not in cover or a.name in read_at:
                continue
            read_at[a.name] = ins.line
            if a.name in untracked:
                continue
            for const, (added, first) in cover[a.name].items():
                if not added.all():
                    k, n = np.nonzero(~added)
                    fail(ins, f"reads %{a.name} before it is fully formed: {int((~added).sum())} weights of @{const} "
                              f"(filters {n.min()}..{n.max()}, weight rows {k.min()}..{k.max()}) were never added by "
                              f"an mvm (the first into it is at line {first})")


def _check_mvm_resources(a, t, fail):
    for c in a.get("rep", ()):
        if not 0 <= c < t.xbars:
            fail(f"replica crossbar {c} is outside the target's {t.xbars} crossbars")
    banks = {"ibanks": a.get("ibanks"), "obanks": a.get("obanks")}
    for k, v in banks.items():
        if v is None:
            continue
        if not v or any(not 0 <= b < len(t.gbuf_banks_kb) for b in v) or len(set(v)) != len(v):
            fail(f"{k}={list(v)} must name distinct banks among the target's {len(t.gbuf_banks_kb)} "
                 f"(gbuf_banks_kb)")
    if banks["ibanks"] and banks["obanks"] and set(banks["ibanks"]) & set(banks["obanks"]):
        fail(f"ibanks {list(banks['ibanks'])} and obanks {list(banks['obanks'])} share a bank: input and output "
             "live in disjoint banks")


def _block(w: Instr):
    """What a crossbar write holds: its logical crossbar (lxb, or xb without one) and its layer."""
    return w.attr("lxb", w.attr("xb")), w.attr("layer")


def _holds(w: Instr, mvm: Instr) -> bool:
    lxb, layer = _block(w)
    if mvm.attr("lxb") is not None:
        return lxb == mvm.attr("lxb")
    return mvm.attr("layer") is None or layer is None or layer == mvm.attr("layer")


def _check_schedule(p: Program, filename: str) -> None:
    """What the program order puts in each crossbar: every mvm finds the block it names (lxb) or at least
    its layer's weights, on its crossbar and its replicas (rep); no write replaces a block a later mvm still
    reads; on a rewriting target a PE row's crossbars hold one layer while any of them is still read (ARAS sec. III),
    and a write's pe and after= are consistent. Reports the earliest offending instruction."""
    t = p.target
    k = t.row_xbars
    resident: dict[int, Instr] = {}
    history: dict[int, list[int]] = {}          # crossbar -> positions of its writes
    last_read: dict[int, int] = {}              # id(write) -> position of the last mvm reading it
    problems: list[tuple[int, Instr, str]] = []
    steps: set[str] = set()
    for pos, ins in enumerate(p.code):
        if ins.op == "xbwrite":
            xb = ins.attr("xb")
            if ins.attr("pe") is not None and ins.attr("pe") != xb // k:
                problems.append((pos, ins, f"crossbar {xb} lies in PE row {xb // k} ({k} crossbars a row), "
                                           f"not pe={ins.attr('pe')}"))
            if ins.attr("after") is not None and ins.attr("after") not in steps:
                problems.append((pos, ins, f"after={ins.attr('after')!r} names no earlier step"))
            resident[xb] = ins
            history.setdefault(xb, []).append(pos)
        elif ins.op == "mvm":
            for c in (ins.attr("xb"),) + tuple(ins.attr("rep", ())):
                w = resident.get(c)
                if w is None:
                    problems.append((pos, ins, f"crossbar {c} is used before it is written"))
                elif _holds(w, ins):
                    last_read[id(w)] = pos
                else:
                    lxb, layer = _block(w)
                    earlier = [h for h in history[c] if _holds(p.code[h], ins)]
                    if earlier:     # it held what this mvm reads: the next write on it came too early
                        culprit = next(h for h in history[c] if h > earlier[-1])
                        problems.append((culprit, p.code[culprit],
                                         f"crossbar {c} is still in use: the mvm at line {ins.line} reads its "
                                         f"logical crossbar {_block(p.code[earlier[-1]])[0]} "
                                         f"({_block(p.code[earlier[-1]])[1]})"))
                    else:
                        problems.append((pos, ins, f"crossbar {c} holds logical crossbar {lxb} of layer {layer} "
                                                   f"(written at line {w.line}), not what this mvm reads"))
        if ins.attr("layer") is not None and ins.op != "xbwrite":
            steps.add(ins.attr("layer"))
    if not t.program_once:         # ARAS sec. III: a PE row holds one layer
        resident = {}
        for pos, ins in enumerate(p.code):
            if ins.op != "xbwrite":
                continue
            xb, layer = ins.attr("xb"), ins.attr("layer")
            row = xb // k
            for c in range(row * k, row * k + k):
                w = resident.get(c)
                if c != xb and w is not None and _block(w)[1] != layer and last_read.get(id(w), -1) > pos:
                    problems.append((pos, ins, f"PE row {row} still holds layer {_block(w)[1]} on crossbar {c}, "
                                               f"read at line {p.code[last_read[id(w)]].line}: a PE row holds one "
                                               "layer"))
                    break
            resident[xb] = ins
    if problems:
        pos, ins, msg = min(problems, key=lambda x: x[0])
        raise RuntimeFault(f"{filename}:{ins.line}: {ins.op}: {msg}")


def _check_slices(slices, width, what, bound, fail):
    if sum(slices) != 8 or any(not 1 <= s <= width for s in slices):
        fail(f"{what} {list(slices)} must be widths 1..{width} ({bound} of the target) summing to 8")


def _check_xbwrite(ins, a, p, fail):
    t = p.target
    if not 0 <= a["xb"] < t.xbars:
        fail(f"crossbar index {a['xb']} is outside the target's {t.xbars} crossbars")
    for k in ("rows", "cols"):
        if len(a[k]) != 2:
            fail(f"{k} must be [first, end], got {list(a[k])}")
    (r0, r1), (c0, c1) = a["rows"], a["cols"]
    if not (0 <= r0 < r1 and 0 <= c0 < c1):
        fail(f"empty or negative block rows={list(a['rows'])} cols={list(a['cols'])}")
    if r1 - r0 > t.rows:
        fail(f"{r1 - r0} rows exceed the crossbar's {t.rows}")
    if (c1 - c0) * len(a["slices"]) > t.cols:
        fail(f"{c1 - c0} filters x {len(a['slices'])} slices exceed the crossbar's {t.cols} columns")
    _check_slices(a["slices"], t.cell_bits, "slices", "cell_bits", fail)
    if not 0 <= a.get("group", 0) <= t.rows:
        fail(f"group={a['group']} must be rows per conversion in 1..{t.rows} (0: all rows)")
    if a["encoding"] not in ("unsigned", "differential", "center_offset"):
        fail(f"unknown encoding '{a['encoding']}'")
    w = p.consts[ins.args[0].name].data
    if w.ndim != 2 or w.dtype.kind not in "iu":
        fail(f"weight constant @{ins.args[0].name} must be a 2-D integer matrix, got {w.dtype} {list(w.shape)}")
    kg, ng = a["kg"], a["ng"]
    if kg != w.shape[0] or ng < 1 or w.shape[1] % ng:
        fail(f"kg={kg} ng={ng} do not match weights of shape {list(w.shape)}")
    if c1 > w.shape[1] or r1 > kg * (w.shape[1] // ng):
        fail(f"block rows={list(a['rows'])} cols={list(a['cols'])} lies outside the weights {list(w.shape)}")
    if "flip" in a and p.consts[a["flip"].name].data.shape != (len(a["slices"]), c1 - c0):
        fail(f"flip must have shape [{len(a['slices'])}, {c1 - c0}]")
    if "flip" in a and a["encoding"] != "unsigned" and p.consts[a["flip"].name].data.any():
        fail(f"flip applies only to the unsigned encoding, not {a['encoding']}")
    if isinstance(a["center"], ConstRef):
        shape = p.consts[a["center"].name].data.shape
        if shape not in ((), (1,), (c1 - c0,)):
            fail(f"center must be one value or one per filter ([{c1 - c0}]), got shape {list(shape)}")
        center = p.consts[a["center"].name].data
        if center.dtype.kind not in "iu":
            fail(f"center constant @{a['center'].name} must hold integers, got {center.dtype}")
    else:
        center = a["center"]
    # the stored offsets W - center must fit the encoding's 8-bit range (float64: no int64 wrap-around here)
    mask = block_mask(a["rows"], a["cols"], kg, ng)
    offsets = block_weights(w, a["rows"], a["cols"], kg, ng).astype(np.float64) - np.asarray(center, np.float64)
    offsets = offsets[mask]
    lo = 0 if a["encoding"] == "unsigned" else -255
    if offsets.size and (offsets.min() < lo or offsets.max() > 255):
        fail(f"weights minus center span [{offsets.min():.0f}, {offsets.max():.0f}], outside the {a['encoding']} "
             f"range [{lo}, 255]")

