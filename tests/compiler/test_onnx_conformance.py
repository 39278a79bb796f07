"""ONNX conformance, fast subset: the onnx package's node cases of a few op modules (tests/compiler/
onnx_conformance.py builds and runs them), each with exactly the outcome conformance_expected.json records:
compiled, bit-exact and within tolerance, or refused with that message. The whole run is
`python tests/compiler/onnx_conformance.py`."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import onnx
import pytest

import onnx_conformance as conf

pytestmark = pytest.mark.skipif(onnx.__version__ != conf.ONNX_VERSION,
                                reason=f"the expected outcomes are recorded with onnx {conf.ONNX_VERSION}")

# onnx.backend.test.case.node module -> prefixes of its case names: common ops, each kind of refusal, and the
# cases that once ran wrong (1-D MatMul, training Dropout, constants over the batch axis, Expand of the batch,
# a softmax row far above another, a value on ThresholdedRelu's threshold); a few of each later addition
# (3-D windows, ops from their ONNX function, Hardmax, LpPool, Mod)
FAST = {"relu": ("test_relu",), "add": ("test_add",), "div": ("test_div_example",),
        "softmax": ("test_softmax_axis", "test_softmax_large_number"), "gemm": ("test_gemm_default",),
        "conv": ("test_conv_with",), "thresholdedrelu": ("test_thresholdedrelu_example",),
        "maxpool": ("test_maxpool_2d_", "test_maxpool_3d_default"), "matmul": ("test_matmul_",),
        "sigmoid": ("test_sigmoid",), "hardmax": ("test_hardmax",), "lppool": ("test_lppool_2d_default",),
        "swiglu": ("test_swiglu",), "mod": ("test_mod_mixed_sign_float32",),
        "dropout": ("test_dropout", "test_training_dropout"), "flatten": ("test_flatten_axis",),
        "layernormalization": ("test_layer_normalization_4d",), "expand": ("test_expand",),
        "attention": ("test_attention_3d_gqa", "test_attention_4d_causal"), "max": ("test_max_example",),
        "logsoftmax": ("test_logsoftmax_axis",), "convtranspose": ("test_convtranspose_pad",),
        "softplus": ("test_softplus",), "where": ("test_where",)}
PREFIXES = tuple(p for ps in FAST.values() for p in ps)


@lru_cache(maxsize=None)
def _cases():
    return conf.cases(list(FAST))


def _names():
    expected = conf.load_expected()
    return sorted(n for n in expected if n.startswith(PREFIXES))


def test_subset_is_not_empty():
    names = _names()
    assert len(names) >= 30
    assert any(conf.kind(conf.load_expected()[n]) == "ok" for n in names)
    assert any(conf.kind(conf.load_expected()[n]) == "refused" for n in names)


@pytest.mark.parametrize("name", _names())
def test_case(name):
    base = name.split("@")[0]
    case = _cases()[base]
    (got,) = [conf.outcome(m, feeds, exp) for n, m, feeds, exp in conf.variants(case) if n == name]
    assert got == conf.load_expected()[name]


def test_expected_holds_no_failure():
    """The suite's record has no wrong result, inexact run or internal error in it."""
    assert not conf.failures(conf.load_expected())


def test_rel_error_sees_a_wrong_value():
    ref = np.array([[1.0, -2.0], [0.5, 4.0]])
    assert conf.rel_error(ref, ref) == 0
    assert conf.rel_error(ref + np.array([[0, 0], [0, 0.4]]), ref) == pytest.approx(0.1)
    assert conf.rel_error(ref[:1], ref) == float("inf")


@pytest.mark.parametrize("message", [
    "operands could not be broadcast together with shapes (7,4,5) (7,)",
    "Input operand 1 has a mismatch in its core dimension 0, with gufunc signature (n?,k),(k,m?)->(n?,m?)",
    "KeyError: 'x'", "torch-jit-export: cannot convert opset 6 to 17: Input 1 is undefined!",
    "node computing 'c' (MatMul): constant right operand b of shape [7, 2, 8, 2] for a [N, 2, 2, 8]",
    "calibration input 'initial' has shape [1, 2], the model needs [N, ]"])
def test_raw_text_is_caught(message):
    assert conf.raw_text(message, {1, 2, 8})


def test_a_message_in_the_users_terms_passes():
    assert conf.raw_text("node computing 'y' (Add): constant y of shape [3, 4, 5] reaches the batch axis of x "
                         "[N, 4, 5] (one value per sample)", {3, 4, 5}) is None
    # a shape of the user's own that starts with the probe batch's size is theirs
    assert conf.raw_text("constant w of shape [7, 3] for x [N, 3]", {7, 3}) is None


def test_no_recorded_refusal_is_raw_text():
    assert not [r for r in conf.load_expected().values()
                if conf.kind(r) == "refused" and conf.RAW_PATTERNS.search(r)]
