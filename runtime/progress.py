"""Progress on stderr for work that runs over a couple of seconds: a bar on a terminal; off a terminal (a pipe,
a log, CI) a plain line at most every few seconds, so a long run is never silent. Each line says the phase."""
from __future__ import annotations

import sys
import time

QUIET_S = 2.0          # work shorter than this shows nothing
EVERY_S = 5.0          # off a terminal: at most one line this often


class Progress:
    def __init__(self, label: str, enabled: bool = True, tty: bool | None = None, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty() if tty is None else tty
        self.t0 = time.monotonic()
        self.last = -EVERY_S
        self.what = ""
        self.shown = False

    def phase(self, what: str) -> None:
        """A new phase (parsing the program, a compile pass, running the batch): named in the next line."""
        self.what = what
        self._show(what)

    def __call__(self, done, total=None):
        """progress(name) starts a phase; progress(done, total) reports samples done in the current one."""
        if total is None and isinstance(done, str):
            return self.phase(done)
        self._show(f"{self.what + ' ' if self.what else ''}{done}/{total}" if total else f"{done}", done, total)

    def _show(self, text, done=None, total=None):
        now = time.monotonic() - self.t0
        if not self.enabled or now < QUIET_S:
            return
        if self.tty:
            if total:
                k = int(30 * done / total)
                text = f"{self.what + ' ' if self.what else ''}[{'#' * k}{'.' * (30 - k)}] {done}/{total}"
            self.stream.write(f"\r{self.label}: {text}" + " " * 10)
        else:
            if now - self.last < EVERY_S:
                return
            self.last = now
            self.stream.write(f"{self.label}: {text} ({now:.0f} s)\n")
        self.shown = True
        self.stream.flush()

    def close(self):
        if self.shown and self.tty:
            self.stream.write("\n")
            self.stream.flush()
        self.shown = False
