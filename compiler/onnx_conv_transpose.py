"""ConvTranspose in general (strides, pads, output_padding, output_shape, auto_pad, dilations, groups) as a
stride-1 conv: along each spatial axis a constant 0 / 1 matrix (a `linear` op, the axis moved last by
transposes around it) spreads the input `stride` apart and pads or crops its ends, then a conv with the
kernel flipped and its in / out channels swapped (per group) and no padding gives the output. The frontend
keeps the cheaper form (a 1x1 conv and a depth-to-space) for stride equal to the kernel without padding
(onnx_layout.conv_transpose), which calls `general` otherwise. A 3-D kernel ends in a 3-D conv
(onnx_windows3d)."""
from __future__ import annotations

import numpy as np
import onnx

from ir import FrontendError

from .onnx_ops import _decode, _new_const, attrs, label


def _ends(node, a, k, n, K, s, d, op, nd=2) -> tuple[int, int]:
    """(begin, end) padding of the transposed conv along spatial axis k of nd (input size n, kernel K)."""
    auto = _decode(a.get("auto_pad", "NOTSET"))
    if "output_shape" in a or auto in ("SAME_UPPER", "SAME_LOWER"):
        out = int(a["output_shape"][-nd + k]) if "output_shape" in a else n * s
        total = s * (n - 1) + op + (K - 1) * d + 1 - out      # < 0: the output grows by zeros at the end
        if total < 0:
            return 0, total
        return (total // 2, total - total // 2) if auto == "SAME_UPPER" else (total - total // 2, total // 2)
    if auto == "VALID":
        return 0, 0
    pads = list(a.get("pads", (0,) * 2 * nd))
    return pads[k], pads[k + nd]


def spread(n: int, s: int, lo: int, hi: int) -> np.ndarray:
    """(n, m) 0 / 1 matrix: input i lands at position lo + i s of the spread, padded (lo, hi > 0) or cropped
    (< 0) sequence of length m = (n - 1) s + 1 + lo + hi."""
    m = (n - 1) * s + 1 + lo + hi
    M = np.zeros((n, max(m, 0)))
    i = np.arange(n)
    j = lo + i * s
    ok = (j >= 0) & (j < m)
    M[i[ok], j[ok]] = 1.0
    return M


def general(fe, node, W: np.ndarray) -> None:
    a = attrs(node)
    x, out = node.input[0], node.output[0]
    cin, cog, *ks = W.shape
    nd = len(ks)
    g = int(a.get("group", 1))
    s = tuple(a.get("strides", (1,) * nd))
    d = tuple(a.get("dilations", (1,) * nd))
    op = tuple(a.get("output_padding", (0,) * nd))
    sizes = fe.shape(x)[1:]
    if len(sizes) != nd:
        raise FrontendError(f"node {label(node)} (ConvTranspose): a {nd}-D kernel needs an input with {nd} spatial "
                            f"axes, got [{', '.join(['N', *map(str, fe.shape(x))])}]")
    y, rank = x, 2 + nd
    for k, (n, K) in enumerate(zip(sizes, ks)):
        begin, end = _ends(node, a, k, n, K, s[k], d[k], op[k], nd)
        lo, hi = d[k] * (K - 1) - begin, d[k] * (K - 1) - end + op[k]
        if (lo, hi, s[k]) == (0, 0, 1):
            continue
        M = spread(n, s[k], lo, hi)
        if M.shape[1] < d[k] * (K - 1) + 1:
            raise FrontendError(f"node {label(node)} (ConvTranspose): the padding leaves no output")
        axis = 2 + k
        perm = list(range(rank))
        perm[axis], perm[-1] = perm[-1], perm[axis]
        t = y if axis == rank - 1 else fe.emit(node, "transpose", [y], f"{out}.axis{k}.in", perm=tuple(perm))
        t = fe.emit(node, "linear", [t, _new_const(fe, f"{node.name or out}.spread{k}", M)], f"{out}.axis{k}")
        y = t if axis == rank - 1 else fe.emit(node, "transpose", [t], f"{out}.axis{k}.out", perm=tuple(perm))
    flip = (slice(None),) * 3 + (slice(None, None, -1),) * nd
    Wc = W.reshape(g, cin // g, cog, *ks).transpose(0, 2, 1, *range(3, 3 + nd))[flip].reshape(g * cog, cin // g, *ks)
    ins = [y, _new_const(fe, node.input[1], np.ascontiguousarray(Wc))]
    if len(node.input) > 2 and node.input[2]:
        ins.append(_new_const(fe, node.input[2], fe.value(node.input[2]).astype(np.float64)))
    if nd == 3:
        from .onnx_ops import conv
        from .onnx_windows3d import conv3d
        return conv3d(fe, onnx.helper.make_node("Conv", ins, [out], name=node.name, group=g, dilations=list(d)), conv)
    fe.emit(node, "conv", ins, out, group=g, kernel=tuple(ks), strides=(1, 1), pads=(0, 0, 0, 0), dilations=d)
