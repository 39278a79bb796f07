"""3-D Conv, MaxPool and AveragePool ([N, C, D, H, W]) written with the 2-D window ops.

Pools are separable: a box's max is the max over depth of the max over (height, width), and its average the
average over depth of the average over (height, width), each divisor a product of per-axis counts (padding
and ceil mode included). So a pool over depth ([C, D, H x W], window k_d x 1) then one over height and width
([C x D', H, W]).

A convolution is not separable. Its depth taps become channels: the input, padded in depth and height, is
laid out depth-major ([D x C, H, W]); output depth o reads the k_d channel blocks of depths o s_d + j d_d,
one block [k_d x C, H, W] per output depth. The blocks, each padded in height to a multiple of the height
stride, are stacked along the height into one 2-D convolution (weights [O, k_d x C, k_h, k_w]), so the
crossbars hold the weights once; its output rows are cut back into blocks and the rows whose window crossed
into the next block are dropped. Grouped weights are written out densely (zero across groups).
"""
from __future__ import annotations

import numpy as np
import onnx

from ir import FrontendError

from .onnx_ops import _decode, _new_const, attrs, label


def _geometry(fe, node, kernel) -> tuple:
    """(strides, dilations, (begin pads), (end pads)) per axis, auto_pad resolved."""
    a, size = attrs(node), fe.shape(node.input[0])[1:]
    if len(size) != 3:
        raise FrontendError(f"node {label(node)} ({node.op_type}): a 3-D window needs an input [N, C, D, H, W], "
                            f"got [{', '.join(['N', *map(str, fe.shape(node.input[0]))])}]")
    s, d = tuple(a.get("strides", (1, 1, 1))), tuple(a.get("dilations", (1, 1, 1)))
    p = tuple(a.get("pads", (0,) * 6))
    begin, end = list(p[:3]), list(p[3:])
    auto = _decode(a.get("auto_pad", "NOTSET"))
    for i in range(3):
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out = -(-size[i] // s[i])
            total = max(0, (out - 1) * s[i] + (kernel[i] - 1) * d[i] + 1 - size[i])
            begin[i] = total // 2 if auto == "SAME_UPPER" else total - total // 2
            end[i] = total - begin[i]
        elif auto == "VALID":
            begin[i] = end[i] = 0
    return s, d, tuple(begin), tuple(end)


def pool3d(fe, node, pool2d) -> None:
    a = attrs(node)
    k = tuple(a["kernel_shape"])
    s, d, b, e = _geometry(fe, node, k)
    x, out = node.input[0], node.output[0]
    c, depth, h, w = fe.shape(x)
    keep = {n: a[n] for n in ("ceil_mode", "count_include_pad") if n in a}
    flat = fe.emit(node, "reshape", [x], f"{out}.dhw", shape=(c, depth, h * w))
    pool2d(fe, onnx.helper.make_node(node.op_type, [flat], [f"{out}.d"], name=node.name, kernel_shape=[k[0], 1],
                                     strides=[s[0], 1], dilations=[d[0], 1], pads=[b[0], 0, e[0], 0], **keep))
    od = fe.shape(f"{out}.d")[1]
    planes = fe.emit(node, "reshape", [f"{out}.d"], f"{out}.planes", shape=(c * od, h, w))
    pool2d(fe, onnx.helper.make_node(node.op_type, [planes], [f"{out}.hw"], name=node.name, kernel_shape=list(k[1:]),
                                     strides=list(s[1:]), dilations=list(d[1:]), pads=[b[1], b[2], e[1], e[2]], **keep))
    _, oh, ow = fe.shape(f"{out}.hw")
    fe.emit(node, "reshape", [f"{out}.hw"], out, shape=(c, od, oh, ow))


def conv3d(fe, node, conv2d) -> None:
    a = attrs(node)
    x, out = node.input[0], node.output[0]
    W = fe.value(node.input[1]).astype(np.float64)
    k = W.shape[2:]
    s, d, b, e = _geometry(fe, node, k)
    c, depth, h, w = fe.shape(x)
    g = a.get("group", 1)
    if g < 1 or W.shape[0] % g or W.shape[1] * g != c:
        raise FrontendError(f"node {label(node)} (Conv): weights {list(W.shape)} with group {g} do not fit an input "
                            f"of {c} channels")
    dense = np.zeros((W.shape[0], c) + k)
    og, cg = W.shape[0] // g, W.shape[1]
    for i in range(g):
        dense[i * og:(i + 1) * og, i * cg:(i + 1) * cg] = W[i * og:(i + 1) * og]
    dp, hp = depth + b[0] + e[0], h + b[1] + e[1]
    eff = [(k[i] - 1) * d[i] + 1 for i in range(3)]
    od, oh = (dp - eff[0]) // s[0] + 1, (hp - eff[1]) // s[1] + 1
    if od < 1 or oh < 1 or (w + b[2] + e[2] - eff[2]) // s[2] + 1 < 1:
        raise FrontendError(f"node {label(node)} (Conv): the window {list(eff)} (dilated) is larger than the padded "
                            f"input [{dp}, {hp}, {w + b[2] + e[2]}]")
    y = x
    if b[0] or e[0] or b[1] or e[1]:
        y = fe.emit(node, "pad", [y], f"{out}.padded", pads=(0, b[0], b[1], 0, 0, e[0], e[1], 0), value=0.0)
    y = fe.emit(node, "transpose", [y], f"{out}.depth_major", perm=(0, 2, 1, 3, 4))
    y = fe.emit(node, "reshape", [y], f"{out}.taps", shape=(dp * c, hp, w))
    block = -(-hp // s[1]) * s[1]          # each block's rows: a multiple of the height stride
    blocks = []
    for o in range(od):
        starts = [(o * s[0] + j * d[0]) * c for j in range(k[0])]
        if d[0] == 1:
            parts = [fe.emit(node, "slice", [y], f"{out}.block{o}", starts=(starts[0], 0, 0),
                             ends=(starts[0] + k[0] * c, hp, w), steps=(1, 1, 1))]
        else:
            parts = [fe.emit(node, "slice", [y], f"{out}.block{o}.{j}", starts=(t, 0, 0), ends=(t + c, hp, w),
                             steps=(1, 1, 1)) for j, t in enumerate(starts)]
        part = parts[0] if len(parts) == 1 else fe.emit(node, "concat", parts, f"{out}.block{o}", axis=1)
        if block > hp:
            part = fe.emit(node, "pad", [part], f"{out}.block{o}.rows", pads=(0, 0, 0, 0, block - hp, 0), value=0.0)
        blocks.append(part)
    stacked = blocks[0] if od == 1 else fe.emit(node, "concat", blocks, f"{out}.stacked", axis=2)
    w2 = _new_const(fe, node.input[1], dense.transpose(0, 2, 1, 3, 4).reshape(W.shape[0], k[0] * c, k[1], k[2]))
    ins = [stacked, w2] + ([node.input[2]] if len(node.input) > 2 and node.input[2] else [])
    conv2d(fe, onnx.helper.make_node("Conv", ins, [f"{out}.2d"], name=node.name, kernel_shape=list(k[1:]),
                                     strides=list(s[1:]), dilations=list(d[1:]),
                                     pads=[0, b[2], max(0, eff[1] - s[1]), e[2]]))
    o_, rows, ow = fe.shape(f"{out}.2d")
    y = fe.emit(node, "reshape", [f"{out}.2d"], f"{out}.blocks", shape=(o_, od, rows // od, ow))
    fe.emit(node, "slice", [y], out, starts=(0, 0, 0, 0), ends=(o_, od, oh, ow), steps=(1, 1, 1, 1))
