"""Static validation: an instruction that breaks the ISA or the target faults before anything runs,
naming the file, the line, the opcode and the bound it breaks.

Every case edits the text of the compiled digits CNN (isaac: 128x128 crossbars, 2-bit cells, 1-bit DACs,
1024 x 12 x 8 = 98304 crossbars), parses it and constructs the Machine.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from isa import parse_program, print_program
from runtime.errors import RuntimeFault
from runtime.machine import Machine

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"


@lru_cache(maxsize=None)
def digits_text(target: str = "isaac") -> str:
    from compiler.pipeline import compile_model
    c = compile_model(DIGITS / "digits_cnn.onnx", target, np.load(DIGITS / "digits_calib.npy"))
    return print_program(c.program)


def edit(old: str, new: str, target: str = "isaac") -> tuple[str, int]:
    """Replace the first `old` in the program text; returns the text and the edited line's number."""
    text = digits_text(target)
    assert old in text, old
    line = text[:text.index(old)].count("\n") + 1
    return text.replace(old, new, 1), line


def fault(text: str) -> str:
    prog = parse_program(text, "d.pimasm")
    with pytest.raises(RuntimeFault) as e:
        Machine(prog, filename="d.pimasm")
    return str(e.value)


def check(old, new, op, *needles, target="isaac"):
    text, line = edit(old, new, target)
    msg = fault(text)
    assert msg.startswith(f"d.pimasm:{line}: {op}: "), msg
    for n in needles:
        assert n in msg, (n, msg)
    assert "\n" not in msg
    return msg


XB0 = "xbwrite @L0.w ; xb=0 "
XB1 = "xbwrite @L1.w ; xb=1 "
XB3 = "xbwrite @L3.w ; xb=3 "


def test_unedited_programs_validate():
    for target in ("isaac", "raella", "aras"):
        Machine(parse_program(digits_text(target)))


# ---- crossbar bounds -------------------------------------------------------------------------------------

def test_crossbar_index_beyond_the_target():
    check("xbwrite @L10.w ; xb=20 ", "xbwrite @L10.w ; xb=98304 ", "xbwrite", "crossbar index 98304",
          "98304 crossbars")
    check("xbwrite @L10.w ; xb=20 ", "xbwrite @L10.w ; xb=-1 ", "xbwrite", "crossbar index -1")


def test_crossbar_index_bound_follows_the_target_header():
    text = digits_text().replace(".target tiles = 1024", ".target tiles = 1")     # 1 x 12 x 8 = 96 crossbars
    ok = text.replace("xb=20 layer", "xb=95 layer").replace("xb=20 n=10", "xb=95 n=10")
    Machine(parse_program(ok))
    bad = text.replace("xb=20 layer", "xb=96 layer")
    assert "outside the target's 96 crossbars" in fault(bad)


def test_too_many_rows():
    check(XB1 + 'layer="/f/f.3/Conv" rows=[0, 128]', XB1 + 'layer="/f/f.3/Conv" rows=[0, 129]', "xbwrite",
          "129 rows exceed the crossbar's 128")


def test_too_many_rows_for_a_smaller_target():
    text = digits_text().replace(".target rows = 128", ".target rows = 64")
    msg = fault(text)
    assert "128 rows exceed the crossbar's 64" in msg


def test_too_many_columns():
    # 33 filters x 4 weight slices = 132 physical columns > 128
    check(XB3 + 'layer="/f/f.7/Conv" rows=[0, 128] cols=[0, 32]',
          XB3 + 'layer="/f/f.7/Conv" rows=[0, 128] cols=[0, 33]',
          "xbwrite", "33 filters x 4 slices exceed the crossbar's 128 columns")


def test_columns_bound_counts_slices():
    # the same 32 filters fit 4 slices of 2 bits in 128 columns, not 8 slices of 1 bit (256 columns)
    check(XB1 + 'layer="/f/f.3/Conv" rows=[0, 128] cols=[0, 32] kg=144 ng=32 encoding=unsigned slices=[2, 2, 2, 2]',
          XB1 + 'layer="/f/f.3/Conv" rows=[0, 128] cols=[0, 32] kg=144 ng=32 encoding=unsigned '
                'slices=[1, 1, 1, 1, 1, 1, 1, 1]',
          "xbwrite", "32 filters x 8 slices exceed the crossbar's 128 columns")


def test_empty_or_malformed_block():
    check("rows=[0, 9] cols=[0, 16]", "rows=[9, 9] cols=[0, 16]", "xbwrite", "empty or negative block")
    check("rows=[0, 9] cols=[0, 16]", "rows=[0, 9] cols=[-1, 16]", "xbwrite", "empty or negative block")
    check("rows=[0, 9] cols=[0, 16]", "rows=[0] cols=[0, 16]", "xbwrite", "rows must be [first, end]")
    check("rows=[0, 9] cols=[0, 16]", "rows=[0, 9] cols=[0, 16, 32]", "xbwrite", "cols must be [first, end]")


def test_block_outside_its_weights():
    check("rows=[0, 9] cols=[0, 16]", "rows=[0, 10] cols=[0, 16]", "xbwrite", "lies outside the weights [9, 16]")
    check("kg=9 ng=16", "kg=8 ng=16", "xbwrite", "kg=8 ng=16 do not match weights of shape [9, 16]")
    check("kg=9 ng=16", "kg=9 ng=0", "xbwrite", "do not match")
    check("kg=9 ng=16", "kg=9 ng=5", "xbwrite", "do not match")


# ---- slices ----------------------------------------------------------------------------------------------

def test_weight_slices_not_summing_to_8():
    check(XB0 + 'layer="/f/f.0/Conv" rows=[0, 9] cols=[0, 16] kg=9 ng=16 encoding=unsigned slices=[2, 2, 2, 2]',
          XB0 + 'layer="/f/f.0/Conv" rows=[0, 9] cols=[0, 16] kg=9 ng=16 encoding=unsigned slices=[2, 2, 2]',
          "xbwrite", "slices [2, 2, 2]", "summing to 8")


def test_weight_slices_wider_than_cell_bits():
    check("encoding=unsigned slices=[2, 2, 2, 2]", "encoding=unsigned slices=[4, 4]", "xbwrite", "slices [4, 4]",
          "widths 1..2", "cell_bits")


def test_weight_slices_follow_the_target_cell_bits():
    text = digits_text().replace(".target cell_bits = 2", ".target cell_bits = 4")
    ok = text.replace("encoding=unsigned slices=[2, 2, 2, 2] center=-128 flip=@L0.xb0.flip",
                      "encoding=unsigned slices=[4, 4] center=-128")
    Machine(parse_program(ok))


def test_input_slices_wider_than_dac_bits():
    check("mvm %t1.acc, %t1.win ; xb=0 n=16 islices=[1, 1, 1, 1, 1, 1, 1, 1]",
          "mvm %t1.acc, %t1.win ; xb=0 n=16 islices=[2, 2, 2, 2]", "mvm", "islices [2, 2, 2, 2]", "widths 1..1",
          "dac_bits")


def test_input_slices_not_summing_to_8():
    check("mvm %t1.acc, %t1.win ; xb=0 n=16 islices=[1, 1, 1, 1, 1, 1, 1, 1]",
          "mvm %t1.acc, %t1.win ; xb=0 n=16 islices=[1, 1, 1, 1, 1, 1, 1]", "mvm", "summing to 8")
    check("mvm %t1.acc, %t1.win ; xb=0 n=16 islices=[1, 1, 1, 1, 1, 1, 1, 1]",
          "mvm %t1.acc, %t1.win ; xb=0 n=16 islices=[]", "mvm", "summing to 8")


def test_raella_allows_4_bit_input_slices():
    text, _ = edit("mvm %t1.acc, %t1.win ; xb=0 n=16 islices=[4, 2, 2]",
                   "mvm %t1.acc, %t1.win ; xb=0 n=16 islices=[4, 4]", "raella")
    Machine(parse_program(text))


# ---- crossbars and buffers used before they exist ----------------------------------------------------------

def test_mvm_on_an_unwritten_crossbar():
    check("mvm %t11.acc, %t10 ; xb=20", "mvm %t11.acc, %t10 ; xb=21", "mvm", "crossbar 21 is used before it is written")


def test_mvm_before_its_xbwrite():
    text = digits_text()
    xbw = next(ln for ln in text.splitlines() if ln.startswith("xbwrite @L10.w"))
    moved = text.replace(xbw + "\n", "").replace("accout %t11", xbw + "\naccout %t11")
    assert "crossbar 20 is used before it is written" in fault(moved)


def test_mvm_wider_than_its_psum():
    check("xb=0 n=16 islices", "xb=0 n=15 islices", "mvm", "filters 0:16", "psum width n=15")


def test_reading_an_unwritten_buffer():
    check("requant %t1, %t1.acc", "requant %t1, %t1.nope", "requant", "buffer %t1.nope is read before it is written")
    check("im2col %t2.win, %t1 ;", "im2col %t2.win, %t99 ;", "im2col", "%t99 is read before it is written")
    check("mvm %t1.acc, %t1.win", "mvm %t1.acc, %t1.nope", "mvm", "%t1.nope is read before it is written")


def test_output_of_an_unwritten_buffer():
    check("output %t11", "output %t12", "output", "%t12 is read before it is written")


def test_undefined_constant():
    check("bias=@L0.bias", "bias=@L0.nope", "requant", "constant @L0.nope is not defined")
    check("xbwrite @L0.w ;", "xbwrite @L0.nope ;", "xbwrite", "constant @L0.nope is not defined")


# ---- structure -------------------------------------------------------------------------------------------

def test_unknown_opcode():
    check("gavgpool %t8, %t7", "gavgpooling %t8, %t7", "gavgpooling", "unknown instruction", "gavgpool")


def test_wrong_operand_count_and_kind():
    check("im2col %t1.win, %t0 ;", "im2col %t1.win ;", "im2col", "takes 2 operands, got 1")
    check("im2col %t1.win, %t0 ;", "im2col %t1.win, %t0, %t0 ;", "im2col", "takes 2 operands, got 3")
    check("im2col %t1.win, %t0 ;", "im2col %t1.win, @L0.w ;", "im2col", "operand 2 must be a %buffer")
    check("xbwrite @L0.w ;", "xbwrite %t0 ;", "xbwrite", "operand 1 must be a @constant")


def test_missing_attribute():
    check("fill=0 layer=\"/f/f.0/Conv\"", "layer=\"/f/f.0/Conv\"", "im2col", "missing attribute 'fill'")
    check("xb=0 n=16 ", "xb=0 ", "mvm", "missing attribute 'n'")


def test_unknown_attribute():
    check("xb=0 n=16 ", "xb=0 n=16 m=3 ", "mvm", "unknown attribute 'm'")


@pytest.mark.parametrize("old, new, op, needle", [
    ("xb=0 n=16 ", "xb=0 n=16.0 ", "mvm", "attribute 'n' must be int, got 16.0"),
    ("xb=0 n=16 ", 'xb=0 n="16" ', "mvm", "attribute 'n' must be int"),
    ("xb=0 n=16 ", "xb=0 n=true ", "mvm", "attribute 'n' must be int, got True"),
    ("kernel=[3, 3]", "kernel=3", "im2col", "attribute 'kernel' must be ints"),
    ("kernel=[3, 3]", "kernel=[3, 3.0]", "im2col", "attribute 'kernel' must be ints"),
    ("kernel=[3, 3]", "kernel=[3, [3]]", "im2col", "attribute 'kernel' must be ints"),
    ("bias=@L0.bias", "bias=3", "requant", "attribute 'bias' must be const"),
    ("center=-128", "center=-128.0", "xbwrite", "attribute 'center' must be int|const"),
    ("scale=0.00392156862745098", "scale=@L0.bias", "input", "attribute 'scale' must be float"),
    ("name=image", "name=[1]", "input", "attribute 'name' must be str"),
])
def test_wrong_attribute_type(old, new, op, needle):
    check(old, new, op, needle)


# ---- values the arithmetic cannot take -----------------------------------------------------------------------

def test_flip_only_with_the_unsigned_encoding():
    check("encoding=unsigned slices=[2, 2, 2, 2] center=-128 flip=@L0.xb0.flip",
          "encoding=differential slices=[2, 2, 2, 2] center=-128 flip=@L0.xb0.flip", "xbwrite",
          "flip applies only to the unsigned encoding")


def test_flip_of_the_wrong_shape():
    check("flip=@L0.xb0.flip", "flip=@L1.xb1.flip", "xbwrite", "flip must have shape [4, 16]")


def test_center_constant_of_the_wrong_shape():
    check("center=-128 flip=@L0.xb0.flip", "center=@L1.bias flip=@L0.xb0.flip", "xbwrite", "center must be one value")


def test_weights_minus_center_outside_the_encoding_range():
    check("center=-128 flip=@L0.xb0.flip", "center=0 flip=@L0.xb0.flip", "xbwrite",
          "outside the unsigned range [0, 255]")
    check("center=-128 flip=@L0.xb0.flip", "center=9223372036854775808 flip=@L0.xb0.flip", "xbwrite",
          "does not fit in 64 bits")


@pytest.mark.parametrize("new", ["shift=-1", "shift=63"])
def test_shift_out_of_range(new):
    check("shift=29", new, "gavgpool", "shift must hold integers in 0..62")


def test_requant_shift_constant_out_of_range():
    # point requant's shift at a constant holding negative values (the bias)
    bad, _ = edit("shift=@L0.shift", "shift=@L0.bias")
    assert "shift must hold integers in 0..62" in fault(bad)


@pytest.mark.parametrize("old, new, needle", [
    ("zero=0 lo=0 hi=255", "zero=0 lo=0 hi=256", "'hi' is a u8 code"),
    ("zero=0 lo=0 hi=255", "zero=-1 lo=0 hi=255", "'zero' is a u8 code"),
    ("zero=0 lo=0 hi=255", "zero=0 lo=200 hi=100", "lo=200 > hi=100"),
])
def test_clamp_and_zero_point_are_u8_codes(old, new, needle):
    check(old, new, "requant", needle)


def test_fill_is_a_u8_code():
    check("fill=0", "fill=256", "im2col", "'fill' is a u8 code")


def test_huge_integer_attribute():
    check("mult=1355738640", f"mult={2 ** 63}", "gavgpool", "does not fit in 64 bits")


@pytest.mark.parametrize("scale", ["0.0", "-0.5", "0"])
def test_input_scale_must_be_positive(scale):
    check("scale=0.00392156862745098", f"scale={scale}", "input", "scale must be a positive finite number")


def test_input_larger_than_the_target_buffers():
    check("shape=[1, 16, 16]", "shape=[1, 16000, 16000]", "input", "exceeds the target's buffers")


def test_weight_constant_must_be_an_integer_matrix():
    check("xbwrite @L0.w ;", "xbwrite @L0.bias ;", "xbwrite", "must be a 2-D integer matrix")
    text, line = edit("xbwrite @L0.w ;", "xbwrite @L10.oscale ;")
    assert re.search(rf"^d\.pimasm:{line}: xbwrite: .*integer matrix, got float64", fault(text))
