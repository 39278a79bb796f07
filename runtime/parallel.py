"""Row blocks spread over the cores. NumPy's loops and BLAS release the GIL, so threads that each take a
contiguous part of the rows run in parallel. BLAS is held to one thread meanwhile: its own threads would
compete with ours for the same cores."""
from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext

WORKERS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
MIN_PART = 1 << 16            # elements per thread below which a thread costs more than it saves
_pool: ThreadPoolExecutor | None = None


def _openblas_threads():
    """(get, set) of the loaded OpenBLAS's thread count, or None when there is no OpenBLAS to hold."""
    try:
        with open("/proc/self/maps") as f:
            paths = {p[-1] for p in (line.split() for line in f)
                     if len(p) >= 6 and "openblas" in os.path.basename(p[-1]).lower()}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        except OSError:
            continue
        for stem in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{stem}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{stem}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    return get, put
    return None


_BLAS: tuple | None = ()       # looked up on first use, once NumPy has loaded its BLAS
_held = [0, 0]                 # callers holding BLAS at one thread, and the count to restore after the last
_lock = threading.Lock()


@contextmanager
def _one_blas_thread():
    with _lock:
        if not _held[0]:
            _held[1] = _BLAS[0]()
            _BLAS[1](1)
        _held[0] += 1
    try:
        yield
    finally:
        with _lock:
            _held[0] -= 1
            if not _held[0]:
                _BLAS[1](_held[1])


def single_blas():
    """BLAS held to one thread for a block of work (a nullcontext where no OpenBLAS is loaded). The compiler
    holds it throughout: its products are small, and OpenBLAS's spinning threads cost more than they give on a
    few cores (a ResNet-50 compile used 30% more CPU seconds with them)."""
    global _BLAS
    if _BLAS == ():
        _BLAS = _openblas_threads()
    return _one_blas_thread() if _BLAS else nullcontext()


def _after_fork():
    """A forked child has none of the parent's pool threads: it starts its own pool."""
    global _pool, _lock
    _pool, _lock = None, threading.Lock()
    _held[0] = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def rows(n: int, fn, elems_per_row: int = 1, blas: bool = False) -> None:
    """Call fn(lo, hi) on contiguous parts of range(n) that cover it, one per worker thread, and wait. With
    `blas` (fn calls BLAS) BLAS is held to one thread, and without that hold the parts run in one thread."""
    global _pool, _BLAS
    if _BLAS == ():
        _BLAS = _openblas_threads()
    k = min(WORKERS, n * elems_per_row // MIN_PART)
    if blas and _BLAS is None and k > 1:
        k = 1
    with _one_blas_thread() if blas and _BLAS else nullcontext():
        if k < 2:
            fn(0, n)
            return
        if _pool is None:
            _pool = ThreadPoolExecutor(WORKERS)
        cuts = [n * i // k for i in range(k + 1)]
        for f in [_pool.submit(fn, a, b) for a, b in zip(cuts, cuts[1:])]:
            f.result()
