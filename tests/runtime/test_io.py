"""Outputs of one command: collisions refused before any work, all committed together or none, no temp file
left by a failure or a signal. Paths are generated the way a careless user writes them (./x, a/../x, a symlink
or hard link to x, trailing folders)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.io import check_paths, committed_together, write_arrays, write_json, write_text

ROOT = Path(__file__).resolve().parents[2]
NAMES = st.sampled_from(["a.npy", "b.json", "c", "d.npz"])
SPELLINGS = st.sampled_from(["plain", "dot", "updown", "symlink", "hardlink", "absolute"])


def spell(base: Path, name: str, how: str) -> Path:
    """`name` in `base` as one way of writing it; links are made on demand (they name the same file)."""
    target = base / name
    if how == "dot":
        return base / "." / name
    if how == "updown":
        return base / "sub" / ".." / name
    if how == "absolute":
        return target.resolve()
    if how in ("symlink", "hardlink"):
        target.touch()
        link = base / f"{how}-{len(list(base.iterdir()))}-{name}"
        (os.symlink if how == "symlink" else os.link)(target, link)
        return link
    return target


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.tuples(NAMES, SPELLINGS), min_size=2, max_size=4), as_input=st.booleans())
def test_colliding_paths_are_refused_whatever_their_spelling(tmp_path_factory, picks, as_input):
    base = tmp_path_factory.mktemp("c")
    (base / "sub").mkdir()
    paths = [spell(base, n, how) for n, how in picks]
    collide = len({n for n, _ in picks}) < len(picks)
    outs = {f"--out{i}": p for i, p in enumerate(paths[1:] if as_input else paths)}
    ins = {"--input": paths[0]} if as_input else {}
    if collide:
        with pytest.raises(ValueError, match="same file|would overwrite the input"):
            check_paths(outs, ins)
    else:
        check_paths(outs, ins)


def test_an_output_that_is_a_folder_or_in_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        check_paths({"-o": tmp_path})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_paths({"-o": tmp_path / "no" / "x.npy"})


@pytest.mark.parametrize("failing", [0, 1, 2])
def test_a_failing_output_leaves_every_old_output_and_no_temp(tmp_path, failing):
    paths = [tmp_path / "y.npy", tmp_path / "s.json", tmp_path / "p.txt"]
    for p in paths:
        p.write_text("old")
    writers = [lambda: write_arrays(paths[0], {"y": np.ones(3)}), lambda: write_json(paths[1], {"a": 1}),
               lambda: write_text(paths[2], "new")]
    with pytest.raises(OSError, match="disk full"):
        with committed_together():
            for i, w in enumerate(writers):
                if i == failing:
                    raise OSError("disk full")
                w()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)    # no temp
    assert all(p.read_text() == "old" for p in paths)


def test_all_outputs_are_committed_together(tmp_path):
    y, s = tmp_path / "y", tmp_path / "s.json"
    with committed_together():
        write_arrays(y, {"y": np.arange(3)})
        write_json(s, {"a": 1})
        assert not y.exists() and not s.exists()         # nothing is in place before the group ends
    assert np.load(y).tolist() == [0, 1, 2] and s.read_text().startswith("{")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "y"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_between_the_temp_write_and_the_rename_leaves_no_temp(tmp_path, sig):
    (tmp_path / "y.npy").write_text("old")
    code = textwrap.dedent(f"""
        import os, signal, numpy as np
        from runtime.guard import guarded
        from runtime.io import committed_together, write_arrays, write_json
        class Bar:
            def close(self): pass
        def body():
            with committed_together():
                write_arrays({str(tmp_path / 'y.npy')!r}, {{"y": np.ones(2)}})
                write_json({str(tmp_path / 's.json')!r}, {{}})
                os.kill(os.getpid(), {int(sig)})
            return 0
        raise SystemExit(guarded("t", (), Bar(), body))
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 128 + sig, r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.npy"]
    assert (tmp_path / "y.npy").read_text() == "old"


def forged_npy(path: Path, shape, dtype="<f4") -> None:
    """An .npy whose header declares `shape` but which holds a few bytes: reading it naively allocates it all."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
        f.write(b"\0" * 64)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.lists(st.integers(1, 1 << 20), min_size=1, max_size=3).map(lambda s: s + [1 << 24]),
       packed=st.booleans())
def test_an_array_file_declaring_more_than_the_memory_is_one_error_before_reading(tmp_path_factory, shape, packed):
    from runtime.io import load_arrays
    d = tmp_path_factory.mktemp("big")
    forged_npy(d / "x.npy", [1 << 20] + shape)              # at least 2^44 values: beyond any host here
    path = d / "x.npy"
    if packed:
        import zipfile
        with zipfile.ZipFile(d / "x.npz", "w") as z:
            z.write(d / "x.npy", "image.npy")
        path = d / "x.npz"
    with pytest.raises(ValueError, match=r"declares \d+ bytes of data, more than the \d+ bytes of memory"):
        load_arrays(path, ["image"])
