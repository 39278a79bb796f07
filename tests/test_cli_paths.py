"""Paths a careless user gives both CLIs: outputs that collide with each other or with an input are one line
before any work and leave every file as it was; a write that fails leaves all the command's outputs as they
were; a preset name never leaves the presets folder. The CLIs run in this process (their main), which is
what the one-line promise is made of; tests/test_cli_errors.py runs them as commands."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler import cli as pimc_cli
from isa import AsmError, load_target
from isa.target import PRESETS
from runtime import cli as pimrun_cli
from test_cli_errors import CALIB, DIGITS, MODEL, program_text

SLOW_OK = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def one_error(capsys, code: int, prog: str, *needles) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith(f"{prog}: error: "), (code, err)
    for n in needles:
        assert n in err[0], (n, err[0])
    return err[0]


@pytest.fixture
def files(tmp_path):
    """A program, an input and old versions of outputs, with their bytes to compare after a run."""
    (tmp_path / "p.pimasm").write_text(program_text())
    np.save(tmp_path / "x.npy", np.load(DIGITS / "digits_test.npz")["x"][:3])
    np.savez(tmp_path / "x.npz", x=np.load(tmp_path / "x.npy"))
    for name in ("o.npy", "s.json", "r.json"):
        (tmp_path / name).write_text(f"old {name}")
    return tmp_path


def snapshot(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}


ALIASES = st.sampled_from(["{}", "./{}", "sub/../{}"])


@SLOW_OK
@given(case=st.sampled_from([("-o", "--stats", "o.npy"), ("--stats", "-o", "s.json"), ("-o", "--input", "x.npz"),
                             ("--stats", "--input", "x.npy"), ("-o", "program", "p.pimasm"),
                             ("--timeline", "-o", "o.npy"), ("--stats", "--reference", "x.npy")]),
       a=ALIASES, b=ALIASES)
def test_pimrun_refuses_colliding_paths_before_any_work(files, capsys, monkeypatch, case, a, b):
    monkeypatch.chdir(files)
    (files / "sub").mkdir(exist_ok=True)
    first, second, name = case
    args = {"program": "p.pimasm", "--input": "x.npy", first: a.format(name)}
    args[second] = b.format(name)
    before = snapshot(files)
    argv = [args.pop("program"), "--quiet"] + [v for k, p in args.items() for v in (k, p)]
    one_error(capsys, pimrun_cli.main(argv), "pimrun", "same file" if second.startswith(("-o", "--stats"))
              and first.startswith(("-o", "--stats", "--timeline")) else "overwrite the input")
    assert snapshot(files) == before


def test_pimrun_symlinked_output_onto_its_input_is_refused(files, capsys):
    os.symlink(files / "x.npy", files / "link.npy")
    before = snapshot(files)
    one_error(capsys, pimrun_cli.main([str(files / "p.pimasm"), "--input", str(files / "x.npy"), "-o",
                                       str(files / "link.npy")]), "pimrun", "overwrite the input")
    assert snapshot(files) == before


@pytest.mark.parametrize("case", [("-o", "m.onnx", "the model"), ("--report", "p.pimasm", "same file"),
                                  ("-o", "c.npy", "--calib"), ("--report", "v.npz", "--verify")])
def test_pimc_refuses_colliding_paths_before_any_work(tmp_path, capsys, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.onnx").write_bytes(MODEL.read_bytes())
    (tmp_path / "c.npy").write_bytes(CALIB.read_bytes())
    (tmp_path / "v.npz").write_bytes((DIGITS / "digits_test.npz").read_bytes())
    (tmp_path / "p.pimasm").write_text("old")
    option, path, needle = case
    argv = {"-o": "p.pimasm", "--calib": "c.npy", "--verify": "v.npz"} | {option: path}
    before = snapshot(tmp_path)
    one_error(capsys, pimc_cli.main(["./m.onnx", "--target", "isaac", "--quiet"]
                                    + [v for kv in argv.items() for v in kv]), "pimc", needle)
    assert snapshot(tmp_path) == before


def test_pimrun_failing_on_its_last_output_leaves_the_earlier_ones(files, capsys, monkeypatch):
    def full(path, obj):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(pimrun_cli, "write_json", full)
    before = snapshot(files)
    code = pimrun_cli.main([str(files / "p.pimasm"), "--input", str(files / "x.npy"), "-o", str(files / "o.npy"),
                            "--stats", str(files / "s.json"), "--quiet"])
    one_error(capsys, code, "pimrun", "No space left")
    assert snapshot(files) == before


def test_pimc_failing_on_the_report_leaves_the_old_program(tmp_path, capsys, monkeypatch):
    import runtime.io
    (tmp_path / "p.pimasm").write_text("old")

    def full(path, obj):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(runtime.io, "write_json", full)
    code = pimc_cli.main([str(MODEL), "-o", str(tmp_path / "p.pimasm"), "--target", "isaac", "--calib", str(CALIB),
                          "--report", str(tmp_path / "r.json"), "--quiet"])
    one_error(capsys, code, "pimc", "No space left")
    assert snapshot(tmp_path) == {"p.pimasm": b"old"}


@settings(max_examples=40, deadline=None)
@given(name=st.one_of(st.sampled_from(["../../x", "../targets/raella", "/tmp/x", "..", ".", "raella/",
                                       "./raella", "RAELLA", "raella\x00", " raella"]),
                      st.text(min_size=1, max_size=30).filter(lambda s: s not in ("isaac", "raella", "aras")
                                                              and not s.endswith(".toml"))))
def test_a_preset_name_never_leaves_the_presets_folder(name):
    with pytest.raises(AsmError, match="unknown target"):
        load_target(name)


def test_a_preset_name_pointing_at_a_real_toml_outside_is_refused(tmp_path):
    (tmp_path / "x.toml").write_text((PRESETS / "isaac.toml").read_text())
    rel = os.path.relpath(tmp_path / "x", PRESETS)
    with pytest.raises(AsmError, match="unknown target"):
        load_target(rel)
    assert load_target(tmp_path / "x.toml").name == "isaac"         # the same file given as a path loads


@pytest.mark.parametrize("plots", ["missing", "missing/deeper", "o.pimasm"])
def test_pimc_plots_into_a_folder_that_is_not_there_is_refused_before_any_work(tmp_path, capsys, plots):
    """--plots names an existing folder (the CLIs create none): a missing one, or a file, is one line and
    nothing is written or created."""
    (tmp_path / "o.pimasm").write_text("old")
    before = snapshot(tmp_path)
    code = pimc_cli.main([str(MODEL), "-o", str(tmp_path / "p.pimasm"), "--target", "isaac", "--calib", str(CALIB),
                          "--plots", str(tmp_path / plots), "--quiet"])
    one_error(capsys, code, "pimc", "--plots", "no such folder")
    assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["o.pimasm"]
