"""Mutated models: compiling one must succeed or raise one of the typed errors, never anything else."""
from __future__ import annotations

import numpy as np
import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.pipeline import compile_model
from ir import CompileError, FrontendError
from isa import AsmError
from runtime.errors import RuntimeFault
from tests.conftest import DIGITS

TYPED = (FrontendError, CompileError, AsmError, RuntimeFault)
MODEL_BYTES = (DIGITS / "digits_cnn.onnx").read_bytes()
CALIB = np.load(DIGITS / "digits_calib.npy")[:8]


def _compile(model):
    try:
        compile_model(model, "isaac", CALIB)
    except TYPED:
        pass


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, len(MODEL_BYTES) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_byte_mutations(tmp_path_factory, edits):
    data = bytearray(MODEL_BYTES)
    for pos, val in edits:
        data[pos] = val
    path = tmp_path_factory.mktemp("m") / "m.onnx"
    path.write_bytes(bytes(data))
    _compile(path)


def mutate(data):
    """The digits CNN with one structural edit, or None for a truncation that no longer parses."""
    m = onnx.load_from_string(MODEL_BYTES)
    g = m.graph
    kind = data.draw(st.sampled_from(["drop_node", "rename_input", "attr", "op_type", "weight", "truncate"]))
    i = data.draw(st.integers(0, len(g.node) - 1))
    node = g.node[i]
    if kind == "drop_node":
        del g.node[i]
    elif kind == "rename_input" and node.input:
        node.input[data.draw(st.integers(0, len(node.input) - 1))] = data.draw(st.sampled_from(["nope", "image", ""]))
    elif kind == "attr" and node.attribute:
        a = node.attribute[data.draw(st.integers(0, len(node.attribute) - 1))]
        if a.ints:
            a.ints[0] = data.draw(st.integers(-3, 9))
        elif a.type == onnx.AttributeProto.INT:
            a.i = data.draw(st.integers(-3, 70))
    elif kind == "op_type":     # ops undefined on part of the real line give NaN on the calibration data
        node.op_type = data.draw(st.sampled_from(["Relu", "Sigmoid", "MaxPool", "Foo", "Add", "Conv", "Log", "Sqrt",
                                                  "Acos", "Atanh", "Reciprocal", "Exp", "Softmax"]))
    elif kind == "weight":
        init = g.initializer[data.draw(st.integers(0, len(g.initializer) - 1))]
        arr = onnx.numpy_helper.to_array(init).copy()
        arr.flat[data.draw(st.integers(0, arr.size - 1))] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e30,
                                                                                        3e38, 0.0]))
        init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    else:
        try:
            return onnx.load_from_string(m.SerializeToString()[: data.draw(st.integers(0, len(MODEL_BYTES)))])
        except Exception:
            return None
    return m


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_structural_mutations(data):
    m = mutate(data)
    if m is not None:
        _compile(m)


def _one_line_or_success(capsys, code: int, prog: str) -> None:
    err = capsys.readouterr().err.splitlines()
    if code == 0:
        assert err == [], err
    else:   # 1 and one line: a NumPy warning would be an internal error (2) or an extra line
        assert code == 1 and len(err) == 1 and err[0].startswith(f"{prog}: error: "), (code, err)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.data())
def test_the_clis_give_one_line_or_a_result_on_mutated_models(tmp_path, capsys, data):
    """Through pimc's and pimrun's own main (what the one-line promise is made of): a mutated model compiles
    and its program runs, or one of them prints exactly one error line and exits 1."""
    from compiler.cli import main as pimc
    from runtime.cli import main as pimrun
    m = mutate(data)
    if m is None:
        return
    model, prog, calib = tmp_path / "m.onnx", tmp_path / "p.pimasm", tmp_path / "c.npy"
    model.write_bytes(m.SerializeToString())
    np.save(calib, CALIB)
    prog.unlink(missing_ok=True)
    capsys.readouterr()
    code = pimc([str(model), "-o", str(prog), "--target", "isaac", "--calib", str(calib), "--quiet"])
    _one_line_or_success(capsys, code, "pimc")
    if code == 0:
        _one_line_or_success(capsys, pimrun([str(prog), "--input", str(calib), "--quiet"]), "pimrun")
