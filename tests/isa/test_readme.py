"""isa/README.md documents every opcode of the instruction set, with its operands and attributes."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from isa.instructions import SPECS

README = Path(__file__).resolve().parents[2] / "isa" / "README.md"


def sections() -> dict[str, str]:
    """'### `op`' heading -> the text up to the next heading."""
    text = README.read_text()
    parts = re.split(r"^### `([^`]+)`\s*$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_every_opcode_has_an_entry():
    documented = sections()
    missing = [op for op in SPECS if op not in documented]
    assert not missing, f"opcodes without a '### `op`' entry in isa/README.md: {missing}"


def test_no_entry_for_an_unknown_opcode():
    stale = [op for op in sections() if op not in SPECS]
    assert not stale, f"isa/README.md documents opcodes that SPECS does not have: {stale}"


@pytest.mark.parametrize("op", sorted(SPECS))
def test_entry_names_every_attribute_and_has_an_example(op):
    body = sections().get(op)
    assert body is not None
    spec = SPECS[op]
    for key in {**spec.required, **spec.optional}:
        assert re.search(rf"\b{re.escape(key)}=", body), f"{op}: attribute '{key}' is not documented"
    examples = re.findall(r"```\n(.*?)\n```", body, flags=re.S)
    assert examples, f"{op}: no example"
    assert all(e.split()[0] == op for e in examples), f"{op}: an example uses another opcode"


@pytest.mark.parametrize("op", sorted(SPECS))
def test_examples_parse_and_match_the_spec(op):
    """Each one-line example is valid instruction text with the spec's operand count and attribute types."""
    from isa import load_target, parse_program
    from runtime.validate import _type_ok
    body = sections()[op]
    line = re.findall(r"```\n(.*?)\n```", body, flags=re.S)[0]
    prog = parse_program("pimasm 1\n" + "".join(f".target {k} = {_fmt(v)}\n" for k, v in
                                                 load_target("isaac").to_dict().items()) + ".data\n.code\n" + line)
    (ins,) = prog.code
    spec = SPECS[op]
    n = len(spec.args)
    assert len(ins.args) >= n if spec.args and spec.args[-1].endswith("*") else len(ins.args) == n
    attrs = dict(ins.attrs)
    assert set(spec.required) <= set(attrs)
    for k, v in attrs.items():
        want = {**spec.required, **spec.optional}.get(k)
        assert want is not None, f"{op}: example has unknown attribute {k}"
        assert _type_ok(v, want), f"{op}: example's {k}={v!r} is not {want}"


def _fmt(v):
    from isa.text import format_value
    return format_value(v)


def test_every_target_key_is_documented():
    import dataclasses

    from isa import Target
    text = README.read_text()
    table = text[text.index("## Target keys"):text.index("## Data section")]
    missing = [f.name for f in dataclasses.fields(Target) if f"`{f.name}`" not in table]
    assert not missing, f"target keys missing from isa/README.md's table: {missing}"
