"""A constant's declared size is checked before it is inflated: against what its payload can inflate to (a
forged size is refused at once) and against the memory the process may still use (a real but too large
constant is one AsmError naming the line, under a memory limit the test sets, never the OOM killer)."""
from __future__ import annotations

import base64
import struct
import subprocess
import sys
import textwrap
import zlib
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isa import AsmError, parse_program
from isa.host import memory_budget

ROOT = Path(__file__).resolve().parents[2]
CHUNK = 1 << 24


@lru_cache(maxsize=1)
def _blocks() -> tuple[bytes, bytes, bytes]:
    c = zlib.compressobj(9)
    z = bytes(CHUNK)
    first = c.compress(z) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(z) + c.flush(zlib.Z_FULL_FLUSH)      # after a full flush a chunk compresses the same
    return first, again, c.flush()[:-4]


def zeros_payload(chunks: int) -> str:
    """A valid zlib stream of chunks x 16 MiB zero bytes, made without compressing them all (one 16 KiB block
    repeated, with the stream's Adler-32 worked out: a = 1, b = length mod 65521)."""
    first, again, end = _blocks()
    n = chunks * CHUNK
    stream = first + again * (chunks - 1) + end + struct.pack(">I", ((n % 65521) << 16) | 1)
    return "$" + base64.b64encode(stream).decode()


def program(dtype: str, shape, payload: str) -> str:
    from conftest import digits_compiled
    from isa import print_program
    text = print_program(digits_compiled("isaac").program)
    return text.replace(".data\n", f".data\n@bomb = {dtype}[{','.join(map(str, shape))}] {payload}\n", 1)


def test_the_crafted_payload_is_what_it_claims():
    assert zlib.decompress(base64.b64decode(zeros_payload(3)[1:])) == bytes(3 * CHUNK)


@settings(max_examples=25, deadline=None)
@given(dtype=st.sampled_from(["i8", "u8", "i32", "f32", "i64"]), dims=st.lists(st.integers(1, 1 << 20), min_size=1,
                                                                               max_size=3), small=st.integers(0, 3))
def test_a_declared_size_the_payload_cannot_hold_is_refused_before_inflating(dtype, dims, small):
    payload = "$" + base64.b64encode(zlib.compress(bytes(16 * small), 9)).decode()
    text = program(dtype, dims + [1 << 30], payload)            # at least 1 GiB declared
    with pytest.raises(AsmError, match=r"^f\.pimasm:\d+:1: corrupt data payload: .* declares \d+ bytes"):
        parse_program(text, "f.pimasm")


def test_a_constant_beyond_the_memory_limit_is_one_error_naming_the_line(tmp_path):
    path = tmp_path / "bomb.pimasm"
    path.write_text(program("i8", [64 * CHUNK], zeros_payload(64)))     # 1 GiB of zeros, 1 MiB on disk
    code = textwrap.dedent(f"""
        import resource, sys
        from isa import AsmError, read_program
        from isa.host import memory_budget
        import re
        status = open("/proc/self/status").read()
        used = int(re.search(r"VmData:\\s+(\\d+)", status).group(1)) * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (used + (512 << 20), resource.RLIM_INFINITY))
        assert memory_budget() <= 512 << 20
        try:
            read_program({str(path)!r})
        except AsmError as e:
            print(e)
            sys.exit(1)
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "bomb.pimasm:" in r.stdout and "declares 1073741824 bytes, more than the" in r.stdout, r.stdout
    assert "memory" in r.stdout


def test_the_budget_is_positive_and_bounded_by_the_host():
    assert 0 < memory_budget()
