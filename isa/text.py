"""Printer and parser of the .pimasm text: print_program(p) and parse_program(text), inverse of each other."""
from __future__ import annotations

import base64
import json
import math
import zlib
from functools import lru_cache
from pathlib import Path

import lark
import numpy as np

from .errors import AsmError
from .program import DTYPE_NAMES, DTYPES, FORMAT_VERSION, Buf, Const, ConstRef, Instr, Program
from .target import from_dict

_GRAMMAR = Path(__file__).with_name("grammar.lark")


@lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    return lark.Lark(_GRAMMAR.read_text(), parser="lalr", propagate_positions=True, maybe_placeholders=False)


# ---- printing -------------------------------------------------------------------------------------------

def encode_array(a: np.ndarray) -> str:
    """Compact payload: zlib-compressed little-endian bytes in base64 (deterministic at a fixed level)."""
    raw = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
    return "$" + base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def decode_array(payload: str, dtype: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    try:
        raw = zlib.decompress(base64.b64decode(payload[1:], validate=True))
    except (ValueError, zlib.error) as e:
        raise AsmError(f"{where}: corrupt data payload ({e})") from None
    dt = np.dtype(DTYPES[dtype]).newbyteorder("<")
    n = math.prod(shape)
    if len(raw) != n * dt.itemsize:
        raise AsmError(f"{where}: payload holds {len(raw) // dt.itemsize} values, shape {list(shape)} needs {n}")
    return np.frombuffer(raw, dtype=dt).astype(DTYPES[dtype]).reshape(shape)


def format_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f):
            raise AsmError(f"cannot print non-finite value {f}")
        return repr(f)
    if isinstance(v, Buf):
        return f"%{v.name}"
    if isinstance(v, ConstRef):
        return f"@{v.name}"
    if isinstance(v, str):
        return v if _is_name(v) else json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    raise AsmError(f"cannot print value {v!r}")


def _is_name(s: str) -> bool:
    import re
    return bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:/-]*", s)) and s not in ("true", "false")


def format_instr(ins: Instr) -> str:
    s = ins.op
    if ins.args:
        s += " " + ", ".join(format_value(a) for a in ins.args)
    if ins.attrs:
        s += " ; " + " ".join(f"{k}={format_value(v)}" for k, v in ins.attrs)
    return s


def print_program(p: Program) -> str:
    out = [f"pimasm {p.version}"]
    out += [f".target {k} = {format_value(v)}" for k, v in p.target.to_dict().items()]
    out.append(".data")
    for c in p.consts.values():
        shape = ",".join(str(d) for d in c.data.shape)
        out.append(f"@{c.name} = {DTYPE_NAMES[c.data.dtype]}[{shape}] {encode_array(c.data)}")
    out.append(".code")
    out += [format_instr(i) for i in p.code]
    return "\n".join(out) + "\n"


# ---- parsing --------------------------------------------------------------------------------------------

class _Values(lark.Transformer):
    def int(self, t): return int(t[0])
    def float(self, t): return float(t[0])
    def true(self, _): return True
    def false(self, _): return False
    def string(self, t): return json.loads(t[0])
    def name(self, t): return str(t[0])
    def buf(self, t): return Buf(str(t[0]))
    def constref(self, t): return ConstRef(str(t[0]))
    def list(self, t): return tuple(t)


def _unexpected(e: lark.exceptions.UnexpectedInput, filename: str) -> AsmError:
    where = f"{filename}:{e.line}:{e.column}"
    if isinstance(e, lark.exceptions.UnexpectedCharacters):
        allowed = sorted(getattr(e, "allowed", None) or [])
        return AsmError(f"{where}: unexpected character {e.char!r}" + (f", expected one of {', '.join(allowed)}" if allowed else ""))
    tok = getattr(e, "token", None)
    expected = sorted(e.expected) if hasattr(e, "expected") and e.expected else []
    got = "end of file" if tok is None or tok.type == "$END" else repr(str(tok))
    return AsmError(f"{where}: unexpected {got}" + (f", expected one of {', '.join(expected)}" if expected else ""))


def parse_program(text: str, filename: str = "<text>") -> Program:
    if not text.endswith("\n"):
        text += "\n"
    try:
        tree = _parser().parse(text)
    except lark.exceptions.UnexpectedInput as e:
        raise _unexpected(e, filename) from None
    values = _Values()
    header, *rest = tree.children
    version = int(header.children[0])
    if version != FORMAT_VERSION:
        raise AsmError(f"{filename}:{header.meta.line}:1: format version {version}, this pimrun reads {FORMAT_VERSION}")
    tlines = [c for c in rest if c.data == "targetline"]
    data = next(c for c in rest if c.data == "data")
    code = next(c for c in rest if c.data == "code")
    tdict = {}
    for t in tlines:
        key = str(t.children[0])
        if key in tdict:
            raise AsmError(f"{filename}:{t.meta.line}:{t.meta.column}: target key '{key}' given twice")
        tdict[key] = values.transform(t.children[1])
    prog = Program(from_dict(tdict, where=f"{filename}: header"), version=version)
    for c in data.children:
        name, dtype, shape, payload = c.children
        where = f"{filename}:{c.meta.line}:{c.meta.column}"
        if str(name) in prog.consts:
            raise AsmError(f"{where}: constant @{name} defined twice")
        dims = tuple(int(d) for d in shape.children)
        prog.consts[str(name)] = Const(str(name), decode_array(str(payload), str(dtype), dims, where))
    for ins in code.children:
        op, *parts = ins.children
        args = tuple(values.transform(p) for p in parts if not (isinstance(p, lark.Tree) and p.data == "attr"))
        attrs, seen = [], set()
        for p in parts:
            if isinstance(p, lark.Tree) and p.data == "attr":
                key = str(p.children[0])
                if key in seen:
                    raise AsmError(f"{filename}:{p.meta.line}:{p.meta.column}: attribute '{key}' given twice")
                seen.add(key)
                attrs.append((key, values.transform(p.children[1])))
        prog.code.append(Instr(str(op), args, tuple(attrs), ins.meta.line, ins.meta.column))
    return prog


def read_program(path: str | Path) -> Program:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise AsmError(f"cannot read {path}: {e}") from None
    return parse_program(text, str(path))
