"""Executor details: DAC pulse counting from the source tensor, chunking, crossbar rewrites."""
from __future__ import annotations

import numpy as np
import pytest

from runtime import crossbar as X
from runtime.machine import Machine
from tests.conftest import digits_compiled


@pytest.mark.parametrize("target", ["isaac", "raella"])
def test_dac_pulses_equal_a_direct_count_on_the_windows(target, digits_test):
    x, _ = digits_test
    prog = digits_compiled(target).program
    m = Machine(prog, ideal=True)
    direct, run_chunk = [], m._run_chunk

    def counted(feeds):         # the windows of every chunk (the first sample runs alone, to be measured)
        out = run_chunk(feeds)
        for ins in prog.code:
            if ins.op == "mvm":
                r0, r1 = m.xbars[ins.attr("xb")].rows
                win = m.env[ins.args[1].name]
                direct.append(int(X.row_pulses(win.reshape(-1, win.shape[-1])[:, r0:r1], ins.attr("islices")).sum()))
        return out
    m._run_chunk = counted
    m.run({"image": x[:20]}, chunk=20)
    assert m.stats.to_json()["dac_pulses"] == sum(direct) > 0


def test_chunks_change_nothing(digits_test):
    x, _ = digits_test
    prog = digits_compiled("raella").program
    a, b = Machine(prog), Machine(prog)
    ya, yb = a.run({"image": x[:40]}, chunk=40)["logits"], b.run({"image": x[:40]}, chunk=7)["logits"]
    assert np.array_equal(ya, yb)
    sa, sb = a.stats.to_json(), b.stats.to_json()
    for k in ("macs", "adc_converts", "saturated_converts", "dac_pulses", "cells_written", "write_pulses"):
        assert sa[k] == sb[k], k          # weights are written once: a rewrite of unchanged cells is free


def test_automatic_chunks_fit_the_budget_and_change_nothing(digits_test, monkeypatch):
    """chunk None: one sample first, then as many per chunk as the measured buffers allow; later runs reuse
    the measure."""
    from runtime import machine as MM

    x = digits_test[0][:23]
    prog = digits_compiled("raella").program
    want = Machine(prog).run({"image": x}, chunk=23)["logits"]
    probe = Machine(prog)
    probe.run({"image": x[:1]}, chunk=1)
    per_sample = sum(a.nbytes for a in probe.env.values() if isinstance(a, np.ndarray))
    sizes = []
    real = MM.Machine._run_chunk
    monkeypatch.setattr(MM.Machine, "_run_chunk", lambda m, part: sizes.append(len(part["image"])) or real(m, part))
    monkeypatch.setattr(MM, "CHUNK_BYTES", per_sample * 5 + 1)
    m = Machine(prog)
    assert np.array_equal(m.run({"image": x})["logits"], want)
    assert sizes == [1, 5, 5, 5, 5, 2]
    sizes.clear()
    assert np.array_equal(m.run({"image": x})["logits"], want)      # the measure is kept: no first sample alone
    assert sizes == [5, 5, 5, 5, 3]
    sizes.clear()
    monkeypatch.setattr(MM, "CHUNK_BYTES", 1 << 30)
    Machine(prog).run({"image": x})
    assert sizes == [1, 22]


def test_buffer_capacity_is_enforced(digits_test):
    from dataclasses import replace as dc_replace

    from runtime.errors import RuntimeFault
    x, _ = digits_test
    prog = digits_compiled("isaac").program
    small = dc_replace(prog, target=prog.target.replace(tiles=1, buffer_kb_per_tile=1))
    with pytest.raises(RuntimeFault, match=r"requant: result of 4096 B per sample exceeds the target's buffers"):
        Machine(small).run({"image": x[:2]})


def test_converts_per_column_under_speculation(digits_test):
    x, _ = digits_test
    m = Machine(digits_compiled("raella").program)
    m.run({"image": x[:32]})
    s = m.stats.to_json()
    spec_layers = [r for r in s["layers"] if r.get("speculative_per_column")]
    assert spec_layers and all(r["speculative_per_column"] == 3 for r in spec_layers)    # 4-2-2 speculation
    assert all(r["recovery_per_column"] > 0 for r in spec_layers)
    assert s["converts_per_column"] == pytest.approx(s["speculative_per_column"] + s["recovery_per_column"])
    m1 = Machine(digits_compiled("isaac").program)
    m1.run({"image": x[:4]})
    assert m1.stats.to_json()["converts_per_column"] == 8                                # eight 1-bit slices
