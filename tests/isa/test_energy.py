"""The targets' energy and area figures: provenance in the presets, the generator's rewriting, and (with the
[energy] extra) the presets equal to what the hwcomponents models derive now."""
import importlib.util
import re
import tomllib
from pathlib import Path

import pytest

from isa import load_target
from isa.energy import AREA_KEYS, ENERGY_KEYS, PACKAGES, Figure, generate, parse_tech, render
from isa.errors import AsmError
from isa.target import PRESETS, _flatten, from_dict

ROOT = Path(__file__).resolve().parents[2]
DERIVED = sorted(PRESETS.glob("*.toml")) + [ROOT / "benchmarks/targets/aras_digits.toml"]


def pins() -> dict:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(p.split("==") for p in doc["project"]["optional-dependencies"]["energy"])


@pytest.mark.parametrize("path", DERIVED, ids=lambda p: p.stem)
def test_every_energy_and_area_figure_names_its_model_and_the_pinned_version(path):
    lines = {m.group(1): m.group(2) for m in re.finditer(r"^(\w+) = \S+\s+# (.*)$", path.read_text(), re.M)}
    keys = ENERGY_KEYS + AREA_KEYS + (("gbuf_mw_per_kb",) if load_target(path).gbuf_banks_kb else ())
    want = pins()
    assert set(want) == set(PACKAGES)
    for k in keys:
        named = re.findall(r"(hwcomponents[\w-]*) (\d\S*)", lines[k])
        assert named and all(want[pkg] == ver for pkg, ver in named), (k, lines[k])
    assert load_target(path).tech_node_nm == 32.0


def test_render_rewrites_the_figures_drops_continued_comments_and_adds_the_area_table():
    text = (PRESETS / "isaac.toml").read_text()
    text = re.sub(r"\n\[area\].*?\n\n", "\n", text, flags=re.S).replace("tech_node_nm", "# was tech_node_nm")
    text = text.replace("e_cell_read = ", "e_cell_read = 0.5  # old\n                        # continued\n# e_cell_read = ")
    figs = [Figure(k, 1.234567 * (i + 1), f"model {k}") for i, k in enumerate(ENERGY_KEYS + AREA_KEYS)]
    new = render(text, figs, 22.0, "python -m isa.energy x.toml --tech-node 22nm")
    assert "# continued" not in new and "[area]" in new
    t = from_dict(_flatten(tomllib.loads(new), "x"))
    for i, k in enumerate(ENERGY_KEYS + AREA_KEYS):
        assert getattr(t, k) == pytest.approx(1.234567 * (i + 1), rel=1e-3)
        assert f"# model {k}" in new
    assert t.tech_node_nm == 22.0
    assert render(new, figs, 22.0, "python -m isa.energy x.toml --tech-node 22nm") == new   # a fixed point


def test_render_refuses_a_file_without_a_line_for_a_figure():
    text = (PRESETS / "isaac.toml").read_text()
    with pytest.raises(AsmError, match="gbuf_mw_per_kb"):
        render(text, [Figure("gbuf_mw_per_kb", 1.0, "m")], 32.0, "cmd")


@pytest.mark.parametrize("bad", ["5nm", "200nm", "32 um", "x"])
def test_tech_node_outside_the_models_range_is_refused(bad):
    with pytest.raises(AsmError, match="--tech-node"):
        parse_tech(bad)
    assert parse_tech("32nm") == parse_tech("32") == 32.0


def test_chip_area_multiplies_the_unit_areas_by_the_chips_units():
    t = load_target("isaac")
    a = t.chip_area_mm2()
    assert a["adc"] == pytest.approx(1024 * 12 * 8 * t.adcs_per_xbar * t.area_adc_um2 / 1e6)
    assert a["dac"] == pytest.approx(1024 * 12 * 8 * 128 * t.area_dac_um2 / 1e6)
    assert a["buffers"] == pytest.approx(1024 * t.area_buffer_um2 / 1e6)
    assert all(v > 0 for v in a.values())
    bare = t.replace(**{k: 0.0 for k in AREA_KEYS})
    assert sum(bare.chip_area_mm2().values()) == 0.0


_MODELS = all(importlib.util.find_spec(m) for m in ("hwcomponents", "hwcomponents_adc", "hwcomponents_cacti",
                                                     "hwcomponents_neurosim", "hwcomponents_library"))


@pytest.mark.skipif(_MODELS, reason="the [energy] extra is installed")
def test_without_the_models_the_generator_says_how_to_install_them(capsys):
    from isa.energy import main
    assert main([str(PRESETS / "isaac.toml"), "--check"]) == 1
    err = capsys.readouterr().err
    assert "is not installed: pip install -e '.[energy]' (Python >= 3.12)" in err and "\n" not in err.strip()


@pytest.mark.skipif(not _MODELS, reason="needs the [energy] extra (Python >= 3.12: pip install -e '.[energy]', then "
                                        ".ci/build_energy_models.sh PYTHON); .ci/run checks this in a 3.12 venv")
@pytest.mark.parametrize("path", DERIVED, ids=lambda p: p.stem)
def test_shipped_figures_equal_what_the_models_derive_now(path):
    old, new = generate(path, None)
    assert old == new
