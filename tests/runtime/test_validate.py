"""Static validation: an instruction that breaks the ISA or the target faults before anything runs,
naming the file, the line, the opcode and the bound it breaks.

Every case edits the text of the compiled digits CNN (isaac unless said otherwise: 128 x 128 crossbars,
2-bit cells, 1-bit DACs), parses it and constructs the Machine. Edits are regular-expression
substitutions on the first instruction of an opcode (or the first one holding some text), so the cases do
not depend on the exact numbers the compiler picks today.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from isa import load_target, parse_program, print_program
from isa.text import encode_array
from runtime.errors import RuntimeFault
from runtime.machine import Machine

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"
ISAAC = load_target("isaac")


@lru_cache(maxsize=None)
def digits_text(target: str = "isaac") -> str:
    from compiler.pipeline import compile_model
    c = compile_model(DIGITS / "digits_cnn.onnx", target, np.load(DIGITS / "digits_calib.npy"))
    return print_program(c.program)


def find(text: str, op: str, has: str = "", nth: int = 0) -> int:
    """0-based index of the nth line of opcode `op` that contains `has`."""
    hits = [i for i, ln in enumerate(text.splitlines()) if ln.split(" ", 1)[0] == op and has in ln]
    assert len(hits) > nth, f"no {op} line with {has!r}"
    return hits[nth]


def sub(text: str, op: str, pattern: str, repl: str, has: str = "", nth: int = 0) -> tuple[str, int]:
    """Substitute once in the chosen line; returns the text and the line's (1-based) number."""
    lines = text.splitlines(keepends=True)
    i = find(text, op, has, nth)
    new, n = re.subn(pattern, lambda _: repl, lines[i], count=1)
    assert n == 1, (pattern, lines[i])
    lines[i] = new
    return "".join(lines), i + 1


def with_const(text: str, name: str, data: np.ndarray) -> str:
    from isa.program import DTYPE_NAMES
    shape = ",".join(map(str, data.shape))
    return text.replace(".data\n", f".data\n@{name} = {DTYPE_NAMES[data.dtype]}[{shape}] {encode_array(data)}\n", 1)


def attr(line: str, key: str):
    """The value of attribute `key` in one instruction line, parsed."""
    m = re.search(rf"\b{key}=(\[[^\]]*\]|\S+)", line)
    assert m, (key, line)
    v = m.group(1)
    return [int(x) for x in v.strip("[]").split(",") if x.strip()] if v.startswith("[") else v


def line(text: str, op: str, has: str = "", nth: int = 0) -> str:
    return text.splitlines()[find(text, op, has, nth)]


def fault(text: str) -> str:
    prog = parse_program(text, "d.pimasm")
    with pytest.raises(RuntimeFault) as e:
        Machine(prog, filename="d.pimasm")
    return str(e.value)


def check(edited: tuple[str, int], op: str, *needles: str) -> str:
    text, ln = edited
    msg = fault(text)
    assert msg.startswith(f"d.pimasm:{ln}: {op}: "), msg
    for n in needles:
        assert n in msg, (n, msg)
    assert "\n" not in msg
    return msg


def test_unedited_programs_validate():
    for target in ("isaac", "raella", "aras"):
        Machine(parse_program(digits_text(target)))


# ---- crossbar bounds -------------------------------------------------------------------------------------

def test_crossbar_index_beyond_the_target():
    n = ISAAC.xbars                                                 # 1024 x 12 x 8 = 98304
    check(sub(digits_text(), "xbwrite", r"\bxb=\d+", f"xb={n}"), "xbwrite", f"crossbar index {n}",
          f"outside the target's {n} crossbars")
    check(sub(digits_text(), "xbwrite", r"\bxb=\d+", "xb=-1"), "xbwrite", "crossbar index -1")


def test_crossbar_index_bound_follows_the_target_header():
    text = digits_text().replace(".target tiles = 1024", ".target tiles = 1")     # 1 x 12 x 8 = 96 crossbars
    used = [int(attr(ln, "xb")) for ln in text.splitlines() if ln.startswith("xbwrite ")]
    assert max(used) < 96
    last = max(used)
    moved = re.sub(rf"\bxb={last}\b", "xb=95", text)                # the xbwrite and its mvms
    Machine(parse_program(moved))
    assert "outside the target's 96 crossbars" in fault(re.sub(rf"\bxb={last}\b", "xb=96", text))


def test_too_many_rows():
    check(sub(digits_text(), "xbwrite", r"rows=\[\d+, \d+\]", "rows=[0, 129]"), "xbwrite",
          "129 rows exceed the crossbar's 128")


def test_too_many_rows_for_a_smaller_target():
    text = digits_text().replace(".target rows = 128", ".target rows = 1")
    i = next(i for i, ln in enumerate(text.splitlines()) if ln.startswith("xbwrite "))
    assert fault(text).startswith(f"d.pimasm:{i + 1}: xbwrite: ")
    assert "rows exceed the crossbar's 1" in fault(text)


def test_too_many_columns():
    # 33 filters x 4 weight slices = 132 physical columns > 128
    text, ln = sub(digits_text(), "xbwrite", r"cols=\[\d+, \d+\]", "cols=[0, 33]")
    text, _ = sub(text, "xbwrite", r"slices=\[[^\]]*\]", "slices=[2, 2, 2, 2]")
    check((text, ln), "xbwrite", "33 filters x 4 slices exceed the crossbar's 128 columns")


def test_columns_bound_counts_slices():
    # 17 filters fit 4 slices of 2 bits in 128 columns (68), not 8 slices of 1 bit (136)
    text, ln = sub(digits_text(), "xbwrite", r"cols=\[\d+, \d+\]", "cols=[0, 17]")
    text, _ = sub(text, "xbwrite", r"slices=\[[^\]]*\]", "slices=[1, 1, 1, 1, 1, 1, 1, 1]")
    check((text, ln), "xbwrite", "17 filters x 8 slices exceed the crossbar's 128 columns")


def test_empty_or_malformed_block():
    t = digits_text()
    check(sub(t, "xbwrite", r"rows=\[\d+, \d+\]", "rows=[9, 9]"), "xbwrite", "empty or negative block")
    check(sub(t, "xbwrite", r"cols=\[\d+, \d+\]", "cols=[-1, 16]"), "xbwrite", "empty or negative block")
    check(sub(t, "xbwrite", r"rows=\[\d+, \d+\]", "rows=[0]"), "xbwrite", "rows must be [first, end]")
    check(sub(t, "xbwrite", r"cols=\[\d+, \d+\]", "cols=[0, 1, 2]"), "xbwrite", "cols must be [first, end]")


def test_block_outside_its_weights():
    t = digits_text()
    first = line(t, "xbwrite")
    kg, ng = int(attr(first, "kg")), int(attr(first, "ng"))
    w = parse_program(t).consts[first.split()[1][1:]].data            # the layer's (kg, N) matrix
    groups = w.shape[1] // ng
    if kg * groups < ISAAC.rows:        # a block ending past the weights' rows (but within the crossbar)
        check(sub(t, "xbwrite", r"rows=\[\d+, \d+\]", f"rows=[0, {kg * groups + 1}]"), "xbwrite",
              "lies outside the weights")
    check(sub(t, "xbwrite", r"\bkg=\d+", f"kg={kg + 1}"), "xbwrite", f"kg={kg + 1}", "do not match weights")
    check(sub(t, "xbwrite", r"\bng=\d+", "ng=0"), "xbwrite", "do not match")
    check(sub(t, "xbwrite", r"\bng=\d+", f"ng={w.shape[1] + 1}"), "xbwrite", "do not match")


# ---- slices ----------------------------------------------------------------------------------------------

def test_weight_slices_not_summing_to_8():
    check(sub(digits_text(), "xbwrite", r"slices=\[[^\]]*\]", "slices=[2, 2, 2]"), "xbwrite", "slices [2, 2, 2]",
          "summing to 8")


def test_weight_slices_wider_than_cell_bits():
    check(sub(digits_text(), "xbwrite", r"slices=\[[^\]]*\]", "slices=[4, 4]"), "xbwrite", "slices [4, 4]",
          "widths 1..2", "cell_bits")


def test_weight_slices_follow_the_target_cell_bits():
    text = digits_text().replace(".target cell_bits = 2", ".target cell_bits = 4")
    text, _ = sub(text, "xbwrite", r"slices=\[[^\]]*\]", "slices=[4, 4]")
    text = re.sub(r" flip=@\S+", "", text, count=1) if "flip=" in line(text, "xbwrite") else text
    Machine(parse_program(text))


def test_input_slices_wider_than_dac_bits():
    check(sub(digits_text(), "mvm", r"islices=\[[^\]]*\]", "islices=[2, 2, 2, 2]"), "mvm", "islices [2, 2, 2, 2]",
          "widths 1..1", "dac_bits")


def test_input_slices_not_summing_to_8():
    t = digits_text()
    check(sub(t, "mvm", r"islices=\[[^\]]*\]", "islices=[1, 1, 1, 1, 1, 1, 1]"), "mvm", "summing to 8")
    check(sub(t, "mvm", r"islices=\[[^\]]*\]", "islices=[]"), "mvm", "summing to 8")


def test_raella_allows_4_bit_input_slices():
    text, _ = sub(digits_text("raella"), "mvm", r"islices=\[[^\]]*\]", "islices=[4, 4]")
    Machine(parse_program(text))


def test_recovery_slices_bounded_by_dac_bits():
    t = digits_text()                                               # isaac: 1-bit DACs
    edited = sub(t, "mvm", r"recover=\d+", "recover=2") if "recover=" in line(t, "mvm") else \
        sub(t, "mvm", r" n=", " recover=2 n=")
    check(edited, "mvm", "recover=2", "dac_bits")


# ---- crossbars and buffers used before they exist ----------------------------------------------------------

def test_mvm_on_an_unwritten_crossbar():
    n = ISAAC.xbars - 1
    check(sub(digits_text(), "mvm", r"\bxb=\d+", f"xb={n}"), "mvm", f"crossbar {n} is used before it is written")


def test_mvm_before_its_xbwrite():
    text = digits_text()
    lines = text.splitlines(keepends=True)
    last_mvm = find(text, "mvm", nth=sum(ln.startswith("mvm ") for ln in lines) - 1)
    xb = attr(lines[last_mvm], "xb")
    w = find(text, "xbwrite", has=f" xb={xb} ")
    moved = lines[:w] + lines[w + 1:last_mvm + 1] + [lines[w]] + lines[last_mvm + 1:]
    assert f"crossbar {xb} is used before it is written" in fault("".join(moved))


def test_mvm_wider_than_its_psum():
    check(sub(digits_text(), "mvm", r"\bn=\d+", "n=1"), "mvm", "beyond the psum width n=1")


def test_reading_an_unwritten_buffer():
    t = digits_text()
    check(sub(t, "requant", r", %[\w.]+", ", %t1.nope"), "requant", "buffer %t1.nope is read before it is written")
    check(sub(t, "im2col", r", %[\w.]+", ", %t99"), "im2col", "%t99 is read before it is written")
    check(sub(t, "mvm", r", %[\w.]+", ", %nope"), "mvm", "%nope is read before it is written")


def test_output_of_an_unwritten_buffer():
    check(sub(digits_text(), "output", r"%[\w.]+", "%nope"), "output", "%nope is read before it is written")


def test_undefined_constant():
    t = digits_text()
    check(sub(t, "requant", r"bias=@[\w.]+", "bias=@nope"), "requant", "constant @nope is not defined")
    check(sub(t, "xbwrite", r"@[\w.]+", "@nope"), "xbwrite", "constant @nope is not defined")


# ---- structure -------------------------------------------------------------------------------------------

def test_unknown_opcode():
    check(sub(digits_text(), "maxpool", r"^maxpool", "maxpooling"), "maxpooling", "unknown instruction", "maxpool")


def test_wrong_operand_count_and_kind():
    t = digits_text()
    check(sub(t, "im2col", r", %[\w.]+", ""), "im2col", "takes 2 operands, got 1")
    check(sub(t, "im2col", r"(, %[\w.]+)", ", %t0, %t0"), "im2col", "takes 2 operands, got 3")
    check(sub(t, "im2col", r", %[\w.]+", ", @nope"), "im2col", "operand 2 must be a %buffer")
    check(sub(t, "xbwrite", r"@[\w.]+", "%t0"), "xbwrite", "operand 1 must be a @constant")


def test_missing_attribute():
    t = digits_text()
    check(sub(t, "im2col", r" fill=\d+", ""), "im2col", "missing attribute 'fill'")
    check(sub(t, "mvm", r" n=\d+", ""), "mvm", "missing attribute 'n'")


def test_unknown_attribute():
    check(sub(digits_text(), "mvm", r" n=", " m=3 n="), "mvm", "unknown attribute 'm'")


@pytest.mark.parametrize("op, pattern, repl, needle", [
    ("mvm", r"\bn=\d+", "n=16.0", "attribute 'n' must be int, got 16.0"),
    ("mvm", r"\bn=\d+", 'n="16"', "attribute 'n' must be int"),
    ("mvm", r"\bn=\d+", "n=true", "attribute 'n' must be int, got True"),
    ("im2col", r"kernel=\[[^\]]*\]", "kernel=3", "attribute 'kernel' must be ints"),
    ("im2col", r"kernel=\[[^\]]*\]", "kernel=[3, 3.0]", "attribute 'kernel' must be ints"),
    ("im2col", r"kernel=\[[^\]]*\]", "kernel=[3, [3]]", "attribute 'kernel' must be ints"),
    ("requant", r"bias=@[\w.]+", "bias=3", "attribute 'bias' must be const"),
    ("xbwrite", r"center=\S+", "center=-128.0", "attribute 'center' must be int|const"),
    ("input", r"scale=\S+", "scale=@nope", "attribute 'scale' must be float"),
    ("input", r"name=\S+", "name=[1]", "attribute 'name' must be str"),
])
def test_wrong_attribute_type(op, pattern, repl, needle):
    check(sub(digits_text(), op, pattern, repl), op, needle)


# ---- values the arithmetic cannot take -----------------------------------------------------------------------

def test_flip_only_with_the_unsigned_encoding():
    t = digits_text()
    assert "flip=" in t, "isaac flips columns"
    check(sub(t, "xbwrite", r"encoding=unsigned", "encoding=differential", has="flip="), "xbwrite",
          "flip applies only to the unsigned encoding")


def test_flip_of_the_wrong_shape():
    text = with_const(digits_text(), "badflip", np.ones((1, 1), np.uint8))
    check(sub(text, "xbwrite", r"flip=@[\w.]+", "flip=@badflip", has="flip="), "xbwrite", "flip must have shape")


def test_center_constant_of_the_wrong_shape():
    text = with_const(digits_text(), "badc", np.zeros(3, np.int16))
    check(sub(text, "xbwrite", r"center=\S+", "center=@badc"), "xbwrite", "center must be one value")


def test_center_constant_must_hold_integers():
    text = digits_text()
    n = (lambda c: c[1] - c[0])(attr(line(text, "xbwrite"), "cols"))
    text = with_const(text, "fc", np.full(n, -128.0))
    check(sub(text, "xbwrite", r"center=\S+", "center=@fc"), "xbwrite", "must hold integers")


def test_weights_minus_center_outside_the_encoding_range():
    t = digits_text()
    check(sub(t, "xbwrite", r"center=\S+", "center=1000"), "xbwrite", "outside the unsigned range [0, 255]")
    check(sub(t, "xbwrite", r"center=\S+", f"center={2 ** 63}"), "xbwrite", "does not fit in 64 bits")
    r = digits_text("raella")
    check(sub(r, "xbwrite", r"center=\S+", "center=1000"), "xbwrite", "range [-255, 255]")


@pytest.mark.parametrize("new", ["shift=-1", "shift=63"])
def test_shift_out_of_range(new):
    check(sub(digits_text(), "gavgpool", r"shift=\d+", new), "gavgpool", "shift must hold integers in 0..62")


def test_requant_shift_constant_out_of_range():
    text = with_const(digits_text(), "negshift", np.array([-1], np.int8))
    check(sub(text, "requant", r"shift=@[\w.]+", "shift=@negshift"), "requant", "shift must hold integers in 0..62")


@pytest.mark.parametrize("pattern, repl, needle", [
    (r"hi=\d+", "hi=256", "'hi' is a u8 code"),
    (r"zero=\d+", "zero=-1", "'zero' is a u8 code"),
    (r"lo=\d+ hi=\d+", "lo=200 hi=100", "lo=200 > hi=100"),
])
def test_clamp_and_zero_point_are_u8_codes(pattern, repl, needle):
    check(sub(digits_text(), "requant", pattern, repl), "requant", needle)


def test_fill_is_a_u8_code():
    check(sub(digits_text(), "im2col", r"fill=\d+", "fill=256"), "im2col", "'fill' is a u8 code")


def test_signed_zero_point_is_a_u8_code():
    check(sub(digits_text(), "mvm", r" n=", " signed=300 n="), "mvm", "'signed' is a u8 code")


def test_huge_integer_attribute():
    check(sub(digits_text(), "gavgpool", r"mult=\d+", f"mult={2 ** 63}"), "gavgpool", "does not fit in 64 bits")


@pytest.mark.parametrize("scale", ["0.0", "-0.5", "0"])
def test_input_scale_must_be_positive(scale):
    check(sub(digits_text(), "input", r"scale=\S+", f"scale={scale}"), "input",
          "scale must be a positive finite number")


def test_input_larger_than_the_target_buffers():
    check(sub(digits_text(), "input", r"shape=\[[^\]]*\]", "shape=[1, 16000, 16000]"), "input",
          "exceeds the target's buffers")


def test_weight_constant_must_be_an_integer_matrix():
    t = with_const(digits_text(), "fw", np.zeros((2, 2), np.float32))
    check(sub(t, "xbwrite", r"@[\w.]+", "@fw"), "xbwrite", "must be a 2-D integer matrix, got float32")
    t = with_const(digits_text(), "v", np.zeros(4, np.int8))
    check(sub(t, "xbwrite", r"@[\w.]+", "@v"), "xbwrite", "must be a 2-D integer matrix")
