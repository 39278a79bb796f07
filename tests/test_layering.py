"""The import rules of DESIGN.md: isa and ir import nothing of the project; runtime imports isa only;
backend imports ir and isa; passes import ir, isa and runtime's arithmetic."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"compiler", "ir", "passes", "backend", "runtime", "isa"}
ALLOWED = {
    "isa": set(), "ir": set(), "runtime": {"isa"}, "backend": {"ir", "isa"},
    "passes": {"ir", "isa", "runtime"}, "compiler": PROJECT,
}
FORBIDDEN_THIRD_PARTY = {"runtime": {"onnx", "onnxruntime"}}


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports(layer):
    for f in (ROOT / layer).rglob("*.py"):
        for mod in _imports(f):
            if mod in PROJECT and mod != layer:
                assert mod in ALLOWED[layer], f"{f.relative_to(ROOT)} imports {mod}"
            assert mod not in FORBIDDEN_THIRD_PARTY.get(layer, set()), f"{f.relative_to(ROOT)} imports {mod}"


def test_passes_use_only_runtime_arithmetic():
    for f in (ROOT / "passes").rglob("*.py"):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("runtime"):
                names = [node.module] if node.module != "runtime" else [f"runtime.{a.name}" for a in node.names]
                for n in names:
                    assert n in ("runtime.crossbar", "runtime.kernels", "runtime.vector"), f"{f.name} imports {n}"
