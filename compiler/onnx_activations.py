"""Converters for elementwise activation functions without weights: one `unary` IR op each, which the integer
form evaluates as a 256-entry table over the input's codes (any function, its attributes included) and the
float32 vector form as the vector unit's own function (runtime/vector.py: the functions without attributes).
Registered in onnx_ops.CONVERTERS; `fn` names the function in ir.float_eval.UNARY.

Left out: Round (its ties at .5 fall either way once the input is an 8-bit code), Tan and Acosh (a pole and a
domain edge inside a typical calibrated range)."""
from __future__ import annotations

from .onnx_ops import attrs, converts

# ONNX op -> (fn, {attribute: default}); the attributes become the function's parameters
FUNCTIONS = {
    "Softplus": ("softplus", {}), "Softsign": ("softsign", {}), "Mish": ("mish", {}),
    "Selu": ("selu", {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875}),
    "Celu": ("celu", {"alpha": 1.0}), "ThresholdedRelu": ("thresholded_relu", {"alpha": 1.0}),
    "Shrink": ("shrink", {"bias": 0.0, "lambd": 0.5}), "Swish": ("swish", {"alpha": 1.0}),
    "Sin": ("sin", {}), "Cos": ("cos", {}), "Asin": ("asin", {}), "Acos": ("acos", {}),
    "Atan": ("atan", {}), "Sinh": ("sinh", {}), "Cosh": ("cosh", {}), "Asinh": ("asinh", {}),
    "Atanh": ("atanh", {}), "Floor": ("floor", {}), "Ceil": ("ceil", {}),
    "Sign": ("sign", {}), "Tan": ("tan", {}), "Acosh": ("acosh", {}), "Round": ("round", {}),
}


@converts(*FUNCTIONS)
def function(fe, node):
    fn, defaults = FUNCTIONS[node.op_type]
    a = attrs(node)
    params = {k: float(a.get(k, v)) for k, v in defaults.items()}
    fe.emit(node, "unary", [node.input[0]], node.output[0], fn=fn, params=params)
