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
    "input": Spec(("buf",), {"name": "str", "shape": "ints", "scale": "float", "zero": "int"}, {"dtype": "str"},
                  "quantise the named program input (float) to u8 codes into the buffer; dtype=f32 keeps it float32 "
                  "for the vector unit, dtype=i64 takes integer ids / masks as they are"),
    "output": Spec(("buf",), {"name": "str", "scale": "float|const"}, {"zero": "int|const", "axis": "int"},
                   "dequantise the buffer into the named program output"),
    "xbwrite": Spec(("const",), {"xb": "int", "rows": "ints", "cols": "ints", "kg": "int", "ng": "int",
                                 "encoding": "str", "slices": "ints", "center": "int|const"},
                    {"flip": "const", "lxb": "int", "pe": "int", "after": "str", "group": "int", **_LAYER},
                    "program crossbar xb with rows x cols of a layer's weight matrix; on a rewriting target lxb names "
                    "the logical crossbar, pe its PE row, after a step it waits for; group=g: its rows are read g at a "
                    "time, each group's column sums converted apart (partial wordline activation)"),
    "im2col": Spec(("buf", "buf"), {**_WINDOW, "fill": "int"}, _LAYER,
                   "stream the windows of a (C, H, W) buffer as rows of C*kh*kw codes"),
    "mvm": Spec(("buf", "buf"), {"xb": "int", "n": "int", "islices": "ints"},
                {"recover": "int", "signed": "int", "lxb": "int", "rep": "ints", "ibanks": "ints", "obanks": "ints",
                 **_LAYER},
                "sliced crossbar MVM of the input's rows through crossbar xb, accumulated into an n-wide psum; "
                "with recover=b the input slices speculate and failed columns recover in b-bit slices; with signed=z "
                "the inputs' codes minus z run as positive and negative parts; lxb: the logical crossbar xb must hold, "
                "rep: replicas sharing the windows, ibanks/obanks: the global-buffer banks of the layer"),
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
    "slice": Spec(("buf", "buf"), {"starts": "ints", "ends": "ints", "steps": "ints"}, _LAYER,
                  "per-sample strided slice: one start, end and positive step per axis after the batch"),
    "upsample": Spec(("buf", "buf"), {"factors": "ints"}, _LAYER,
                     "nearest-neighbour upsampling: each element repeated factors[k] times along axis k after the batch"),
    "softmax": Spec(("buf", "buf"), {"axis": "int", "table": "const"}, {"mult": "int", "zero": "int", **_LAYER},
                    "integer softmax through an exp table; output codes round(mult x e / sum e) + zero, by default "
                    "scale 1/255, zero 0"),
    "lrn": Spec(("buf", "buf"), {"size": "int", "alpha": "float", "beta": "float", "bias": "float", "zx": "int",
                                 "sx": "float", "sy": "float", "zero": "int"}, _LAYER,
                "local response normalisation across channels (float64 inside)"),
    # ---- the float32 vector unit (runtime/vector.py defines each one's arithmetic) ----
    "quant": Spec(("buf", "buf"), {"scale": "float", "zero": "int"}, {"smooth": "const", **_LAYER},
                  "float32 -> u8 codes (round half to even), after multiplying channel c of the last axis by smooth[c]"),
    "accf": Spec(("buf", "buf"), {"bias": "const", "scale": "const"}, {"lo": "float", "hi": "float", "chw": "ints",
                                                                          **_LAYER},
                 "psum + bias times a per-channel scale -> float32, clamped to [lo, hi] if given"),
    "vmatmul": Spec(("buf", "src", "src"), {"za": "int", "zb": "int", "scale": "float"}, {"lo": "float", "hi": "float",
                                                                                       **_LAYER},
                    "digital product of two run-time u8 tensors (minus their zero points), times scale -> float32"),
    "gather": Spec(("buf", "buf"), {"table": "const", "rowscale": "const"}, _LAYER,
                   "embedding lookup: rows of an int8 table (one scale per row) picked by integer ids -> float32"),
    "vmask": Spec(("buf", "buf"), {"mode": "str", "shape": "ints"}, {"on": "float", "off": "float", "table": "const",
                                                                      **_LAYER},
                  "token mask [B, S] -> float32: select (on/off per token, placed at the axis of length S in shape) "
                  "or count (table[number of valid tokens])"),
    "vunary": Spec(("buf", "buf"), {"fn": "str"}, {"p": "float", "lo": "float", "hi": "float", **_LAYER},
                   "elementwise float32 function: erf tanh sigmoid exp log sqrt abs neg reciprocal relu gelu_erf "
                   "gelu_tanh softplus softsign mish sin cos asin acos atan sinh cosh asinh atanh floor ceil "
                   "sign tan acosh round, pow (exponent p); leaky_relu elu celu thresholded_relu swish (parameter p); greater less "
                   "greater_equal less_equal equal (1 or 0 against p); clip (lo, hi)"),
    "vbinary": Spec(("buf", "src", "src"), {"fn": "str"}, {"lo": "float", "hi": "float", **_LAYER},
                    "elementwise float32 add / mul / div / sub / pow / fmod / mod with broadcasting, clamped to [lo, hi] if given"),
    "vreduce": Spec(("buf", "buf"), {"fn": "str", "axes": "ints", "keepdims": "bool"}, _LAYER,
                    "float32 sum / mean / max / prod / l2 over axes (the batch axis is 0 and never reduced)"),
    "vlayernorm": Spec(("buf", "buf"), {"gamma": "const", "beta": "const", "eps": "float"}, _LAYER,
                       "float32 layer normalisation over the last axis"),
    "vsoftmax": Spec(("buf", "buf"), {"axis": "int"}, _LAYER, "float32 softmax over an axis"),
    "vhardmax": Spec(("buf", "buf"), {"axis": "int"}, _LAYER, "float32 one-hot of the first maximum over an axis"),
    "vconcat": Spec(("buf", "src*"), {"axis": "int"}, _LAYER, "float32 concatenation along an axis after the batch"),
    "vpad": Spec(("buf", "buf"), {"pads": "ints", "value": "float"}, _LAYER,
                 "float32 constant padding of the axes after the batch (begin..., end...)"),
    "vpool": Spec(("buf", "buf"), {"fn": "str", "kernel": "ints", "strides": "ints", "pads": "ints",
                                   "dilations": "ints"}, {"count_include_pad": "bool", **_LAYER},
                  "float32 max / avg over 2-D windows of [B, C, H, W]"),
    "xbload": Spec(("buf", "buf"), {"zero": "int", "slices": "ints", "rows": "int"},
                   {"overlap": "strs", "what": "str", **_LAYER},
                   "write a run-time u8 operand (minus zero, Zero+Offset, sliced) into crossbars, per sample; "
                   "overlap names the layers whose compute hides the write"),
    "dmvm": Spec(("buf", "buf", "buf"), {"za": "int", "scale": "float", "islices": "ints"},
                 {"recover": "int", "lo": "float", "hi": "float", **_LAYER},
                 "sliced MVM of u8 inputs (minus za) through crossbars written by xbload -> float32 times scale"),
    "vexpand": Spec(("buf", "buf"), {"shape": "ints"}, _LAYER, "broadcast to a per-sample shape"),
    # ---- sparse attention on PIM banks (runtime/banks.py; the ASP-DAC'23 overview, sec. 4.2) ----
    "vtopk": Spec(("buf", "buf", "buf"), {}, {"k": "int", "threshold": "float", "sddmm": "str", **_LAYER},
                  "float32 scores, mask from the third operand (predicted scores, or the scores themselves) -> the "
                  "k largest per row (or those within threshold of the row's max) kept, the rest the float32 "
                  "minimum; the mask sets the bank cycles of the sddmm named"),
    "sdpred": Spec(("buf", "buf", "buf"), {"za": "int", "zb": "int", "scale": "float", "bits": "int"},
                   {"lo": "float", "hi": "float", **_LAYER},
                   "predicted scores (msb(a) - za) @ (msb(k) - zb) from the top `bits` bits of the u8 codes -> "
                   "float32 times scale, on the PIM bank holding k (K^T): a dense b-bit VMM over every score"),
    "sddmm": Spec(("buf", "buf", "buf"), {"za": "int", "zb": "int", "scale": "float", "mode": "str"},
                  {"lo": "float", "hi": "float", **_LAYER},
                  "scores (a - za) @ (k - zb) -> float32 times scale on a PIM bank holding k (K^T), mode ip or vmm"),
    "spmm": Spec(("buf", "buf", "buf"), {"za": "int", "zb": "int", "scale": "float", "mode": "str"},
                 {"lo": "float", "hi": "float", **_LAYER},
                 "(p - za) @ (v - zb) -> float32 times scale on a PIM bank holding v, skipping p's zero codes; mode "
                 "svm or vmm"),
}
