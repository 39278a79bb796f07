"""Small ONNX models of real CNN families, built with onnx.helper and seeded random weights.

Every builder returns an onnx.ModelProto that passes onnx.checker (full check) with one input "x" float32
[N, C, H, W] (N symbolic, except the batch-1 export in `preprocessing`) and one output (two in `two_heads`);
the families end in GlobalAveragePool + Flatten + Gemm (transB=1) like their torchvision originals. Weights are He-scaled so activations keep a useful range through the layers; BatchNormalization
is left unfolded with non-trivial statistics, as a training-mode export carries it.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Net:
    """A tiny graph builder: tracks the channel count of every NCHW activation it makes."""

    def __init__(self, name: str, c: int = 3, hw: int = 16, seed: int = 0, opset: int = 17, ir_version: int = 8,
                 batch: int | str = "N"):
        self.name, self.c, self.hw, self.opset, self.ir_version, self.batch = name, c, hw, opset, ir_version, batch
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.ch = [], [], {"x": c}
        self.count = 0

    def uid(self, base: str) -> str:
        self.count += 1
        return f"{base}{self.count}"

    def const(self, value, base: str = "c") -> str:
        name = self.uid(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs, n_out: int = 1, ch: int | None = None, **attrs):
        name = self.uid(op.lower())
        outs = [f"{name}_out{i}" if n_out > 1 else f"{name}_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        if ch is not None:
            self.ch[outs[0]] = ch
        return outs if n_out > 1 else outs[0]

    # -- layers ----------------------------------------------------------------------------------------
    def conv(self, x, cout, k=3, stride=1, pad=None, group=1, dil=1, bias=True, **extra):
        cin = self.ch[x]
        w = self.rng.normal(0, np.sqrt(2.0 / (cin // group * k * k)), (cout, cin // group, k, k)).astype(np.float32)
        ins = [x, self.const(w, "w")]
        if bias:
            ins.append(self.const(self.rng.normal(0, 0.1, cout).astype(np.float32), "b"))
        attrs = dict(kernel_shape=[k, k], strides=[stride, stride], group=group, dilations=[dil, dil], **extra)
        if "auto_pad" not in extra:
            p = dil * (k - 1) // 2 if pad is None else pad
            attrs["pads"] = list(p) if isinstance(p, (list, tuple)) else [p] * 4
        return self.node("Conv", ins, ch=cout, **attrs)

    def bn(self, x, **attrs):
        c = self.ch[x]
        r = self.rng
        p = [r.uniform(0.5, 1.5, c), r.normal(0, 0.2, c), r.normal(0, 0.3, c), r.uniform(0.5, 2.0, c)]
        return self.node("BatchNormalization", [x] + [self.const(v.astype(np.float32), "bn") for v in p], ch=c,
                         **attrs)

    def act(self, x, op="Relu", **attrs):
        return self.node(op, [x], ch=self.ch.get(x), **attrs)

    def relu6(self, x):
        return self.node("Clip", [x, self.const(np.float32(0), "lo"), self.const(np.float32(6), "hi")], ch=self.ch[x])

    def conv_bn(self, x, cout, k=3, act="Relu", **kw):
        y = self.bn(self.conv(x, cout, k, bias=False, **kw))
        return {"Relu": self.act, "Relu6": self.relu6, None: lambda t: t}[act](y)

    def add(self, a, b):
        return self.node("Add", [a, b], ch=self.ch[a])

    def concat(self, *xs):
        return self.node("Concat", list(xs), ch=sum(self.ch[x] for x in xs), axis=1)

    def pool(self, x, op="MaxPool", k=3, stride=1, pad=1, **attrs):
        return self.node(op, [x], ch=self.ch[x], kernel_shape=[k, k], strides=[stride, stride],
                         pads=[pad] * 4 if isinstance(pad, int) else list(pad), **attrs)

    def flatten(self, x):
        return self.node("Flatten", [x], axis=1)

    def gemm(self, x, fin, fout, bias=True, bias_shape=None):
        w = self.rng.normal(0, np.sqrt(1.0 / fin), (fout, fin)).astype(np.float32)
        b = self.rng.normal(0, 0.1, fout).astype(np.float32).reshape(bias_shape or (fout,))
        ins = [x, self.const(w, "fc")] + ([self.const(b, "fcb")] if bias else [])
        return self.node("Gemm", ins, transB=1)

    def head(self, x, classes=10):
        c = self.ch[x]
        return self.gemm(self.flatten(self.node("GlobalAveragePool", [x])), c, classes)

    def torch_flatten(self, x):
        """x.view(x.size(0), -1) as torch.onnx exports it: Shape -> Gather -> Unsqueeze -> Concat -> Reshape."""
        n = self.node("Gather", [self.node("Shape", [x]), self.const(np.int64(0), "i")], axis=0)
        n = self.node("Unsqueeze", [n, self.const(np.array([0], np.int64), "ax")])
        shape = self.node("Concat", [n, self.const(np.array([-1], np.int64), "m1")], axis=0)
        return self.node("Reshape", [x, shape])

    def model(self, y, extra_opsets: dict | None = None, inits_as_inputs: bool = False) -> onnx.ModelProto:
        """y: the output tensor, or a list of them."""
        ys = [y] if isinstance(y, str) else list(y)
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [self.batch, self.c, self.hw, self.hw])
        ins = [x] + ([helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in self.inits]
                     if inits_as_inputs else [])
        g = helper.make_graph(self.nodes, self.name, ins, [helper.make_tensor_value_info(t, TensorProto.FLOAT, None)
                                                           for t in ys], self.inits)
        opsets = [helper.make_opsetid("", self.opset)] + [helper.make_opsetid(d, v) for d, v in (extra_opsets or {}).items()]
        m = helper.make_model(g, opset_imports=opsets, producer_name="cnn_blocks")
        m.ir_version = self.ir_version
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)    # the outputs' shapes, as exporters write them
        for out, inf in zip(m.graph.output, inferred.graph.output):
            out.CopyFrom(inf)
        onnx.checker.check_model(m, full_check=True)
        return m


# ---- families ---------------------------------------------------------------------------------------------

def resnet_basic() -> onnx.ModelProto:
    """Stem, an identity basic block and a downsampling one (stride-2 conv with a 1x1 projection skip)."""
    n = Net("resnet_basic", seed=1)
    x = n.conv_bn("x", 8)
    y = n.conv_bn(n.conv_bn(x, 8), 8, act=None)
    x = n.act(n.add(y, x))
    y = n.conv_bn(n.conv_bn(x, 16, stride=2), 16, act=None)
    skip = n.conv_bn(x, 16, k=1, stride=2, pad=0, act=None)
    x = n.act(n.add(y, skip))
    return n.model(n.head(x))


def densenet_block() -> onnx.ModelProto:
    """Dense layers (BN-ReLU-Conv1x1-BN-ReLU-Conv3x3) concatenated onto their input, then a transition."""
    n = Net("densenet_block", seed=2)
    x = n.conv("x", 8)
    for _ in range(3):
        y = n.act(n.bn(x))                      # BN on a concat output: not foldable into a conv
        y = n.conv(n.conv_bn(y, 16, k=1, pad=0), 4)
        x = n.concat(x, y)
    x = n.conv(n.act(n.bn(x)), 10, k=1, pad=0)
    x = n.pool(x, "AveragePool", k=2, stride=2, pad=0)
    return n.model(n.head(x))


def inception_block() -> onnx.ModelProto:
    """1x1, 1x1-3x3, 1x1-5x5 and maxpool(3, stride 1, pad 1)-1x1 branches concatenated."""
    n = Net("inception_block", seed=3)
    x = n.conv_bn("x", 8)
    b1 = n.conv_bn(x, 4, k=1, pad=0)
    b2 = n.conv_bn(n.conv_bn(x, 4, k=1, pad=0), 6)
    b3 = n.conv_bn(n.conv_bn(x, 2, k=1, pad=0), 4, k=5)
    b4 = n.conv_bn(n.pool(x), 4, k=1, pad=0)
    return n.model(n.head(n.concat(b1, b2, b3, b4)))


def squeezenet_fire() -> onnx.ModelProto:
    """torchvision SqueezeNet 1.1: stride-2 stem, ceil-mode maxpool, two fire modules, dropout, 1x1 classifier."""
    n = Net("squeezenet_fire", seed=4, hw=17)
    x = n.act(n.conv("x", 16, stride=2, pad=0))
    x = n.pool(x, k=3, stride=2, pad=0, ceil_mode=1)

    def fire(x, s, e):
        s = n.act(n.conv(x, s, k=1, pad=0))
        return n.concat(n.act(n.conv(s, e, k=1, pad=0)), n.act(n.conv(s, e)))

    x = fire(fire(x, 4, 8), 4, 8)
    x = n.act(n.conv(n.act(n.node("Dropout", [x], ch=16)), 10, k=1, pad=0))
    return n.model(n.head(x))


def shufflenet_unit() -> onnx.ModelProto:
    """ShuffleNet v1: grouped 1x1, channel shuffle (Reshape-Transpose-Reshape), depthwise 3x3, grouped 1x1;
    a stride-1 unit with Add and a stride-2 unit concatenating an avg-pooled shortcut."""
    n = Net("shufflenet_unit", seed=5)
    x = n.conv_bn("x", 8)

    def shuffle(t, groups, hw):
        c = n.ch[t]
        batch = n.node("Unsqueeze", [n.node("Gather", [n.node("Shape", [t]), n.const(np.int64(0), "i")], axis=0),
                                     n.const(np.array([0], np.int64), "ax")])
        shape = n.node("Concat", [batch, n.const(np.array([groups, c // groups, hw, hw], np.int64), "s")], axis=0)
        t = n.node("Transpose", [n.node("Reshape", [t, shape])], perm=[0, 2, 1, 3, 4])
        return n.node("Reshape", [t, n.const(np.array([-1, c, hw, hw], np.int64), "s")], ch=c)

    def unit(x, stride, groups, hw):
        cout = n.ch[x] if stride == 1 else n.ch[x] * 2
        y = n.conv_bn(x, 8, k=1, pad=0, group=groups)
        y = shuffle(y, groups, hw)
        y = n.conv_bn(y, 8, stride=stride, group=8, act=None)                        # depthwise
        y = n.conv_bn(y, cout - (0 if stride == 1 else n.ch[x]), k=1, pad=0, group=groups, act=None)
        if stride == 1:
            return n.act(n.add(y, x))
        return n.act(n.concat(n.pool(x, "AveragePool", stride=2), y))

    x = unit(unit(x, 1, 2, 16), 2, 4, 16)
    return n.model(n.head(x))


def mobilenet_v2() -> onnx.ModelProto:
    """Stride-2 stem with ReLU6 (Clip 0..6), a depthwise separable conv, and an inverted residual with Add."""
    n = Net("mobilenet_v2", seed=6)
    x = n.conv_bn("x", 8, stride=2, act="Relu6")
    x = n.conv_bn(n.conv_bn(x, 8, group=8, act="Relu6"), 8, k=1, pad=0, act=None)
    y = n.conv_bn(x, 32, k=1, pad=0, act="Relu6")
    y = n.conv_bn(y, 32, group=32, act="Relu6")
    x = n.add(x, n.conv_bn(y, 8, k=1, pad=0, act=None))
    x = n.conv_bn(x, 32, k=1, pad=0, act="Relu6")
    return n.model(n.head(x))


def mobilenet_v3() -> onnx.ModelProto:
    """MobileNet v3 bneck: expand 1x1 + HardSwish, depthwise 5x5 + ReLU, squeeze-excitation made of 1x1 convs
    on the pooled vector with HardSigmoid, linear 1x1 projection, residual Add."""
    n = Net("mobilenet_v3", seed=16)
    x = n.act(n.bn(n.conv("x", 8, stride=2, bias=False)), "HardSwish")
    y = n.act(n.bn(n.conv(x, 24, k=1, pad=0, bias=False)), "HardSwish")
    y = n.conv_bn(y, 24, k=5, group=24)
    s = n.act(n.conv(n.act(n.conv(n.node("GlobalAveragePool", [y], ch=24), 8, k=1, pad=0)), 24, k=1, pad=0),
              "HardSigmoid", alpha=1 / 6, beta=0.5)
    y = n.conv_bn(n.node("Mul", [y, s], ch=24), 8, k=1, pad=0, act=None)
    x = n.act(n.bn(n.conv(n.add(x, y), 16, k=1, pad=0, bias=False)), "HardSwish")
    return n.model(n.head(x))


# ---- op coverage ----------------------------------------------------------------------------------------

def conv_geometry() -> onnx.ModelProto:
    """Strides 2 with pads, asymmetric pads, auto_pad SAME_UPPER / SAME_LOWER / VALID, dilations 2."""
    n = Net("conv_geometry", seed=7, hw=17)
    x = n.act(n.conv("x", 8, stride=2, pad=1))                                  # 17 -> 9
    x = n.act(n.conv(x, 8, pad=[0, 1, 1, 0]))                                   # asymmetric
    x = n.act(n.conv(x, 8, stride=2, auto_pad="SAME_UPPER"))                    # 9 -> 5
    x = n.act(n.conv(x, 8, k=2, auto_pad="SAME_LOWER"))
    x = n.act(n.conv(x, 8, dil=2, pad=2))
    x = n.act(n.conv(x, 12, auto_pad="VALID"))                                   # 5 -> 3
    return n.model(n.head(x))


def matmul_mlp() -> onnx.ModelProto:
    """MatMul with constant weights on a 3-D activation (rows of an image) and on a flat one; LeakyRelu,
    Sigmoid; Sub and Div by constants."""
    n = Net("matmul_mlp", seed=8, c=1, hw=8)
    x = n.node("Reshape", ["x", n.const(np.array([0, 8, 8], np.int64), "s")])
    x = n.node("Sub", [x, n.const(np.float32(0.5), "k")])
    x = n.node("Add", [n.node("MatMul", [x, n.const(n.rng.normal(0, 0.4, (8, 16)).astype(np.float32), "w")]),
                       n.const(n.rng.normal(0, 0.1, 16).astype(np.float32), "b")])
    x = n.node("LeakyRelu", [x], alpha=0.1)
    x = n.node("Div", [n.flatten(x), n.const(np.float32(2.0), "k")])
    x = n.node("MatMul", [x, n.const(n.rng.normal(0, 0.15, (128, 32)).astype(np.float32), "w")])
    x = n.node("Sigmoid", [x])
    x = n.node("MatMul", [x, n.const(n.rng.normal(0, 0.3, (32, 10)).astype(np.float32), "w")])
    return n.model(x)


def se_block() -> onnx.ModelProto:
    """Squeeze-excitation: GAP -> Gemm -> Relu -> Gemm -> Sigmoid -> Unsqueeze -> Mul with the activation;
    a Mul by a constant; GlobalMaxPool."""
    n = Net("se_block", seed=9)
    x = n.act(n.conv("x", 16))
    s = n.act(n.gemm(n.flatten(n.node("GlobalAveragePool", [x])), 16, 4))
    s = n.node("Sigmoid", [n.gemm(s, 4, 16)])
    s = n.node("Unsqueeze", [s, n.const(np.array([2, 3], np.int64), "ax")])
    x = n.node("Mul", [x, s], ch=16)
    x = n.node("Mul", [n.const(np.float32(0.5), "k"), x], ch=16)
    x = n.act(n.conv(x, 16, stride=2))
    y = n.node("GlobalMaxPool", [x])
    return n.model(n.gemm(n.flatten(y), 16, 10))


def pools() -> onnx.ModelProto:
    """MaxPool with pads, AveragePool with and without count_include_pad, asymmetric pads, ceil_mode; Softmax."""
    n = Net("pools", seed=10, hw=15)
    x = n.act(n.conv("x", 8))
    x = n.pool(x, "MaxPool", k=3, stride=2, pad=1)                                              # 15 -> 8
    x = n.pool(x, "AveragePool", k=3, stride=1, pad=1, count_include_pad=0)
    x = n.pool(x, "AveragePool", k=2, stride=1, pad=[0, 0, 1, 1], count_include_pad=1)
    x = n.act(n.conv(x, 8))
    x = n.pool(x, "AveragePool", k=3, stride=2, pad=0, ceil_mode=1)                             # 8 -> 4
    x = n.pool(x, "MaxPool", k=3, stride=2, pad=0, ceil_mode=1)                                 # 4 -> 2
    return n.model(n.node("Softmax", [n.head(x)], axis=1))


def alexnet_style() -> onnx.ModelProto:
    """Conv 5x5, LRN, MaxPool, Pad, Identity, torch-style Flatten (shape arithmetic), Dropout, two Gemms,
    Softmax: the shape of an old AlexNet / CaffeNet export."""
    n = Net("alexnet_style", seed=11)
    x = n.act(n.conv("x", 16, k=5))
    x = n.pool(n.node("LRN", [x], ch=16, size=5, alpha=1e-2, beta=0.75, bias=2.0), k=3, stride=2, pad=0)  # 16 -> 7
    x = n.node("Pad", [x, n.const(np.array([0, 0, 1, 1, 0, 0, 1, 0], np.int64), "p"),
                       n.const(np.float32(0.25), "v")], ch=16)                          # 9 x 8
    x = n.act(n.conv(x, 8, pad=0))                                                   # 7 x 6
    x = n.node("Identity", [x])
    x = n.node("Dropout", [n.torch_flatten(x)])
    x = n.act(n.gemm(x, 8 * 7 * 6, 32))
    return n.model(n.node("Softmax", [n.gemm(x, 32, 10)], axis=-1))


def legacy_opset9() -> onnx.ModelProto:
    """An opset-9, IR-4 export: Clip with min/max attributes, BatchNormalization with momentum, Dropout
    with its ratio attribute, Pad-2 with a pads attribute and a value, Flatten, Gemm."""
    n = Net("legacy_opset9", seed=12, opset=9, ir_version=4)
    x = n.bn(n.conv("x", 8, bias=False), epsilon=1e-3, momentum=0.9)
    x = n.node("Clip", [x], ch=8, min=0.0, max=6.0)
    x = n.node("Pad", [x], ch=8, pads=[0, 0, 1, 1, 0, 0, 1, 1], mode="constant", value=1.0)
    x = n.pool(x, k=2, stride=2, pad=0)
    x = n.act(n.bn(n.conv(x, 8, bias=False), epsilon=1e-5))
    x = n.node("Dropout", [x], ch=8, ratio=0.3)
    return n.model(n.head(x))


def legacy_opset11() -> onnx.ModelProto:
    """An opset-11, IR-6 export: Clip with min/max inputs, Pad with a pads input, Squeeze with an axes
    attribute (instead of Flatten), Softmax with the old default axis."""
    n = Net("legacy_opset11", seed=13, opset=11, ir_version=6)
    x = n.relu6(n.bn(n.conv("x", 8, bias=False)))
    x = n.node("Pad", [x, n.const(np.array([0, 0, 0, 1, 0, 0, 2, 1], np.int64), "p")], ch=8, mode="constant")
    x = n.pool(x, "AveragePool", k=3, stride=2, pad=0, ceil_mode=1)
    x = n.relu6(n.conv(x, 12))
    x = n.node("Squeeze", [n.node("GlobalAveragePool", [x])], axes=[2, 3])
    return n.model(n.node("Softmax", [n.gemm(x, 12, 10)]))


def legacy_opset10() -> onnx.ModelProto:
    """An opset-10, IR-5 export: Dropout with ratio, Reshape to a constant [-1, K] shape, LeakyRelu, a Gemm
    bias of shape [1, N] (as Keras / TF converters write it)."""
    n = Net("legacy_opset10", seed=14, c=2, hw=12, opset=10, ir_version=5)
    x = n.act(n.conv("x", 8, stride=2), "LeakyRelu", alpha=0.2)
    x = n.node("Dropout", [x], ratio=0.5)
    x = n.node("Reshape", [x, n.const(np.array([-1, 8 * 6 * 6], np.int64), "s")])
    return n.model(n.gemm(x, 8 * 6 * 6, 10, bias_shape=(1, 10)))


def legacy_opset8() -> onnx.ModelProto:
    """An opset-8, IR-3 export (Caffe2 / early torch era): every initializer also listed as a graph input,
    BatchNormalization with spatial=1, Sum of branches, MaxPool without pads."""
    n = Net("legacy_opset8", seed=18, opset=8, ir_version=3)
    x = n.act(n.bn(n.conv("x", 8, bias=False), spatial=1, epsilon=1e-5))
    x = n.act(n.node("Sum", [n.conv(x, 8), n.conv(x, 8, k=1, pad=0), x], ch=8))
    x = n.node("MaxPool", [x], ch=8, kernel_shape=[2, 2], strides=[2, 2])
    return n.model(n.head(x), inits_as_inputs=True)


def preprocessing() -> onnx.ModelProto:
    """Input normalisation as exporters embed it (Sub mean, Div std per channel), Sum of three branches,
    Tanh and Elu, and a fixed batch of 1 with a Reshape to [1, -1] (a batch-1 export)."""
    n = Net("preprocessing", seed=17, batch=1)
    x = n.node("Sub", ["x", n.const(np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1), "mean")], ch=3)
    x = n.node("Div", [x, n.const(np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1), "std")], ch=3)
    x = n.act(n.conv(x, 8, stride=2))
    x = n.node("Sum", [x, n.act(n.conv(x, 8), "Tanh"), n.act(n.conv(x, 8), "Elu")], ch=8)
    x = n.pool(n.act(x), "AveragePool", k=2, stride=2, pad=0)
    x = n.node("Reshape", [x, n.const(np.array([1, -1], np.int64), "s")])
    return n.model(n.gemm(x, 8 * 4 * 4, 10))


def two_heads() -> onnx.ModelProto:
    """Two outputs: a dense per-pixel head (a 1x1 conv straight to the output, kept as 32-bit accumulators)
    and a classifier on the same features, as detection / segmentation models end."""
    n = Net("two_heads", seed=21)
    x = n.conv_bn(n.conv_bn("x", 8, stride=2), 16)
    return n.model([n.conv(x, 4, k=1, pad=0), n.head(x)])


def opset18_pad_axes() -> onnx.ModelProto:
    """Opset 18: Pad with an axes input (negative axes) and a constant value; Clip with only a max."""
    n = Net("opset18_pad_axes", seed=19, opset=18)
    x = n.act(n.conv("x", 8, stride=2))
    x = n.node("Pad", [x, n.const(np.array([1, 0, 2, 1], np.int64), "p"), n.const(np.float32(0.5), "v"),
                       n.const(np.array([-2, -1], np.int64), "ax")], ch=8)                             # 8 -> 11 x 9
    x = n.node("Clip", [n.conv(x, 8, pad=0), "", n.const(np.float32(1.5), "hi")], ch=8)
    return n.model(n.head(x))


FAMILIES = {f.__name__: f for f in (resnet_basic, densenet_block, inception_block, squeezenet_fire,
                                    shufflenet_unit, mobilenet_v2, mobilenet_v3)}
COVERAGE = {f.__name__: f for f in (conv_geometry, matmul_mlp, se_block, pools, alexnet_style, preprocessing,
                                    two_heads, opset18_pad_axes, legacy_opset8, legacy_opset9, legacy_opset10, legacy_opset11)}
MODELS = {**FAMILIES, **COVERAGE}


def unsupported_model() -> onnx.ModelProto:
    """Four nodes the frontend cannot compile: TopK and NonMaxSuppression (no converter), NonZero (folded on
    constants only) on a run-time value, and an onnxruntime contrib op (com.microsoft Trilu)."""
    n = Net("unsupported", seed=15, c=1, hw=4)
    x = n.node("Relu", ["x"])
    flat = n.node("Reshape", [x, n.const(np.array([0, 4, 4], np.int64), "s")])
    vals, _ = n.node("TopK", [flat, n.const(np.array([2], np.int64), "k")], n_out=2, axis=-1)
    n.nodes.append(helper.make_node("Trilu", [flat], ["gelu_out"], name="trilu_ms", domain="com.microsoft"))
    nz = n.node("NonZero", ["gelu_out"])
    sel = n.node("NonMaxSuppression", [n.node("Cast", [nz], to=TensorProto.FLOAT), vals])
    return n.model(n.node("Cast", [sel], to=TensorProto.FLOAT), extra_opsets={"com.microsoft": 1})


def images(n: int, shape, seed: int) -> np.ndarray:
    """Image-like inputs in [0, 1): smooth random fields (bilinear upsampled 4x4 noise) with per-sample
    contrast and brightness, plus a little pixel noise, so a network's outputs vary from sample to sample
    much more than white noise would make them (white noise averages out in the global pooling)."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    coarse = rng.random((n, c, 4, 4))
    up = lambda k: np.maximum(0, 1 - np.abs(np.linspace(0, 3, k)[:, None] - np.arange(4)[None, :]))
    field = np.einsum("hi,ncij,wj->nchw", up(h), coarse, up(w))
    x = rng.uniform(0.2, 1.0, (n, 1, 1, 1)) * field + rng.uniform(0, 0.3, (n, 1, 1, 1))
    return np.clip(x + rng.normal(0, 0.03, x.shape), 0, 0.999).astype(np.float32)
