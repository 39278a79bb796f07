"""Every number of a target has a checked range, whether it comes from a TOML file or a program header: zero,
negative, infinite, NaN and absurdly large figures are one AsmError naming the key."""
from __future__ import annotations

import math
import re
from functools import lru_cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isa import AsmError, load_target, parse_program, print_program
from isa.target import INT_LIMITS, NON_NEGATIVE, POSITIVE, PRESETS

BAD_FLOATS = st.sampled_from([-1.0, -1e-300, math.inf, -math.inf, math.nan, 1e13, 1e300]) | st.floats(
    max_value=-1e-12, allow_nan=False, allow_infinity=False)


def toml_value(v) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(v)


def with_key(text: str, key: str, value) -> str:
    out, n = re.subn(rf"(?m)^{key} = [^#\n]*", f"{key} = {toml_value(value)}", text)
    if not n:                   # an optional key the preset leaves out
        out += f"\n[extra]\n{key} = {toml_value(value)}\n"
    return out


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(POSITIVE + NON_NEGATIVE), value=BAD_FLOATS | st.just(0.0), preset=st.sampled_from(
    ["isaac", "raella", "aras"]))
def test_a_bad_float_in_a_toml_target_is_refused(tmp_path_factory, key, value, preset):
    if value == 0.0 and key in NON_NEGATIVE:
        return                  # zero turns an energy or power term off: allowed
    path = tmp_path_factory.mktemp("t") / "t.toml"
    path.write_text(with_key((PRESETS / f"{preset}.toml").read_text(), key, value))
    with pytest.raises(AsmError, match=key):
        load_target(path)


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(sorted(INT_LIMITS)), data=st.data())
def test_an_int_out_of_its_range_in_a_toml_target_is_refused(tmp_path_factory, key, data):
    value = data.draw(st.integers(max_value=0) | st.integers(min_value=INT_LIMITS[key] + 1, max_value=10 ** 15))
    path = tmp_path_factory.mktemp("t") / "t.toml"
    path.write_text(with_key((PRESETS / "raella.toml").read_text(), key, value))
    with pytest.raises(AsmError, match=key):
        load_target(path)


@pytest.mark.parametrize("key", ["tiles", "imas_per_tile", "xbars_per_ima"])
def test_a_chip_of_absurdly_many_crossbars_is_refused(tmp_path, key):
    path = tmp_path / "t.toml"
    text = (PRESETS / "raella.toml").read_text()
    for k in ("tiles", "imas_per_tile", "xbars_per_ima"):
        text = with_key(text, k, INT_LIMITS[k] if k == key else 1024)
    path.write_text(text)
    with pytest.raises(AsmError, match="crossbars"):
        load_target(path)


@lru_cache(maxsize=1)
def header_text() -> str:
    from conftest import digits_compiled
    return print_program(digits_compiled("isaac").program)


@settings(max_examples=30, deadline=None)
@given(key=st.sampled_from(POSITIVE + NON_NEGATIVE[:7]), value=st.sampled_from([-1.0, -0.5, 1e13, 0.0]))
def test_a_program_header_with_a_bad_figure_is_refused(key, value):
    if value == 0.0 and key in NON_NEGATIVE:
        return
    text = re.sub(rf"(?m)^\.target {key} = .*$", f".target {key} = {value!r}", header_text())
    with pytest.raises(AsmError, match=rf"header.*{key}"):
        parse_program(text, "f.pimasm")


def test_the_presets_pass_their_own_ranges():
    for p in PRESETS.glob("*.toml"):
        load_target(p.stem)
