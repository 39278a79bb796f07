"""The instruction set: operands and attributes of every opcode (isa/README.md documents each one).

Operand kinds: `buf` a %buffer, `src` a %buffer or an @constant, `const` an @constant; a trailing `src*`
takes one or more. Attribute types: int, float, bool, str, ints (a list of ints), const (@name), or a
union written "int|const".
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Spec:
    args: tuple[str, ...]
    required: dict = field(default_factory=dict)
    optional: dict = field(default_factory=dict)
    doc: str = ""


_LAYER = {"layer": "str"}
_WINDOW = {"kernel": "ints", "strides": "ints", "pads": "ints", "dilations": "ints"}
_CLAMP = {"zero": "int", "lo": "int", "hi": "int"}

SPECS: dict[str, Spec] = {
    "input": Spec(("buf",), {"name": "str", "shape": "ints", "scale": "float", "zero": "int"}, {},
                  "quantise the named program input (float) to u8 codes into the buffer"),
    "output": Spec(("buf",), {"name": "str", "scale": "float|const"}, {"zero": "int", "axis": "int"},
                   "dequantise the buffer into the named program output"),
    "xbwrite": Spec(("const",), {"xb": "int", "rows": "ints", "cols": "ints", "kg": "int", "ng": "int",
                                 "encoding": "str", "slices": "ints", "center": "int|const"},
                    {"flip": "const", **_LAYER},
                    "program crossbar xb with rows x cols of a layer's weight matrix"),
    "im2col": Spec(("buf", "buf"), {**_WINDOW, "fill": "int"}, _LAYER,
                   "stream the windows of a (C, H, W) buffer as rows of C*kh*kw codes"),
    "mvm": Spec(("buf", "buf"), {"xb": "int", "n": "int", "islices": "ints"}, {"recover": "int", "signed": "int", **_LAYER},
                "sliced crossbar MVM of the input's rows through crossbar xb, accumulated into an n-wide psum; "
                "with recover=b the input slices speculate and failed columns recover in b-bit slices; with signed=z "
                "the inputs' codes minus z run as positive and negative parts"),
    "requant": Spec(("buf", "buf"), {"bias": "const", "mult": "const", "shift": "const", **_CLAMP},
                    {"chw": "ints", **_LAYER}, "psum + bias -> u8 codes with a per-channel fixed-point multiplier"),
    "accout": Spec(("buf", "buf"), {"bias": "const"}, {"chw": "ints", **_LAYER},
                   "psum + bias kept as a 32-bit accumulator (a graph output)"),
    "add": Spec(("buf", "src", "src"), {"za": "int", "ma": "int", "zb": "int", "mb": "int", "shift": "int", **_CLAMP},
                _LAYER, "elementwise add of two quantised tensors (broadcasting)"),
    "mul": Spec(("buf", "src", "src"), {"za": "int", "zb": "int", "mult": "int", "shift": "int", **_CLAMP}, _LAYER,
                "elementwise multiply of two quantised tensors (broadcasting)"),
    "matmul": Spec(("buf", "src", "src"), {"za": "int", "zb": "int", "mult": "int", "shift": "int", **_CLAMP}, _LAYER,
                   "digital matrix product of two run-time tensors"),
    "lut": Spec(("buf", "buf"), {"table": "const"}, _LAYER, "256-entry table lookup (any unary activation)"),
    "maxpool": Spec(("buf", "buf"), _WINDOW, _LAYER, "max over windows of u8 codes"),
    "gmaxpool": Spec(("buf", "buf"), {}, _LAYER, "max over H and W"),
    "avgpool": Spec(("buf", "buf"), {**_WINDOW, "count_include_pad": "bool", "zx": "int", "mult": "int",
                                     "shift": "int", "zero": "int"}, _LAYER, "average over windows, requantised"),
    "gavgpool": Spec(("buf", "buf"), {"zx": "int", "mult": "int", "shift": "int", "zero": "int"}, _LAYER,
                     "average over H and W, requantised"),
    "concat": Spec(("buf", "src*"), {"axis": "int", "zx": "ints", "mult": "ints", "shift": "ints", "zero": "int"},
                   _LAYER, "concatenate, rescaling each part to the output's quantisation"),
    "reshape": Spec(("buf", "buf"), {"shape": "ints"}, _LAYER, "per-sample reshape"),
    "transpose": Spec(("buf", "buf"), {"perm": "ints"}, _LAYER, "axis permutation (batch stays first)"),
    "pad": Spec(("buf", "buf"), {"pads": "ints", "fill": "int"}, _LAYER, "constant padding with a code"),
    "softmax": Spec(("buf", "buf"), {"axis": "int", "table": "const"}, _LAYER,
                    "integer softmax through an exp table; output scale 1/255"),
    "lrn": Spec(("buf", "buf"), {"size": "int", "alpha": "float", "beta": "float", "bias": "float", "zx": "int",
                                 "sx": "float", "sy": "float", "zero": "int"}, _LAYER,
                "local response normalisation across channels (float64 inside)"),
}
