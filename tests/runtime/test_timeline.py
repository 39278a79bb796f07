"""`pimrun --timeline` (runtime/timeline.py): a chart of bounded size with one lane per layer, and every write
and compute per PE row in a Chrome trace beside it."""
from __future__ import annotations

import json
import struct
from functools import lru_cache

import numpy as np

from isa import parse_program, print_program
from runtime.machine import Machine
from runtime.results import stats_json
from runtime.timeline import MAX_LANES, chrome_trace, lanes, trace_path, write_timeline
from tests.conftest import DIGITS, digits_compiled


@lru_cache(maxsize=None)
def aras_schedule() -> dict:
    """The digits CNN on the aras preset (576 PE rows, hundreds used by replicas)."""
    m = Machine(parse_program(print_program(digits_compiled("aras").program)))
    m.run({"image": np.load(DIGITS / "digits_test.npz")["x"][:2]})
    return stats_json(m)["schedule"]


def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_the_aras_chart_is_small_and_the_trace_holds_every_row(tmp_path):
    sc = aras_schedule()
    rows = {e[1] for e in sc["timeline"]}
    assert len(rows) > 100                                     # one lane per row would be thousands of px
    png = tmp_path / "t.png"
    assert write_timeline(sc, png) == trace_path(png) == tmp_path / "t.trace.json"
    w, h = png_size(png)
    assert w <= 1200 and h <= 800, (w, h)
    trace = json.loads(trace_path(png).read_text())
    ev = trace["traceEvents"]
    spans = [e for e in ev if e["ph"] == "X" and e["pid"] == 0]
    assert len(spans) == len(sc["timeline"])
    for e, (kind, row, s, end, layer, pulses) in zip(spans, sc["timeline"]):
        assert (e["cat"], e["tid"], e["args"]["layer"], e["args"]["pulses"]) == (kind, row, layer, pulses)
        assert e["ts"] == s / 1e3 and e["dur"] >= 0
    named = {e["tid"] for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
    assert named == rows
    steps = [e for e in ev if e["ph"] == "X" and e["pid"] == 1]
    assert [e["name"] for e in steps] == [s["layer"] for s in sc["steps"]]


def test_lanes_are_layers_and_fold_past_the_limit():
    sc = aras_schedule()
    ls = lanes(sc)
    on_crossbars = {e[4] for e in sc["timeline"]}
    assert [ln["label"].split(" (")[0] for ln in ls] == [s["layer"] for s in sc["steps"] if s["layer"] in on_crossbars]
    assert sum(int(ln["label"].split("(")[1].split()[0]) for ln in ls) == len({e[1] for e in sc["timeline"]})
    # a model of many layers: the layers past the limit fold into one lane
    many = {"timeline": [["compute", k, 10.0 * k, 10.0 * k + 5, f"L{k}", 0] for k in range(3 * MAX_LANES)],
            "steps": [], "time_ns": 30.0 * MAX_LANES, "pct_of_bound": 50.0, "crossbar_writes": 0, "write_pulses": 0}
    ls = lanes(many)
    assert len(ls) == MAX_LANES and ls[-1]["label"] == f"{2 * MAX_LANES + 1} more layers ({2 * MAX_LANES + 1} PE rows)"
    assert len(chrome_trace(many)["traceEvents"]) == 2 + 2 * 3 * MAX_LANES
