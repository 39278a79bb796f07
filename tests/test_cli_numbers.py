"""Numbers given on the command line and in data files: out of range (NaN, infinite, negative, absurd), not
numbers at all (strings, objects, pickles), or refused by onnxruntime under --verify: one line, exit 1, no file."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from compiler import cli as pimc_cli
from runtime import cli as pimrun_cli
from test_cli_errors import CALIB, DIGITS, MODEL, program_text
from test_cli_paths import one_error

BAD = st.sampled_from(["nan", "inf", "-inf", "-1", "-1e-9", "1e9", "1e400"])


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    (d / "p.pimasm").write_text(program_text())
    np.save(d / "x.npy", np.load(DIGITS / "digits_test.npz")["x"][:2])
    return d


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(["--noise", "--seed", "--chunk", "--workers"]), value=BAD | st.sampled_from(
    ["0", "-5", str(2 ** 70)]))
def test_pimrun_numbers_out_of_range_are_one_line(run_files, capsys, option, value):
    if option == "--noise" and value in ("0", "1e9") or option in ("--seed", "--chunk", "--workers") and value in (
            "nan", "inf", "-inf", "-1e-9", "1e9", "1e400"):
        return      # noise 0 is allowed; argparse refuses a non-integer itself (exit 2, its own usage line)
    if option == "--seed" and value == "0":
        return
    out = run_files / "o.npy"
    code = pimrun_cli.main([str(run_files / "p.pimasm"), "--input", str(run_files / "x.npy"), "-o", str(out),
                            f"{option}={value}", "--quiet"])
    one_error(capsys, code, "pimrun", option)
    assert not out.exists()


@settings(max_examples=7, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=BAD)
def test_pimc_error_budget_out_of_range_is_one_line(tmp_path, capsys, value):
    code = pimc_cli.main([str(MODEL), "-o", str(tmp_path / "p.pimasm"), "--calib", str(CALIB), "--quiet",
                          f"--error-budget={value}"])
    one_error(capsys, code, "pimc", "error_budget")
    assert not (tmp_path / "p.pimasm").exists()


@pytest.mark.parametrize("make, needle", [
    (lambda x: np.savez(x, image=np.array([object()] * 3, dtype=object)), "cannot be read"),
    (lambda x: np.savez(x, image=np.full((3, 1, 16, 16), "7")), "<U1 values"),
    (lambda x: np.save(x, np.zeros((3, 1, 16, 16), np.complex64)), "complex64 values"),
    (lambda x: np.save(x, np.zeros((3, 1, 16, 16), np.float32)), "zero throughout"),
    (lambda x: np.save(x, np.ones((3, 1, 16, 16), np.int8)), "int8 values"),
    (lambda x: np.savez(x, image=np.zeros(3, dtype=[("a", "f4")])), "values, not real numbers"),
])
def test_pimc_calibration_that_is_not_usable_is_one_line(tmp_path, capsys, make, needle):
    calib = tmp_path / "c.npz"
    make(calib)
    calib = calib if calib.exists() else tmp_path / "c.npz.npy"
    code = pimc_cli.main([str(MODEL), "-o", str(tmp_path / "p.pimasm"), "--calib", str(calib), "--quiet"])
    one_error(capsys, code, "pimc", needle)
    assert not (tmp_path / "p.pimasm").exists()


def test_onnxruntime_refusing_the_model_under_verify_is_one_compile_error(tmp_path):
    from compiler.verify import onnx_float
    from ir import CompileError
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    w = numpy_helper.from_array(np.arange(12, dtype=np.int64).reshape(4, 3) - 5, "w")     # onnxruntime: T differs
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [w])
    path = tmp_path / "m.onnx"
    path.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    with pytest.raises(CompileError, match="^--verify: onnxruntime cannot run the model: ") as e:
        onnx_float(str(path), {"x": np.ones((2, 4), np.float32)})
    assert "\n" not in str(e.value)


def test_int64_weights_on_a_float_model_are_one_frontend_error(tmp_path):
    from compiler.pipeline import compile_model
    from ir import FrontendError
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    w = numpy_helper.from_array(np.arange(12, dtype=np.int64).reshape(4, 3) - 5, "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g", [x], [y], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(FrontendError, match=r"node mm \(MatMul\): inputs of different types \(x float32, w int64\)"):
        compile_model(m, "isaac", np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.sampled_from([np.nan, np.inf, -np.inf]), at=st.integers(0, 19),
       dtype=st.sampled_from([np.float32, np.float64, np.float16]))
def test_a_reference_that_is_not_finite_is_one_line_before_the_run(run_files, capsys, value, at, dtype):
    """--reference values that are NaN or infinite would make the mean cosine NaN (NumPy's invalid-value
    warning): refused, naming the file, before any work."""
    ref = np.ones((2, 10), dtype)
    ref.flat[at] = value
    np.save(run_files / "ref.npy", ref)
    out = run_files / "o.npy"
    code = pimrun_cli.main([str(run_files / "p.pimasm"), "--input", str(run_files / "x.npy"), "-o", str(out),
                            "--reference", str(run_files / "ref.npy"), "--quiet"])
    one_error(capsys, code, "pimrun", "--reference", "1 NaN or infinite")
    assert not out.exists()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(["--input", "--verify", "--calib"]), value=st.sampled_from([4e38, -1e39, 1e300]),
       at=st.integers(0, 2 * 256 - 1))
def test_float64_data_beyond_float32_is_one_line(run_files, capsys, where, value, at):
    """A value no float32 holds, in a float64 data file: the cast for the program or onnxruntime would
    overflow (NumPy's warning, or onnxruntime's error blamed on the model); refused naming the file."""
    x = np.load(run_files / "x.npy").astype(np.float64)
    x.flat[at] = value
    np.save(run_files / "wide.npy", x)
    out = run_files / "o.out"
    if where == "--input":
        code, prog = pimrun_cli.main([str(run_files / "p.pimasm"), "--input", str(run_files / "wide.npy"), "-o",
                                      str(out), "--quiet"]), "pimrun"
    else:
        data = {"--calib": str(CALIB), "--verify": None} | {where: str(run_files / "wide.npy")}
        code, prog = pimc_cli.main([str(MODEL), "-o", str(out), "--target", "isaac", "--quiet"]
                                   + [v for k, p in data.items() if p for v in (k, p)]), "pimc"
    one_error(capsys, code, prog, "wide.npy", "beyond float32")
    assert not out.exists()


def _layernorm_model(path, scale: float):
    """x [N, 4, 16] -> MatMul (weights of size `scale`) -> LayerNormalization: float32 in the vector unit."""
    rng = np.random.default_rng(0)
    w = (rng.normal(size=(16, 16)) * scale).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("LayerNormalization", ["h", "g", "b"],
                                                                         ["y"], axis=-1, name="ln")],
        "ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 16])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.ones(16, np.float32), "g"),
         numpy_helper.from_array(np.zeros(16, np.float32), "b")])
    import onnx
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    np.save(path.with_suffix(".npy"), rng.normal(size=(4, 4, 16)).astype(np.float32))


@pytest.mark.parametrize("scale", [1e19, 1e25])
def test_float32_overflow_of_the_compiled_form_is_one_line_naming_the_node(tmp_path, capsys, scale):
    """Calibration runs in float64 (no overflow there); the vector unit's float32 variance of values near 1e20
    overflows: one CompileError naming the node, not NumPy's warning as an internal error."""
    _layernorm_model(tmp_path / "m.onnx", scale)
    code = pimc_cli.main([str(tmp_path / "m.onnx"), "-o", str(tmp_path / "p.pimasm"), "--target", "raella",
                          "--calib", str(tmp_path / "m.npy"), "--quiet"])
    one_error(capsys, code, "pimc", "node ln (layernorm): overflow encountered")
    assert not (tmp_path / "p.pimasm").exists()


@pytest.mark.parametrize("factor", [1e19, 1e30, 1e300])
def test_float32_overflow_at_run_time_is_one_line_naming_the_instruction(tmp_path, capsys, factor):
    """A program whose accumulator scales were edited to huge values: the float32 results overflow when it
    runs; one RuntimeFault naming the line."""
    from isa import print_program, read_program
    _layernorm_model(tmp_path / "m.onnx", 1.0)
    assert pimc_cli.main([str(tmp_path / "m.onnx"), "-o", str(tmp_path / "p.pimasm"), "--target", "raella",
                          "--calib", str(tmp_path / "m.npy"), "--quiet"]) == 0
    prog = read_program(tmp_path / "p.pimasm")
    scale = next(c for name, c in prog.consts.items() if name.endswith(".scale"))
    scale.data[...] = factor
    (tmp_path / "q.pimasm").write_text(print_program(prog))
    code = pimrun_cli.main([str(tmp_path / "q.pimasm"), "--input", str(tmp_path / "m.npy"), "-o",
                            str(tmp_path / "y.npy"), "--quiet"])
    line = one_error(capsys, code, "pimrun", "q.pimasm:", "overflow encountered")
    assert line.split(": ")[3] in ("accf", "vlayernorm") and not (tmp_path / "y.npy").exists()
