"""A ResNet-50 v1.5 ONNX model with seeded weights, built with onnx.helper (no torch).

    python benchmarks/models/resnet50.py OUT.onnx [--opset 9] [--seed 0] [--calib CALIB.npy --images N]

Topology as torchvision's resnet50 exports it with BatchNorm folded: conv1 7x7/2 + Relu, maxpool 3x3/2,
bottleneck stages of [3, 4, 6, 3] blocks (1x1 -> 3x3 -> 1x1 x4, the stride on the 3x3 conv, a 1x1 downsample
conv on the first block of each stage), the residual add followed by Relu, GlobalAveragePool, Flatten and
Gemm 2048 -> 1000. The residual add is `Sum` at opset 9 (as old exporters wrote it) and `Add` otherwise.

Weights look like a trained model's, not like a fresh one's: He-initialised convs with a BatchNorm folded in
(a per-output-channel scale drawn log-normally, so channel magnitudes vary by about an order of magnitude,
and a per-channel bias), with the last BatchNorm of each bottleneck scaled down as trained ResNets' are so
activations keep their range through 16 residual adds. `images` makes calibration / test inputs: smooth random
images in [0, 1] normalised with ImageNet's mean and std.

`build(width=8, blocks=(1, 1, 1, 1), hw=32, classes=10)` is the same topology at a size tests compile in a
second or two.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


class _Builder:
    def __init__(self, seed: int, opset: int):
        self.rng = np.random.default_rng(seed)
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def conv(self, name: str, x: str, cin: int, cout: int, k: int, stride: int = 1, relu: bool = True,
             gain: tuple[float, float] = (0.0, 0.35)) -> str:
        """Conv with a BatchNorm folded in: He weights times a log-normal per-channel scale, plus a bias."""
        r = self.rng
        w = r.normal(0.0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k))
        scale = np.exp(r.normal(gain[0], gain[1], cout))
        bias = r.normal(0.0, 0.1, cout) * scale
        ins = [x, self.init(f"{name}.weight", w * scale[:, None, None, None]), self.init(f"{name}.bias", bias)]
        p = k // 2
        self.nodes.append(helper.make_node("Conv", ins, [f"{name}.out"], name=name, kernel_shape=[k, k],
                                           strides=[stride, stride], pads=[p] * 4, dilations=[1, 1], group=1))
        return self.relu(f"{name}.relu", f"{name}.out") if relu else f"{name}.out"

    def relu(self, name: str, x: str) -> str:
        self.nodes.append(helper.make_node("Relu", [x], [f"{name}.out"], name=name))
        return f"{name}.out"

    def add(self, name: str, a: str, b: str) -> str:
        op = "Sum" if self.opset <= 9 else "Add"
        self.nodes.append(helper.make_node(op, [a, b], [f"{name}.out"], name=name))
        return f"{name}.out"

    def bottleneck(self, name: str, x: str, cin: int, mid: int, stride: int) -> tuple[str, int]:
        cout = 4 * mid
        y = self.conv(f"{name}.conv1", x, cin, mid, 1)
        y = self.conv(f"{name}.conv2", y, mid, mid, 3, stride)          # v1.5: the stride on the 3x3 conv
        y = self.conv(f"{name}.conv3", y, mid, cout, 1, relu=False, gain=(np.log(0.3), 0.35))
        skip = x
        if stride != 1 or cin != cout:
            skip = self.conv(f"{name}.downsample", x, cin, cout, 1, stride, relu=False, gain=(np.log(0.5), 0.35))
        return self.relu(f"{name}.relu", self.add(f"{name}.add", y, skip)), cout


def build(opset: int = 9, seed: int = 0, width: int = 64, blocks: tuple[int, ...] = (3, 4, 6, 3), hw: int = 224,
          classes: int = 1000, batch: int | str = "N") -> onnx.ModelProto:
    """The ResNet-50 v1.5 graph (input "x" float32 [batch, 3, hw, hw], output "logits" [batch, classes]).

    width: channels of the stem and of stage 1's bottleneck (64 in ResNet-50; stages double it, the
    bottleneck expands 4x); blocks: bottlenecks per stage. The same (opset, seed, sizes) give the same bytes.
    """
    b = _Builder(seed, opset)
    x = b.conv("conv1", "x", 3, width, 7, 2)
    b.nodes.append(helper.make_node("MaxPool", [x], ["maxpool.out"], name="maxpool", kernel_shape=[3, 3],
                                    strides=[2, 2], pads=[1, 1, 1, 1]))
    x, c = "maxpool.out", width
    for s, n in enumerate(blocks):
        for i in range(n):
            x, c = b.bottleneck(f"layer{s + 1}.{i}", x, c, width * 2 ** s, 2 if s and i == 0 else 1)
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], ["avgpool.out"], name="avgpool"))
    b.nodes.append(helper.make_node("Flatten", ["avgpool.out"], ["flatten.out"], name="flatten", axis=1))
    w = b.rng.normal(0.0, np.sqrt(1.0 / c), (classes, c))
    ins = ["flatten.out", b.init("fc.weight", w), b.init("fc.bias", b.rng.normal(0.0, 0.05, classes))]
    b.nodes.append(helper.make_node("Gemm", ins, ["logits"], name="fc", alpha=1.0, beta=1.0, transB=1))
    g = helper.make_graph(b.nodes, "resnet50", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, hw, hw])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])], b.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="pimc-benchmarks")
    m.ir_version = 7 if opset < 13 else 8
    onnx.checker.check_model(m)
    return m


def small(opset: int = 9, seed: int = 0) -> onnx.ModelProto:
    """The same topology at test size: width 8, one bottleneck per stage, 32x32 inputs, 10 classes."""
    return build(opset, seed, width=8, blocks=(1, 1, 1, 1), hw=32, classes=10)


def images(n: int, seed: int = 0, hw: int = 224) -> np.ndarray:
    """n smooth random RGB images [n, 3, hw, hw] float32, in [0, 1] before ImageNet normalisation: a coarse
    random grid (8x8) bilinearly upsampled plus a little fine noise, so neighbouring pixels correlate as in photos."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.0, 1.0, (n, 3, 9, 9))
    pos = np.linspace(0.0, 8.0, hw)
    i0 = np.minimum(pos.astype(int), 7)
    f = (pos - i0)[None, None]
    rows = coarse[:, :, i0] * (1 - f[..., None]) + coarse[:, :, i0 + 1] * f[..., None]          # [n, 3, hw, 9]
    img = rows[..., i0] * (1 - f[:, :, None]) + rows[..., i0 + 1] * f[:, :, None]                # [n, 3, hw, hw]
    img = np.clip(img + rng.normal(0.0, 0.03, img.shape), 0.0, 1.0)
    return ((img - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]).astype(np.float32)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--opset", type=int, default=9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calib", type=Path, help="also write N calibration images here (.npy)")
    ap.add_argument("--images", type=int, default=4)
    a = ap.parse_args(argv)
    onnx.save(build(a.opset, a.seed), a.out)
    if a.calib:
        np.save(a.calib, images(a.images, a.seed + 1))


if __name__ == "__main__":
    main()
