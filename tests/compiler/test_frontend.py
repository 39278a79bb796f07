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


def old_gemm(list_w: bool, define_w: bool = True) -> onnx.ModelProto:
    """An opset-6, IR-3 model x [N, 3] -> MatMul(x, w) whose initializer w is (or is not) listed among its inputs."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    ins = [x] + ([helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 2])] if list_w else [])
    inits = [numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2), "w")] if define_w else []
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "old", ins,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 6)], ir_version=3)


@pytest.mark.parametrize("list_w", [True, False])
def test_an_old_opset_model_is_converted_whether_or_not_it_lists_its_initializers(list_w):
    g = import_onnx(old_gemm(list_w))
    assert g.inputs == ["x"] and np.array_equal(weight(g), np.arange(6).reshape(3, 2))


def test_an_undefined_tensor_is_named_in_the_models_terms():
    with pytest.raises(FrontendError, match=r"^node computing 'y' \(MatMul\) reads 'w', which no graph input, "
                                            r"initializer or earlier node defines$"):
        import_onnx(old_gemm(False, define_w=False))


def test_a_conversion_the_converter_refuses_is_one_line_without_its_source_location():
    m = old_gemm(True)
    m.graph.node[0].op_type = "Gemm"      # opset 6's Gemm takes three inputs
    with pytest.raises(FrontendError, match=r"^old: onnx's version converter cannot bring opset 6 to 17 \(Gemm in "
                                            r"opset version 6 can only broadcast between 3 inputs\)$"):
        import_onnx(m)
