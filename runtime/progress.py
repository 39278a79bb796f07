"""A progress bar on stderr, shown only when stderr is a terminal and the work has run over a second."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, enabled: bool | None = None):
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.t0 = time.monotonic()
        self.shown = False

    def __call__(self, done, total=None):
        if not self.enabled or time.monotonic() - self.t0 < 1.0:
            return
        self.shown = True
        if total:
            w = 30
            k = int(w * done / total)
            sys.stderr.write(f"\r{self.label} [{'#' * k}{'.' * (w - k)}] {done}/{total}")
        else:
            sys.stderr.write(f"\r{self.label}: {done}" + " " * 20)
        sys.stderr.flush()

    def close(self):
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
