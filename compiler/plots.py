"""PNG figures from a run's statistics: per-layer converts/MAC and saturation, column-sum histograms
against the ADC range, energy breakdown beside the chip's area breakdown."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


from runtime.io import atomic_write  # noqa: E402

PLOT_FILES = ("converts_saturation.png", "column_sums.png", "energy.png")


def write_plots(stats: dict, hist: dict | None, adc_range, outdir: str | Path) -> list[str]:
    """PLOT_FILES (column_sums.png only with a histogram) in `outdir`, each written atomically."""
    outdir = Path(outdir)       # an existing folder: the CLIs create none
    layers = [r for r in stats["layers"] if r["macs"]]
    names = [r["layer"] for r in layers]
    written = []

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].bar(range(len(layers)), [r["converts_per_mac"] for r in layers], color="tab:blue")
    ax[0].set_title("ADC converts per MAC")
    ax[0].set_ylabel("converts / MAC")
    ax[1].bar(range(len(layers)), [100 * r["saturation_rate"] for r in layers], color="tab:red")
    ax[1].set_title("ADC saturation")
    ax[1].set_ylabel("saturated converts (% of converts)")
    for a in ax:
        a.set_xticks(range(len(layers)), names, rotation=60, ha="right", fontsize=7)
        a.set_xlabel("layer")
    fig.suptitle(f"{stats['target']}: per-layer converts/MAC and saturation")
    fig.tight_layout()
    written.append(_save(fig, outdir / "converts_saturation.png"))

    if hist:
        written.append(_column_sums(stats["target"], hist, adc_range, outdir / "column_sums.png"))

    area = stats.get("area_mm2") or {}
    fig, (ax, ax_area) = plt.subplots(1, 2, figsize=(12, 4), width_ratios=(3, 1))
    comps = list(stats["energy_pj"])
    bottom = np.zeros(len(stats["layers"]))
    for c in comps:
        v = np.array([r["energy_pj"][c] for r in stats["layers"]]) / max(stats["samples"], 1) / 1e3
        ax.bar(range(len(v)), v, bottom=bottom, label=c)
        bottom += v
    ax.set_xticks(range(len(stats["layers"])), [r["layer"] for r in stats["layers"]], rotation=60, ha="right",
                  fontsize=7)
    ax.set_ylabel("nJ per inference")
    ax.set_title(f"{stats['target']}: energy by component and layer")
    ax.legend(fontsize=7)
    _area(ax_area, area)
    fig.tight_layout()
    written.append(_save(fig, outdir / "energy.png"))
    return written


def _area(ax, area: dict) -> None:
    """The chip's area by component (mm^2), one stacked bar; a note where the target gives no area."""
    total = sum(area.values())
    if not total:
        ax.text(0.5, 0.5, "the target gives no area figures", ha="center", va="center", fontsize=8)
        ax.set_axis_off()
        return
    bottom = 0.0
    for c, v in area.items():
        ax.bar([0], [v], bottom=bottom, label=f"{c} {v:.1f} ({100 * v / total:.0f}%)")
        bottom += v
    ax.set_xticks([])
    ax.set_ylabel("mm2")
    ax.set_title(f"chip area by component: {total:.1f} mm2", fontsize=9)
    ax.legend(fontsize=7)


def worst_layers(hist: dict, adc_range, n: int) -> list[str]:
    """The n layers with the largest share of column sums outside the ADC range, worst first."""
    lo, hi = hist["_range"]
    xs = np.arange(lo, hi + 1)
    out = (xs < adc_range[0]) | (xs > adc_range[1])
    share = {k: np.asarray(h)[out].sum() / np.sum(h) for k, h in hist.items() if k != "_range" and np.sum(h)}
    return sorted(share, key=lambda k: (-share[k], k))[:n]


def _column_sums(target: str, hist: dict, adc_range, path: Path, panels: int = 6) -> str:
    """All layers together, then one panel per layer for the layers with the most sums outside the ADC range."""
    lo, hi = hist["_range"]
    xs = np.arange(lo, hi + 1)
    per = {k: np.asarray(h, dtype=np.float64) for k, h in hist.items() if k != "_range" and np.sum(h)}
    inside = (xs >= adc_range[0]) & (xs <= adc_range[1])
    worst = worst_layers(hist, adc_range, panels)
    shown = [("all layers", sum(per.values()))] + [(k, per[k]) for k in worst]
    cols = min(len(shown), 4)
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False, sharex=True)
    for a, (name, h) in zip(axes.flat, shown):
        a.bar(xs, h / max(h.sum(), 1), width=1.0, color="tab:gray")
        a.axvspan(adc_range[0] - 0.5, adc_range[1] + 0.5, alpha=0.15, color="tab:green")
        a.set_yscale("log")
        frac = h[~inside].sum() / max(h.sum(), 1)
        a.set_title(f"{name[-28:]}\n{frac:.2%} outside the ADC range", fontsize=8)
        a.set_xlabel("column sum")
        a.set_ylabel("fraction of converts")
    for a in list(axes.flat)[len(shown):]:
        a.axis("off")
    fig.suptitle(f"{target}: column sums (one input slice x one weight slice) against the ADC range (green); "
                 f"the ends collect all beyond", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> str:
    atomic_write(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)
    return str(path)
