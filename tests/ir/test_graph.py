"""Graph IR: topological order, pruning, renames; the float evaluator's conv against a direct sum."""
from __future__ import annotations

import numpy as np

from ir import Graph, Tensor
from ir.float_eval import evaluate


def _chain():
    g = Graph()
    g.add_tensor(Tensor("x", (2,)))
    for name, src, dst in (("b", "t1", "t2"), ("a", "x", "t1"), ("dead", "x", "t3")):
        g.add_op("relu", name, [src], [dst])
        g.add_tensor(Tensor(dst, (2,)))
    g.inputs, g.outputs, g.output_names = ["x"], ["t2"], ["y"]
    return g


def test_topo_follows_data_not_insertion():
    assert [op.name for op in _chain().topo()] == ["a", "b", "dead"]      # ties: insertion order


def test_prune_drops_what_no_output_needs():
    g = _chain()
    g.prune()
    assert set(g.ops) == {"a", "b"} and "t3" not in g.tensors


def test_replace_uses_keeps_the_output_name():
    g = _chain()
    g.replace_uses("t2", "t1")
    assert g.outputs == ["t1"] and g.output_names == ["y"]


def test_grouped_strided_dilated_conv_matches_a_direct_sum():
    rng = np.random.default_rng(0)
    g = Graph()
    g.add_tensor(Tensor("x", (4, 7, 7)))
    g.const("w", rng.normal(size=(6, 2, 3, 3)))
    g.add_op("conv", "c", ["x", "w"], ["y"], group=2, kernel=(3, 3), strides=(2, 1), pads=(1, 0, 1, 2),
             dilations=(1, 2))
    g.add_tensor(Tensor("y", ()))
    g.inputs, g.outputs = ["x"], ["y"]
    x = rng.normal(size=(3, 4, 7, 7))
    y = evaluate(g, {"x": x})["y"]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 2)))
    w = g.tensors["w"].data
    ref = np.zeros_like(y)
    for o in range(6):
        grp = o // 3
        for i in range(y.shape[2]):
            for j in range(y.shape[3]):
                patch = xp[:, 2 * grp:2 * grp + 2, 2 * i:2 * i + 3, j:j + 5:2]
                ref[:, o, i, j] = np.einsum("bcij,cij->b", patch, w[o])
    assert y.shape == (3, 6, 4, 5)
    assert np.allclose(y, ref)


def test_evaluate_visits_every_tensor_and_holds_only_the_live_ones():
    """visit sees the feeds and every computed tensor, with the values keep_all keeps; without keep_all a tensor
    is gone once its last reader has run (calibration folds each into its range, holding the live ones only)."""
    import weakref
    g = _chain()
    x = np.array([[-1.0, 2.0], [3.0, -4.0]])
    every = evaluate(g, {"x": x}, keep_all=True)
    seen, refs, alive_at_t3 = {}, {}, {}

    def visit(k, v):
        seen[k] = v.copy()
        refs[k] = weakref.ref(v)
        if k == "t3":       # op `dead` runs after `b`, t1's last reader
            alive_at_t3.update({n: r() is not None for n, r in refs.items()})

    out = evaluate(g, {"x": x}, visit=visit)
    assert list(seen) == ["x", "t1", "t2", "t3"] and set(out) == {"t2"}
    assert all(np.array_equal(seen[k], every[k]) for k in every)
    assert alive_at_t3["t1"] is False and alive_at_t3["t2"] is True      # t2 is an output: kept
