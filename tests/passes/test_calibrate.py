"""Calibration names the node where a NaN begins (float evaluation on the calibration data), with its cause;
NumPy's warnings on the way there stay silent."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest

from compiler.pipeline import compile_model
from ir import CompileError
from tests.conftest import DIGITS

CALIB = np.load(DIGITS / "digits_calib.npy")[:8]


def _model(edit):
    m = onnx.load(DIGITS / "digits_cnn.onnx")
    edit(m.graph)
    return m


def _relu_to(op):
    def edit(g):
        next(n for n in g.node if n.op_type == "Relu").op_type = op
    return edit


def _nan_weight(g):
    init = next(i for i in g.initializer if i.name == "fc1.weight")
    a = onnx.numpy_helper.to_array(init).copy()
    a.flat[5] = np.nan
    init.CopyFrom(onnx.numpy_helper.from_array(a, init.name))


@pytest.mark.parametrize("edit, needle", [
    (_relu_to("Log"), r"node /f/f\.2/Relu \(log\) gives NaN on the calibration data: an operation undefined"),
    (_relu_to("Acos"), r"node /f/f\.2/Relu \(acos\) gives NaN on the calibration data: an operation undefined"),
    (_nan_weight, r"node /fc1/Gemm \(linear\) gives NaN on the calibration data: its constant fc1\.weight\S* holds "
                  r"NaN or infinity"),
])
def test_the_node_where_a_nan_begins_is_named_without_a_warning(edit, needle):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)      # as the CLIs do: a warning would end the compile as a bug
        with pytest.raises(CompileError, match=needle):
            compile_model(_model(edit), "isaac", CALIB)
