"""Value-picking converters of compiler/onnx_select.py: Pad in reflect / edge / wrap mode, Gather with an
index array, Compress by a constant condition, Tile, DepthToSpace and SpaceToDepth. Each output is one input value, so pimrun ideal (equal to the
quantised reference bit for bit) stays within 8-bit error of onnx's reference evaluator."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from compiler.onnx_select import _source
from compiler.pipeline import compile_model
from isa import parse_program, print_program
from passes.reference import dequantize_outputs, run_reference
from runtime.machine import Machine

SHAPE = [4, 6, 6]


def _model(op, inits=(), **a) -> onnx.ModelProto:
    node = helper.make_node(op, ["x"] + [k for k, _ in inits], ["y"], name="sel", **a)
    g = helper.make_graph([node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"] + SHAPE)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])


PADS = np.array([0, 0, 2, 1, 0, 0, 1, 3], np.int64)
CASES = {
    "pad_reflect": ("Pad", (("pads", PADS),), {"mode": "reflect"}),
    "pad_edge": ("Pad", (("pads", PADS),), {"mode": "edge"}),
    "pad_wrap": ("Pad", (("pads", PADS),), {"mode": "wrap"}),
    "gather_2d_indices": ("Gather", (("i", np.array([[0, 5], [-1, 2], [3, 3]], np.int64)),), {"axis": 2}),
    "depth_to_space_crd": ("DepthToSpace", (), {"blocksize": 2, "mode": "CRD"}),
    "space_to_depth": ("SpaceToDepth", (), {"blocksize": 3}),
    "compress": ("Compress", (("c", np.array([1, 0, 0, 1, 1, 0], bool)),), {"axis": -1}),
    "tile": ("Tile", (("r", np.array([1, 2, 1, 3], np.int64)),), {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bit_exact_and_close(case):
    op, inits, a = CASES[case]
    m = _model(op, inits, **a)
    x = {"x": np.random.default_rng(1).standard_normal([8] + SHAPE).astype(np.float32)}
    c = compile_model(m, "isaac", x)
    ideal = Machine(parse_program(print_program(c.program)), ideal=True).run(x)["y"]
    assert np.array_equal(ideal, dequantize_outputs(c.graph, run_reference(c.graph, x))["y"])
    want = ReferenceEvaluator(m).run(None, x)[0]
    assert ideal.shape == want.shape
    assert np.abs(ideal - want).max() <= 0.05 * np.abs(want).max()


def test_source_positions_follow_numpy_pad():
    for mode, np_mode in (("reflect", "reflect"), ("edge", "edge"), ("wrap", "wrap")):
        assert _source(mode, 5, 3, 4).tolist() == np.pad(np.arange(5), (3, 4), mode=np_mode).tolist()


@pytest.mark.parametrize("op,inits,a,why", [
    ("Compress", (("c", np.array([1, 0, 1], bool)),), {}, "without an axis it flattens the batch axis"),
    ("Tile", (("r", np.array([2, 1, 1, 1], np.int64)),), {}, r"repeating the batch axis \(2 times\)"),
])
def test_forms_over_the_batch_axis_are_refused(op, inits, a, why):
    from ir import FrontendError
    with pytest.raises(FrontendError, match=f"^node sel \\({op}\\): {why}"):
        compile_model(_model(op, inits, **a), "isaac", np.ones([2] + SHAPE, np.float32))
