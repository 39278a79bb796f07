"""The verification ladder of DESIGN.md on real data: float (onnxruntime), quantised integer reference,
pimrun ideal, pimrun on the real target. Ideal must equal the reference bit for bit."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from ir import CompileError
from isa import parse_program, print_program
from runtime.machine import Machine

from .pipeline import Compiled
from passes.reference import dequantize_outputs, run_reference


def onnx_float(model_path: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnxruntime's outputs; its refusal of the model or the data is one CompileError."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    src = model_path.SerializeToString() if hasattr(model_path, "SerializeToString") else str(model_path)
    try:
        sess = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(None, {k: v.astype(np.float32) if v.dtype.kind == "f" else v
                                               for k, v in feeds.items()})))
    except Exception as e:      # onnxruntime's own exception types, which it does not export stably
        raise CompileError(f"--verify: onnxruntime cannot run the model: {str(e).strip()[:200]}") from None


def compare(y: np.ndarray, ref: np.ndarray, labels=None) -> dict:
    a = y.reshape(len(y), -1).astype(np.float64)
    b = ref.reshape(len(ref), -1).astype(np.float64)
    cos = np.sum(a * b, 1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
    row = {"max_abs_diff": float(np.abs(a - b).max()), "mean_cosine": float(cos.mean())}
    if y.ndim == 2:
        row["top1_agreement"] = float(np.mean(y.argmax(1) == ref.argmax(1)))
        if labels is not None:
            row["accuracy"] = float(np.mean(y.argmax(1) == labels))
    return row


def ladder(c: Compiled, model_path: str, feeds, labels=None, chunk=256) -> dict:
    prog = parse_program(print_program(c.program))          # exactly what pimrun reads
    levels = {"float (onnxruntime)": onnx_float(model_path, feeds),
              "quantised reference": dequantize_outputs(c.graph, run_reference(c.graph, feeds))}
    stats = {}
    for name, ideal in (("pimrun ideal", True), ("pimrun target", False)):
        m = Machine(prog, ideal=ideal)
        levels[name] = m.run(feeds, chunk=chunk)
        stats[name] = m.stats.to_json()
    out = next(iter(levels["float (onnxruntime)"]))
    float_y = levels["float (onnxruntime)"][out]
    rows = {k: compare(v[out], float_y, labels) for k, v in levels.items()}
    ideal_exact = all(np.array_equal(levels["pimrun ideal"][k], levels["quantised reference"][k])
                      for k in levels["quantised reference"])
    target_exact = all(np.array_equal(levels["pimrun target"][k], levels["quantised reference"][k])
                       for k in levels["quantised reference"])
    return {"output": out, "samples": len(float_y), "ideal_equals_reference": ideal_exact,
            "target_equals_reference": target_exact, "levels": rows,
            "target_saturation_rate": stats["pimrun target"]["saturation_rate"],
            "stats": stats["pimrun target"]}


def format_ladder(v: dict) -> str:
    cols = ["max_abs_diff", "mean_cosine", "top1_agreement", "accuracy"]
    cols = [c for c in cols if any(c in r for r in v["levels"].values())]
    lines = [f"verification on {v['samples']} samples (output '{v['output']}', against float):",
             f"  {'level':<22}" + "".join(f"{c:>16}" for c in cols)]
    for name, r in v["levels"].items():
        lines.append(f"  {name:<22}" + "".join(f"{r[c]:>16.6f}" if c in r else f"{'':>16}" for c in cols))
    lines.append(f"  pimrun ideal == quantised reference bit for bit: {'yes' if v['ideal_equals_reference'] else 'NO'}")
    lines.append(f"  pimrun target == quantised reference: {'yes' if v['target_equals_reference'] else 'no'}"
                 f" (ADC saturation rate {v['target_saturation_rate']:.4%})")
    return "\n".join(lines)
