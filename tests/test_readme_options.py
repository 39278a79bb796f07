"""README.md's table of compile options is passes/options.py's Options, rendered: name, type, default, meaning.

To print the table to paste between the README's markers, from the repository root:
    python -c "import tests.test_readme_options as t; print(t.table())"
"""
import dataclasses
from pathlib import Path

from passes.options import Options

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- options:start -->", "<!-- options:end -->"


def _type(f: dataclasses.Field) -> str:
    kind = "any" if str(f.type) == "Any" else str(f.type).replace(" | None", " or None")
    choices = f.metadata["choices"]
    return f"{kind}: {', '.join(f'`{c}`' for c in choices)}" if choices else kind


def table() -> str:
    """The option table in Markdown, one row per field of Options in declaration order."""
    rows = ["| option | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(Options):
        rows.append(f"| `{f.name}` | {_type(f)} | `{f.default!r}` | {f.metadata['meaning']} |")
    return "\n".join(rows)


def readme_table() -> str:
    text = README.read_text()
    assert text.count(START) == 1 and text.count(END) == 1, f"README.md needs one {START} ... {END} block"
    return text.split(START)[1].split(END)[0].strip()


def test_readme_option_table_matches_options():
    assert readme_table() == table(), \
        "README.md's compile-option table differs from passes/options.py: regenerate it (see this file's docstring)"

