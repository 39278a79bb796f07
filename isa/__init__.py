"""The instruction set: target description, program data model, text format (Lark grammar)."""
from .errors import AsmError
from .program import Buf, Const, ConstRef, Instr, Program
from .target import Target, load_target
from .text import parse_program, print_program, read_program
