"""Models onnxruntime's quantiser made keep their own numbers: weight codes, scales and zero points (per tensor
or per channel, int8 or uint8, symmetric or not), activation scales and zero points, QDQ or QOperator; and
pimc's ideal machine agrees with onnxruntime executing the same quantised model (benchmarks/qdq_agreement.py
builds the grid; docs/quantised_models.md holds the figures)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from benchmarks import qdq_agreement as qa
from passes.reference import dequantize_outputs, run_reference
from isa import parse_program, print_program
from runtime.machine import Machine

SAMPLES = 16


@pytest.fixture(scope="module")
def digits():
    src, calib, target, options = qa.digits_model()
    x = {"image": np.load(qa.DIGITS / "digits_test.npz")["x"][:SAMPLES]}
    return src, calib, target, options, x


@pytest.fixture(scope="module")
def block(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("block")
    return (*qa.block_model(tmp), qa.block_feeds(SAMPLES))


def _ideal_equals_reference(c, feeds, name):
    ideal = Machine(parse_program(print_program(c.program)), ideal=True).run(feeds)[name]
    ref = dequantize_outputs(c.graph, run_reference(c.graph, {k: v for k, v in feeds.items() if k in c.graph.inputs}))
    assert np.array_equal(ideal, ref[name])


def _quant(c):
    return next(r.report for r in c.records if r.name == "quantize")


def _weight_codes(q: onnx.ModelProto) -> list[np.ndarray]:
    return [numpy_helper.to_array(i) for i in q.graph.initializer
            if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) and len(i.dims) >= 2]


def _assert_weights_kept(c, q, p: qa.Point):
    """Every crossbar layer computes with the model's codes, zero points and scales: q["w"] + zero is one of the
    model's weight initializers (as it is, or transposed for a Gemm), the scale is the model's."""
    model = _weight_codes(q)
    layers = [op for op in c.graph.topo() if op.kind in ("conv", "linear")]
    assert layers and set(_quant(c).model_weights) == {op.name for op in layers}
    for op in layers:
        h = c.graph.tensors[op.inputs[1]].qhint
        w = op.attrs["q"]["w"].astype(np.int64)
        shaped = (-1,) + (1,) * (w.ndim - 1) if op.kind == "conv" else (1, -1)
        stored = w + h["zero"].reshape(shaped)
        assert any(m.size == stored.size and (np.array_equal(m.reshape(stored.shape), stored)
                                              or m.ndim == 2 and np.array_equal(m.T, stored)) for m in model), op.name
        assert len(h["scale"]) == 1 or (len(set(h["scale"].tolist())) > 1) == p.per_channel
        if p.weights == "int8":            # symmetric: no zero point
            assert h["dtype"] == "int8" and not np.any(h["zero"])


# reduce_range at the points where it changes the weights' range most (uint8 and symmetric int8, per channel)
DIGITS_GRID = qa.grid(reduce_range=(False,)) + [qa.Point(True, w, "uint8", f, True) for w in ("int8", "uint8")
                                                for f in qa.FORMATS]


@pytest.mark.parametrize("p", DIGITS_GRID, ids=lambda p: p.name.replace(" ", "-"))
def test_digits_grid_equals_onnxruntime(tmp_path, digits, p):
    """The digits CNN at every grid point: pimrun --ideal's output codes equal onnxruntime's, all of them."""
    src, calib, target, options, x = digits
    c, q, ours, theirs = qa.compare(src, calib, target, options, p, x, tmp_path)
    assert np.array_equal(ours, theirs), (np.mean(ours == theirs), np.abs(ours - theirs).max())
    _assert_weights_kept(c, q, p)
    _ideal_equals_reference(c, x, "logits")
    if p.weights == "uint8":           # a zero point on every layer's weights, and 9-bit integer weights somewhere
        assert all(m["nonzero_zero_points"] > 0 for m in _quant(c).model_weights.values())


@pytest.mark.parametrize("target,encoding", [("raella", "center_offset"), ("raella", "differential"),
                                             ("isaac", "unsigned")])
def test_weight_zero_points_through_every_encoding(tmp_path, digits, target, encoding):
    """uint8 per-channel weights (code - zero up to 9 bits): the encoding's center carries the zero point, so
    Center+Offset, Zero+Offset and offset binary all store 8-bit offsets and compute the model's products."""
    src, calib, _, _, x = digits
    p = qa.Point(True, "uint8", "uint8", "QDQ")
    c, q, ours, theirs = qa.compare(src, calib, target, {"encoding": encoding}, p, x, tmp_path)
    assert np.array_equal(ours, theirs)
    _ideal_equals_reference(c, x, "logits")
    ranges = [m["weight_range"] for m in _quant(c).model_weights.values()]
    assert max(hi - lo for lo, hi in ranges) <= 255 and min(lo for lo, _ in ranges) < -127 or \
        max(hi for _, hi in ranges) > 127      # the wide weights are exercised


def test_weight_zero_points_on_a_rewriting_target(tmp_path, digits):
    """ARAS's weight reuse shifts only layers whose weights fit 0..255 codes; uint8 weights keep their centers."""
    src, calib, _, _, x = digits
    p = qa.Point(False, "uint8", "uint8", "QOperator")
    c, _, ours, theirs = qa.compare(src, calib, "aras", {}, p, x, tmp_path)
    assert np.array_equal(ours, theirs)
    _ideal_equals_reference(c, x, "logits")


def _ort_tensor_codes(q: onnx.ModelProto, feeds, p: qa.Point) -> dict[str, np.ndarray]:
    """onnxruntime's codes (as u8: int8 + 128) of every tensor the model quantises: each QuantizeLinear's input
    (QDQ) or each QLinear op's output (QOperator), by the name pimc's graph gives that tensor."""
    q = onnx.ModelProto.FromString(q.SerializeToString())
    elem = onnx.TensorProto.UINT8 if p.activations == "uint8" else onnx.TensorProto.INT8
    if p.fmt == "QDQ":
        named = {n.input[0]: n.output[0] for n in q.graph.node if n.op_type == "QuantizeLinear"}
    else:
        named = {n.output[0]: n.output[0] for n in q.graph.node if n.op_type.startswith("QLinear")}
    for out in named.values():
        q.graph.output.append(onnx.helper.make_tensor_value_info(out, elem, None))
    s = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))
    return {k: outs[v].astype(np.int64) + (128 if outs[v].dtype == np.int8 else 0) for k, v in named.items()}


@pytest.mark.parametrize("p", [p for p in qa.grid(reduce_range=(False,))], ids=lambda p: p.name.replace(" ", "-"))
def test_attention_block_grid(tmp_path, block, p):
    """A self-attention block: every tensor up to the softmax (Q / K / V linears, their bias adds, Q K^T) holds
    onnxruntime's codes exactly; the softmax output and the block's output are within one code: both take
    round(floor(1 / y_scale) * p) + zero (onnxruntime's QLinearSoftmax rule, which it also puts in place of a
    QDQ Softmax), but pimc's exp is a 16-bit fixed-point table and rounds half up, onnxruntime's a float32
    table rounded half to even. The weights are the model's; ideal == the quantised reference."""
    src, calib, target, options, feeds = block
    c, q, ours, theirs = qa.compare(src, calib, target, options, p, feeds, tmp_path)
    _assert_weights_kept(c, q, p)
    _ideal_equals_reference(c, feeds, "y")
    assert np.abs(ours - theirs).max() <= 1
    want = _ort_tensor_codes(q, feeds, p)
    env = run_reference(c.graph, feeds, keep_all=True)
    soft = next(op.outputs[0] for op in c.graph.topo() if op.kind == "softmax")
    assert soft in want
    seen = 0
    for op in c.graph.topo():
        t = op.outputs[0]
        if t == soft:
            assert np.abs(env[t].astype(np.int64) - want[t]).max() <= 1
            break
        if t in want:
            assert np.array_equal(env[t].astype(np.int64), want[t]), t
            seen += 1
    assert seen >= 7       # three linears, three bias adds, Q K^T


@pytest.fixture(scope="module")
def ffn(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ffn")
    return (*qa.ffn_model(tmp), qa.ffn_feeds(SAMPLES))


@pytest.mark.parametrize("p", [p for p in qa.grid(reduce_range=(False,))], ids=lambda p: p.name.replace(" ", "-"))
def test_ffn_block_grid_equals_onnxruntime(tmp_path, ffn, p):
    """A feed-forward block (linear, exact GELU as Div / Erf / Add / Mul / Mul, linear, residual add): every
    tensor the model quantises and the output hold onnxruntime's codes, all of them. The model leaves the Div by
    sqrt 2 in float before Erf; pimc folds it into Erf's table (quantize.fold_prescales) instead of rounding it."""
    src, calib, target, options, feeds = ffn
    c, q, ours, theirs = qa.compare(src, calib, target, options, p, feeds, tmp_path)
    assert np.array_equal(ours, theirs), (np.mean(ours == theirs), np.abs(ours - theirs).max())
    _assert_weights_kept(c, q, p)
    _ideal_equals_reference(c, feeds, "y")
    want = _ort_tensor_codes(q, feeds, p)
    env = run_reference(c.graph, feeds, keep_all=True)
    stated = [op.outputs[0] for op in c.graph.topo() if op.outputs[0] in want]
    assert len(stated) >= 8 and any(op.attrs.get("prescale") for op in c.graph.topo() if op.kind == "unary")
    for t in stated:
        assert np.array_equal(env[t].astype(np.int64), want[t]), t


# per channel and per tensor, both formats, both activation types; the per-tensor asymmetric point is one of
# the eight that differ by one code (below)
RESNET_GRID = [qa.Point(True, "int8", "int8", "QDQ", False), qa.Point(True, "uint8", "uint8", "QOperator", False),
               qa.Point(False, "int8", "uint8", "QOperator", False), qa.Point(False, "int8_asym", "uint8", "QDQ", False)]


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resnet")
    return (*qa.resnet_model(tmp), qa.resnet_feeds(SAMPLES))


@pytest.mark.parametrize("p", RESNET_GRID, ids=lambda p: p.name.replace(" ", "-"))
def test_batchnorms_left_in_float_keep_the_models_codes(tmp_path, resnet, p):
    """A ResNet block quantised without pre-processing leaves each BatchNormalization in float between a
    quantised conv and the next quantisation (a Relu between them, or a residual Add after): the convs keep
    the model's codes and each BN becomes one table per channel from the conv's codes to the next ones
    (quantize.fold_channel_affines). Output codes equal onnxruntime's; at the per-tensor asymmetric point a
    few differ by one, from the convs' requantisation: a 31-bit fixed-point scale ratio where onnxruntime
    multiplies by the float32 one."""
    src, calib, target, options, feeds = resnet
    c, q, ours, theirs = qa.compare(src, calib, target, options, p, feeds, tmp_path)
    _assert_weights_kept(c, q, p)
    _ideal_equals_reference(c, feeds, q.graph.output[0].name)
    bns = sum(n.op_type == "BatchNormalization" for n in q.graph.node)
    tables = [op for op in c.graph.topo() if op.attrs.get("fn") == "channel_affine"]
    assert bns == 6 and len(tables) == bns and all(op.attrs["q"]["table"].shape[1] == 256 for op in tables)
    diff = np.abs(ours - theirs)
    if p.per_channel or p.weights == "int8":
        assert diff.max() == 0, (np.mean(diff == 0), diff.max())
    else:
        assert diff.max() <= 1 and np.mean(diff == 0) > 0.98
