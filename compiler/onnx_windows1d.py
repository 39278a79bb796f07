"""1-D Conv, ConvTranspose, MaxPool and AveragePool as their 2-D forms on a height of 1: the input [C, L] is reshaped to
[C, 1, L], the window attributes get a leading 1 (kernel, strides, dilations, output_shape) or 0 (pads,
output_padding), a weight [A, B, k] becomes [A, B, 1, k], and the output is reshaped back. The 2-D
converters call `lift` when they meet a 1-D window."""
from __future__ import annotations

import onnx

from ir import FrontendError

from .onnx_ops import _new_const, attrs, label

_ONE = {"kernel_shape": 1, "strides": 1, "dilations": 1}


def lift(fe, node, convert) -> None:
    x, out = node.input[0], node.output[0]
    shape = fe.shape(x)
    if len(shape) != 2:
        raise FrontendError(f"node {label(node)} ({node.op_type}): a 1-D window needs an input [N, C, L], got "
                            f"[N, {', '.join(map(str, shape))}]")
    a = attrs(node)
    new = {k: [_ONE[k]] + list(v) for k, v in a.items() if k in _ONE}
    if "pads" in a:
        p = list(a["pads"])
        new["pads"] = [0, p[0], 0, p[1]]
    for k, lead in (("output_padding", 0), ("output_shape", 1)):     # ConvTranspose
        if k in a:
            new[k] = [lead] + list(a[k])[-1:]
    keep = {k: v for k, v in a.items() if k not in new}
    ins = [fe.emit(node, "reshape", [x], f"{out}.2d_in", shape=(shape[0], 1, shape[1]))]
    if node.op_type in ("Conv", "ConvTranspose"):
        w = fe.value(node.input[1])
        ins.append(_new_const(fe, node.input[1], w.reshape(w.shape[0], w.shape[1], 1, w.shape[2])))
        ins += [i for i in node.input[2:]]
    lifted = onnx.helper.make_node(node.op_type, ins, [f"{out}.2d"], name=node.name, **new, **keep)
    convert(fe, lifted)
    y = fe.shape(f"{out}.2d")
    fe.emit(node, "reshape", [f"{out}.2d"], out, shape=(y[0], y[2]))

