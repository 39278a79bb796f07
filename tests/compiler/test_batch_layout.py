"""compiler/batch_layout.py: attention written with the batch axis merged into the heads (the dynamo
exporter's SDPA, found on MiniLM-L6) or moved inward by a Transpose (PaddleOCR's SVTR recogniser: q, k, v
sliced off the first axis of [3, batch, heads, seq, d]; its opset-12 Softmax upgraded to Flatten / Softmax /
Reshape). The float IR equals onnxruntime, the program runs bit for bit like the quantised reference and close
to float, whatever the batch; what cannot be mapped is one FrontendError naming the node or output."""
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
S, H, D = 6, 2, 4
E = H * D


def _ints(name, v):
    return numpy_helper.from_array(np.array(v, np.int64), name)


def _weights(rng, *names, cols=E):
    return [numpy_helper.from_array((rng.standard_normal((E, cols)) / np.sqrt(E)).astype(np.float32), n)
            for n in names]


def _model(nodes, inits, out="y", opset=13, out_shape=("N", S, E)):
    graph = helper.make_graph(nodes, "attn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", S, E])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, list(out_shape))], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    return m


def _heads(p):
    """p [N, S, E] -> [N, H, S, D]"""
    return [N("Reshape", [p, "sdh"], [p + "4"]), N("Transpose", [p + "4"], [p + "h"], perm=[0, 2, 1, 3])]


def merged_sdpa() -> onnx.ModelProto:
    """q, k, v [N, H, S, D] reshaped to [N x H, S, D] three ways: a literal -1, Shape arithmetic giving the
    batch times H (7 x 2 under the frontend's probe), and back by a target read off Shape of the merged
    product; a scale, a constant additive bias over [S, S] and softmax on the merged scores."""
    rng = np.random.default_rng(3)
    mask = (rng.standard_normal((S, S)) * 0.5).astype(np.float32)       # e.g. a relative-position bias
    inits = _weights(rng, "wq", "wk", "wv", "wo") + [
        _ints("sdh", [0, S, H, D]), _ints("m1", [-1, S, D]), _ints("sd", [S, D]), _ints("h", [H]),
        _ints("i0", [0]), _ints("i1", [1]), _ints("i2", [2]), _ints("i9", [9]), _ints("neg1", [-1]),
        _ints("se", [0, 0, E]), numpy_helper.from_array(np.float32(1 / np.sqrt(D)), "scale"),
        numpy_helper.from_array(mask, "mask")]
    nodes = [N("MatMul", ["x", w], [p]) for p, w in (("q", "wq"), ("k", "wk"), ("v", "wv"))]
    for p in "qkv":
        nodes += _heads(p)
    nodes += [
        N("Reshape", ["qh", "m1"], ["qm"], name="merge_q"),
        N("Reshape", ["kh", "m1"], ["km"]), N("Transpose", ["km"], ["kt"], perm=[0, 2, 1]),
        N("Shape", ["vh"], ["vs"]), N("Slice", ["vs", "i0", "i1"], ["vb"]), N("Slice", ["vs", "i1", "i2"], ["vhh"]),
        N("Mul", ["vb", "vhh"], ["bh"]), N("Concat", ["bh", "sd"], ["vtarget"], axis=0),
        N("Reshape", ["vh", "vtarget"], ["vm"], name="merge_v"),
        N("MatMul", ["qm", "kt"], ["s0"]), N("Mul", ["s0", "scale"], ["s1"]), N("Add", ["s1", "mask"], ["s2"]),
        N("Softmax", ["s2"], ["p"], axis=-1), N("MatMul", ["p", "vm"], ["o"]),
        N("Shape", ["o"], ["os"]), N("Slice", ["os", "i1", "i9"], ["osd"]),
        N("Concat", ["neg1", "h", "osd"], ["otarget"], axis=0),
        N("Reshape", ["o", "otarget"], ["oh"], name="unmerge"), N("Transpose", ["oh"], ["ot"], perm=[0, 2, 1, 3]),
        N("Reshape", ["ot", "se"], ["oc"]), N("MatMul", ["oc", "wo"], ["y"])]
    return _model(nodes, inits)


def moved_qkv() -> onnx.ModelProto:
    """One [E, 3E] product reshaped to [N, S, 3, H, D] and transposed to [3, N, H, S, D]: q by Slice +
    Squeeze, k by Gather, v by Slice + Squeeze of axis 0; softmax as opset 12's upgrade writes it (Flatten
    at axis 3, Softmax, Reshape back to the scores' Shape)."""
    rng = np.random.default_rng(4)
    inits = _weights(rng, "wqkv", cols=3 * E) + _weights(rng, "wo") + [
        _ints("five", [0, -1, 3, H, D]), _ints("i0", [0]), _ints("i1", [1]), _ints("i2", [2]), _ints("i3", [3]),
        _ints("one", 1), _ints("se", [0, 0, E]), numpy_helper.from_array(np.float32(1 / np.sqrt(D)), "scale")]
    nodes = [N("MatMul", ["x", "wqkv"], ["qkv"]), N("Reshape", ["qkv", "five"], ["qkv5"]),
             N("Transpose", ["qkv5"], ["t"], perm=[2, 0, 3, 1, 4], name="move"),
             N("Slice", ["t", "i0", "i1", "i0"], ["q1"]), N("Squeeze", ["q1", "i0"], ["q"]),
             N("Gather", ["t", "one"], ["k"], axis=0),
             N("Slice", ["t", "i2", "i3", "i0"], ["v1"]), N("Squeeze", ["v1", "i0"], ["v"]),
             N("Mul", ["q", "scale"], ["qs"]), N("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
             N("MatMul", ["qs", "kt"], ["s"]), N("Shape", ["s"], ["ss"]),
             N("Flatten", ["s"], ["s2"], axis=3), N("Softmax", ["s2"], ["p2"], axis=-1),
             N("Reshape", ["p2", "ss"], ["p"]), N("MatMul", ["p", "v"], ["o"]),
             N("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3]), N("Reshape", ["ot", "se"], ["oc"]),
             N("MatMul", ["oc", "wo"], ["y"])]
    return _model(nodes, inits)


MODELS = {"merged": merged_sdpa, "moved": moved_qkv}


def _x(n, seed):
    return np.random.default_rng(seed).standard_normal((n, S, E)).astype(np.float32)


def _ort(m, x):
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("which", MODELS)
def test_float_ir_equals_onnxruntime_and_keeps_the_batch_first(which):
    m = MODELS[which]()
    g = import_onnx(m)
    for n in (1, 3):
        x = _x(n, n)
        got = evaluate(g, {"x": x})[g.outputs[0]]
        want = _ort(m, x)
        assert got.shape == want.shape and np.abs(got - want).max() < 1e-5 * np.abs(want).max()


@pytest.mark.parametrize("which,target,vector", [("merged", "isaac", "auto"), ("moved", "isaac", "auto"),
                                                 ("merged", "raella", "fp32"), ("moved", "isaac", "fp32")])
def test_compiles_ideal_equals_reference_and_float(which, target, vector):
    """Metric: mean cosine to onnxruntime float over 5 samples > 0.99, in the integer and the float32 vector
    forms; the batch run one sample at a time gives the same."""
    m = MODELS[which]()
    c = compile_model(m, target, _x(16, 5), {"vector": vector})
    x = _x(5, 6)
    ref = dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))["y"]
    prog = parse_program(print_program(c.program))
    out = Machine(prog, ideal=True).run({"x": x})["y"]
    assert np.array_equal(out, ref)
    one = np.concatenate([Machine(prog, ideal=True).run({"x": x[i:i + 1]})["y"] for i in range(5)])
    assert np.array_equal(one, out)
    a, b = out.reshape(5, -1).astype(np.float64), _ort(m, x).reshape(5, -1).astype(np.float64)
    cos = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.mean() > 0.99, cos.mean()


def _cut(m, last: str, out_shape, extra=()):
    """m's nodes up to the one computing `last` (plus `extra` nodes), with `last`'s output as the model's."""
    nodes = []
    for n in m.graph.node:
        nodes.append(n)
        if last in n.output:
            break
    return _model(nodes + list(extra), list(m.graph.initializer), out=last if not extra else extra[-1].output[0],
                  out_shape=out_shape)


def test_an_output_left_merged_or_moved_is_refused():
    with pytest.raises(FrontendError, match=r"^output qm has the batch axis merged with the 1 axis\(es\) after it; "
                                            r"a program's outputs keep the batch axis first"):
        import_onnx(_cut(merged_sdpa(), "qm", ["NH", S, D]))
    with pytest.raises(FrontendError, match=r"^output t has the batch axis moved to axis 1;"):
        import_onnx(_cut(moved_qkv(), "t", [3, "N", H, S, D]))


def test_ops_it_cannot_map_are_one_frontend_error():
    m = _cut(merged_sdpa(), "qm", ["NH", S, D], [N("LpNormalization", ["qm"], ["z"], axis=-1, name="lp")])
    with pytest.raises(FrontendError, match=r"^node lp \(LpNormalization\): LpNormalization of qm \(the batch axis "
                                            r"merged with the 1 axis\(es\) after it by an earlier Reshape"):
        import_onnx(m)
    m = _cut(merged_sdpa(), "qm", ["NH", S, D], [N("Softmax", ["qm"], ["z"], axis=0, name="sm")])
    with pytest.raises(FrontendError, match=r"^node sm \(Softmax\): axis 0, the batch axis of qm"):
        import_onnx(m)
    m = _cut(moved_qkv(), "t", [3, H, S, D], [N("Squeeze", ["t", "i1"], ["z"], name="sq")])
    with pytest.raises(FrontendError, match=r"^node sq \(Squeeze\): axis 1, the batch axis of t"):
        import_onnx(m)


def test_a_constant_that_varies_along_the_merged_batch_axis_is_refused():
    m = merged_sdpa()
    m.graph.initializer.append(numpy_helper.from_array(np.ones((2, S, S), np.float32), "mask"))
    m.graph.initializer.remove(next(i for i in m.graph.initializer if i.name == "mask"))
    with pytest.raises(FrontendError, match=r"\(Add\): constant mask of shape \[2, 6, 6\] varies along axis 0, "
                                            r"which holds the batch"):
        import_onnx(m)


def test_a_reshape_that_splits_a_sample_axis_into_the_batch_is_refused():
    inits = [_ints("t", [-1, 4])]
    m = _model([N("Reshape", ["x", "t"], ["y"], name="r")], inits, out_shape=["M", 4])
    with pytest.raises(FrontendError, match=r"^node r \(Reshape\): cannot reshape \[N, 6, 8\] to \[-1, 4\]: the "
                                            r"batch axis would take part of a sample's axis"):
        import_onnx(m)
