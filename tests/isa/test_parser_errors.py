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


def edit(text: str, starts: str, pattern: str, repl: str) -> tuple[str, int, int]:
    """Substitute once in the first line starting with `starts`: (text, line number, column of the change)."""
    lines = text.splitlines(keepends=True)
    i = next(i for i, ln in enumerate(lines) if ln.startswith(starts))
    m = re.search(pattern, lines[i])
    assert m, (pattern, lines[i])
    lines[i] = lines[i][:m.start()] + m.expand(repl) + lines[i][m.end():]
    return "".join(lines), i + 1, m.start() + 1


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
    bad, line, col = edit(digits_text(), "im2col ", r"(%[\w.]+), ", r"\1 ")     # im2col %a %b ; ...
    got_line, got_col, msg = parse_error(bad)
    assert got_line == line
    assert got_col > col
    assert "unexpected '%'" in msg and "','" in msg and "';'" in msg and "end of line" in msg


def test_bad_token_in_a_value():
    bad, line, col = edit(digits_text(), "im2col ", r"fill=\d+", "fill=?x")
    assert parse_error(bad)[:2] == (line, col + len("fill="))
    msg = parse_error(bad)[2]
    assert "unexpected character '?'" in msg
    for what in ("a name", "a quoted string", "an integer", "'['", "'%'", "'@'"):
        assert what in msg


def test_missing_attribute_value():
    bad, line, _ = edit(digits_text(), "mvm ", r"\bn=\d+", "n=")
    got, _, msg = parse_error(bad)
    assert got == line and "expected" in msg


def test_unterminated_string():
    bad, line, _ = edit(digits_text(), "im2col ", r'layer="([^"]*)"', r'layer="\1')
    got, _, msg = parse_error(bad)
    assert got == line and "unexpected character '\"'" in msg


def test_bad_string_escape_is_an_asm_error_at_the_string():
    bad, line, col = edit(digits_text(), "im2col ", r'layer="[^"]*"', r'layer="\\q"')
    assert parse_error(bad)[:2] == (line, col + len("layer="))
    msg = parse_error(bad)[2]
    assert "bad value" in msg and "escape" in msg


def test_raw_control_character_inside_a_string():
    bad, line, _ = edit(digits_text(), "im2col ", r'layer="[^"]*"', 'layer="a\tb"')
    assert parse_error(bad)[0] == line and "bad value" in parse_error(bad)[2]


def test_float_beyond_float64_is_an_asm_error():
    bad, line, _ = edit(digits_text(), "input ", r"scale=\S+", "scale=1e999")
    got, _, msg = parse_error(bad)
    assert got == line and "1e999 is out of the float64 range" in msg


def test_deeply_nested_list_is_an_asm_error_not_a_recursion_error():
    deep = "[" * 5000 + "]" * 5000
    bad, line, _ = edit(digits_text(), "mvm ", r"\bn=(\d+)", rf"n=\1 deep={deep}")
    got, _, msg = parse_error(bad)
    assert got == line and "nested too deeply" in msg


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
    bad, line, _ = edit(digits_text(), "im2col ", r"fill=(\d+)", r"fill=\1 %t9")
    got, _, msg = parse_error(bad)
    assert got == line and "unexpected '%'" in msg


def test_dtype_needs_its_shape_directly_after():
    text = digits_text()
    bad, line, _ = edit(text, "@", r"= \w+\[", "= i9[")
    got, _, msg = parse_error(bad)
    assert got == line
    assert "a dtype (u8, i8, i16, i32, i64, f32, f64)" in msg
    assert parse_error(edit(text, "@", r"= (\w+)\[", r"= \1 [")[0])[0] == line


def test_negative_dimension():
    assert "unexpected '-4'" in parse_error(edit(digits_text(), "@", r"\[\d+", "[-4")[0])[2]


# ---- data payloads ---------------------------------------------------------------------------------------

def first_const(text: str) -> tuple[str, int, np.dtype, tuple[int, ...]]:
    """The first constant line of the data section: the line, its number, its dtype and shape."""
    from isa.program import DTYPES
    ln = next(x for x in text.splitlines() if x.startswith("@"))
    m = re.match(r"@\S+ = (\w+)\[([\d,]*)\] ", ln)
    shape = tuple(int(d) for d in m.group(2).split(",") if d)
    return ln, line_of(text, ln), np.dtype(DTYPES[m.group(1)]), shape


@pytest.mark.parametrize("mangle, expect", [
    (lambda p: p[:-1], "corrupt data payload"),                  # base64 padding broken
    (lambda p: "$AAAA", "corrupt data payload"),                  # not a zlib stream
    (lambda p: "$", "corrupt data payload"),                      # empty
    (lambda p: "$" + p[1:9] + ("=" * (-(len(p) - 9) % 4)), "corrupt data payload"),   # truncated stream
])
def test_bad_payload(mangle, expect):
    text = digits_text()
    ln, line, _, _ = first_const(text)
    payload = ln.split()[-1]
    got_line, col, msg = parse_error(text.replace(ln, ln.replace(payload, mangle(payload))))
    assert (got_line, col) == (line, 1)
    assert expect in msg


def test_payload_with_trailing_bytes():
    import base64
    import zlib
    text = digits_text()
    ln, _, _, _ = first_const(text)
    good = ln.split()[-1]
    raw = zlib.decompress(base64.b64decode(good[1:]))
    bad = "$" + base64.b64encode(zlib.compress(raw) + b"junk").decode()
    assert "after the compressed stream" in parse_error(text.replace(good, bad))[2]


def test_payload_size_must_match_the_shape():
    text = digits_text()
    ln, line, _, shape = first_const(text)
    n = int(np.prod(shape))

    def reshaped(dims):
        return text.replace(ln, re.sub(r"\[[\d,]*\]", "[" + ",".join(map(str, dims)) + "]", ln, count=1))
    longer = (n + 1,)
    got, _, msg = parse_error(reshaped(longer))
    assert got == line and f"payload holds {n} values, shape [{n + 1}] needs {n + 1}" in msg
    assert f"more than the {n - 1} values" in parse_error(reshaped((n - 1,)))[2]
    # a payload that claims a huge shape is refused without inflating anything large
    assert "shape [99999999999, 99999999999]" in parse_error(reshaped((99999999999, 99999999999)))[2]


def test_constant_defined_twice():
    text = digits_text()
    ln, line, _, _ = first_const(text)
    got, _, msg = parse_error(text.replace(ln, ln + "\n" + ln))
    assert got == line + 1
    assert "defined twice" in msg


def test_attribute_given_twice():
    bad, line, _ = edit(digits_text(), "im2col ", r"fill=(\d+)", r"fill=\1 fill=1")
    got, _, msg = parse_error(bad)
    assert got == line and "attribute 'fill' given twice" in msg


# ---- header and target lines -----------------------------------------------------------------------------

def test_wrong_format_version():
    line, col, msg = parse_error(digits_text().replace("pimasm 1\n", "pimasm 2\n", 1))
    assert (line, col) == (1, 1)
    assert "format version 2" in msg and "reads 1" in msg


def set_key(text: str, key: str, value: str | None, extra: str = "") -> tuple[str, int]:
    """Rewrite the `.target key = ...` line (None: drop it; extra: a line to add after it)."""
    lines = text.splitlines(keepends=True)
    i = next(i for i, ln in enumerate(lines) if ln.startswith(f".target {key} = "))
    lines[i] = ("" if value is None else f".target {key} = {value}\n") + extra
    return "".join(lines), i + 1


def test_unknown_target_key():
    text = digits_text()
    bad, line = set_key(text, "rows", "128", ".target rowz = 128\n")
    got, _, msg = parse_error(bad)
    assert got == line + 1
    assert "unknown target key 'rowz'" in msg


def test_target_key_given_twice():
    bad, line = set_key(digits_text(), "rows", "128", ".target rows = 64\n")
    got, _, msg = parse_error(bad)
    assert got == line + 1
    assert "'rows' given twice" in msg


def test_missing_target_key():
    _, _, msg = parse_error(set_key(digits_text(), "cols", None)[0])
    assert "missing key(s) cols" in msg


@pytest.mark.parametrize("key, value, expect", [
    ("rows", '"128"', "'rows' must be int"),
    ("rows", "128.0", "'rows' must be int"),
    ("rows", "true", "'rows' must be int"),
    ("adc_signed", "0", "'adc_signed' must be bool"),
    ("weight_slices", "[2, 2, 2.0, 2]", "'weight_slices' must be"),
    ("weight_slices", "8", "'weight_slices' must be"),
    ("name", "3", "'name' must be str"),
    ("xbar_cycle_ns", "fast", "'xbar_cycle_ns' must be float"),
])
def test_bad_target_value_type(key, value, expect):
    bad, line = set_key(digits_text(), key, value)
    got, _, msg = parse_error(bad)
    assert got == line
    assert expect in msg


@pytest.mark.parametrize("key, value, expect", [
    ("weight_slices", "[2, 2, 2]", "weight_slices"),
    ("input_slices", "[4, 4]", "input_slices"),                     # isaac: 1-bit DACs
    ("encoding", "sideways", "encoding must be one of"),
    ("encoding", "differential", "flip applies only"),              # isaac flips
    ("rows", "0", "rows must be in 1..16384"),
    ("adc_bits", "31", "adc_bits must be in 1..30"),
])
def test_inconsistent_target(key, value, expect):
    _, _, msg = parse_error(set_key(digits_text(), key, value)[0])
    assert expect in msg and "header" in msg


def test_int_accepted_for_a_float_target_key():
    p = parse_program(set_key(digits_text(), "xbar_cycle_ns", "100")[0])
    assert p.target.xbar_cycle_ns == 100.0 and isinstance(p.target.xbar_cycle_ns, float)


def test_read_program_errors(tmp_path):
    with pytest.raises(AsmError, match="cannot read"):
        read_program(tmp_path / "missing.pimasm")
    (tmp_path / "bin.pimasm").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(AsmError, match="not a .pimasm program"):
        read_program(tmp_path / "bin.pimasm")
    with pytest.raises(AsmError, match="cannot read"):
        read_program(tmp_path)
    (tmp_path / "bad.pimasm").write_text(edit(digits_text(), "im2col ", r"(%[\w.]+), ", r"\1 ")[0])
    with pytest.raises(AsmError, match=re.escape(str(tmp_path / "bad.pimasm")) + r":\d+:\d+: "):
        read_program(tmp_path / "bad.pimasm")


# ---- target files ----------------------------------------------------------------------------------------

def preset_toml(name="isaac") -> str:
    return (ROOT / "isa" / "targets" / f"{name}.toml").read_text()


def toml_set(key: str, value: str | None, extra: str = "") -> str:
    """The isaac preset with `key = value` (None: the key dropped) and an extra line after it."""
    text, n = re.subn(rf"(?m)^{key}\s*=[^#\n]*", "" if value is None else f"{key} = {value} " + extra,
                      preset_toml(), count=1)
    assert n == 1, key
    return text


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
        load_target(write(tmp_path, toml_set("cols", None)))


def test_target_file_unknown_key(tmp_path):
    with pytest.raises(AsmError, match="unknown key\\(s\\) colz"):
        load_target(write(tmp_path, toml_set("cols", "128", "\ncolz = 1")))


@pytest.mark.parametrize("key, value, expect", [
    ("rows", '"128"', "'rows' must be int"),
    ("rows", "128.5", "'rows' must be int"),
    ("adc_signed", "1", "'adc_signed' must be bool"),
    ("weight_slices", '[2, 2, "2", 2]', "'weight_slices' must be"),
    ("xbar_cycle_ns", '"100"', "'xbar_cycle_ns' must be float"),
    ("program_once", "2024-01-01", "'program_once' must be bool"),
])
def test_target_file_wrong_type(tmp_path, key, value, expect):
    with pytest.raises(AsmError, match=expect):
        load_target(write(tmp_path, toml_set(key, value)))


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


# ---- mutants that validate are run -----------------------------------------------------------------------

@lru_cache(maxsize=1)
def few_images() -> np.ndarray:
    return np.load(DIGITS / "digits_test.npz")["x"][:3]


def run_to_the_end(prog) -> None:
    """A program that validates runs to completion with finite outputs, or stops with a RuntimeFault naming
    the line; nothing else (no internal exception, no NaN or infinity)."""
    try:
        m = Machine(prog, filename="f.pimasm")
    except (AsmError, RuntimeFault) as e:
        assert str(e).startswith("f.pimasm:") and "\n" not in str(e), str(e)
        return
    try:
        with np.errstate(all="raise"):         # an overflow is a fault the runtime must name, not a warning
            outs = m.run({m.inputs[0].attr("name"): few_images()})
    except RuntimeFault as e:
        assert re.match(r"f\.pimasm:\d+: \w+: ", str(e)) and "\n" not in str(e), str(e)
        return
    for k, y in outs.items():
        assert np.isfinite(y).all(), k


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(mutants())
def test_text_mutants_that_validate_run_to_finite_outputs_or_a_fault(text):
    try:
        prog = parse_program(text, "f.pimasm")
    except AsmError:
        return
    run_to_the_end(prog)


def test_a_dilated_kernel_that_does_not_fit_its_input_is_a_fault_naming_the_line():
    # the fourth conv's input is 4x4 padded to 6x6: dilation 3 of a 3x3 kernel spans 7 rows, no output row
    needle = 'dilations=[1, 1] fill=0 layer="/f/f.11/Conv"'
    text = digits_text()
    assert needle in text
    prog = parse_program(text.replace(needle, needle.replace("[1, 1]", "[3, 1]")), "f.pimasm")
    with pytest.raises(RuntimeFault, match=r"^f\.pimasm:%d: im2col: the dilated kernel does not fit the 4x4 input "
                                           r"and its pads \(output 0x4\)$" % line_of(text, needle)):
        Machine(prog, filename="f.pimasm").run({"image": few_images()})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(number_mutants())
def test_number_mutants_that_validate_run_to_finite_outputs_or_a_fault(text):
    run_to_the_end(parse_program(text, "f.pimasm"))


@settings(max_examples=20, deadline=None)
@given(target=st.sampled_from(["isaac", "raella"]), data=st.data())
def test_a_deleted_duplicated_or_moved_mvm_is_a_fault_naming_the_line(target, data):
    lines = digits_text(target).splitlines(keepends=True)
    mvms = [i for i, ln in enumerate(lines) if ln.startswith("mvm ")]
    i = data.draw(st.sampled_from(mvms))
    how = data.draw(st.sampled_from(["delete", "duplicate", "move_after_its_reader"]))
    acc = lines[i].split()[1].rstrip(",")
    if how == "delete":
        lines.pop(i)
    elif how == "duplicate":
        lines.insert(data.draw(st.sampled_from([i, i + 1])), lines[i])
    else:
        reader = next(k for k in range(i + 1, len(lines)) if acc in lines[k] and not lines[k].startswith("mvm "))
        lines.insert(reader + 1, lines.pop(i))
    with pytest.raises(RuntimeFault, match=r"^f\.pimasm:\d+: \w+: .*%" + re.escape(acc[1:])):
        Machine(parse_program("".join(lines), "f.pimasm"), filename="f.pimasm")


@pytest.mark.parametrize("op, attr, value", [("im2col", "strides", "[0, 0]"), ("im2col", "kernel", "[0, 3]"),
                                             ("im2col", "dilations", "[1, -1]"), ("im2col", "pads", "[-1, 0, 0, 0]"),
                                             ("im2col", "strides", f"[{2 ** 40}, 1]")])
def test_window_attributes_out_of_range_are_faults(op, attr, value):
    text = digits_text()
    line = next(ln for ln in text.splitlines(keepends=True) if ln.startswith(op + " ") and f" {attr}=" in ln)
    bad = line.replace(re.search(rf" {attr}=\[[^\]]*\]", line).group(0), f" {attr}={value}")
    with pytest.raises(RuntimeFault, match=rf"attribute '{attr}' must lie in"):
        Machine(parse_program(text.replace(line, bad), "f.pimasm"), filename="f.pimasm")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                 HealthCheck.function_scoped_fixture])
@given(text=st.one_of(mutants(), number_mutants()))
def test_pimrun_on_a_mutated_program_prints_one_line_or_runs(tmp_path, capsys, text):
    """pimrun's own main (NumPy warnings raised, as the CLI does): exit 0 with nothing on stderr, or exit 1
    with exactly one error line; never an internal error (2) or a warning's extra line."""
    from runtime.cli import main as pimrun
    prog, x = tmp_path / "f.pimasm", tmp_path / "x.npy"
    prog.write_text(text)
    np.save(x, few_images())
    capsys.readouterr()
    code = pimrun([str(prog), "--input", str(x), "--quiet"])
    err = capsys.readouterr().err.splitlines()
    if code == 0:
        assert err == [], err
    else:
        assert code == 1 and len(err) == 1 and err[0].startswith("pimrun: error: "), (code, err)
