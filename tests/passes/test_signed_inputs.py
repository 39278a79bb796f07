"""A layer input with a zero point runs as positive and negative parts; results stay exact."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compiler.pipeline import compile_model
from passes.reference import dequantize_outputs, run_reference
from runtime.machine import Machine


def _model():
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.2, (8 * 36, 10)).astype(np.float32), "fc")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Flatten", ["a"], ["f"]),          # no Relu: the linear layer's input is signed
             helper.make_node("MatMul", ["f", "fc"], ["y"])]
    g = helper.make_graph(nodes, "signed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 12, 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_split_and_offset_agree_bit_for_bit_and_split_doubles_the_passes():
    rng = np.random.default_rng(6)
    calib = rng.uniform(-1, 1, (16, 3, 12, 12)).astype(np.float32)      # inputs centred on zero
    x = rng.uniform(-1, 1, (9, 3, 12, 12)).astype(np.float32)
    runs = {}
    for mode in ("split", "offset"):
        c = compile_model(_model(), "raella", calib, options={"signed_inputs": mode})
        mvms = [i for i in c.program.code if i.op == "mvm"]
        assert all((i.attr("signed") is not None) == (mode == "split") for i in mvms)
        ref = dequantize_outputs(c.graph, run_reference(c.graph, {"x": x}))["y"]
        m = Machine(c.program, ideal=True)
        y = m.run({"x": x})["y"]
        assert np.array_equal(y, ref)
        runs[mode] = (y, m.stats.to_json())
    assert np.array_equal(runs["split"][0], runs["offset"][0])
    assert runs["split"][1]["adc_converts"] == 2 * runs["offset"][1]["adc_converts"]
    assert runs["split"][1]["macs"] == runs["offset"][1]["macs"]
