"""The opset-23 Attention op (compiler/onnx_attention.py): heads from 3-D inputs with grouped-query sharing
and a causal mask, a run-time additive mask with softcap, constant keys / values (weights) with a boolean mask
that forbids whole keys and the softmax as a second output. pimrun ideal equals the quantised reference bit
for bit and follows onnx's reference evaluator within 8-bit error."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from compiler.pipeline import compile_model
from ir import FrontendError
from isa import parse_program, print_program
from passes.reference import dequantize_outputs, run_reference
from runtime.machine import Machine

RNG = np.random.default_rng(0)
F = TensorProto.FLOAT


def _model(inputs, outs, inits=(), **a) -> onnx.ModelProto:
    names = [n for n, _ in inputs] + [n for n, _ in inits]
    order = [n for n in ("Q", "K", "V", "mask") if n in names]
    node = helper.make_node("Attention", order, list(outs), name="att", **a)
    g = helper.make_graph([node], "att", [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
                          [helper.make_tensor_value_info(o, F, None) for o in outs if o],
                          [numpy_helper.from_array(v, n) for n, v in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 23)])


def _feeds(inputs, n, seed):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal([n] + list(s[1:])).astype(np.float32) for k, s in inputs}


MASK = np.ones((4, 6), bool)
MASK[:, 5] = False                  # key 5 forbidden for every query
MASK[1, :2] = False
CASES = {
    "3d_gqa_causal": ([("Q", ["N", 4, 24]), ("K", ["N", 6, 8]), ("V", ["N", 6, 8])], ("y",), (),
                      {"q_num_heads": 6, "kv_num_heads": 2, "is_causal": 1}),
    "4d_mask_softcap": ([("Q", ["N", 2, 4, 8]), ("K", ["N", 2, 6, 8]), ("V", ["N", 2, 6, 8]),
                         ("mask", ["N", 1, 4, 6])], ("y",), (), {"softcap": 2.0, "scale": 0.3}),
    "const_kv_bool_mask": ([("Q", ["N", 2, 4, 8])], ("y", "", "", "p"),
                           (("K", RNG.standard_normal((1, 2, 6, 8)).astype(np.float32)),
                            ("V", RNG.standard_normal((1, 2, 6, 8)).astype(np.float32)), ("mask", MASK)),
                           {"qk_matmul_output_mode": 3}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bit_exact_and_close(case):
    inputs, outs, inits, a = CASES[case]
    m = _model(inputs, outs, inits, **a)
    x = _feeds(inputs, 8, 1)
    c = compile_model(m, "isaac", {k: np.concatenate([v, _feeds(inputs, 24, 2)[k]]) for k, v in x.items()})
    ideal = Machine(parse_program(print_program(c.program)), ideal=True).run(x)
    ref = dequantize_outputs(c.graph, run_reference(c.graph, x))
    want = ReferenceEvaluator(m).run(None, x)
    for name, w in zip([o for o in outs if o], want):
        assert np.array_equal(ideal[name], ref[name])
        assert np.abs(ideal[name] - w).max() <= 0.05 * np.abs(w).max(), name


def test_per_sample_kv_lengths_are_refused():
    inputs = [("Q", ["N", 2, 4, 8]), ("K", ["N", 2, 6, 8]), ("V", ["N", 2, 6, 8])]
    m = _model(inputs, ("y",))
    node = m.graph.node[0]
    node.input.extend(["", "", "", "lens"])
    m.graph.input.append(helper.make_tensor_value_info("lens", TensorProto.INT64, ["N"]))
    with pytest.raises(FrontendError, match=r"att \(Attention\): nonpad_kv_seqlen"):
        compile_model(m, "isaac", {**_feeds(inputs, 2, 0), "lens": np.array([3, 6])})
