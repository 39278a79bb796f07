"""Progress: a bar on a terminal, a plain line at most every few seconds elsewhere, nothing when quiet or quick."""
import io

from runtime import progress as pg


def clocked(monkeypatch, times):
    it = iter(times)
    monkeypatch.setattr(pg.time, "monotonic", lambda: next(it))


def test_off_a_terminal_plain_lines_rate_limited_with_the_phase(monkeypatch):
    clocked(monkeypatch, [0.0, 0.5, 3.0, 4.0, 9.0, 20.0])
    s = io.StringIO()
    p = pg.Progress("pimrun", tty=False, stream=s)
    p.phase("parsing")                  # 0.5 s: too early to say anything
    p.phase("running samples")          # 3 s: shown
    p(10, 540)                          # 4 s: within 5 s of the last line
    p(100, 540)                         # 9 s
    p(540, 540)                         # 20 s
    p.close()
    lines = s.getvalue().splitlines()
    assert lines == ["pimrun: running samples (3 s)", "pimrun: running samples 100/540 (9 s)",
                     "pimrun: running samples 540/540 (20 s)"]
    assert "\r" not in s.getvalue()


def test_quiet_prints_nothing(monkeypatch):
    clocked(monkeypatch, [0.0] + [100.0] * 5)
    s = io.StringIO()
    p = pg.Progress("pimc", enabled=False, tty=False, stream=s)
    p.phase("calibrate")
    p(3, 4)
    p.close()
    assert s.getvalue() == ""


def test_terminal_bar_ends_with_a_newline(monkeypatch):
    clocked(monkeypatch, [0.0, 5.0, 6.0])
    s = io.StringIO()
    p = pg.Progress("pimrun", tty=True, stream=s)
    p.phase("running samples")
    p(270, 540)
    p.close()
    assert s.getvalue().startswith("\rpimrun: running samples") and "270/540" in s.getvalue()
    assert s.getvalue().endswith("\n")
