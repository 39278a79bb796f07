"""Table lookup (lut): one 256-entry table, or one row per channel, against a direct loop; a table that does
not fit its codes faults with the instruction's line."""
from __future__ import annotations

import numpy as np
import pytest

from isa import parse_program
from isa.text import encode_array
from runtime import kernels as K
from runtime.errors import RuntimeFault
from runtime.machine import Machine
from tests.runtime.test_validate import digits_text


def test_per_channel_table_equals_a_loop():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 4, 2, 5)).astype(np.uint8)
    table = rng.integers(0, 256, (4, 256)).astype(np.uint8)
    want = np.empty_like(x)
    for n, c, h, w in np.ndindex(x.shape):
        want[n, c, h, w] = table[c, x[n, c, h, w]]
    assert np.array_equal(K.lut(x, table), want)
    assert np.array_equal(K.lut(x, table[0]), table[0][x])


def _program(shape) -> str:
    """input [4, 3] -> lut with a table of `shape` -> output, on the digits program's target."""
    head = [ln for ln in digits_text().splitlines() if ln.startswith(("pimasm", ".target"))]
    i = np.arange(int(np.prod(shape)))
    table = ((i % shape[-1] + 10 * (i // shape[-1])) % 256).reshape(shape).astype(np.uint8)   # row c: code + 10 c
    return "\n".join(head + [".data", f"@t = u8[{','.join(map(str, shape))}] {encode_array(table)}", ".code",
                             "input %x ; name=x shape=[4, 3] scale=1.0 zero=0", "lut %y, %x ; table=@t",
                             "output %y ; name=y scale=1.0 zero=0"]) + "\n"


def test_a_per_channel_table_runs():
    x = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    y = Machine(parse_program(_program((4, 256))), ideal=True).run({"x": x})["y"]
    assert np.array_equal(y, x + 10 * np.arange(4)[None, :, None])


@pytest.mark.parametrize("shape,match", [((255,), "256 entries"), ((2, 3, 256), "256 entries")])
def test_a_table_of_the_wrong_shape_faults_before_running(shape, match):
    with pytest.raises(RuntimeFault, match=rf":\d+: lut: .*{match}"):
        Machine(parse_program(_program(shape)))


def test_a_table_whose_channels_differ_from_the_codes_faults():
    m = Machine(parse_program(_program((5, 256))))
    with pytest.raises(RuntimeFault, match=r":\d+: lut: a table of 5 channels for codes of shape \[4, 3\]"):
        m.run({"x": np.zeros((2, 4, 3), np.float32)})
