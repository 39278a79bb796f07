"""pimc against onnxruntime on models onnxruntime's own quantiser made: output codes per grid point.

    python benchmarks/qdq_agreement.py [--samples 64] [-o docs/quantised_models.md]

Every point of per_channel x weights (int8 symmetric, int8 asymmetric, uint8) x activations (uint8, int8) x
format (QDQ, QOperator) x reduce_range runs quantize_static on the digits CNN (16 calibration images), on a
small self-attention block and on a feed-forward block with GELU and a residual add
(tests/compiler/transformer_blocks.py, 16 calibration samples each) and on a ResNet basic-block network with
its BatchNormalizations unfolded (tests/compiler/cnn_blocks.py), compiles the quantised model for isaac
(the blocks with --vector int8 --attention digital, which keep every intermediate tensor on an 8-bit grid), runs the ideal machine on the program text and onnxruntime on the same
quantised model, and compares the output codes (the model's final QuantizeLinear: round(y / scale) + zero).
onnxruntime refuses uint8 weights with int8 activations: those points are left out.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"
WEIGHTS = ("int8", "int8_asym", "uint8")
ACTIVATIONS = ("uint8", "int8")
FORMATS = ("QDQ", "QOperator")
BLOCK_SEED = 0       # the attention block drawn: S=6, D=9, 2 heads of width 2, Q / K / V with bias


@dataclass(frozen=True)
class Point:
    per_channel: bool
    weights: str           # int8 | int8_asym | uint8
    activations: str       # uint8 | int8
    fmt: str               # QDQ | QOperator
    reduce_range: bool = False

    @property
    def name(self) -> str:
        return (f"{'per-channel' if self.per_channel else 'per-tensor'} w={self.weights} a={self.activations} "
                f"{self.fmt}{' reduce_range' if self.reduce_range else ''}")


def grid(reduce_range=(False, True)) -> list[Point]:
    return [Point(pc, w, a, f, rr) for pc, w, a, f, rr in itertools.product((False, True), WEIGHTS, ACTIVATIONS,
                                                                            FORMATS, reduce_range)
            if not (w == "uint8" and a == "int8")]


class _Reader:
    def __init__(self, feeds: dict[str, np.ndarray]):
        n = len(next(iter(feeds.values())))
        self.it = iter([{k: v[i:i + 1] for k, v in feeds.items()} for i in range(n)])

    def get_next(self):
        return next(self.it, None)

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def quantise(src: Path, dst: Path, calib: dict[str, np.ndarray], p: Point) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    wt = QuantType.QUInt8 if p.weights == "uint8" else QuantType.QInt8
    at = QuantType.QUInt8 if p.activations == "uint8" else QuantType.QInt8
    # a ModelProto, not a path: given a path, quantize_static writes MODEL-inferred.onnx beside the model and
    # deletes it, which races with another quantisation of the same model (pytest -n 2)
    quantize_static(onnx.load(src), str(dst), _Reader(calib), quant_format=getattr(QuantFormat, p.fmt),
                    per_channel=p.per_channel, weight_type=wt, activation_type=at, reduce_range=p.reduce_range,
                    extra_options={"WeightSymmetric": p.weights == "int8"})
    return onnx.load(dst)


def output_grid(q: onnx.ModelProto) -> tuple[float, int]:
    """Scale and zero point of the model's output codes (the DequantizeLinear that makes its float output)."""
    init = {i.name: onnx.numpy_helper.to_array(i) for i in q.graph.initializer}
    out = q.graph.output[0].name
    prod = {o: n for n in q.graph.node for o in n.output}
    node = prod[out]
    while node.op_type in ("Identity", "Reshape", "Transpose", "Flatten"):
        node = prod[node.input[0]]
    if node.op_type != "DequantizeLinear":
        raise ValueError(f"the output {out} is not made by a DequantizeLinear")
    return float(init[node.input[1]]), int(init[node.input[2]])


def codes(y: np.ndarray, scale: float, zero: int) -> np.ndarray:
    """Dequantised float32 outputs back to their integer codes: exact, (code - zero) * scale is within 2^-24 of a
    step of the code it came from."""
    return np.rint(y.astype(np.float64) / scale).astype(np.int64) + zero


def digits_model():
    calib = {"image": np.load(DIGITS / "digits_calib.npy")[:16]}
    return DIGITS / "digits_cnn.onnx", calib, "isaac", {}


def block_model(tmp: Path):
    sys.path.insert(0, str(ROOT / "tests" / "compiler"))
    import transformer_blocks as tb
    m, p = tb.attention_block(BLOCK_SEED)
    onnx.save(m, tmp / "block.onnx")
    return tmp / "block.onnx", tb.block_feeds(p, 16, 1), "isaac", {"vector": "int8", "attention": "digital"}


FFN_SEED, FFN_SHAPE = 5, (6, 16)     # S tokens of width D; hidden width 32


def ffn_model(tmp: Path):
    sys.path.insert(0, str(ROOT / "tests" / "compiler"))
    import transformer_blocks as tb
    onnx.save(tb.ffn_block(FFN_SEED), tmp / "ffn.onnx")
    calib = {"X": np.random.default_rng(1).normal(0, 1, (16, *FFN_SHAPE)).astype(np.float32)}
    return tmp / "ffn.onnx", calib, "isaac", {"vector": "int8", "attention": "digital"}


def ffn_feeds(n: int) -> dict[str, np.ndarray]:
    return {"X": np.random.default_rng(2).normal(0, 1, (n, *FFN_SHAPE)).astype(np.float32)}


def resnet_model(tmp: Path):
    """A ResNet basic-block network whose BatchNormalizations quantize_static leaves in float between the
    quantised convs (no pre-processing): pimc folds each BN into its conv, so those weights are its own."""
    sys.path.insert(0, str(ROOT / "tests" / "compiler"))
    import cnn_blocks as cb
    onnx.save(cb.resnet_basic(), tmp / "resnet.onnx")
    return tmp / "resnet.onnx", {"x": cb.images(16, (3, 16, 16), 1)}, "isaac", {}


def resnet_feeds(n: int) -> dict[str, np.ndarray]:
    sys.path.insert(0, str(ROOT / "tests" / "compiler"))
    import cnn_blocks as cb
    return {"x": cb.images(n, (3, 16, 16), 2)}


def block_feeds(n: int) -> dict[str, np.ndarray]:
    sys.path.insert(0, str(ROOT / "tests" / "compiler"))
    import transformer_blocks as tb
    return tb.block_feeds(tb.attention_block(BLOCK_SEED)[1], n, 2)


def compare(src: Path, calib: dict, target: str, options: dict, p: Point, feeds: dict, tmp: Path):
    """(compiled program, the quantised model, pimc ideal codes, onnxruntime codes) for one grid point."""
    import onnxruntime as ort

    from compiler.pipeline import compile_model
    from isa import parse_program, print_program
    from runtime.machine import Machine
    dst = tmp / f"q_{abs(hash(p))}.onnx"
    q = quantise(src, dst, calib, p)
    c = compile_model(dst, target, calib=calib, options=options)
    name = q.graph.output[0].name
    ours = Machine(parse_program(print_program(c.program)), ideal=True).run(feeds)[name]
    theirs = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run([name], feeds)[0]
    s, z = output_grid(q)
    return c, q, codes(ours, s, z), codes(theirs, s, z)


def measure(samples: int = 64) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        digits_x = {"image": np.load(DIGITS / "digits_test.npz")["x"][:samples]}
        for model, (src, calib, target, options), feeds in (
                ("digits CNN", digits_model(), digits_x), ("attention block", block_model(tmp), block_feeds(samples)),
                ("FFN block", ffn_model(tmp), ffn_feeds(samples)),
                ("ResNet block, BN unfolded", resnet_model(tmp), resnet_feeds(samples))):
            for p in grid():
                t0 = time.perf_counter()
                c, _, ours, theirs = compare(src, calib, target, options, p, feeds, tmp)
                diff = np.abs(ours - theirs)
                kept = next(r.report for r in c.records if r.name == "quantize").model_weights
                layers = sum(op.kind in ("conv", "linear") for op in c.graph.topo())
                rows.append({"model": model, "point": p.name, "codes": int(diff.size), "kept": f"{len(kept)}/{layers}",
                             "equal": float((diff == 0).mean()), "max_diff": int(diff.max()),
                             "seconds": time.perf_counter() - t0})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | grid point | layers with the model's codes | output codes | equal | max difference |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['point']} | {r['kept']} | {r['codes']} | {r['equal']:.4f} | {r['max_diff']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=64)
    a = ap.parse_args(argv)
    print(table(measure(a.samples)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
