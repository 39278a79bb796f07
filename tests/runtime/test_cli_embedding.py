"""pimrun's judgement of an embedding-like output: the nearest-neighbour same-group rate for an input with a
`group` array, the mean cosine to --reference; and its clean failures when the reference does not fit.
The digits CNN stands in for an embedding model: its logits are the vectors, the digit classes the groups."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from runtime.cli import main as pimrun_main
from runtime.similarity import cosines, nearest_same_group
from tests.conftest import DIGITS
from tests.test_cli_errors import assert_clean_failure, pimrun, program_text


def _files(tmp_path, n=60):
    prog = tmp_path / "d.pimasm"
    prog.write_text(program_text())
    d = np.load(DIGITS / "digits_test.npz")
    x, group = d["x"][:n], d["y"][:n]
    np.savez(tmp_path / "in.npz", x=x, group=group)                    # a group, no labels
    sess = ort.InferenceSession(str(DIGITS / "digits_cnn.onnx"), providers=["CPUExecutionProvider"])
    np.save(tmp_path / "ref.npy", sess.run(None, {"image": x})[0])
    return prog, group


def test_group_rate_and_mean_cosine_are_printed_as_computed(tmp_path, capsys):
    prog, group = _files(tmp_path)
    y_path, ref = tmp_path / "y.npy", tmp_path / "ref.npy"
    assert pimrun_main([str(prog), "--input", str(tmp_path / "in.npz"), "-o", str(y_path),
                        "--reference", str(ref)]) == 0
    printed = capsys.readouterr().out
    y = np.load(y_path)
    same = nearest_same_group(y, group)
    assert f"nearest neighbour in the same group (cosine, excluding self) {same / 60:.4f} ({same}/60)" in printed
    cos = cosines(y, np.load(ref))
    assert f"mean cosine to {ref} {cos.mean():.4f} (min {cos.min():.4f})" in printed
    assert cos.mean() > 0.95 and same >= 50                            # a working program, not noise
    assert "top-1" not in printed                                      # no labels in the input


def test_no_group_no_reference_prints_neither(tmp_path, capsys):
    prog, _ = _files(tmp_path, 8)
    np.save(tmp_path / "x.npy", np.load(tmp_path / "in.npz")["x"])
    assert pimrun_main([str(prog), "--input", str(tmp_path / "x.npy")]) == 0
    printed = capsys.readouterr().out
    assert "nearest neighbour" not in printed and "cosine" not in printed


def test_missing_reference_fails_before_the_run(tmp_path):
    prog, _ = _files(tmp_path, 4)
    out = tmp_path / "out"
    out.mkdir()
    r = pimrun(prog, "--input", tmp_path / "in.npz", "-o", out / "y.npy", "--reference", tmp_path / "none.npy")
    assert_clean_failure(r, "pimrun", out, "--reference", "none.npy", "no such file")


def test_misshaped_reference_leaves_no_output(tmp_path):
    prog, _ = _files(tmp_path, 4)
    out = tmp_path / "out"
    out.mkdir()
    np.save(tmp_path / "bad.npy", np.zeros((4, 9), np.float32))
    r = pimrun(prog, "--input", tmp_path / "in.npz", "-o", out / "y.npy", "--stats", out / "s.json",
               "--reference", tmp_path / "bad.npy")
    line = assert_clean_failure(r, "pimrun", out, "bad.npy", "[4, 9]", "[4, 10]")
    assert "output 'logits'" in line
