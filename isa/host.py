"""How much memory this host can still give the process: free memory, less what the process's own limits
(RLIMIT_AS, RLIMIT_DATA, as a test or a batch system sets them) leave. Readers check a size a file declares
against it before allocating, so an input too large for the host is one error, not the kernel's OOM killer."""
from __future__ import annotations

import os
import sys


def _proc_kb(path: str, key: str) -> int | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_budget() -> int:
    """Bytes the process can still allocate (sys.maxsize where the host says nothing)."""
    budget = _proc_kb("/proc/meminfo", "MemAvailable") or sys.maxsize
    try:
        import resource
    except ImportError:             # not a POSIX host
        return budget
    for limit, used in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
        soft = resource.getrlimit(limit)[0]
        if soft != resource.RLIM_INFINITY:
            budget = min(budget, max(0, soft - (_proc_kb(f"/proc/{os.getpid()}/status", used) or 0)))
    return budget
