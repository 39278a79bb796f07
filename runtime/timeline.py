"""`pimrun --timeline`: a schedule's writes and computes as a chart a person can read (PNG) and, per PE row, as a
Chrome trace (JSON "traceEvents", opened by chrome://tracing and ui.perfetto.dev) beside it.

The chart has one lane per layer, not per PE row: a lane shows when any of the layer's PE rows wrote (top
half) or computed (bottom half), and its label says how many rows that was. PE rows that never work are left
out (the title counts them), and past MAX_LANES layers the rest fold into one lane, so the image stays a few
hundred pixels tall whatever the chip. The trace keeps every write and compute of every PE row."""
from __future__ import annotations

from pathlib import Path

from .io import atomic_write, write_json

MAX_LANES = 40


def trace_path(png) -> Path:
    """The trace file written beside the chart: t.png -> t.trace.json."""
    p = Path(png)
    return p.with_name(p.stem + ".trace.json")


def chrome_trace(report: dict) -> dict:
    """The schedule's timeline (runtime/schedule.py) as Chrome trace events: one thread per PE row (process
    "PE rows"), one per layer step (process "layers"); times in microseconds, as the format wants."""
    events = [{"ph": "M", "pid": 0, "name": "process_name", "args": {"name": "PE rows"}},
              {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "layers"}}]
    for row in sorted({e[1] for e in report["timeline"]}):
        events.append({"ph": "M", "pid": 0, "tid": row, "name": "thread_name", "args": {"name": f"PE row {row}"}})
    for kind, row, s, e, layer, pulses in report["timeline"]:
        events.append({"ph": "X", "pid": 0, "tid": row, "cat": kind, "name": f"{kind} {layer}", "ts": s / 1e3,
                       "dur": (e - s) / 1e3, "args": {"layer": layer, "pulses": pulses}})
    for k, st in enumerate(report["steps"]):
        events.append({"ph": "X", "pid": 1, "tid": 0, "cat": "step", "name": st["layer"], "ts": st["start_ns"] / 1e3,
                       "dur": (st["end_ns"] - st["start_ns"]) / 1e3, "args": {"step": k}})
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"time_ns": report["time_ns"], "crossbar_writes": report["crossbar_writes"],
                          "write_pulses": report["write_pulses"]}}


def _union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping spans merged, as (start, width)."""
    out: list[list[float]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e - s) for s, e in out]


def lanes(report: dict) -> list[dict]:
    """One lane per layer in order of first activity, the layers past MAX_LANES - 1 folded into the last:
    {label, rows, write, idle_write, compute} with the spans of each kind (ns) and the PE rows used."""
    by_layer: dict[str, dict] = {}
    for kind, row, s, e, layer, pulses in report["timeline"]:
        ln = by_layer.setdefault(layer, {"layers": [layer], "rows": set(), "first": s, "write": [], "idle_write": [],
                                         "compute": []})
        ln["rows"].add(row)
        ln["first"] = min(ln["first"], s)
        key = "compute" if kind == "compute" else "write" if pulses else "idle_write"
        ln[key].append((s, max(e, s + 1.0)))
    out = sorted(by_layer.values(), key=lambda ln: ln["first"])
    if len(out) > MAX_LANES:
        rest = out[MAX_LANES - 1:]
        fold = {"layers": [x for ln in rest for x in ln["layers"]], "rows": set().union(*(ln["rows"] for ln in rest)),
                "first": rest[0]["first"]}
        for key in ("write", "idle_write", "compute"):
            fold[key] = [sp for ln in rest for sp in ln[key]]
        out = out[:MAX_LANES - 1] + [fold]
    for ln in out:
        name = ln["layers"][0] if len(ln["layers"]) == 1 else f"{len(ln['layers'])} more layers"
        ln["label"] = f"{name} ({len(ln['rows'])} PE rows)"
        for key in ("write", "idle_write", "compute"):
            ln[key] = _union(ln[key])
    return out


def plot(report: dict, path) -> None:
    """The chart (see the module doc) as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ls = lanes(report)
    used = len({e[1] for e in report["timeline"]})
    fig, ax = plt.subplots(figsize=(11, 1.6 + 0.32 * max(len(ls), 1)))
    style = {"write": ("tab:orange", "write (cells reprogrammed)"),
             "idle_write": ("navajowhite", "write that changes no cell (DRAM fetch only)"),
             "compute": ("tab:blue", "compute")}
    shown = set()
    for i, ln in enumerate(ls):
        for key, (y0, h) in (("write", (i - 0.42, 0.4)), ("idle_write", (i - 0.42, 0.4)), ("compute", (i + 0.02, 0.4))):
            if ln[key]:
                color, label = style[key]
                ax.broken_barh([(s / 1e3, w / 1e3) for s, w in ln[key]], (y0, h), color=color,
                               label=None if key in shown else label)
                shown.add(key)
    ax.set_yticks(range(len(ls)), [ln["label"] for ln in ls], fontsize=7)
    ax.set_ylim(len(ls) - 0.5, -0.5)
    ax.set_xlabel("time in one inference (us)")
    ax.set_ylabel("layer (PE rows it used)")
    idle = report.get("pe_rows", used) - used
    idle = f", {idle} idle PE rows not drawn" if idle else ""
    ax.set_title(f"{report['time_ns'] / 1e3:.1f} us per inference, {report['pct_of_bound']:.1f}% of the write bound; "
                 f"{used} PE rows used{idle}\nper-row detail: {trace_path(path).name}", fontsize=9)
    fig.legend(loc="lower right", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.3 / fig.get_size_inches()[1], 1, 1))      # 0.3 in at the bottom for the legend
    atomic_write(path, lambda f: fig.savefig(f, dpi=100, format="png"))
    plt.close(fig)


def write_timeline(report: dict, path) -> Path:
    """The chart at `path` and the Chrome trace beside it (trace_path); returns the trace's path."""
    plot(report, path)
    trace = trace_path(path)
    write_json(trace, chrome_trace(report))
    return trace
