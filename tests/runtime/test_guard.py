"""How the CLIs end: one short line whatever the error quotes, and NumPy's warnings never as extra lines."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isa import AsmError
from runtime import cli as pimrun_cli
from runtime.guard import MAX_LINE, guarded, one_line
from test_cli_errors import program_text


class Bar:
    def close(self):
        pass


@settings(max_examples=50, deadline=None)
@given(text=st.text(min_size=1, max_size=3000), repeat=st.integers(1, 400))
def test_an_error_line_is_one_line_and_short(text, repeat):
    line = one_line(AsmError(text * repeat))
    assert "\n" not in line and "\r" not in line and len(line) <= MAX_LINE


@pytest.mark.parametrize("make", [
    lambda: np.array([1e300]).astype(np.float32),             # overflow encountered in cast
    lambda: np.array([np.nan]).astype(np.int64),              # invalid value encountered in cast
    lambda: np.float64(1) / np.array([0.0]),                  # divide by zero
    lambda: np.array([3e38], np.float32) * np.float32(10),    # overflow in multiply
])
def test_a_numpy_warning_ends_the_command_as_one_line(capsys, make):
    def body():
        make()
        return 0
    assert guarded("pimrun", (AsmError,), Bar(), body) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("pimrun: internal error: RuntimeWarning"), err


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(["code", "data", "target"]), size=st.sampled_from([10_000, 300_000]),
       char=st.sampled_from(["x", "%", "[", "9", "é"]))
def test_a_huge_bad_line_is_not_echoed(tmp_path_factory, capsys, where, size, char):
    d = tmp_path_factory.mktemp("big")
    text = program_text()
    junk = char * size
    if where == "code":
        text = text.replace("\nmvm ", f"\nmvm {junk} ", 1)
    elif where == "data":
        text = text.replace(".data\n", f".data\n@{junk} = i8[1] {junk}\n", 1)
    else:
        text = text.replace(".target rows = ", f".target rows = {junk} ", 1)
    (d / "p.pimasm").write_text(text)
    np.save(d / "x.npy", np.zeros((1, 1, 16, 16), np.float32))
    assert pimrun_cli.main([str(d / "p.pimasm"), "--input", str(d / "x.npy"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) <= MAX_LINE + 40, len(err)
