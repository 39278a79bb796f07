"""Printer and parser of the .pimasm text: print_program(p) and parse_program(text), inverse of each other."""
from __future__ import annotations

import base64
import json
import math
import re
import sys
import zlib
from functools import lru_cache
from pathlib import Path

import lark
import numpy as np

from .errors import AsmError
from .host import memory_budget
from .program import DTYPE_NAMES, DTYPES, FORMAT_VERSION, Buf, Const, ConstRef, Instr, Program
from .target import _FIELDS as TARGET_FIELDS
from .target import _coerce as coerce_field
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


# deflate inflates at most about 1032:1 (a 258-byte match per 2 bits); a payload smaller than its declared
# size allows is forged or corrupt, and is refused before any inflating
MAX_DEFLATE_RATIO = 1032


def declared_bytes(dtype: str, shape: tuple[int, ...]) -> int:
    return math.prod(shape) * np.dtype(DTYPES[dtype]).itemsize


def decode_array(payload: str, dtype: str, shape: tuple[int, ...], where: str, budget: int | None = None) -> np.ndarray:
    """The array a payload holds. Its declared size is checked before inflating: against what the payload's
    length can inflate to, and against `budget` bytes (default: what this host can still allocate)."""
    dt = np.dtype(DTYPES[dtype]).newbyteorder("<")
    n = math.prod(shape)
    want = n * dt.itemsize
    packed_max = (len(payload) - 1) * 3 // 4
    if want > packed_max * MAX_DEFLATE_RATIO + 64:
        raise AsmError(f"{where}: corrupt data payload: {dtype} shape {list(shape)} declares {want} bytes, more than "
                       f"{packed_max} compressed bytes can inflate to")
    budget = memory_budget() if budget is None else budget
    if want > budget:
        raise AsmError(f"{where}: {dtype} shape {list(shape)} declares {want} bytes, more than the {budget} bytes of memory "
                       "this host can still give")
    try:
        packed = base64.b64decode(payload[1:], validate=True)
        z = zlib.decompressobj()
        # inflate no more than the shape needs (plus one byte to notice a longer payload): a payload that
        # claims less than it holds cannot make the reader allocate its full size
        raw = z.decompress(packed, min(want + 1, sys.maxsize))
    except (ValueError, zlib.error) as e:
        raise AsmError(f"{where}: corrupt data payload ({e})") from None
    if len(raw) > want:
        raise AsmError(f"{where}: payload holds more than the {n} values of shape {list(shape)}")
    if not z.eof:
        raise AsmError(f"{where}: corrupt data payload (truncated compressed stream)")
    if z.unused_data:
        raise AsmError(f"{where}: corrupt data payload ({len(z.unused_data)} bytes after the compressed stream)")
    if len(raw) != want:
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
        return f"%{_checked_name(v.name, 'buffer')}"
    if isinstance(v, ConstRef):
        return f"@{_checked_name(v.name, 'constant')}"
    if isinstance(v, str):
        return v if _is_name(v) else json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    raise AsmError(f"cannot print value {v!r}")


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]*")
_OPCODE = re.compile(r"[a-z][a-z0-9_.]*")


def _is_name(s: str) -> bool:
    return bool(_NAME.fullmatch(s)) and s not in ("true", "false")


def _checked_name(s, what: str, pattern=_NAME) -> str:
    """Names are printed bare, so one the grammar cannot read back is refused rather than written."""
    if not isinstance(s, str) or not pattern.fullmatch(s):
        raise AsmError(f"cannot print {what} name {s!r}: it must match {pattern.pattern}")
    return s


def format_instr(ins: Instr) -> str:
    s = _checked_name(ins.op, "opcode", _OPCODE)
    if ins.args:
        s += " " + ", ".join(format_value(a) for a in ins.args)
    if ins.attrs:
        s += " ; " + " ".join(f"{_checked_name(k, 'attribute')}={format_value(v)}" for k, v in ins.attrs)
    return s


def print_program(p: Program) -> str:
    out = [f"pimasm {p.version}"]
    out += [f".target {k} = {format_value(v)}" for k, v in p.target.to_dict().items()]
    out.append(".data")
    for c in p.consts.values():
        shape = ",".join(str(d) for d in c.data.shape)
        dtype = DTYPE_NAMES.get(c.data.dtype)
        if dtype is None:
            raise AsmError(f"cannot print constant @{c.name}: dtype {c.data.dtype} is none of {', '.join(DTYPES)}")
        out.append(f"@{_checked_name(c.name, 'constant')} = {dtype}[{shape}] {encode_array(c.data)}")
    out.append(".code")
    out += [format_instr(i) for i in p.code]
    return "\n".join(out) + "\n"


# ---- parsing --------------------------------------------------------------------------------------------

class _Values(lark.Transformer):
    def int(self, t): return int(t[0])
    def float(self, t):
        f = float(t[0])
        if not math.isfinite(f):
            raise ValueError(f"{t[0]} is out of the float64 range")
        return f
    def true(self, _): return True
    def false(self, _): return False
    def string(self, t): return json.loads(t[0])
    def name(self, t): return str(t[0])
    def buf(self, t): return Buf(str(t[0]))
    def constref(self, t): return ConstRef(str(t[0]))
    def list(self, t): return tuple(t)


_TERMS = {"$END": "end of file", "_NL": "end of line", "_LEAD": "end of line", "INT": "an integer",
          "SIGNED_INT": "an integer", "SIGNED_FLOAT": "a number", "ESCAPED_STRING": "a quoted string",
          "NAME": "a name", "OPCODE": "an opcode", "PAYLOAD": "a $payload",
          "DTYPE": "a dtype (" + ", ".join(DTYPES) + ") directly followed by its [shape]"}


def _describe(term: str) -> str:
    """A grammar terminal as the reader knows it: ',' rather than COMMA, 'end of line' rather than _NL."""
    if term in _TERMS:
        return _TERMS[term]
    try:
        pattern = _parser().get_terminal(term).pattern
    except KeyError:
        return term
    return repr(pattern.value) if isinstance(pattern, lark.lexer.PatternStr) else term


def _expected(terms) -> str:
    names = sorted({_describe(t) for t in terms or ()})
    if not names:
        return ""
    return f", expected {names[0]}" if len(names) == 1 else f", expected one of {', '.join(names)}"


def _unexpected(e: lark.exceptions.UnexpectedInput, filename: str) -> AsmError:
    where = f"{filename}:{e.line}:{e.column}"
    if isinstance(e, lark.exceptions.UnexpectedCharacters):
        return AsmError(f"{where}: unexpected character {e.char[:1]!r}{_expected(getattr(e, 'allowed', None))}")
    tok = getattr(e, "token", None)
    if tok is None or tok.type == "$END":
        got = "end of file"
    elif tok.type in ("_NL", "_LEAD"):
        got = "end of line"
    else:
        got = repr(str(tok)) if len(str(tok)) <= 40 else repr(str(tok)[:40]) + f"... ({len(str(tok))} characters)"
    return AsmError(f"{where}: unexpected {got}{_expected(getattr(e, 'expected', None))}")


def _value(values: "_Values", tree, filename: str):
    """Transform one value subtree; a bad string escape or too deep a nesting becomes an AsmError there."""
    try:
        return values.transform(tree)
    except lark.exceptions.VisitError as e:
        meta = getattr(e.obj, "meta", None)
        tok = e.obj.children[0] if isinstance(e.obj, lark.Tree) and e.obj.children else None
        line = getattr(tok, "line", None) or getattr(meta, "line", "?")
        col = getattr(tok, "column", None) or getattr(meta, "column", "?")
        raise AsmError(f"{filename}:{line}:{col}: bad value ({str(e.orig_exc)[:100]})") from None
    except RecursionError:
        line = getattr(getattr(tree, "meta", None), "line", "?")
        col = getattr(getattr(tree, "meta", None), "column", "?")
        raise AsmError(f"{filename}:{line}:{col}: value nested too deeply") from None


def parse_program(text: str, filename: str = "<text>") -> Program:
    if not text.endswith("\n"):
        text += "\n"
    try:
        tree = _parser().parse(text)
    except lark.exceptions.UnexpectedInput as e:
        raise _unexpected(e, filename) from None
    except RecursionError:
        raise AsmError(f"{filename}: values nested too deeply") from None
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
        where = f"{filename}:{t.meta.line}:{t.meta.column}"
        if key in tdict:
            raise AsmError(f"{where}: target key '{key}' given twice")
        if key not in TARGET_FIELDS:
            raise AsmError(f"{where}: unknown target key '{key[:40]}' (known: {', '.join(TARGET_FIELDS)})")
        tdict[key] = coerce_field(key, _value(values, t.children[1], filename), where)
    prog = Program(from_dict(tdict, where=f"{filename}:{header.meta.line}:1: header"), version=version)
    budget = memory_budget()
    for c in data.children:
        name, dtype, shape, payload = c.children
        where = f"{filename}:{c.meta.line}:{c.meta.column}"
        if str(name) in prog.consts:
            raise AsmError(f"{where}: constant @{name} defined twice")
        dims = tuple(int(d) for d in shape.children)
        prog.consts[str(name)] = Const(str(name), decode_array(str(payload), str(dtype), dims, where, budget))
        budget -= declared_bytes(str(dtype), dims)          # the constants together must fit
    for ins in code.children:
        op, *parts = ins.children
        args = tuple(_value(values, p, filename) for p in parts if not (isinstance(p, lark.Tree) and p.data == "attr"))
        attrs, seen = [], set()
        for p in parts:
            if isinstance(p, lark.Tree) and p.data == "attr":
                key = str(p.children[0])
                if key in seen:
                    raise AsmError(f"{filename}:{p.meta.line}:{p.meta.column}: attribute '{key}' given twice")
                seen.add(key)
                attrs.append((key, _value(values, p.children[1], filename)))
        prog.code.append(Instr(str(op), args, tuple(attrs), ins.meta.line, ins.meta.column))
    return prog


def read_program(path: str | Path) -> Program:
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError:
        hint = f"; compile it first: pimc {path} -o OUT.pimasm" if str(path).endswith(".onnx") else ""
        raise AsmError(f"{path} is not a .pimasm program (it holds binary data){hint}") from None
    except OSError as e:
        raise AsmError(f"cannot read {path}: {e}") from None
    return parse_program(text, str(path))
