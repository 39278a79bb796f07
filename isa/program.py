"""The program as data: header (target), named constant tensors, and a list of instructions."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .target import Target

DTYPES = {"u8": np.uint8, "i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64, "f32": np.float32,
          "f64": np.float64}
DTYPE_NAMES = {np.dtype(v): k for k, v in DTYPES.items()}
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Buf:
    """%name: a tensor in the machine's buffers (batched at run time)."""
    name: str


@dataclass(frozen=True)
class ConstRef:
    """@name: a constant tensor of the data section."""
    name: str


@dataclass(frozen=True, eq=False)
class Const:
    name: str
    data: np.ndarray

    def __eq__(self, other):
        return (isinstance(other, Const) and self.name == other.name and self.data.dtype == other.data.dtype
                and self.data.shape == other.data.shape
                and np.array_equal(self.data, other.data, equal_nan=self.data.dtype.kind == "f"))

    __hash__ = None


@dataclass(frozen=True)
class Instr:
    op: str
    args: tuple = ()
    attrs: tuple = ()            # ((key, value), ...) in print order
    line: int = field(default=0, compare=False)
    col: int = field(default=0, compare=False)

    def attr(self, key, default=None):
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    @property
    def where(self) -> str:
        return f"line {self.line} ({self.op})" if self.line else self.op


@dataclass
class Program:
    target: Target
    consts: dict[str, Const] = field(default_factory=dict)
    code: list[Instr] = field(default_factory=list)
    version: int = FORMAT_VERSION

    def add_const(self, name: str, data) -> ConstRef:
        arr = np.ascontiguousarray(data)
        assert arr.dtype in DTYPE_NAMES, arr.dtype
        assert name not in self.consts, name
        self.consts[name] = Const(name, arr)
        return ConstRef(name)

    def emit(self, op: str, *args, **attrs) -> Instr:
        ins = Instr(op, tuple(args), tuple((k, normalise(v)) for k, v in attrs.items()))
        self.code.append(ins)
        return ins


def normalise(v):
    """Plain Python values as the parser gives them back (tuples, int, float), so parse(print(p)) == p."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    if isinstance(v, (list, tuple, np.ndarray)):
        return tuple(normalise(x) for x in v)
    return v
