"""Bad program text and bad targets fail with one AsmError that says where and what was expected.

Fuzzing: mutants of a valid program either parse or raise AsmError, and validating a parsed mutant
raises only AsmError / RuntimeFault, never an internal exception.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isa import AsmError, load_target, parse_program, print_program, read_program
from runtime.errors import RuntimeFault
from runtime.machine import Machine

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"
WHERE = re.compile(r"^f\.pimasm:(\d+):(\d+): ")


@lru_cache(maxsize=None)
def digits_text(target: str = "isaac") -> str:
    from compiler.pipeline import compile_model
    c = compile_model(DIGITS / "digits_cnn.onnx", target, np.load(DIGITS / "digits_calib.npy"))
    return print_program(c.program)


def line_of(text: str, needle: str) -> int:
    return text[:text.index(needle)].count("\n") + 1


def parse_error(text: str) -> tuple[int, int, str]:
    with pytest.raises(AsmError) as e:
        parse_program(text, "f.pimasm")
    msg = str(e.value)
    m = WHERE.match(msg)
    assert m, f"no file:line:column in {msg!r}"
    assert "\n" not in msg
    return int(m.group(1)), int(m.group(2)), msg


# ---- syntax ----------------------------------------------------------------------------------------------

def test_missing_comma_between_operands():
    text = digits_text()
    bad = text.replace("im2col %t1.win, %t0", "im2col %t1.win %t0")
    line, col, msg = parse_error(bad)
    assert line == line_of(text, "im2col %t1.win, %t0")
    assert col == len("im2col %t1.win ") + 1
    assert "unexpected '%'" in msg and "','" in msg and "';'" in msg and "end of line" in msg


def test_bad_token_in_a_value():
    text = digits_text()
    bad = text.replace('fill=0 layer="/f/f.0/Conv"', "fill=0 layer=?x")
    line, col, msg = parse_error(bad)
    assert line == line_of(text, 'fill=0 layer="/f/f.0/Conv"')
    assert "unexpected character '?'" in msg
    for what in ("a name", "a quoted string", "an integer", "'['", "'%'", "'@'"):
        assert what in msg


def test_missing_attribute_value():
    _, _, msg = parse_error(digits_text().replace(" n=16 ", " n= "))
    assert "expected" in msg


def test_unterminated_string():
    text = digits_text()
    _, _, msg = parse_error(text.replace('layer="/f/f.0/Conv"', 'layer="/f/f.0/Conv', 1))
    assert "unexpected character '\"'" in msg


def test_bad_string_escape_is_an_asm_error_at_the_string():
    text = digits_text()
    needle = 'layer="/f/f.0/Conv"'
    line, col, msg = parse_error(text.replace(needle, 'layer="\\q"', 1))
    assert line == line_of(text, needle)
    assert "bad value" in msg and "escape" in msg


def test_raw_control_character_inside_a_string():
    _, _, msg = parse_error(digits_text().replace('layer="/f/f.0/Conv"', 'layer="a\tb"', 1))
    assert "bad value" in msg


def test_deeply_nested_list_is_an_asm_error_not_a_recursion_error():
    deep = "[" * 5000 + "]" * 5000
    _, _, msg = parse_error(digits_text().replace(" n=16 ", f" n=16 deep={deep} ", 1))
    assert "nested too deeply" in msg


@pytest.mark.parametrize("frac", [0.1, 0.3, 0.5, 0.8, 0.99])
def test_truncated_file(frac):
    text = digits_text()
    cut = text[:int(len(text) * frac)]
    if not cut.endswith("\n"):          # a cut inside the code section may still leave a valid program
        with pytest.raises(AsmError) as e:
            parse_program(cut, "f.pimasm")
        assert WHERE.match(str(e.value)), str(e.value)


def test_truncated_before_the_code_section():
    text = digits_text()
    _, _, msg = parse_error(text[:text.index(".code")])
    assert "unexpected end of file" in msg and "'.code'" in msg


def test_empty_and_binary_input():
    assert "expected one of 'pimasm', end of line" in parse_error("")[2]
    assert "unexpected character '\\x00'" in parse_error("\x00\x01\x02")[2]
    assert "'pimasm'" in parse_error("PIMASM 1\n.data\n.code\n")[2]


def test_operand_after_attributes():
    _, _, msg = parse_error(digits_text().replace("fill=0 layer", "fill=0 %t9 layer", 1))
    assert "unexpected '%'" in msg


def test_dtype_needs_its_shape_directly_after():
    text = digits_text()
    line, _, msg = parse_error(text.replace("@L0.w = i8[9,16]", "@L0.w = i9[9,16]"))
    assert line == line_of(text, "@L0.w =")
    assert "a dtype (u8, i8, i16, i32, i64, f32, f64)" in msg
    assert parse_error(text.replace("@L0.w = i8[9,16]", "@L0.w = i8 [9,16]"))[0] == line


def test_negative_dimension():
    assert "unexpected '-4'" in parse_error(digits_text().replace("@L0.w = i8[9,16]", "@L0.w = i8[-4,16]"))[2]


# ---- data payloads ---------------------------------------------------------------------------------------

def payload_line(text: str, name: str = "@L0.xb0.flip") -> tuple[str, int]:
    ln = next(x for x in text.splitlines() if x.startswith(name + " "))
    return ln, line_of(text, ln)


@pytest.mark.parametrize("mangle, expect", [
    (lambda p: p[:-1], "corrupt data payload"),                  # base64 padding broken
    (lambda p: "$AAAA", "corrupt data payload"),                  # not a zlib stream
    (lambda p: "$", "corrupt data payload"),                      # empty
    (lambda p: "$" + p[1:9] + ("=" * (-(len(p) - 9) % 4)), "corrupt data payload"),   # truncated stream
])
def test_bad_payload(mangle, expect):
    text = digits_text()
    ln, line = payload_line(text)
    payload = ln.split()[-1]
    got_line, col, msg = parse_error(text.replace(ln, ln.replace(payload, mangle(payload))))
    assert (got_line, col) == (line, 1)
    assert expect in msg


def test_payload_with_trailing_bytes():
    import base64
    import zlib
    text = digits_text()
    ln, _ = payload_line(text)
    good = ln.split()[-1]
    raw = zlib.decompress(base64.b64decode(good[1:]))
    bad = "$" + base64.b64encode(zlib.compress(raw) + b"junk").decode()
    assert "after the compressed stream" in parse_error(text.replace(good, bad))[2]


def test_payload_size_must_match_the_shape():
    text = digits_text()                                           # @L0.xb0.flip = u8[4,16]: 64 bytes
    assert "payload holds 64 values, shape [4, 17] needs 68" in parse_error(text.replace("u8[4,16]", "u8[4,17]", 1))[2]
    assert "more than the 60 values" in parse_error(text.replace("u8[4,16]", "u8[4,15]", 1))[2]
    # a payload that claims a huge shape is refused without inflating anything large
    huge = parse_error(text.replace("u8[4,16]", "u8[99999999999,99999999999]", 1))[2]
    assert "shape [99999999999, 99999999999]" in huge


def test_constant_defined_twice():
    text = digits_text()
    ln, line = payload_line(text)
    got, _, msg = parse_error(text.replace(ln, ln + "\n" + ln))
    assert got == line + 1
    assert "defined twice" in msg


def test_attribute_given_twice():
    text = digits_text()
    assert "attribute 'fill' given twice" in parse_error(text.replace("fill=0 layer", "fill=0 fill=1 layer", 1))[2]


# ---- header and target lines -----------------------------------------------------------------------------

def test_wrong_format_version():
    line, col, msg = parse_error(digits_text().replace("pimasm 1\n", "pimasm 2\n", 1))
    assert (line, col) == (1, 1)
    assert "format version 2" in msg and "reads 1" in msg


def test_unknown_target_key():
    text = digits_text()
    bad = text.replace(".target rows = 128\n", ".target rows = 128\n.target rowz = 128\n")
    line, _, msg = parse_error(bad)
    assert line == line_of(text, ".target rows") + 1
    assert "unknown target key 'rowz'" in msg


def test_target_key_given_twice():
    text = digits_text()
    line, _, msg = parse_error(text.replace(".target rows = 128\n", ".target rows = 128\n.target rows = 64\n"))
    assert line == line_of(text, ".target rows") + 1
    assert "'rows' given twice" in msg


def test_missing_target_key():
    _, _, msg = parse_error(digits_text().replace(".target cols = 128\n", ""))
    assert "missing key(s) cols" in msg


@pytest.mark.parametrize("old, new, expect", [
    (".target rows = 128", '.target rows = "128"', "'rows' must be int"),
    (".target rows = 128", ".target rows = 128.0", "'rows' must be int"),
    (".target rows = 128", ".target rows = true", "'rows' must be int"),
    (".target adc_signed = false", ".target adc_signed = 0", "'adc_signed' must be bool"),
    (".target weight_slices = [2, 2, 2, 2]", ".target weight_slices = [2, 2, 2.0, 2]", "'weight_slices' must be"),
    (".target weight_slices = [2, 2, 2, 2]", ".target weight_slices = 8", "'weight_slices' must be"),
    (".target name = isaac", ".target name = 3", "'name' must be str"),
    (".target xbar_cycle_ns = 100.0", ".target xbar_cycle_ns = fast", "'xbar_cycle_ns' must be float"),
])
def test_bad_target_value_type(old, new, expect):
    text = digits_text()
    line, _, msg = parse_error(text.replace(old, new, 1))
    assert line == line_of(text, old)
    assert expect in msg


@pytest.mark.parametrize("old, new, expect", [
    (".target weight_slices = [2, 2, 2, 2]", ".target weight_slices = [2, 2, 2]", "weight_slices"),
    (".target input_slices = [1, 1, 1, 1, 1, 1, 1, 1]", ".target input_slices = [4, 4]", "input_slices"),
    (".target encoding = unsigned", ".target encoding = sideways", "encoding must be one of"),
    (".target encoding = unsigned", ".target encoding = differential", "flip applies only"),
    (".target rows = 128", ".target rows = 0", "rows must be >= 1"),
    (".target adc_bits = 8", ".target adc_bits = 31", "adc_bits must be <= 30"),
])
def test_inconsistent_target(old, new, expect):
    _, _, msg = parse_error(digits_text().replace(old, new, 1))
    assert expect in msg and "header" in msg


def test_int_accepted_for_a_float_target_key():
    p = parse_program(digits_text().replace(".target xbar_cycle_ns = 100.0", ".target xbar_cycle_ns = 100"))
    assert p.target.xbar_cycle_ns == 100.0 and isinstance(p.target.xbar_cycle_ns, float)


def test_read_program_errors(tmp_path):
    with pytest.raises(AsmError, match="cannot read"):
        read_program(tmp_path / "missing.pimasm")
    (tmp_path / "bin.pimasm").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(AsmError, match="cannot read"):
        read_program(tmp_path / "bin.pimasm")
    with pytest.raises(AsmError, match="cannot read"):
        read_program(tmp_path)
    (tmp_path / "bad.pimasm").write_text(digits_text().replace("im2col %t1.win, %t0", "im2col %t1.win %t0"))
    with pytest.raises(AsmError, match=re.escape(str(tmp_path / "bad.pimasm")) + r":\d+:\d+: "):
        read_program(tmp_path / "bad.pimasm")


# ---- target files ----------------------------------------------------------------------------------------

def preset_toml(name="isaac") -> str:
    return (ROOT / "isa" / "targets" / f"{name}.toml").read_text()


def write(tmp_path, text, name="t.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_presets_load():
    for name in ("isaac", "raella", "aras"):
        assert load_target(name).name == name


def test_unknown_target_name():
    with pytest.raises(AsmError, match="unknown target 'nope' .*presets: aras, isaac, raella"):
        load_target("nope")


def test_missing_target_file(tmp_path):
    with pytest.raises(AsmError, match="not found"):
        load_target(tmp_path / "none.toml")


def test_bad_toml_syntax(tmp_path):
    with pytest.raises(AsmError, match="bad target TOML"):
        load_target(write(tmp_path, 'name = "x"\nrows = [\n'))
    with pytest.raises(AsmError, match="bad target TOML"):
        load_target(write(tmp_path, "name = 'x'\nname = 'y'\n"))


def test_target_file_missing_key(tmp_path):
    with pytest.raises(AsmError, match="missing key\\(s\\) cols"):
        load_target(write(tmp_path, preset_toml().replace("cols = 128", "")))


def test_target_file_unknown_key(tmp_path):
    with pytest.raises(AsmError, match="unknown key\\(s\\) colz"):
        load_target(write(tmp_path, preset_toml().replace("cols = 128", "cols = 128\ncolz = 1")))


@pytest.mark.parametrize("old, new, expect", [
    ("rows = 128", 'rows = "128"', "'rows' must be int"),
    ("rows = 128", "rows = 128.5", "'rows' must be int"),
    ("adc_signed = false", "adc_signed = 1", "'adc_signed' must be bool"),
    ("weight_slices = [2, 2, 2, 2]", 'weight_slices = [2, 2, "2", 2]', "'weight_slices' must be"),
    ("xbar_cycle_ns = 100.0", 'xbar_cycle_ns = "100"', "'xbar_cycle_ns' must be float"),
    ("program_once = true", "program_once = 2024-01-01", "'program_once' must be bool"),
])
def test_target_file_wrong_type(tmp_path, old, new, expect):
    with pytest.raises(AsmError, match=expect):
        load_target(write(tmp_path, preset_toml().replace(old, new, 1)))


def test_target_file_key_twice_across_sections(tmp_path):
    with pytest.raises(AsmError, match="'rows' given twice"):
        load_target(write(tmp_path, preset_toml().replace("[adc]", "[adc]\nrows = 64")))


def test_target_file_nested_table(tmp_path):
    with pytest.raises(AsmError, match="nested table"):
        load_target(write(tmp_path, preset_toml() + "\n[energy.more]\nx = 1\n"))


def test_target_file_not_utf8(tmp_path):
    p = tmp_path / "bin.toml"
    p.write_bytes(b"name = \"\xff\xfe\"\n")
    with pytest.raises(AsmError):
        load_target(p)


# ---- fuzzing ---------------------------------------------------------------------------------------------

INTERESTING = list(",;%@[]=\"\n#$-+.0123456789aeZ_ \t\\/:") + ["\r", "\x00", "é", "true", "[[", "]]", "-1",
                                                               "1e999", "99999999999999999999", "%t0", "@L0.w"]


@st.composite
def mutants(draw):
    text = digits_text()
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        ln = lines[i]
        kind = draw(st.sampled_from(["delete", "insert", "replace", "truncate_line", "drop_line", "dup_line",
                                     "swap_lines", "truncate_file"]))
        # most of a payload line is base64: aim edits at the line's first 60 characters half of the time
        span = len(ln) if draw(st.booleans()) else min(len(ln), 60)
        j = draw(st.integers(0, max(0, span - 1)))
        if kind == "delete":
            lines[i] = ln[:j] + ln[j + draw(st.integers(1, 3)):]
        elif kind == "insert":
            lines[i] = ln[:j] + draw(st.sampled_from(INTERESTING)) + ln[j:]
        elif kind == "replace":
            lines[i] = ln[:j] + draw(st.sampled_from(INTERESTING)) + ln[j + 1:]
        elif kind == "truncate_line":
            lines[i] = ln[:j]
        elif kind == "drop_line":
            del lines[i]
        elif kind == "dup_line":
            lines.insert(i, ln)
        elif kind == "swap_lines":
            k = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[k] = lines[k], lines[i]
        else:
            lines = lines[:i] + [ln[:j]]
    return "".join(lines)


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.data_too_large])


@FUZZ
@given(mutants())
def test_mutants_raise_only_asm_errors_and_runtime_faults(text):
    try:
        prog = parse_program(text, "f.pimasm")
    except AsmError as e:
        assert str(e).startswith("f.pimasm"), str(e)
        assert "\n" not in str(e)
        return
    # whatever parses prints back to an equal program
    assert parse_program(print_program(prog)) == prog
    try:
        Machine(prog, filename="f.pimasm")
    except (AsmError, RuntimeFault) as e:
        assert str(e).startswith("f.pimasm:"), str(e)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(INTERESTING + [".target", ".data", ".code", "pimasm", "rows", "mvm", "i8["]),
                max_size=40).map("".join))
def test_random_text_raises_only_asm_errors(text):
    try:
        parse_program("pimasm 1\n" + text, "f.pimasm")
    except AsmError:
        pass


NUMBERS = ["-1", "0", "1", "2", "3", "7", "8", "9", "16", "17", "255", "256", "1000000", str(2 ** 40), str(2 ** 63),
           str(-2 ** 63), "0.5", "-0.5", "1e300"]
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")


@st.composite
def number_mutants(draw):
    """The compiled program with one or two numbers of its code section changed: values the parser accepts,
    so validation (not the parser) has to turn the out-of-range ones away."""
    text = digits_text()
    lines = text.splitlines(keepends=True)
    first = lines.index(".code\n") + 1
    for _ in range(draw(st.integers(1, 2))):
        i = draw(st.integers(first, len(lines) - 1))
        found = list(NUMBER.finditer(lines[i]))
        if found:
            m = draw(st.sampled_from(found))
            lines[i] = lines[i][:m.start()] + draw(st.sampled_from(NUMBERS)) + lines[i][m.end():]
    return "".join(lines)


@FUZZ
@given(number_mutants())
def test_number_mutants_validate_to_a_fault_or_a_machine(text):
    prog = parse_program(text, "f.pimasm")
    try:
        Machine(prog, filename="f.pimasm")
    except RuntimeFault as e:
        assert re.match(r"f\.pimasm:\d+: \w+: ", str(e)), str(e)
