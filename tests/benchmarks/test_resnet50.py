"""benchmarks/models/resnet50.py: the ResNet-50 v1.5 topology, its residual op per opset, and the small variant
compiled end to end (bit-exact ideal run, deterministic bytes, outputs near onnxruntime's float ones)."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from benchmarks.models.resnet50 import build, images, small
from compiler.pipeline import compile_model
from isa import parse_program, print_program
from passes.reference import dequantize_outputs, run_reference
from runtime.machine import Machine


def _ops(m: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in m.graph.node)


def test_topology_is_resnet50_v1_5():
    """The full model's shapes without its 25M weights: the width-1 graph has the same nodes and strides."""
    m = build(width=1, classes=3)
    ops = _ops(m)
    assert ops == Counter(Conv=53, Relu=49, Sum=16, MaxPool=1, GlobalAveragePool=1, Flatten=1, Gemm=1)
    convs = {n.name: n for n in m.graph.node if n.op_type == "Conv"}
    a = {k: {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute} for k, n in convs.items()}
    assert a["conv1"]["kernel_shape"] == [7, 7] and a["conv1"]["strides"] == [2, 2]
    for s, blocks in enumerate([3, 4, 6, 3], 1):            # [3, 4, 6, 3] bottlenecks, stride on the 3x3 conv
        assert f"layer{s}.{blocks - 1}.conv3" in convs and f"layer{s}.{blocks}.conv1" not in convs
        assert a[f"layer{s}.0.conv2"]["strides"] == [2 if s > 1 else 1] * 2
        assert a[f"layer{s}.0.conv1"]["strides"] == [1, 1]
        assert f"layer{s}.0.downsample" in convs and f"layer{s}.1.downsample" not in convs
    x = images(2, hw=224)
    (y,) = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})
    assert y.shape == (2, 3)


def test_full_width_shapes():
    w = {i.name: tuple(i.dims) for i in build(width=64).graph.initializer}
    assert w["conv1.weight"] == (64, 3, 7, 7) and w["layer4.2.conv3.weight"] == (2048, 512, 1, 1)
    assert w["layer1.0.downsample.weight"] == (256, 64, 1, 1) and w["fc.weight"] == (1000, 2048)
    bn = sum(v[0] for k, v in w.items() if k.endswith(".bias") and k != "fc.bias")      # a BN's channels each
    assert bn == 26_560
    # torchvision's resnet50 has 25,557,032 parameters, two per BatchNorm channel; folded, one (the conv bias)
    assert sum(int(np.prod(v)) for v in w.values()) == 25_557_032 - bn


def test_residual_op_follows_the_opset_and_weights_are_seeded():
    assert _ops(small(opset=9))["Sum"] == 4 and "Add" not in _ops(small(opset=9))
    assert _ops(small(opset=13))["Add"] == 4 and "Sum" not in _ops(small(opset=13))
    assert small(seed=3).SerializeToString() == small(seed=3).SerializeToString()
    assert small(seed=3).SerializeToString() != small(seed=4).SerializeToString()
    w = onnx.numpy_helper.to_array(next(i for i in small().graph.initializer if i.name == "layer1.0.conv2.weight"))
    mags = np.abs(w).reshape(len(w), -1).mean(axis=1)
    assert mags.max() > 2 * mags.min()                      # folded BatchNorm: channel magnitudes vary


def test_images_are_normalised_smooth_pictures():
    x = images(3, seed=0, hw=64)
    assert x.shape == (3, 3, 64, 64) and x.dtype == np.float32
    raw = x * np.array([0.229, 0.224, 0.225])[:, None, None] + np.array([0.485, 0.456, 0.406])[:, None, None]
    assert raw.min() >= -1e-6 and raw.max() <= 1 + 1e-6
    # neighbours correlate: white noise's mean |difference| would be 1.13 std
    assert np.abs(np.diff(raw, axis=-1)).mean() < 0.4 * raw.std()


@pytest.mark.parametrize("target", ["raella", "isaac"])
def test_small_variant_compiles_bit_exact_and_deterministic(target):
    m, calib, x = small(), images(4, seed=1, hw=32), images(6, seed=2, hw=32)
    c = compile_model(m, target, calib)
    text = print_program(c.program)
    assert text == print_program(compile_model(small(), target, calib.copy()).program)
    ref = dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))["logits"]
    prog = parse_program(text)
    assert np.array_equal(Machine(prog, ideal=True).run({"x": x})["logits"], ref)
    (want,) = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})
    cos = (ref * want).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() > 0.9, cos
