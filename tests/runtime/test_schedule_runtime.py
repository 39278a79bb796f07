"""The runtime side of weight-rewriting schedules (runtime/schedule.py, validate.py): write accounting, the
timeline, and the faults of hand-edited schedules."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import lru_cache

import numpy as np
import pytest

from isa import Program, load_target, parse_program, print_program
from runtime import crossbar as X
from runtime.errors import RuntimeFault
from runtime.machine import Machine
from runtime.schedule import Cells, account, pulse_ns
from tests.backend.test_schedules import SMALL, scheduled
from tests.conftest import DIGITS

X16 = np.load(DIGITS / "digits_test.npz")["x"][:16]


@lru_cache(maxsize=None)
def text(mode: str) -> str:
    return print_program(scheduled(mode).program)


@lru_cache(maxsize=None)
def accounted(mode: str) -> dict:
    m = Machine(parse_program(text(mode)))
    m.run({"image": X16})
    return account(m)


def fault(src: str) -> str:
    with pytest.raises(RuntimeFault) as e:
        m = Machine(parse_program(src, "s.pimasm"), filename="s.pimasm")
        m.run({"image": X16[:2]})
        account(m)
    return str(e.value)


def lines(src: str) -> list[str]:
    return src.split("\n")


def find(src: str, pattern: str, start: int = 0) -> int:
    """Index (0-based line) of the first line from `start` matching the regex."""
    return next(k for k, ln in enumerate(lines(src)) if k >= start and re.search(pattern, ln))


# ---- write accounting ------------------------------------------------------------------------------------

def _block(w):
    return X.program("L", np.asarray(w), (0, len(w)), (0, len(w[0])), len(w), len(w[0]), "unsigned", -128,
                     (2, 2, 2, 2), None)


def test_a_write_costs_level_changes_and_a_two_phase_row_time():
    t = load_target(SMALL)
    cells = Cells(Program(t), None)
    cells.write(0, _block([[-128, 127], [127, 127]]), "a")        # cell levels 0000 3333 / 3333 3333
    ev = cells.write(0, _block([[127, -128], [127, 63]]), "b")    # 3333 0000 / 3333 0333 (63 + 128 = 0b10111111)
    # row 0 swings 0 -> 3 and 3 -> 0: both phases at full swing, the row takes write_row_ns
    # row 1: one cell 3 -> 2 (191 = 10 11 11 11): one pulse in the decrease phase
    assert ev.changed == 8 + 1 and ev.pulses == 24 + 1
    assert ev.ns == t.write_row_ns + pulse_ns(t) == 6000 + 1000
    assert ev.rows == 2 and ev.nbytes == 4
    same = cells.write(0, _block([[127, -128], [127, 63]]), "c")
    assert (same.changed, same.pulses, same.ns) == (0, 0, 0.0)


def test_cells_start_as_the_previous_inference_left_them():
    """Steady state: the first write into a crossbar meets the last block the program writes there."""
    m = Machine(parse_program(text("overlap")))
    m.run({"image": X16[:2]})
    last = {}
    for ins in m.p.code:
        if ins.op == "xbwrite":
            last[ins.attr("xb")] = ins
    once = [i for i in m.p.code if i.op == "xbwrite" and sum(j.op == "xbwrite" and j.attr("xb") == i.attr("xb")
                                                             for j in m.p.code) == 1]
    for ins in once:                       # written once per inference: it already holds it
        assert m.cells.events[id(ins)].changed == 0
    assert sum(e.pulses for e in m.cells.events.values()) > 0


def test_chunks_change_nothing_on_a_rewriting_target():
    a, b = Machine(parse_program(text("overlap"))), Machine(parse_program(text("overlap")))
    ya, yb = a.run({"image": X16}, chunk=16)["logits"], b.run({"image": X16}, chunk=5)["logits"]
    assert np.array_equal(ya, yb)
    sa, sb = a.stats.to_json(), b.stats.to_json()
    ra, rb = account(a), account(b)
    assert sa["write_pulses"] == sb["write_pulses"] == ra["write_pulses"] * len(X16)   # per inference x samples
    assert ra == rb


# ---- the timeline ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["naive", "overlap", "aras"])
def test_timeline_keeps_each_pe_row_busy_with_one_thing_at_a_time(mode):
    r = accounted(mode)
    by_row: dict[int, list] = {}
    for kind, row, s, e, layer, _ in r["timeline"]:
        assert 0 <= s <= e <= r["time_ns"]
        by_row.setdefault(row, []).append((s, e, kind, layer))
    for row, spans in by_row.items():
        writes = [x for x in spans if x[2] == "write"]
        computes = [x for x in spans if x[2] == "compute"]
        for s0, e0, _, _ in writes:           # a write neither overlaps a compute of its row
            assert all(e1 <= s0 + 1e-6 or s1 >= e0 - 1e-6 for s1, e1, _, _ in computes), (row, spans)
        for s0, e0, _, l0 in computes:        # and the row computes one layer at a time
            assert all(l1 == l0 or e1 <= s0 + 1e-6 or s1 >= e0 - 1e-6 for s1, e1, _, l1 in computes), (row, spans)
    assert 0 < r["pct_of_bound"] <= 100
    assert r["inferences_per_s"] == pytest.approx(1e9 / r["time_ns"])


def test_overlap_is_faster_than_naive_and_aras_saves_static_energy():
    naive, overlap, aras = accounted("naive"), accounted("overlap"), accounted("aras")
    assert overlap["time_ns"] < naive["time_ns"]
    assert aras["energy_pj"]["static_banks"] < overlap["energy_pj"]["static_banks"]
    t = load_target(SMALL)
    for r in (naive, overlap, aras):
        assert r["energy_pj"]["weight_writes"] == r["write_pulses"] * t.e_write_pulse
        assert r["crossbar_writes"] == 21 and r["dram_bytes"] > 0


@pytest.mark.parametrize("mode", ["naive", "overlap", "aras"])
def test_no_schedule_beats_either_bound(mode):
    """ARAS sec. IV's write bound and the compute floor are lower bounds of the time per inference; a naive schedule,
    which waits for every write, is far above the compute floor."""
    r = accounted(mode)
    assert 0 < r["compute_floor_ns"] <= r["time_ns"] and r["bound_ns"] <= r["time_ns"]
    assert r["pct_of_bound"] <= r["pct_of_lower_bound"] <= 100.0
    steps = sum(s["end_ns"] - s["start_ns"] for s in r["steps"])
    assert r["compute_floor_ns"] <= steps + 1e-6
    if mode == "naive":
        assert r["time_ns"] > 2 * r["compute_floor_ns"]


# ---- faults of hand-edited schedules ---------------------------------------------------------------------

def test_compute_before_the_write():
    src = text("overlap")
    k = find(src, r"^xbwrite .*lxb=1 ")
    ls = lines(src)
    del ls[k]
    mvm = find("\n".join(ls), r"^mvm .*lxb=1 ")
    msg = fault("\n".join(ls))
    assert msg.startswith(f"s.pimasm:{mvm + 1}: mvm: crossbar 2 is used before it is written"), msg


def test_write_over_a_crossbar_still_in_use():
    """Move the write that replaces f.0's crossbar before the mvm that still reads it."""
    src = text("overlap")
    ls = lines(src)
    mvm0 = find(src, r"^mvm .*lxb=0 ")
    w = find(src, r"^xbwrite .*xb=0 ", mvm0)
    ls.insert(mvm0, ls.pop(w))
    msg = fault("\n".join(ls))
    assert msg.startswith(f"s.pimasm:{mvm0 + 1}: xbwrite: crossbar 0 is still in use: the mvm at line "
                          f"{mvm0 + 2} reads its logical crossbar 0 (/f/f.0/Conv)"), msg


def test_compute_on_a_crossbar_holding_another_layer():
    src = text("overlap")
    mvm = find(src, r"^mvm .*lxb=1 ")
    ls = lines(src)
    ls[mvm] = ls[mvm].replace(" xb=2 ", " xb=0 ")
    msg = fault("\n".join(ls))
    assert msg.startswith(f"s.pimasm:{mvm + 1}: mvm: crossbar 0 holds logical crossbar"), msg
    assert "not what this mvm reads" in msg


def test_a_pe_row_holds_one_layer():
    src = text("overlap")
    ls = lines(src)
    first = find(src, r"^xbwrite ")
    other = re.sub(r"\bxb=\d+", "xb=1", ls[find(src, r"^xbwrite .*/f/f.7/Conv")], count=1)
    ls.insert(first + 1, re.sub(r"\bpe=\d+", "pe=0", other))
    msg = fault("\n".join(ls))
    assert msg.startswith(f"s.pimasm:{first + 2}: xbwrite: PE row 0 still holds layer /f/f.0/Conv on crossbar 0"), msg


@pytest.mark.parametrize("edit, needle", [
    (lambda ln: ln.replace("pe=0", "pe=1", 1), "crossbar 0 lies in PE row 0 (2 crossbars a row), not pe=1"),
    (lambda ln: ln + " after=nowhere", "after='nowhere' names no earlier step"),
])
def test_write_attributes_are_checked(edit, needle):
    src = text("overlap")
    k = find(src, r"^xbwrite .*xb=0 ")
    ls = lines(src)
    ls[k] = edit(ls[k])
    msg = fault("\n".join(ls))
    assert msg.startswith(f"s.pimasm:{k + 1}: xbwrite: ") and needle in msg, msg


def test_banks_too_small_for_the_layer():
    src = text("aras")
    k = find(src, r"^mvm .*/f/f.3/Conv")
    ls = lines(src)
    ls[k] = re.sub(r"ibanks=\[[^]]*\]", "ibanks=[0]", ls[k])       # a 1 KB bank for 16x16x16 codes
    msg = fault("\n".join(ls))
    assert msg.startswith(f"s.pimasm:{k + 1}: mvm: the layer's input of 4096 B per sample exceeds its banks [0] "
                          "(1024 B)"), msg
    ls[k] = re.sub(r"obanks=\[[^]]*\]", "obanks=[0]", ls[k])
    msg = fault("\n".join(ls))
    assert msg.startswith(f"s.pimasm:{k + 1}: mvm: ibanks [0] and obanks [0] share a bank"), msg


# ---- pimrun ----------------------------------------------------------------------------------------------

def test_pimrun_reports_the_schedule_and_draws_the_timeline(tmp_path):
    prog = tmp_path / "d.pimasm"
    prog.write_text(text("aras"))
    np.save(tmp_path / "x.npy", X16[:4])
    png, stats = tmp_path / "t.png", tmp_path / "s.json"
    run = lambda *a: subprocess.run([sys.executable, "-m", "runtime.cli", *map(str, a)], capture_output=True,
                                    text=True)
    r = run(prog, "--input", tmp_path / "x.npy", "--timeline", png, "--stats", stats)
    assert r.returncode == 0, r.stderr
    assert "inferences/s" in r.stdout and "% of the write bound" in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "traceEvents" in json.loads((tmp_path / "t.trace.json").read_text())
    sc = json.loads(stats.read_text())["schedule"]
    assert sc["time_ns"] > 0 and set(sc["energy_pj"]) == {"weight_writes", "runtime_writes", "compute", "static_banks",
                                                  "static_pes"}
    once = tmp_path / "i.pimasm"
    from tests.conftest import digits_compiled
    once.write_text(print_program(digits_compiled("isaac").program))
    r = run(once, "--input", tmp_path / "x.npy", "--timeline", png)
    assert r.returncode != 0 and "program-once" in r.stderr and r.stderr.count("\n") == 1
