"""Frontend coverage on real CNN families and exporter idioms (models from cnn_blocks.py), and on models
that onnxruntime's static quantiser made (QDQ and QOperator), through the whole verification ladder:

  float IR == onnxruntime (1e-4)  ->  quantised reference  ==  ideal machine on the program text (bit for bit)
  quantised outputs ~ onnxruntime float (8-bit error bounds, measured)
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from compiler.frontend import import_onnx
from compiler.pipeline import compile_model
from passes.reference import dequantize_outputs, run_reference
from ir import FrontendError
from ir.float_eval import evaluate
from isa import parse_program, print_program
from runtime.machine import Machine

try:
    from . import cnn_blocks as cb
except ImportError:
    import cnn_blocks as cb

MODELS_DIR = Path(__file__).parents[2] / "examples" / "digits"
SOFTMAX_OUT = {"pools", "alexnet_style", "legacy_opset11"}


def _shape(m):
    return tuple(d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim[1:])


def _ort(m, x) -> dict:
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    if m.graph.input[0].type.tensor_type.shape.dim[0].HasField("dim_value"):    # a fixed batch-1 export
        runs = [sess.run(None, {"x": x[i:i + 1]}) for i in range(len(x))]
        return {k: np.concatenate([r[j] for r in runs]) for j, k in enumerate(names)}
    return dict(zip(names, sess.run(None, {"x": x})))


@lru_cache(maxsize=None)
def case(name):
    """(model, test batch, onnxruntime float outputs on it by name)."""
    m = cb.MODELS[name]()
    x = cb.images(16, _shape(m), seed=2)
    return m, x, _ort(m, x)


@lru_cache(maxsize=None)
def compiled(name, target="isaac"):
    m, _, _ = case(name)
    return compile_model(m, target, cb.images(16, _shape(m), seed=1))


def _quantised(c, x) -> dict:
    return dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))


def _cos(a, b):
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(np.mean(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


# ---- the ladder on every model --------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(cb.MODELS))
def test_frontend_float_ir_matches_onnxruntime(name):
    m, x, want = case(name)
    g = import_onnx(m)
    got = evaluate(g, {"x": x})
    assert g.output_names == list(want)
    for t, k in zip(g.outputs, g.output_names):
        assert got[t].shape == want[k].shape
        np.testing.assert_allclose(got[t], want[k], rtol=1e-4, atol=1e-4 * np.abs(want[k]).max())


@pytest.mark.parametrize("name", list(cb.MODELS))
def test_ideal_machine_equals_quantised_reference(name):
    c = compiled(name)
    _, x, _ = case(name)
    ref = dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))
    out = Machine(parse_program(print_program(c.program)), ideal=True).run({"x": x})
    assert out.keys() == ref.keys()
    for k in ref:
        assert out[k].shape == ref[k].shape and np.array_equal(out[k], ref[k]), k


@pytest.mark.parametrize("name", list(cb.MODELS))
def test_quantised_outputs_close_to_onnxruntime(name):
    """8-bit activations, per-channel int8 weights, min/max calibration on 16 images. Softmax outputs are
    codes of step 1/255, so they are judged in those steps; logits by cosine, both raw and after removing
    the batch mean (the part that tells samples apart; random-weight nets share a large common part)."""
    _, x, wants = case(name)
    qs = _quantised(compiled(name), x)
    assert qs.keys() == wants.keys()
    for k, want in wants.items():
        q = qs[k]
        assert q.shape == want.shape
        assert _cos(q, want) > 0.999
        if name in SOFTMAX_OUT:
            err = np.abs(q - want) * 255
            assert err.mean() < 1.0 and err.max() < 5.0, (err.mean(), err.max())
        else:
            mu = want.mean(axis=0)
            assert _cos(q - mu, want - mu) > 0.95


@pytest.mark.parametrize("name", ["resnet_basic", "mobilenet_v2", "shufflenet_unit"])
def test_raella_ideal_equals_reference(name):
    """Differential 2T2R weights on 512x512 crossbars: the ideal machine still equals the reference, and the
    reference equals isaac's (quantisation does not depend on the target)."""
    c = compiled(name, "raella")
    _, x, _ = case(name)
    ref = dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))
    out = Machine(parse_program(print_program(c.program)), ideal=True).run({"x": x})
    isaac = _quantised(compiled(name), x)
    for k in ref:
        assert np.array_equal(out[k], ref[k]) and np.array_equal(isaac[k], ref[k])


# ---- frontend specifics ---------------------------------------------------------------------------------

def test_legacy_models_carry_old_versions():
    ms = {k: cb.MODELS[k]() for k in ("legacy_opset8", "legacy_opset9", "legacy_opset10", "legacy_opset11")}
    got = {k: (m.ir_version, m.opset_import[0].version) for k, m in ms.items()}
    assert got == {"legacy_opset8": (3, 8), "legacy_opset9": (4, 9), "legacy_opset10": (5, 10),
                   "legacy_opset11": (6, 11)}
    assert len(ms["legacy_opset8"].graph.input) == 1 + len(ms["legacy_opset8"].graph.initializer)


def test_batchnorm_and_bias_adds_fold_into_their_crossbar_op():
    kinds = [op.kind for op in import_onnx(cb.resnet_basic()).ops.values()]
    assert kinds.count("conv") == 6 and "mul" not in kinds and kinds.count("add") == 2    # the two residual adds
    kinds = [op.kind for op in import_onnx(cb.densenet_block()).ops.values()]
    assert kinds.count("mul") == 4                          # BN on a concat output stays a per-channel affine
    g = import_onnx(cb.matmul_mlp())                        # MatMul + Add(bias) -> one linear with a bias
    kinds = [op.kind for op in g.topo()]
    assert kinds.count("add") == 1 and kinds[1:3] == ["add", "linear"]                   # the add is x - 0.5
    assert len(next(op for op in g.topo() if op.kind == "linear").inputs) == 3


def test_batchnorm_not_folded_when_the_conv_output_is_used_again():
    """conv -> BN -> Relu, and the same conv output added back later: folding BN would change the Add's input."""
    n = cb.Net("bn_shared", seed=20)
    c = n.conv("x", 8)
    y = n.add(n.act(n.bn(c)), c)
    m = n.model(n.head(y))
    g = import_onnx(m)
    assert [op.kind for op in g.ops.values()].count("mul") == 1
    x = cb.images(4, (3, 16, 16), 3)
    np.testing.assert_allclose(evaluate(g, {"x": x})[g.outputs[0]], *_ort(m, x).values(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op,k,s,p,cip,hw", [
    ("MaxPool", 2, 2, 1, 0, 9),         # ceil-mode's last window would start in the end padding: dropped
    ("MaxPool", 2, 3, 0, 0, 9),
    ("AveragePool", 3, 3, 1, 0, 8),
    ("AveragePool", 2, 2, 0, 1, 9),     # count_include_pad with a ceil overhang but no explicit pads
    ("AveragePool", 3, 2, 1, 0, 9),
])
def test_ceil_mode_pools_follow_onnxruntime(op, k, s, p, cip, hw):
    n = cb.Net("ceil", c=2, hw=hw)
    m = n.model(n.pool("x", op, k=k, stride=s, pad=p, ceil_mode=1, **({"count_include_pad": cip} if cip else {})))
    x = cb.images(3, (2, hw, hw), 4)
    g = import_onnx(m)
    got, (want,) = evaluate(g, {"x": x})[g.outputs[0]], _ort(m, x).values()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_ceil_mode_with_count_include_pad_and_pads_is_refused():
    n = cb.Net("ceil", c=2, hw=8)
    m = n.model(n.pool("x", "AveragePool", k=3, stride=2, pad=1, ceil_mode=1, count_include_pad=1))
    with pytest.raises(FrontendError, match=r"averagepool\d+ \(AveragePool\): ceil_mode with count_include_pad"):
        import_onnx(m)


def test_unsupported_ops_are_all_named_in_one_message():
    with pytest.raises(FrontendError) as e:
        import_onnx(cb.unsupported_model())
    msg = str(e.value)
    for part in ("TopK", "NonMaxSuppression", "com.microsoft.Trilu", "NonZero: supported on constants only",
                 "topk", "nonmaxsuppression", "nonzero", "trilu_ms"):
        assert part in msg, part
    assert "Relu" not in msg and "Reshape" not in msg and "Cast" not in msg


# ---- models quantised by onnxruntime ----------------------------------------------------------------------

class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over an array, one sample at a time."""

    def __init__(self, name, x):
        self.it = iter([{name: x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.it, None)

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def _quantize(src: Path, dst: Path, reader, fmt, per_channel):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    quantize_static(str(src), str(dst), reader, quant_format=getattr(QuantFormat, fmt), per_channel=per_channel,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return onnx.load(dst)


def _ops(m):
    return {f"{n.domain}.{n.op_type}" if n.domain else n.op_type for n in m.graph.node}


@pytest.mark.parametrize("fmt,per_channel", [("QDQ", False), ("QDQ", True), ("QOperator", False),
                                             ("QOperator", True)])
def test_onnxruntime_quantised_digits(tmp_path, fmt, per_channel):
    """The model's own quantisation, no calibration: bit-exact ladder and accuracy on all 540 test images."""
    calib = np.load(MODELS_DIR / "digits_calib.npy")
    q = _quantize(MODELS_DIR / "digits_cnn.onnx", tmp_path / "q.onnx", _Reader("image", calib), fmt, per_channel)
    if fmt == "QOperator":
        assert {"QLinearConv", "com.microsoft.QGemm", "com.microsoft.QLinearGlobalAveragePool"} <= _ops(q)
    else:
        assert "QuantizeLinear" in _ops(q) and "QLinearConv" not in _ops(q)
    c = compile_model(tmp_path / "q.onnx", "isaac")
    qin = next(n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "image")
    scale = onnx.numpy_helper.to_array(next(i for i in q.graph.initializer if i.name == qin.input[1]))
    assert c.graph.tensors["image"].scale == pytest.approx(float(scale), rel=1e-7)    # the model's, not ours
    test = np.load(MODELS_DIR / "digits_test.npz")
    ref = dequantize_outputs(c.graph, run_reference(c.graph, {"image": test["x"]}))["logits"]
    out = Machine(parse_program(print_program(c.program)), ideal=True).run({"image": test["x"]})["logits"]
    assert np.array_equal(out, ref)
    assert (ref.argmax(1) == test["y"]).mean() >= 0.985


MS = "com.microsoft."


@pytest.mark.parametrize("name,fmt,ops,calib", [
    ("resnet_basic", "QOperator", {MS + "QLinearAdd", MS + "QGemm"}, False),
    ("inception_block", "QOperator", {MS + "QLinearConcat"}, False),
    ("se_block", "QOperator", {MS + "QLinearSigmoid", MS + "QLinearMul"}, False),   # x * quantised constant
    ("shufflenet_unit", "QOperator", {MS + "QLinearAveragePool", MS + "QLinearAdd", MS + "QLinearConcat"}, False),
    ("pools", "QOperator", {MS + "QLinearAveragePool", MS + "QLinearSoftmax"}, False),
    # the model quantises only after its float input preprocessing (Reshape, Sub): that part is calibrated
    ("matmul_mlp", "QOperator", {"QLinearMatMul", MS + "QLinearAdd", MS + "QLinearLeakyRelu"}, True),
    ("resnet_basic", "QDQ", {"BatchNormalization", "QuantizeLinear"}, False),       # BN left between Q/DQ
    ("shufflenet_unit", "QDQ", {"Transpose", "QuantizeLinear"}, False),
])
def test_onnxruntime_quantised_families(tmp_path, name, fmt, ops, calib):
    """Families through quantize_static (BatchNormalization unfolded, contrib QLinear* ops): the model's own
    quantisation (calibration only where it has none), bit-exact ladder, and outputs as close to float as
    onnxruntime's own int8 execution of the same model."""
    m, x, wants = case(name)
    (want,) = wants.values()
    onnx.save(m, tmp_path / "f.onnx")
    q = _quantize(tmp_path / "f.onnx", tmp_path / "q.onnx", _Reader("x", cb.images(16, _shape(m), 1)), fmt, True)
    assert ops <= _ops(q)
    c = compile_model(tmp_path / "q.onnx", "isaac", cb.images(16, _shape(m), 1) if calib else None)
    ref = dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))
    out = Machine(parse_program(print_program(c.program)), ideal=True).run({"x": x})
    k = next(iter(ref))
    assert np.array_equal(out[k], ref[k])
    (theirs,) = _ort(q, x).values()
    if name in SOFTMAX_OUT:
        assert np.abs(ref[k] - theirs).max() <= 2 / 255
        return
    mu = want.mean(axis=0)
    ours_cos, theirs_cos = _cos(ref[k] - mu, want - mu), _cos(theirs - mu, want - mu)
    assert ours_cos > theirs_cos - 0.02 and ours_cos > 0.9, (ours_cos, theirs_cos)
    if _ort_int8_exact():
        assert np.abs(ref[k] - theirs).max() < 0.03 * np.abs(want).max()


def _ort_int8_exact() -> bool:
    """onnxruntime's u8 x s8 kernels on x86 without VNNI add products pairwise in saturating int16
    (onnxruntime's reason for reduce_range), so its own int8 outputs are exact only on VNNI machines or
    off x86; elsewhere the test keeps only the comparison with float."""
    import platform
    if platform.machine() not in ("x86_64", "AMD64"):
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags
