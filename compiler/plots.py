"""PNG figures from a run's statistics: per-layer converts/MAC and saturation, column-sum histograms
against the ADC range, energy breakdown."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def write_plots(stats: dict, hist: dict | None, adc_range, outdir: str | Path) -> list[str]:
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    layers = [r for r in stats["layers"] if r["macs"]]
    names = [r["layer"] for r in layers]
    written = []

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].bar(range(len(layers)), [r["converts_per_mac"] for r in layers], color="tab:blue")
    ax[0].set_title("ADC converts per MAC")
    ax[1].bar(range(len(layers)), [100 * r["saturation_rate"] for r in layers], color="tab:red")
    ax[1].set_title("ADC saturation (% of converts)")
    for a in ax:
        a.set_xticks(range(len(layers)), names, rotation=60, ha="right", fontsize=7)
    fig.suptitle(f"{stats['target']}: per-layer converts/MAC and saturation")
    fig.tight_layout()
    written.append(_save(fig, outdir / "converts_saturation.png"))

    if hist:
        lo, hi = hist["_range"]
        xs = np.arange(lo, hi + 1)
        fig, ax = plt.subplots(figsize=(8, 4))
        total = sum(np.asarray(h) for k, h in hist.items() if k != "_range")
        ax.bar(xs, total / max(total.sum(), 1), width=1.0, color="tab:gray")
        ax.axvspan(adc_range[0] - 0.5, adc_range[1] + 0.5, alpha=0.15, color="tab:green", label="ADC range")
        ax.set_yscale("log")
        ax.set_xlabel("column sum (one input slice x one weight slice)")
        ax.set_ylabel("fraction of converts")
        ax.set_title(f"{stats['target']}: column sums against the ADC range (ends collect all beyond)")
        ax.legend()
        fig.tight_layout()
        written.append(_save(fig, outdir / "column_sums.png"))

    fig, ax = plt.subplots(figsize=(8, 4))
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
    fig.tight_layout()
    written.append(_save(fig, outdir / "energy.png"))
    return written


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
