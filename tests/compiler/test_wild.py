"""Models from the wild: what real exporters and real weights bring, each reproduced by a small seeded model.

- BatchNorm folded into convs by the exporter: a few output channels with near-zero (or all-zero) weights and
  large biases. Their bias would not fit the 32-bit accumulator at the usual weight scale; pimc raises that
  channel's scale and says so in the quantize report.
- A sentence transformer from another exporter: two int64 inputs with a symbolic `sequence_length`, four
  outputs (last_hidden_state, pooler_output, token_embeddings, sentence_embedding), a few hidden channels
  50-100x larger than the rest.
- Models quantised by onnxruntime with per-tensor weights, and with a weight zero point.
- Several unsupported ops, all named in one line.
Every model: compiles, the ideal machine equals the quantised reference bit for bit, and the outputs are close
to onnxruntime float (metric per test: mean cosine over samples, and max |diff| relative to the float max).
"""
from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.cli import main as pimc
from compiler.frontend import import_onnx
from compiler.pipeline import compile_model
from ir import CompileError, FrontendError
from ir.float_eval import evaluate
from isa import parse_program, print_program
from passes.reference import dequantize_outputs, run_reference
from runtime.cli import main as pimrun
from runtime.machine import Machine

try:
    from . import cnn_blocks as cb
    from . import transformer_blocks as tb
except ImportError:
    import cnn_blocks as cb
    import transformer_blocks as tb


def _ort(m, feeds) -> dict:
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def _cos(a, b) -> float:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(np.mean(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def _rel(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def _ladder(c, feeds) -> dict:
    """The quantised reference's outputs, after checking that the ideal machine equals it bit for bit."""
    ref = dequantize_outputs(c.graph, run_reference(c.graph, feeds))
    out = Machine(parse_program(print_program(c.program)), ideal=True).run(feeds)
    assert out.keys() == ref.keys()
    for k in ref:
        assert out[k].shape == ref[k].shape and np.array_equal(out[k], ref[k]), k
    return ref


def _quant_report(c):
    return next(r.report for r in c.records if r.name == "quantize")


# ---- BatchNorm folded into near-zero channels ------------------------------------------------------------

NEAR_ZERO = {   # layer -> {channel: weight factor}, {channel: bias}; channel 5 of the first conv is all zero
    0: ({2: 1e-7, 6: 1e-8}, {2: 2.5, 6: -1.5, 5: 0.8}),
    1: ({9: 1e-9}, {9: 4.0}),
    2: ({4: 1e-8}, {4: 1.5}),            # a logit row of the classifier (a 32-bit accumulator output)
}


def folded_cnn() -> onnx.ModelProto:
    """conv 3->8, conv 8->16, classifier: what an exporter writes after folding a BatchNorm whose gain is ~0
    into its conv (the weights shrink to nothing, the shift stays in the bias)."""
    n = cb.Net("folded_bn", seed=31)
    x = n.act(n.conv("x", 8))
    x = n.act(n.conv(x, 16))
    y = n.head(x)
    layers = [node for node in n.nodes if node.op_type in ("Conv", "Gemm")]
    inits = {i.name: i for i in n.inits}
    for k, node in enumerate(layers):
        w, b = (numpy_helper.to_array(inits[node.input[i]]).copy() for i in (1, 2))
        factors, biases = NEAR_ZERO[k]
        for c, f in factors.items():
            w[c] *= f
        if k == 0:
            w[5] = 0
        for c, v in biases.items():
            b[c] = v
        for i, v in ((1, w), (2, b)):
            inits[node.input[i]].CopyFrom(numpy_helper.from_array(v, node.input[i]))
    return n.model(y)


@lru_cache(maxsize=None)
def _folded(target):
    m = folded_cnn()
    return m, compile_model(m, target, cb.images(16, (3, 16, 16), 1))


def test_folded_batchnorm_channels_compile_and_are_reported():
    """The refusal ("bias does not fit 32 bits") is gone; the report names the raised channels per layer, the
    scale factor, their weight error, and the bound on what it changes (a 2^-23 * K share of |bias|)."""
    _, c = _folded("isaac")
    raised = _quant_report(c).raised_scales
    layers = [op.name for op in c.graph.topo() if op.kind in ("conv", "linear")]
    assert {layers.index(k): v["channels"] for k, v in raised.items()} == \
        {k: sorted(f) for k, (f, _) in NEAR_ZERO.items()}          # the all-zero channel costs nothing
    for name, r in raised.items():
        op = c.graph.ops[name]
        rows = c.graph.tensors[op.inputs[1]].data.size // len(op.attrs["q"]["bias"])
        assert all(f > 1 for f in r["scale_factor"])
        assert all(0 <= e <= 0.5 * f / 127 + 1e-12 for e, f in zip(r["weight_rms_error"], r["scale_factor"]))
        for b, bound in zip(r["bias"], r["output_error_bound"]):
            assert bound <= abs(b) * rows * 2.0 ** -23 * 1.01
        assert np.abs(op.attrs["q"]["bias"]).max() <= 1 << 30


@pytest.mark.parametrize("target", ["isaac", "raella"])
def test_folded_batchnorm_ideal_equals_reference_and_float(target):
    """Metric: logits against onnxruntime float on 32 images: mean cosine > 0.9999, max |diff| < 2% of the
    float's largest logit."""
    m, c = _folded(target)
    x = cb.images(32, (3, 16, 16), 2)
    (want,) = _ort(m, {"x": x}).values()
    (got,) = _ladder(c, {"x": x}).values()
    assert _cos(got, want) > 0.9999 and _rel(got, want) < 0.02, (_cos(got, want), _rel(got, want))


def test_weights_of_a_raised_channel_change_only_within_the_bound():
    """The pre-activation of a raised channel, computed in floats from the quantised weights and bias, stays
    within the reported bound of the float one, on the calibrated input grid."""
    _, c = _folded("isaac")
    op = next(op for op in c.graph.topo() if op.kind == "conv")
    r = _quant_report(c).raised_scales[op.name]
    q, sx = op.attrs["q"], c.graph.tensors[op.inputs[0]].scale
    W = folded_cnn().graph.initializer
    w = next(numpy_helper.to_array(i) for i in W if tuple(i.dims) == (8, 3, 3, 3)).astype(np.float64)
    b = next(numpy_helper.to_array(i) for i in W if tuple(i.dims) == (8,)).astype(np.float64)
    x = np.random.default_rng(0).integers(0, 256, (64, 27)) * sx           # any input the grid holds
    for ch, bound in zip(r["channels"], r["output_error_bound"]):
        sw = bound * 2 / (27 * 255 * sx)
        exact = x @ w[ch].reshape(-1) + b[ch]
        quantised = (x / sx) @ q["w"][ch].reshape(-1).astype(np.float64) * sx * sw + q["bias"][ch] * sx * sw
        assert np.abs(quantised - exact).max() <= bound * 1.001


# ---- a sentence transformer with a symbolic sequence length -------------------------------------------------

OUTPUTS = ("last_hidden_state", "pooler_output", "token_embeddings", "sentence_embedding")
OUTLIERS = {3: 12.0, 17: 29.0}      # hidden channel -> layernorm gain factor (60x and 100x the median)


class _OutlierBuilder(tb.Builder):
    """Layernorm gains with a few channels 50-100x the rest, which is how BERT's outlier channels arise."""

    def layernorm(self, x, decomposed=False):
        y = super().layernorm(x, decomposed)
        gamma = next(i for i in self.inits if i.name == self.nodes[-1].input[1])
        g = numpy_helper.to_array(gamma).copy()
        for c, f in OUTLIERS.items():
            g[c] *= f
        gamma.CopyFrom(numpy_helper.from_array(g, gamma.name))
        return y


def sentence_transformer(outliers: bool = False, seed: int = 5) -> onnx.ModelProto:
    """input_ids, attention_mask int64 [batch_size, sequence_length] (no token types) -> the four outputs of an
    optimum-style export: last_hidden_state, pooler_output (tanh of a dense layer on the first token, read
    by a Gather along the tokens), token_embeddings (the same tensor again) and the masked-mean, L2-normalised
    sentence_embedding."""
    b = (_OutlierBuilder if outliers else tb.Builder)(seed)
    ids = "input_ids"
    word = b.node("Gather", [b.weight(tb.VOCAB, tb.HIDDEN, scale=0.5), ids])
    pos_ids = b.node("Slice", [b.const(np.arange(512, dtype=np.int64)[None], "pos"), b.i64(0), b.dim(ids, 1),
                               b.i64(1)])
    x = b.layernorm(b.node("Add", [word, b.node("Gather", [b.weight(32, tb.HIDDEN, scale=0.5), pos_ids])]))
    bias = b.mask_bias("where", x)
    for _ in range(tb.LAYERS):
        x = b.layer(x, bias, False, "erf", "pow")
    first = b.node("Gather", [x, b.const(np.array(0, np.int64), "i")], axis=1)
    outs = dict(zip(OUTPUTS, (x, b.node("Tanh", [b.linear(first, tb.HIDDEN, tb.HIDDEN, gemm=True)]), x,
                              b.pool_normalise(x, False, None))))
    for k, v in outs.items():
        b.nodes.append(helper.make_node("Identity", [v], [k], name=k))
    seq = ["batch_size", "sequence_length"]
    ins = [helper.make_tensor_value_info(n, TensorProto.INT64, seq) for n in ("input_ids", "attention_mask")]
    shapes = [seq + [tb.HIDDEN], ["batch_size", tb.HIDDEN]] * 2
    graph = helper.make_graph(b.nodes, "sentence_transformer", ins,
                              [helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in zip(OUTPUTS, shapes)],
                              b.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    return m


def _sentences(n, seed, seq=tb.SEQ) -> dict:
    s = tb.sentences(n, seed)
    feeds = {k: s[k] for k in ("input_ids", "attention_mask")}
    if seq > tb.SEQ:        # longer sentences: padding at the end
        feeds = {k: np.pad(v, ((0, 0), (0, seq - tb.SEQ))) for k, v in feeds.items()}
    return feeds


@lru_cache(maxsize=None)
def _st():
    m = sentence_transformer()
    return m, compile_model(m, "isaac", _sentences(16, 1))


def test_symbolic_sequence_length_needs_a_size():
    with pytest.raises(FrontendError, match=r"input input_ids: dimension 1 \('sequence_length'\) is symbolic; "
                                            r"give its size \(pimc --shape input_ids=\.\.\.\)"):
        import_onnx(sentence_transformer())


def test_symbolic_sequence_length_from_the_calibration_data():
    """Four outputs under the model's names, the ideal machine equal to the reference bit for bit. Metric:
    mean cosine to onnxruntime float per output, > 0.99 (the pooler's tanh of a dense layer > 0.98)."""
    m, c = _st()
    assert [c.graph.tensors[i].shape for i in c.graph.inputs] == [(tb.SEQ,), (tb.SEQ,)]
    feeds = _sentences(12, 7)
    got, want = _ladder(c, feeds), _ort(m, feeds)
    assert list(got) == list(OUTPUTS) == list(want)
    for k in OUTPUTS:
        assert got[k].shape == want[k].shape
        assert _cos(got[k], want[k]) > (0.98 if k == "pooler_output" else 0.99), (k, _cos(got[k], want[k]))
    assert np.array_equal(got["last_hidden_state"], got["token_embeddings"])


def test_shape_option_sets_the_sequence_length():
    """--shape input_ids=12 also sizes attention_mask (same dim_param); a float IR at that length equals
    onnxruntime; calibration data of another length is refused."""
    m = sentence_transformer()
    g = import_onnx(m, {"input_ids": (12,)})
    assert [g.tensors[i].shape for i in g.inputs] == [(12,), (12,)]
    feeds = _sentences(5, 3, seq=12)
    got, want = evaluate(g, feeds), _ort(m, feeds)
    for t, k in zip(g.outputs, g.output_names):
        assert _rel(got[t], want[k]) < 1e-5, k
    with pytest.raises(CompileError, match=r"calibration input 'input_ids' has shape \[16, 8\], the model needs "
                                           r"\[N, 12\]"):
        compile_model(m, "isaac", _sentences(16, 1), shapes={"input_ids": (12,)})


@pytest.mark.parametrize("shapes,why", [
    ({"input_ids": (8, 2)}, r"input input_ids: the given shape \[N, 8, 2\] does not fit the model's "
                            r"\[N, sequence_length\]"),
    ({"token_type_ids": (8,)}, r"a shape is given for 'token_type_ids', which is not an input of the model"),
    ({"input_ids": (8,), "attention_mask": (9,)}, r"dimension 'sequence_length' is given as both 8 and 9"),
    ({"input_ids": (0,)}, r"input input_ids: dimension 1 has size 0"),
])
def test_bad_shapes_are_frontend_errors(shapes, why):
    with pytest.raises(FrontendError, match=why):
        import_onnx(sentence_transformer(), shapes)


def test_a_fixed_dimension_cannot_be_overridden():
    with pytest.raises(FrontendError, match=r"input x: the given shape \[N, 3, 8, 8\] does not fit the model's "
                                            r"\[N, 3, 16, 16\]"):
        import_onnx(cb.resnet_basic(), {"x": (3, 8, 8)})


def test_cli_shape_option_output_names_and_run_shape_check(tmp_path, capsys):
    """pimc --shape, and --verify on int64 inputs; pimrun writes the four outputs under the model's names, and refuses run data whose
    sequence length differs from the compiled one in one line naming the input and both shapes."""
    model, prog = tmp_path / "st.onnx", tmp_path / "st.pimasm"
    onnx.save(sentence_transformer(), model)
    np.savez(tmp_path / "calib.npz", **_sentences(8, 1, seq=12))
    np.savez(tmp_path / "run.npz", **_sentences(3, 2, seq=12))
    np.savez(tmp_path / "short.npz", **_sentences(3, 2))
    assert pimc([str(model), "-o", str(prog), "--target", "isaac", "--calib", str(tmp_path / "calib.npz"),
                 "--shape", "input_ids=12", "--shape", "attention_mask=12", "--verify", str(tmp_path / "run.npz"),
                 "--report", str(tmp_path / "r.json"), "--quiet"]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["verification"]["ideal_equals_reference"] is True
    assert pimrun([str(prog), "--input", str(tmp_path / "run.npz"), "-o", str(tmp_path / "y.npz"), "--ideal",
                   "--quiet"]) == 0
    y = np.load(tmp_path / "y.npz")
    assert list(y.files) == list(OUTPUTS) and y["last_hidden_state"].shape == (3, 12, tb.HIDDEN)
    capsys.readouterr()
    assert pimrun([str(prog), "--input", str(tmp_path / "short.npz"), "-o", str(tmp_path / "z.npz")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["pimrun: error: input 'input_ids' has shape [3, 8], the program expects [N, 12]"]
    assert not (tmp_path / "z.npz").exists()
    assert pimc([str(model), "-o", str(tmp_path / "bad.pimasm"), "--calib", str(tmp_path / "calib.npz"),
                 "--shape", "input_ids=twelve"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "pimc: error: --shape takes NAME=D1,D2,... (the sizes after the batch), got 'input_ids=twelve'"]


# mean cosine to onnxruntime float that each output must exceed, per attention placement (measured, seeded)
OUTLIER_COSINE = {"retransformer": {"last_hidden_state": 0.99, "pooler_output": 0.965, "sentence_embedding": 0.97},
                  "digital": {k: 0.995 for k in OUTPUTS}}


@pytest.mark.parametrize("attention,smooth", [("retransformer", "layernorm"), ("digital", "layernorm"),
                                              ("retransformer", "all")])
def test_outlier_hidden_channels(attention, smooth):
    """Two hidden channels 60x and 100x the median (layernorm gains): SmoothQuant smooths every layernorm-fed
    linear layer's input (without it the hidden states fall to cosine 0.955 in this model); ideal ==
    reference. What error is left comes mostly from ReTransformer's run-time-written X, the layer input with
    its outliers in one per-tensor 8-bit scale: with digital attention every output is above 0.995.
    --smooth all also smooths the pooler's input, and passes by ReTransformer's per-head products."""
    m = sentence_transformer(outliers=True)
    c = compile_model(m, "isaac", _sentences(16, 1), {"attention": attention, "smooth": smooth})
    feeds = _sentences(12, 7)
    want = _ort(m, feeds)
    h = np.abs(want["last_hidden_state"]).reshape(-1, tb.HIDDEN).max(0)
    ratio = h[list(OUTLIERS)] / np.median(h)
    assert 50 < ratio.min() and ratio.max() < 110, ratio                 # the outliers are there
    # per layer the quant shared by Q, K, V and the FFN-in one; with "all" also the attention dense's, the
    # FFN-out's and the pooler's
    assert len(_quant_report(c).smoothed) == 2 * tb.LAYERS + (2 * tb.LAYERS + 1 if smooth == "all" else 0)
    got = _ladder(c, feeds)
    for k in OUTPUTS:
        want_cos = OUTLIER_COSINE[attention].get(k, OUTLIER_COSINE[attention]["last_hidden_state"])
        assert _cos(got[k], want[k]) > want_cos, (k, _cos(got[k], want[k]))


# ---- models quantised by onnxruntime ----------------------------------------------------------------------

class _Reader:
    def __init__(self, x):
        self.it = iter([{"x": x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.it, None)


@pytest.mark.parametrize("fmt,weights", [("QDQ", "per_tensor"), ("QOperator", "per_tensor"),
                                         ("QDQ", "zero_point"), ("QOperator", "zero_point")])
def test_onnxruntime_quantised_per_tensor_and_weight_zero_point(tmp_path, fmt, weights):
    """quantize_static with per-tensor int8 weights, or per-tensor uint8 weights (a nonzero weight zero point):
    the model's activation quantisation is used; ideal == reference; metric: mean cosine to float > 0.999
    and to onnxruntime's own int8 run > 0.999, max |diff| to it < 3% of the float max."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    m = cb.resnet_basic()
    onnx.save(m, tmp_path / "f.onnx")
    quantize_static(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), _Reader(cb.images(16, (3, 16, 16), 1)),
                    quant_format=getattr(QuantFormat, fmt), per_channel=False, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QUInt8 if weights == "zero_point" else QuantType.QInt8)
    q = onnx.load(tmp_path / "q.onnx")
    zps = [numpy_helper.to_array(i) for i in q.graph.initializer if i.name.endswith("zero_point")
           and any(i.name.startswith(w.name) for w in m.graph.initializer)]
    assert zps and all(z.size == 1 for z in zps)                                   # per tensor
    assert any(int(z) != 0 for z in zps) == (weights == "zero_point")
    c = compile_model(tmp_path / "q.onnx", "isaac")
    x = cb.images(16, (3, 16, 16), 2)
    (got,) = _ladder(c, {"x": x}).values()
    (want,), (theirs,) = _ort(m, {"x": x}).values(), _ort(q, {"x": x}).values()
    assert _cos(got, want) > 0.999 and _cos(got, theirs) > 0.999, (_cos(got, want), _cos(got, theirs))
    assert np.abs(got - theirs).max() < 0.03 * np.abs(want).max()


# ---- unsupported ops --------------------------------------------------------------------------------------

def test_every_unsupported_op_is_named_in_one_line(tmp_path, capsys):
    """Two nodes of one unsupported op and one of another, found before any is converted: one error line names
    both ops and all three nodes (pimc prints it as its one line)."""
    n = cb.Net("several", c=1, hw=4)
    x = n.node("Relu", ["x"])
    flat = lambda: n.node("Reshape", [x, n.const(np.array([0, 4, 4], np.int64), "s")])
    a = n.node("Det", [flat()])
    m = n.model(n.node("Add", [n.node("RandomUniformLike", [n.node("Det", [flat()])]), a]))
    parts = ["Det", "RandomUniformLike"] + [node.name for node in m.graph.node
                                            if node.op_type in ("Det", "RandomUniformLike")]
    assert len(parts) == 5
    with pytest.raises(FrontendError) as e:
        import_onnx(m)
    msg = str(e.value)
    assert "\n" not in msg and all(p in msg for p in parts), msg
    assert "Relu" not in msg and "Reshape" not in msg and "Add" not in msg
    onnx.save(m, tmp_path / "m.onnx")
    np.save(tmp_path / "c.npy", cb.images(4, (1, 4, 4), 0))
    capsys.readouterr()
    assert pimc([str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.pimasm"), "--calib", str(tmp_path / "c.npy")]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"pimc: error: {msg}"


def test_blocked_weight_quantisation_is_refused_naming_the_node():
    """A case that is not supported (opset 21 blocked weight quantisation): one line naming the node and what."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.integers(-127, 128, (8, 4, 3, 3)).astype(np.int8), "w_q")
    s = numpy_helper.from_array(rng.uniform(0.01, 0.02, (8, 2, 3, 3)).astype(np.float32), "w_scale")
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "w_scale"], ["w"], name="dq_w", axis=1, block_size=2),
             helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    g = helper.make_graph(nodes, "blocked", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 8, 8])], [w, s])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    onnx.checker.check_model(m, full_check=True)
    with pytest.raises(FrontendError) as e:
        import_onnx(m)
    assert str(e.value) == "node dq_w (DequantizeLinear): blocked quantisation is not supported"


@pytest.mark.parametrize("index,axis", [(0, 1), (-1, 1), (2, 2), (-3, 3)])
def test_gather_of_one_position_of_an_activation(index, axis):
    """x[:, 0] and its kin on any non-batch axis (negative indices too): the float IR equals onnxruntime
    exactly; an index outside the axis is a one-line error naming the node."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 5, 6])
    idx = numpy_helper.from_array(np.array(index, np.int64), "i")
    node = helper.make_node("Gather", ["x", "i"], ["y"], name="pick", axis=axis)
    m = helper.make_model(helper.make_graph([node], "pick", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                                               None)], [idx]),
                          opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": np.random.default_rng(0).normal(0, 1, (3, 4, 5, 6)).astype(np.float32)}
    g = import_onnx(m)
    assert np.array_equal(evaluate(g, feeds)[g.outputs[0]], _ort(m, feeds)["y"])
    idx.CopyFrom(numpy_helper.from_array(np.array(index + 7 if index >= 0 else index - 7, np.int64), "i"))
    m.graph.initializer[0].CopyFrom(idx)
    with pytest.raises(FrontendError, match=r"^node pick \(Gather\): index -?\d+ is outside an axis of size \d$"):
        import_onnx(m)


def test_question_mark_dimensions_are_not_one_shared_size():
    """paddle2onnx writes '?' for every unknown size (PaddleOCR's classifier: x [N, 3, ?, ?]); each takes its
    own size from the calibration data (48 x 192 there) instead of all taking the first one's."""
    w = numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "q",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "?", "?"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, "?", "?"])], [w])
    g = import_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]),
                    data_shapes={"x": (3, 6, 10)})
    assert g.tensors["x"].shape == (3, 6, 10) and g.tensors[g.outputs[0]].shape == (2, 4, 8)


def test_a_scalar_input_is_named():
    """silero-vad's ONNX files take the sample rate as a rank-0 int64 input `sr`."""
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "s",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
                               helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    with pytest.raises(FrontendError, match=r"^input sr is a scalar \(rank 0\); every input needs a batch axis"):
        import_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)]))
