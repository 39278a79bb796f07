"""How both CLIs end: a user's error is one stderr line and exit 1; a bug is one line and exit 2 (PIM_DEBUG=1
shows its traceback); nothing ever prints a traceback by default."""
from __future__ import annotations

import os
import sys
import warnings


class Terminated(BaseException):
    """SIGTERM, raised as an exception (runtime/io.committed_together) so that temp files go on the way out."""


NUMPY_WARNINGS = r"(overflow|invalid value|divide by zero) encountered|Mean of empty slice"
MAX_LINE = 600      # characters of an error line: a message quoting a 10 MB line of input is cut, not echoed


def one_line(e: BaseException) -> str:
    """An error message as one stderr line, however many lines the exception's text has, cut to MAX_LINE."""
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    return text if len(text) <= MAX_LINE else f"{text[:MAX_LINE - 40]} ... ({len(text) - MAX_LINE + 40} characters cut)"


def guarded(prog: str, user_errors: tuple, bar, body) -> int:
    """Run body(); a NumPy RuntimeWarning (overflow, invalid value) is raised as an exception, so it ends the
    command as one line (an internal error: the check that should have named its cause is missing) instead of
    an extra stderr line beside a possibly wrong result."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", NUMPY_WARNINGS, RuntimeWarning)
            return body()
    except user_errors as e:
        bar.close()
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 1
    except MemoryError as e:      # a program or batch too large for this host
        bar.close()
        advice = "; try a smaller --chunk" if prog == "pimrun" else ""
        print(f"{prog}: error: out of memory ({one_line(e)}){advice}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Terminated:
        return 143
    except Exception as e:
        if os.environ.get("PIM_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(e).__name__}: {one_line(e)} (set PIM_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 2
