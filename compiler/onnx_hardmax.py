"""Hardmax: 1 at the first maximum along an axis, 0 elsewhere, one `hardmax` op on the float32 vector unit (a
model holding one runs there: 8-bit codes would merge values close to the maximum and move ties).
Registered in onnx_ops.CONVERTERS."""
from __future__ import annotations

from ir import FrontendError

from .onnx_ops import attrs, converts, label


@converts("Hardmax")
def hardmax(fe, node):
    rank = len(fe.shape(node.input[0])) + 1
    axis = attrs(node).get("axis", -1) % rank
    if axis == 0:
        raise FrontendError(f"node {label(node)} (Hardmax): the maximum over the batch axis is not supported")
    fe.emit(node, "hardmax", [node.input[0]], node.output[0], axis=axis)
