"""onnxruntime's own static 8-bit quantisation of a corpus model, as a baseline for pimc's float agreement:
a model that loses its float top-1 under both is sensitive to 8 bits itself, not to pimc.

    python examples/corpus/ort_int8.py OUT_DIR NAME [NAME ...] [--samples 6]

For each image model NAME of a corpus built by make_corpus.py: onnxruntime.quantization.quantize_static (QDQ,
MinMax calibration on NAME_calib, uint8 activations, int8 weights), per tensor and per channel, run on the
first eval samples; prints top-1 agreement and mean cosine against NAME_reference.npy, as corpus_table.py does.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np


def quantised_outputs(model: Path, calib: np.ndarray, ev: np.ndarray, per_channel: bool, tmp: Path) -> np.ndarray:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    so = ort.SessionOptions()
    so.log_severity_level = 3
    name = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):             # one sample at a time: some models fix the batch at 1
        def __init__(self):
            self.it = iter({name: calib[i:i + 1]} for i in range(len(calib)))

        def get_next(self):
            return next(self.it, None)
    pre, q = tmp / "pre.onnx", tmp / "q.onnx"
    quant_pre_process(str(model), str(pre))
    quantize_static(str(pre), str(q), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    s = ort.InferenceSession(str(q), so, providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {name: ev[i:i + 1]})[0] for i in range(len(ev))])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("names", nargs="+")
    ap.add_argument("--samples", type=int, default=6)
    args = ap.parse_args(argv)
    for name in args.names:
        calib = np.load(args.out / f"{name}_calib.npy")
        ev = np.load(args.out / f"{name}_eval.npy")[:args.samples]
        ref = np.load(args.out / f"{name}_reference.npy")[:args.samples]
        for per_channel in (False, True):
            kind = "per channel" if per_channel else "per tensor"
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    y = quantised_outputs(args.out / f"{name}.onnx", calib, ev, per_channel, Path(tmp))
            except Exception as e:      # e.g. per-channel QDQ needs opset 13 (DequantizeLinear's axis)
                print(f"{name} onnxruntime int8 {kind}: failed: {(str(e).strip().splitlines() or [''])[0][:200]}")
                continue
            a, b = y.reshape(len(y), -1), ref.reshape(len(ref), -1)
            cos = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            print(f"{name} onnxruntime int8 {kind}: top-1 "
                  f"{np.mean(a.argmax(1) == b.argmax(1)):.3f}, cos {cos.mean():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
