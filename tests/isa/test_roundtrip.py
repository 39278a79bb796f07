"""print_program and parse_program are inverse: parse(print(p)) == p, and the printed text is canonical."""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from isa import AsmError, Buf, Const, ConstRef, Instr, Program, load_target, parse_program, print_program
from isa.instructions import SPECS
from isa.program import DTYPES

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.data_too_large])


@lru_cache(maxsize=None)
def digits_program(target: str) -> Program:
    from compiler.pipeline import compile_model
    return compile_model(DIGITS / "digits_cnn.onnx", target, np.load(DIGITS / "digits_calib.npy")).program


def same_value(a, b) -> bool:
    """Equal *and* of the same kind all the way down (1 == 1.0 == True would hide a printer bug)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


def assert_same_program(p: Program, q: Program) -> None:
    assert q == p
    assert q.target.to_dict() == p.target.to_dict()
    assert list(q.consts) == list(p.consts)                       # order kept
    for name, c in p.consts.items():
        d = q.consts[name].data
        assert d.dtype == c.data.dtype and d.shape == c.data.shape
        assert d.tobytes() == c.data.tobytes()                      # bit-exact, NaN payloads and -0.0 too
    assert len(q.code) == len(p.code)
    for a, b in zip(p.code, q.code):
        assert b.op == a.op
        assert same_value(b.args, a.args)
        assert [k for k, _ in b.attrs] == [k for k, _ in a.attrs]   # attribute order kept
        assert same_value(tuple(v for _, v in b.attrs), tuple(v for _, v in a.attrs)), (a, b)


def roundtrip(p: Program) -> None:
    text = print_program(p)
    q = parse_program(text, "rt.pimasm")
    assert_same_program(p, q)
    assert print_program(q) == text


# ---- the compiled digits CNN -----------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["isaac", "raella"])
def test_digits_program_roundtrips(target):
    p = digits_program(target)
    roundtrip(p)
    q = parse_program(print_program(p))
    assert [i.line for i in q.code] == list(range(print_program(p).splitlines().index(".code") + 2,
                                                 len(print_program(p).splitlines()) + 1))


@pytest.mark.parametrize("target", ["isaac", "raella"])
def test_digits_program_text_is_stable_under_reparsing(target):
    text = print_program(digits_program(target))
    once = print_program(parse_program(text))
    assert once == text
    assert print_program(parse_program(once)) == text


def test_parse_tolerates_comments_blank_lines_crlf_and_no_final_newline():
    text = print_program(digits_program("isaac"))
    lines = text.splitlines()
    noisy = "\n\n# leading comment\n" + "\n".join(f"{ln}   # c{i}\n" if not ln.startswith("@") else ln + "\n"
                                                  for i, ln in enumerate(lines))
    assert parse_program(noisy) == parse_program(text)
    assert parse_program(text.replace("\n", "\r\n")) == parse_program(text)
    assert parse_program(text.rstrip("\n")) == parse_program(text)
    assert print_program(parse_program(noisy)) == text


# ---- generated programs ----------------------------------------------------------------------------------

_LOWER = "abcdefghijklmnopqrstuvwxyz"
_FIRST = _LOWER + _LOWER.upper() + "_"
names = st.builds(str.__add__, st.sampled_from(_FIRST), st.text(_FIRST + "0123456789.:/-", max_size=10))
opcodes = st.one_of(st.sampled_from(sorted(SPECS) + ["pimasm", "true", "false", "name", "x.y_1"]),
                    st.builds(str.__add__, st.sampled_from(_LOWER), st.text(_LOWER + "0123456789_.", max_size=10)))
special_floats = st.sampled_from([1e-7, -0.5, 0.0, -0.0, 1e16, 1e300, -1e-300, 5e-324, 1.7976931348623157e308,
                                  0.1, 2.5, 1.0, -1.0, 123456789.125])
strings = st.one_of(
    st.text(st.characters(blacklist_categories=()), max_size=12),       # any code point, lone surrogates too
    st.sampled_from(["true", "false", "", " ", "a b", "x#y", 'q"q', "back\\slash", "new\nline", "tab\t",
                     "/f/f.0/Conv", "1e5", "-3", "%t0", "@c", "[1]", "é", "\u2028", "pimasm", ".code", ";", "="]),
    names,
)
scalars = st.one_of(
    st.integers(),
    st.integers(min_value=-(2 ** 80), max_value=2 ** 80),
    st.floats(allow_nan=False, allow_infinity=False),
    special_floats,
    st.booleans(),
    strings,
    names.map(Buf),
    names.map(ConstRef),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4).map(tuple), max_leaves=16)
attrs = st.lists(st.tuples(names, values), max_size=6, unique_by=lambda kv: kv[0]).map(tuple)
operands = st.lists(st.one_of(names.map(Buf), names.map(ConstRef)), max_size=4).map(tuple)
instrs = st.builds(Instr, opcodes, operands, attrs)


@st.composite
def arrays(draw, allow_nan=False):
    dtype = np.dtype(DTYPES[draw(st.sampled_from(sorted(DTYPES)))])
    shape = draw(st.one_of(st.just(()), st.lists(st.integers(0, 4), min_size=1, max_size=3).map(tuple)))
    if dtype.kind == "f":
        elements = st.floats(width=8 * dtype.itemsize, allow_nan=allow_nan, allow_infinity=True)
    else:
        elements = st.integers(int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def programs(draw, allow_nan=False, code=True):
    t = load_target(draw(st.sampled_from(["isaac", "raella", "aras"])))
    t = t.replace(name=draw(strings))
    p = Program(t)
    for name in draw(st.lists(names, max_size=5, unique=True)):
        p.consts[name] = Const(name, draw(arrays(allow_nan)))
    if code:
        p.code.extend(draw(st.lists(instrs, max_size=6)))
    return p


@SETTINGS
@given(programs())
def test_generated_programs_roundtrip(p):
    roundtrip(p)


@SETTINGS
@given(programs(allow_nan=True, code=False))
def test_generated_constants_roundtrip_bit_exactly_with_nan(p):
    text = print_program(p)
    q = parse_program(text)
    for name, c in p.consts.items():
        assert q.consts[name].data.dtype == c.data.dtype
        assert q.consts[name].data.tobytes() == c.data.tobytes()
    assert print_program(q) == text


@SETTINGS
@given(values)
def test_every_value_roundtrips_as_an_attribute(v):
    p = Program(load_target("isaac"))
    p.code.append(Instr("op", (Buf("a"),), (("k", v),)))
    roundtrip(p)


def test_emit_normalises_numpy_and_lists_to_what_the_parser_returns():
    p = Program(load_target("isaac"))
    p.add_const("w", np.arange(6, dtype=np.int8).reshape(2, 3))
    p.emit("foo", Buf("x"), ConstRef("w"), a=np.int64(3), b=np.float32(0.5), c=[1, np.int16(2)], d=np.bool_(True),
           e=np.arange(3), f=[[1, 2], []])
    roundtrip(p)


@pytest.mark.parametrize("bad", [
    Instr("Upper", ()),                                  # opcodes are lower case
    Instr("op", (Buf("1x"),)),                           # a name cannot start with a digit
    Instr("op", (ConstRef("a b"),)),
    Instr("op", (), (("bad key", 1),)),
    Instr("op", (), (("k", float("nan")),)),
    Instr("op", (), (("k", float("inf")),)),
    Instr("op", (), (("k", object()),)),
])
def test_printer_refuses_what_it_cannot_read_back(bad):
    p = Program(load_target("isaac"))
    p.code.append(bad)
    with pytest.raises(AsmError):
        print_program(p)


def test_printer_refuses_an_unprintable_constant():
    p = Program(load_target("isaac"))
    p.consts["b"] = Const("b", np.zeros(3, dtype=np.float16))
    with pytest.raises(AsmError, match="dtype"):
        print_program(p)
    p = Program(load_target("isaac"))
    p.consts["not a name"] = Const("not a name", np.zeros(3, dtype=np.uint8))
    with pytest.raises(AsmError):
        print_program(p)
