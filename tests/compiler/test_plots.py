"""Plots: the column-sum panels show the layers whose sums leave the ADC range most."""
import numpy as np

from compiler.plots import worst_layers, write_plots


def _hist():
    xs = np.arange(-8, 9)
    h = lambda spread: np.exp(-(xs / spread) ** 2) * 1000          # noqa: E731
    return {"_range": (-8, 8), "narrow": h(1.0), "wide": h(6.0), "mid": h(3.0), "empty": np.zeros(17)}


def test_worst_layers_ranks_by_share_outside_the_adc():
    assert worst_layers(_hist(), (-4, 4), 2) == ["wide", "mid"]
    assert worst_layers(_hist(), (-4, 4), 10) == ["wide", "mid", "narrow"]      # a layer with no sums is left out


def test_write_plots_writes_three_figures(tmp_path):
    layer = {"layer": "l", "macs": 10, "converts_per_mac": 0.5, "saturation_rate": 0.01,
             "energy_pj": {"adc": 1.0, "dac": 2.0}}
    stats = {"target": "t", "samples": 1, "layers": [layer], "energy_pj": {"adc": 1.0, "dac": 2.0}}
    paths = write_plots(stats, _hist(), (-4, 4), tmp_path)
    assert sorted(p.split("/")[-1] for p in paths) == ["column_sums.png", "converts_saturation.png", "energy.png"]
    assert all((tmp_path / p.split("/")[-1]).stat().st_size > 1000 for p in paths)


def test_energy_figure_has_the_area_breakdown_beside_it(tmp_path):
    layer = {"layer": "l", "macs": 10, "converts_per_mac": 0.5, "saturation_rate": 0.01,
             "energy_pj": {"adc": 1.0, "dac": 2.0}}
    stats = {"target": "t", "samples": 1, "layers": [layer], "energy_pj": {"adc": 1.0, "dac": 2.0}}
    for d in ("a", "b"):         # the CLIs never create folders; neither does write_plots
        (tmp_path / d).mkdir()
    plain = write_plots(stats, None, (-4, 4), tmp_path / "a")
    with_area = write_plots(stats | {"area_mm2": {"adc": 3.0, "crossbar": 1.0}}, None, (-4, 4), tmp_path / "b")
    a, b = ((tmp_path / d / "energy.png").read_bytes() for d in ("a", "b"))
    assert len(plain) == len(with_area) == 2 and a != b
