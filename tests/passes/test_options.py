"""Compile options: declared once, validated on the way in."""
import pytest

from ir import CompileError
from passes.options import Options


def test_defaults_and_overrides():
    o = Options.make({"attention": "naive"}, error_budget=0.2)
    assert (o.attention, o.error_budget, o.vector) == ("naive", 0.2, "auto")
    assert Options.make(o) is o and Options.make(o, vector="fp32").vector == "fp32"


@pytest.mark.parametrize("given,named", [
    ({"atention": "naive"}, "atention"),                 # a typo is never silently ignored
    ({"attention": "sparse"}, "attention='sparse'"),
    ({"error_budget": "0.1"}, "error_budget='0.1'"),
    ({"no_speculation": 1}, "no_speculation=1"),
    ({"error_budget": True}, "error_budget=True"),
    ({"schedule": "fast"}, "schedule='fast'"),
])
def test_unknown_or_ill_typed_option_is_a_compile_error(given, named):
    with pytest.raises(CompileError, match=named.replace("(", r"\(")):
        Options.make(given)


def test_every_option_is_described():
    rows = Options.describe()
    assert {r[0] for r in rows} >= {"slicing", "attention", "schedule", "error_budget"}
    assert all(r[3] for r in rows)


def test_compile_model_rejects_unknown_option():
    from compiler.pipeline import compile_model
    from tests.conftest import DIGITS
    with pytest.raises(CompileError, match="unknown compile option"):
        compile_model(DIGITS / "digits_cnn.onnx", "isaac", None, options={"speculation": False})
