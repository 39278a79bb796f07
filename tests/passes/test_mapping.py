"""Crossbar tiling and block-diagonal packing of grouped convs."""
from __future__ import annotations

import numpy as np
import pytest

from ir import CompileError, Graph, Tensor
from isa import load_target
from passes.manager import Context
from passes.mapping import MapCrossbars


def _graph(kind, w, group=1):
    g = Graph()
    g.add_tensor(Tensor("x", (1,)))
    g.add_op(kind, "L", ["x"], ["y"], group=group, q={"w": w})
    g.add_tensor(Tensor("y", (1,)))
    return g


def test_dense_layer_tiles_rows_and_filters():
    t = load_target("isaac")                                # 128 rows, 32 filters of 4 slices
    g = _graph("linear", np.ones((300, 70), np.int16))
    rep = MapCrossbars().run(g, Context(t))
    xbars = g.ops["L"].attrs["xbars"]
    assert len(xbars) == 3 * 3 and rep.crossbars == 9
    assert {x["rows"] for x in xbars} == {(0, 128), (128, 256), (256, 300)}
    assert {x["cols"] for x in xbars} == {(0, 32), (32, 64), (64, 70)}


def test_depthwise_packs_groups_block_diagonally():
    t = load_target("isaac")
    g = _graph("conv", np.ones((64, 1, 3, 3), np.int16), group=64)
    rep = MapCrossbars().run(g, Context(t))
    xbars = g.ops["L"].attrs["xbars"]
    assert len(xbars) == 5                                  # 14 groups of 9 rows per 128-row crossbar
    assert xbars[0]["rows"] == (0, 126) and xbars[0]["cols"] == (0, 14)
    assert rep.layers["L"]["crossbars"] == 5


def test_program_once_capacity_is_enforced():
    t = load_target("isaac").replace(tiles=1, imas_per_tile=1, xbars_per_ima=2)
    g = _graph("linear", np.ones((300, 70), np.int16))
    with pytest.raises(CompileError, match="needs 9 crossbars"):
        MapCrossbars().run(g, Context(t))
