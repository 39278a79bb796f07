"""Converters for ONNX ops that move activation values or resample them: Slice, Split, Resize (nearest by
whole factors as a copy; other modes as a constant matrix per axis), and ConvTranspose whose stride equals its
kernel (a 1x1 conv, then a depth-to-space). They register in onnx_ops.CONVERTERS; on constants the frontend
folds these ops instead.

Found on detectors and segmenters from the wild: YOLOv8's C2f blocks split channels and its neck upsamples
(nudenet's YOLOv8n), PaddleOCR's DBNet upsamples by Resize and by a 2x2 stride-2 ConvTranspose, MediaPipe's
palm detector and pose landmarker upsample bilinearly (tf2onnx: Resize linear, half_pixel).
"""
from __future__ import annotations

import numpy as np
import onnx

from ir import FrontendError

from .onnx_ops import PROBE, _decode, _new_const, attrs, converts, label

_BIG = 2 ** 62


def _batch_axis_whole(start: int, end: int, step: int) -> bool:
    """A slice of the batch axis that keeps every sample (exporters write [0:INT_MAX] over every axis)."""
    return start in (0, -_BIG) and step == 1 and end >= PROBE()


def _emit_slice(fe, node, x, out, bounds: dict[int, tuple[int, int, int]]):
    """Slice per-sample axes; `bounds`: batched axis -> (start, end, step), normalised like Python's slices."""
    shape = fe.shape(x)
    starts, ends, steps = [], [], []
    for k, n in enumerate(shape, 1):
        s, e, st = slice(*bounds.get(k, (0, n, 1))).indices(n)
        starts.append(s), ends.append(e), steps.append(st)
    if any(len(range(s, e, st)) == 0 for s, e, st in zip(starts, ends, steps)):
        raise FrontendError(f"node {label(node)} ({node.op_type}): the slice is empty")
    if all(s == 0 and e == n and st == 1 for s, e, st, n in zip(starts, ends, steps, shape)):
        return fe.forward(out, x)
    fe.emit(node, "slice", [x], out, starts=tuple(starts), ends=tuple(ends), steps=tuple(steps))


@converts("Slice")
def slice_(fe, node):
    x = node.input[0]
    rank = len(fe.shape(x)) + 1
    ins = list(node.input) + [""] * (5 - len(node.input))
    if not all(fe.is_const(i) for i in ins[1:] if i):
        raise FrontendError(f"node {label(node)} (Slice): only constant starts, ends, axes and steps are supported")
    starts = [int(v) for v in fe.value(ins[1]).reshape(-1)]
    ends = [int(v) for v in fe.value(ins[2]).reshape(-1)]
    axes = [int(v) % rank for v in fe.value(ins[3]).reshape(-1)] if ins[3] else list(range(len(starts)))
    steps = [int(v) for v in fe.value(ins[4]).reshape(-1)] if ins[4] else [1] * len(starts)
    bounds = {}
    for a, s, e, st in zip(axes, starts, ends, steps):
        if st <= 0:
            raise FrontendError(f"node {label(node)} (Slice): step {st} on axis {a}; only positive steps are supported")
        if a == 0:
            if not _batch_axis_whole(s, e, st):
                raise FrontendError(f"node {label(node)} (Slice): slicing the batch axis is not supported")
            continue
        bounds[a] = (max(min(s, _BIG), -_BIG), max(min(e, _BIG), -_BIG), st)
    _emit_slice(fe, node, x, node.output[0], bounds)


@converts("Split")
def split(fe, node):
    x = node.input[0]
    a = attrs(node)
    rank = len(fe.shape(x)) + 1
    axis = a.get("axis", 0) % rank
    if axis == 0:
        raise FrontendError(f"node {label(node)} (Split): splitting the batch axis is not supported")
    n = fe.shape(x)[axis - 1]
    outs = list(node.output)
    if len(node.input) > 1 and node.input[1]:
        if not fe.is_const(node.input[1]):
            raise FrontendError(f"node {label(node)} (Split): only constant split sizes are supported")
        sizes = [int(v) for v in fe.value(node.input[1]).reshape(-1)]
    elif "split" in a:
        sizes = [int(v) for v in a["split"]]
    else:               # equal parts (opset 18: num_outputs; the last part may be smaller)
        k = a.get("num_outputs", len(outs))
        step = -(-n // k)
        sizes = [min(step, n - i * step) for i in range(k)]
    if sum(sizes) != n or len(sizes) != len(outs) or min(sizes) < 0:
        raise FrontendError(f"node {label(node)} (Split): sizes {sizes} do not split an axis of {n} into "
                            f"{len(outs)} parts")
    start = 0
    for out, size in zip(outs, sizes):
        if out and size == 0:       # an empty part (RotaryEmbedding's unrotated rest when it rotates all): a
            shape = list(fe.shape(x))       # constant of no values, which Concat leaves out
            shape[axis - 1] = 0
            fe.set_const(out, np.zeros([1] + shape, np.float32))
        elif out:
            _emit_slice(fe, node, x, out, {axis: (start, start + size, 1)})
        start += size


def _axis_matrices(fe, node, full: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Resize is separable: per resized axis k an (in x out) matrix M with y = x M along k. Each is read off
    by running the node itself (onnx's reference evaluator, every mode and coordinate transform as the
    model states them) on the identity: sample j of the probe holds the unit vector e_j along axis k and
    size 1 on the other axes."""
    from .frontend import evaluate_node
    a = attrs(node)
    ins = list(node.input) + [""] * (4 - len(node.input))
    for i in ins[1:]:
        if i and not fe.is_const(i):
            raise FrontendError(f"node {label(node)} ({node.op_type}): only constant scales / sizes are supported")
    if _decode(a.get("keep_aspect_ratio_policy", "stretch")) != "stretch":
        raise FrontendError(f"node {label(node)} ({node.op_type}): keep_aspect_ratio_policy "
                            f"'{_decode(a['keep_aspect_ratio_policy'])}' is not supported (only 'stretch')")
    if _decode(a.get("coordinate_transformation_mode", "")) == "tf_crop_and_resize" and \
            a.get("extrapolation_value", 0.0) != 0:
        # outside the crop every output is that constant, whatever the input: not a matrix times the input
        raise FrontendError(f"node {label(node)} ({node.op_type}): tf_crop_and_resize with an extrapolation_value "
                            f"of {a['extrapolation_value']:g} (not 0) is not supported")
    rank = len(full)
    axes = [int(x) % rank for x in a.get("axes", range(rank))]
    scales = np.asarray(fe.value(ins[2]), np.float32).reshape(-1) if ins[2] and fe.value(ins[2]).size else None
    sizes = np.asarray(fe.value(ins[3]), np.int64).reshape(-1) if ins[3] else None
    if scales is None and sizes is None:
        raise FrontendError(f"node {label(node)} ({node.op_type}): neither scales nor sizes is given")
    per = dict(zip(axes, scales if scales is not None else sizes))
    if 0 in per and (per[0] != 1 if scales is not None else per[0] not in (1, PROBE())):
        raise FrontendError(f"node {label(node)} ({node.op_type}): resizing the batch axis is not supported")
    mats = {}
    for k in range(1, rank):
        if k not in per or (scales is not None and per[k] == 1) or (sizes is not None and per[k] == full[k]):
            continue
        n = full[k]
        probe_in = np.eye(n, dtype=np.float32).reshape([n] + [n if d == k else 1 for d in range(1, rank)])
        feeds = {"probe": probe_in}
        names = ["probe", ins[1]]
        if ins[1]:
            feeds[ins[1]] = np.asarray(fe.value(ins[1]))
        if scales is not None:
            feeds["probe_scales"] = np.array([per[d] if d == k else 1.0 for d in axes], np.float32)
            names += ["probe_scales", ""]
        else:
            feeds["probe_sizes"] = np.array([n if d == 0 else per[d] if d == k else 1 for d in axes], np.int64)
            names += ["", "probe_sizes"]
        keep = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
        probe = onnx.helper.make_node("Resize", names, ["y"], name=node.name, **keep)
        y = np.asarray(evaluate_node(probe, fe.model, feeds)[0], np.float64)
        mats[k] = y.reshape(n, -1)
    return mats


@converts("Resize")      # (opset 9's Upsample reaches here as Resize: the frontend upgrades old opsets)
def resize(fe, node):
    """Nearest-neighbour by whole factors: `upsample` (codes copied). Any other separable resize (linear,
    cubic, other factors, every coordinate transform): per axis a constant matrix on the crossbars, the
    axis moved last by transposes around it."""
    x = node.input[0]
    shape = fe.shape(x)
    mats = _axis_matrices(fe, node, (1,) + shape)
    factors = []
    for k in range(1, len(shape) + 1):
        m = mats.get(k)
        n = shape[k - 1]
        f = 1 if m is None else m.shape[1] // n
        if m is not None and not (m.shape[1] == f * n and np.array_equal(m, np.repeat(np.eye(n), f, axis=1))):
            break
        factors.append(f)
    else:
        if all(f == 1 for f in factors):
            return fe.forward(node.output[0], x)
        return fe.emit(node, "upsample", [x], node.output[0], factors=tuple(factors))
    rank = len(shape) + 1
    ks = sorted(mats)
    for i, k in enumerate(ks):
        out = node.output[0] if i == len(ks) - 1 else f"{node.output[0]}.axis{k}"
        perm = list(range(rank))
        perm[k], perm[-1] = perm[-1], perm[k]
        if k != rank - 1:
            x = fe.emit(node, "transpose", [x], f"{out}.in", perm=tuple(perm))
        y = fe.emit(node, "linear", [x, _new_const(fe, f"{node.name}.resize{k}", mats[k])],
                    out if k == rank - 1 else f"{out}.out")
        if k != rank - 1:
            fe.emit(node, "transpose", [y], out, perm=tuple(perm))
        x = out


@converts("ConvTranspose")
def conv_transpose(fe, node):
    """Stride equal to the kernel, no padding: each input pixel paints its own kh x kw block, which is a
    1x1 conv to Cout*kh*kw channels followed by a depth-to-space (reshape, transpose, reshape). Any other
    form: onnx_conv_transpose.general; a 1-D kernel: onnx_windows1d.lift."""
    a = attrs(node)
    x, w = node.input[0], node.input[1]
    if not fe.is_const(w):
        raise FrontendError(f"node {label(node)} (ConvTranspose): weights must be constant")
    W = fe.value(w).astype(np.float64)               # (Cin, Cout / group, kh, kw)
    if W.ndim == 3:
        from .onnx_windows1d import lift
        return lift(fe, node, conv_transpose)
    if W.ndim == 5:
        from .onnx_conv_transpose import general
        return general(fe, node, W)
    if W.ndim != 4:
        raise FrontendError(f"node {label(node)} (ConvTranspose): only 1-D, 2-D and 3-D kernels are supported")
    cin, cout, kh, kw = W.shape
    strides = tuple(a.get("strides", (1, 1)))
    if a.get("group", 1) != 1 or strides != (kh, kw) or any(a.get("pads", ())) or any(a.get("output_padding", ())) \
            or "output_shape" in a or tuple(a.get("dilations", (1, 1))) != (1, 1) \
            or _decode(a.get("auto_pad", "NOTSET")) not in ("NOTSET", "VALID"):
        from .onnx_conv_transpose import general
        return general(fe, node, W)
    c, h, wd = fe.shape(x)
    w1 = W.transpose(1, 2, 3, 0).reshape(cout * kh * kw, cin, 1, 1)
    ins = [x, _new_const(fe, w, w1)]
    if len(node.input) > 2 and node.input[2]:
        ins.append(_new_const(fe, node.input[2], np.repeat(fe.value(node.input[2]).astype(np.float64), kh * kw)))
    out = node.output[0]
    y = fe.emit(node, "conv", ins, out + ".blocks", group=1, kernel=(1, 1), strides=(1, 1), pads=(0, 0, 0, 0),
                dilations=(1, 1))
    y = fe.emit(node, "reshape", [y], out + ".split", shape=(cout, kh, kw, h, wd))
    y = fe.emit(node, "transpose", [y], out + ".interleave", perm=(0, 1, 4, 2, 5, 3))
    fe.emit(node, "reshape", [y], out, shape=(cout, h * kh, wd * kw))
