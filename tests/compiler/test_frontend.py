"""Loading a model: tensors kept in an external data file come from the model's folder, whatever the current
folder holds; a location outside it, or a range past the file's end, is one FrontendError."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from compiler.frontend import import_onnx, load_onnx
from ir import FrontendError


def external_model(folder, w: np.ndarray, location="weights.bin"):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", w.shape[0]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", w.shape[1]])
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y],
                          [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "m.onnx"
    os.chdir(folder)            # onnx looks for an existing data file relative to the current folder
    onnx.save_model(m, path, save_as_external_data=True, location=location, size_threshold=0)
    return path


def weight(g) -> np.ndarray:
    return next(t.data for t in g.tensors.values() if t.is_const)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), cwd=st.sampled_from(["decoy", "root"]))
def test_external_data_is_read_beside_the_model_not_in_the_current_folder(tmp_path_factory, monkeypatch, seed, cwd):
    base = tmp_path_factory.mktemp("ext")
    monkeypatch.chdir(base)
    (base / "model").mkdir()
    (base / "decoy").mkdir()
    w = np.random.default_rng(seed).normal(size=(6, 4)).astype(np.float32)
    path = external_model(base / "model", w)
    external_model(base / "decoy", -w)            # a same-named weights.bin with other values
    monkeypatch.chdir(base / "decoy" if cwd == "decoy" else "/")
    assert np.array_equal(weight(import_onnx(path, data_shapes={"x": (6,)})), w)


@pytest.mark.parametrize("how", ["outside", "missing", "short"])
def test_bad_external_data_is_one_frontend_error(tmp_path, monkeypatch, how):
    monkeypatch.chdir(tmp_path)
    w = np.ones((6, 4), np.float32)
    if how == "outside":
        (tmp_path / "m").mkdir()
        np.ones(24, np.float32).tofile(tmp_path / "evil.bin")
        path = external_model(tmp_path / "m", w)
        m = onnx.load_model(path, load_external_data=False)
        for e in m.graph.initializer[0].external_data:
            if e.key == "location":
                e.value = "../evil.bin"
        onnx.save_model(m, path)
    else:
        path = external_model(tmp_path, w)
        if how == "missing":
            (tmp_path / "weights.bin").unlink()
        else:
            (tmp_path / "weights.bin").write_bytes(b"\0" * 10)
    with pytest.raises(FrontendError, match="m.onnx"):
        load_onnx(path)
