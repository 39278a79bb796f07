"""compiler/onnx_layout.py: Slice, Split, nearest Resize and stride-equals-kernel ConvTranspose of activations,
in a small seeded detector neck written the way exporters write it (YOLOv8's C2f split and upsampling, found
on nudenet's YOLOv8n; PaddleOCR DBNet's Resize and 2x2 stride-2 ConvTranspose): the float IR equals
onnxruntime, it compiles, the ideal machine equals the quantised reference bit for bit, and the output is
close to float. Forms it cannot express are one FrontendError naming the node."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.frontend import import_onnx
from compiler.pipeline import compile_model
from ir import FrontendError
from ir.float_eval import evaluate
from isa import parse_program, print_program
from passes.reference import dequantize_outputs, run_reference
from runtime.machine import Machine

N = helper.make_node


def _ints(name, v):
    return numpy_helper.from_array(np.array(v, np.int64), name)


NEAREST = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")


def neck(join: str = "Concat", resize: dict = NEAREST) -> onnx.ModelProto:
    """x [batch, 4, 8, 8] -> conv 8 -> Split [4, 4] -> a strided Slice of one half, Resize x2 (asymmetric,
    floor) -> joined with the other half (`join`: Concat or Add) -> conv 1x1 stride 2 -> ConvTranspose 2x2
    stride 2 (+ bias) -> y [batch, 3, 8, 8]."""
    rng = np.random.default_rng(11)
    f = lambda *s: (rng.standard_normal(s) / np.sqrt(np.prod(s[1:]))).astype(np.float32)   # noqa: E731
    inits = [numpy_helper.from_array(f(8, 4, 3, 3), "w1"), numpy_helper.from_array(f(8) * 0.5, "b1"),
             _ints("split", [4, 4]), numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             _ints("st", [0, 0]), _ints("en", [2 ** 62, 2 ** 62]), _ints("ax", [2, 3]), _ints("sp", [2, 2]),
             numpy_helper.from_array(f(6, 8 if join == "Concat" else 4, 1, 1), "w2"), numpy_helper.from_array(f(6, 3, 2, 2), "wt"),
             numpy_helper.from_array(f(3), "bt")]
    nodes = [N("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), N("Relu", ["c1"], ["r1"]),
             N("Split", ["r1", "split"], ["a", "b"], axis=1, name="split"),
             N("Slice", ["a", "st", "en", "ax", "sp"], ["a2"], name="slice"),           # [4, 4, 4] (every other)
             N("Resize", ["a2", "", "scales"], ["a3"], name="resize", **resize),          # [4, 8, 8]
             N(join, ["a3", "b"], ["cat"], **({"axis": 1} if join == "Concat" else {})), N("Conv", ["cat", "w2"], ["c2"], strides=[2, 2]),
             N("ConvTranspose", ["c2", "wt", "bt"], ["y"], kernel_shape=[2, 2], strides=[2, 2], name="up")]
    graph = helper.make_graph(nodes, "neck", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8, 8])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    return m


def _ort(m, x):
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _x(n, seed):
    return np.random.default_rng(seed).standard_normal((n, 4, 8, 8)).astype(np.float32)


RESIZES = {   # how each Resize form is expressed
    "nearest, asymmetric floor": (NEAREST, "upsample"),
    "linear, half_pixel (tf2onnx's bilinear)": (dict(mode="linear", coordinate_transformation_mode="half_pixel"),
                                                "linear"),
    "nearest, asymmetric round_prefer_ceil": (dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                                                   nearest_mode="round_prefer_ceil"), "linear"),
    "nearest, half_pixel round_prefer_ceil": (dict(mode="nearest", nearest_mode="round_prefer_ceil"), "upsample"),
    "cubic, align_corners": (dict(mode="cubic", coordinate_transformation_mode="align_corners"), "linear"),
}


@pytest.mark.parametrize("form", RESIZES)
def test_float_ir_equals_onnxruntime(form):
    """Nearest-neighbour by a whole factor copies codes (upsample); any other resize is a constant matrix per
    axis (linear, between transposes)."""
    attrs, kind = RESIZES[form]
    m = neck(resize=attrs)
    g = import_onnx(m)
    kinds = [op.kind for op in g.ops.values()]
    assert {"slice", "transpose", kind} <= set(kinds) and ("upsample" in kinds) == (kind == "upsample")
    x = _x(3, 1)
    got = evaluate(g, {"x": x})[g.outputs[0]]
    want = _ort(m, x)
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-5 * np.abs(want).max()


LINEAR = RESIZES["linear, half_pixel (tf2onnx's bilinear)"][0]


@pytest.mark.parametrize("target,vector,join,resize", [
    ("isaac", "auto", "Concat", NEAREST), ("raella", "auto", "Concat", NEAREST), ("isaac", "fp32", "Add", NEAREST),
    ("isaac", "auto", "Concat", LINEAR)])
def test_neck_compiles_ideal_equals_reference_and_float(target, vector, join, resize):
    """Metric: mean cosine to onnxruntime float over 6 samples > 0.99; integer form and float32 vector form
    (whose backend has no concat); nearest and bilinear upsampling."""
    m = neck(join, resize)
    c = compile_model(m, target, _x(16, 2), {"vector": vector})
    x = _x(6, 3)
    ref = dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))["y"]
    out = Machine(parse_program(print_program(c.program)), ideal=True).run({"x": x})["y"]
    assert np.array_equal(out, ref)
    a, b = ref.reshape(6, -1).astype(np.float64), _ort(m, x).reshape(6, -1).astype(np.float64)
    cos = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.mean() > 0.99, cos.mean()


def _with(m, name, **changes):
    for n in m.graph.node:
        if n.name == name:
            for k, v in changes.items():
                for a in n.attribute:
                    if a.name == k:
                        n.attribute.remove(a)
                        break
                n.attribute.append(helper.make_attribute(k, v))
    return m


@pytest.mark.parametrize("name,changes,why", [
    ("resize", {"coordinate_transformation_mode": "tf_crop_and_resize", "extrapolation_value": 1.5},
     r"^node resize \(Resize\): tf_crop_and_resize with an extrapolation_value of 1.5 \(not 0\) is not supported"),
    ("resize", {"keep_aspect_ratio_policy": "not_larger"},
     r"^node resize \(Resize\): keep_aspect_ratio_policy 'not_larger' is not supported"),
])
def test_forms_it_cannot_express_are_one_frontend_error(name, changes, why):
    with pytest.raises(FrontendError, match=why):
        import_onnx(_with(neck(), name, **changes))


def test_negative_slice_step_and_batch_split_are_frontend_errors():
    m = neck()
    m.graph.initializer[7].CopyFrom(_ints("sp", [-1, 2]))
    with pytest.raises(FrontendError, match=r"^node slice \(Slice\): step -1 on axis 2; only positive steps"):
        import_onnx(m)
    with pytest.raises(FrontendError, match=r"^node split \(Split\): splitting the batch axis is not supported"):
        import_onnx(_with(neck(), "split", axis=0))


def test_an_empty_split_part_joins_back_as_nothing():
    """Split [4, 0] (RotaryEmbedding's unrotated rest when it rotates every value) and the empty part concatenated
    back: the program computes the other part alone."""
    nodes = [N("Split", ["x", "sizes"], ["a", "rest"], axis=1), N("Sigmoid", ["a"], ["s"]),
             N("Concat", ["s", "rest"], ["y"], axis=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [_ints("sizes", [4, 0])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    c = compile_model(m, "isaac", x)
    out = Machine(parse_program(print_program(c.program)), ideal=True).run({"x": x})["y"]
    assert np.array_equal(out, dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))["y"])
    assert np.abs(out - 1 / (1 + np.exp(-x))).max() < 0.01


@pytest.mark.parametrize("a,extra", [
    (dict(mode="linear", antialias=1), ()),                                           # an anti-aliased downsample
    (dict(mode="linear", coordinate_transformation_mode="tf_crop_and_resize"),
     (numpy_helper.from_array(np.array([0, 0, 0.2, 0.1, 1, 1, 0.9, 1.2], np.float32), "roi"),)),   # past the edge: 0
])
def test_resize_antialias_and_crop_are_matrices_per_axis(a, extra):
    roi = "roi" if extra else ""
    nodes = [N("Resize", ["x", roi, "scales"], ["y"], **a)]
    inits = [numpy_helper.from_array(np.array([1, 1, 0.6, 0.5], np.float32), "scales"), *extra]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 10, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    x = np.random.default_rng(3).standard_normal((4, 2, 10, 8)).astype(np.float32)
    c = compile_model(m, "isaac", x)
    out = Machine(parse_program(print_program(c.program)), ideal=True).run({"x": x})["y"]
    assert np.array_equal(out, dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))["y"])
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert out.shape == want.shape
    assert np.abs(out - want).max() <= 0.05 * np.abs(want).max()


def test_a_crop_with_a_nonzero_extrapolation_value_is_refused():
    g = helper.make_graph([N("Resize", ["x", "roi", "scales"], ["y"], name="rs", mode="linear", extrapolation_value=2.0,
                            coordinate_transformation_mode="tf_crop_and_resize")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 10, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
                           numpy_helper.from_array(np.array([0, 0, 0, 0, 1, 1, 1, 1], np.float32), "roi")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(FrontendError, match=r"^node rs \(Resize\): tf_crop_and_resize with an extrapolation_value of 2 "):
        compile_model(m, "isaac", np.ones((2, 2, 10, 8), np.float32))
