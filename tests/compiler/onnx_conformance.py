"""ONNX conformance: the onnx package's own node test cases (onnx.backend.test.case.node), each float32 one
compiled for ISAAC calibrated on its own inputs, run ideal, and compared with the case's expected outputs.

A case's model comes from the case definitions as onnx's own runner builds its data folders: importing a
module of onnx.backend.test.case.node runs its `expect` calls, which append TestCase records (model, inputs,
expected outputs) to one list. Every case runs in two variants: as written (every input a run-time input)
and, where it has more than one input, `NAME@const` with the inputs after the first turned into constants
(weights, as a deployed model has them).

Outcomes: `ok` (compiled, ideal run equals the quantised reference bit for bit, relative error <= 0.05),
`wrong` (compiled, error above that), `inexact` (ideal differs from the reference), `refused: <message>`
(FrontendError / CompileError / RuntimeFault in one line, the user's terms), `raw: <message>` (such a refusal
whose text is a library's or Python's own, or shows the frontend's probe batch: see raw_text) and
`internal: <exception>`.
EXPECTED (conformance_expected.json) holds the outcome of every case; tests/compiler/test_onnx_conformance.py
checks a fast subset in the normal suite, `python tests/compiler/onnx_conformance.py` runs them all, checks
them against EXPECTED and rewrites docs/conformance.md (`--update` rewrites EXPECTED too, `--check` writes
nothing: CI); it exits 1 on a wrong, inexact, raw or internal outcome or an expected `ok` lost.
"""
from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import re
import sys
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = Path(__file__).with_name("conformance_expected.json")
TABLE = ROOT / "docs" / "conformance.md"
TOLERANCE = 0.05
ONNX_VERSION = "1.23.2"     # the onnx release EXPECTED was recorded with (.ci/constraints.txt pins it)
NODE_PACKAGE = "onnx.backend.test.case.node"


class Case(NamedTuple):
    name: str
    model: onnx.ModelProto
    data_sets: list


def cases(modules: list[str] | None = None) -> dict:
    """name -> case (name, model, data_sets: [(inputs, outputs)]) of the node cases defined in `modules`, or,
    when None, of every module of the package and of the data folders onnx ships (FOLDERS)."""
    import onnx.backend.test.case.node as node
    pkg = importlib.import_module(NODE_PACKAGE)
    names = modules if modules is not None else [m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.ispkg]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for m in names:
            importlib.import_module(f"{NODE_PACKAGE}.{m}")
    out = {c.name: Case(c.name, c.model, c.data_sets) for c in node._NodeTestCases}
    if modules is None:
        out.update(folder_cases())
    return out


FOLDERS = ("simple", "pytorch-converted", "pytorch-operator")


def folder_cases() -> dict:
    """The model folders onnx still ships (model.onnx and test_data_set_0/{input,output}_K.pb)."""
    from onnx.backend.test.loader import DATA_DIR
    out = {}
    for kind in FOLDERS:
        for d in sorted((Path(DATA_DIR) / kind).iterdir()):
            data = d / "test_data_set_0"
            if not (d / "model.onnx").exists() or not data.is_dir():
                continue
            read = lambda f: numpy_helper.to_array(onnx.load_tensor(str(f)))       # noqa: E731
            ins = [read(data / f"input_{k}.pb") for k in range(len(list(data.glob("input_*.pb"))))]
            outs = [read(data / f"output_{k}.pb") for k in range(len(list(data.glob("output_*.pb"))))]
            out[f"{kind}/{d.name}"] = Case(f"{kind}/{d.name}", onnx.load(str(d / "model.onnx")), [(ins, outs)])
    return out


def graph_inputs(model) -> list:
    inits = {i.name for i in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in inits]


def _f32(v) -> bool:
    return v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def is_float32(case) -> bool:
    """Float32 inputs and outputs: the cases counted as float32 tests."""
    ins = graph_inputs(case.model)
    return bool(ins) and all(_f32(v) for v in ins + list(case.model.graph.output))


def variants(case):
    """(name, model, inputs, expected outputs) per variant of a case: as written where every input and output
    is float32; `@const` where the first input and every output are float32 and further inputs (any type:
    shapes, indices, weights) become constants."""
    vis = graph_inputs(case.model)
    if not vis or not _f32(vis[0]) or not all(_f32(v) for v in case.model.graph.output):
        return
    inputs, outputs = case.data_sets[0]
    if any(not isinstance(a, (np.ndarray, np.generic)) for a in list(inputs) + list(outputs)):
        return          # sequences, optionals
    inputs = [np.asarray(a) for a in inputs]
    names = [v.name for v in vis]
    expected = {v.name: np.asarray(o) for v, o in zip(case.model.graph.output, outputs)}
    if is_float32(case):
        yield case.name, case.model, dict(zip(names, inputs)), expected
    if len(names) > 1:
        m = onnx.ModelProto()
        m.CopyFrom(case.model)
        m.graph.initializer.extend(numpy_helper.from_array(a, n) for n, a in zip(names[1:], inputs[1:]))
        keep = [v for v in m.graph.input if v.name not in names[1:]]
        del m.graph.input[:]
        m.graph.input.extend(keep)
        yield case.name + "@const", m, {names[0]: inputs[0]}, expected


def rel_error(y: np.ndarray, ref: np.ndarray) -> float:
    """max |y - ref| over max |ref| (over the whole output): the 8-bit quantisation step is relative to the range."""
    ref = ref.astype(np.float64)
    if y.shape != ref.shape:
        return float("inf")
    return float(np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-6)) if ref.size else 0.0


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def outcome(model, feeds: dict, expected: dict) -> str:
    """Compile (ISAAC, calibrated on the feeds), run ideal, compare: one outcome string (see the module doc)."""
    import pimc
    from compiler.pipeline import compile_model
    from ir import CompileError, FrontendError
    from passes.reference import dequantize_outputs, run_reference
    from runtime.errors import RuntimeFault
    if any(not np.isfinite(v).all() for v in expected.values() if v.dtype.kind == "f"):
        return "skipped: the expected output holds NaN or infinity (a program's values are finite)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = compile_model(model, "isaac", feeds)
            prog = pimc.Program(pimc.api.print_program(c.program), c, model)
            ys, _ = pimc.run(prog, feeds, ideal=True)
            ref = dequantize_outputs(c.graph, run_reference(c.graph, feeds))
    except (FrontendError, CompileError, RuntimeFault) as e:
        why = raw_text(one_line(e), sizes(model, feeds, expected))
        return f"raw: {one_line(e)} ({why})" if why else f"refused: {one_line(e)}"
    except Exception as e:
        return f"internal: {type(e).__name__}: {one_line(e)}"
    if any(not np.array_equal(ys[k], ref[k]) for k in ref):
        return "inexact"
    err = max(rel_error(np.asarray(ys[k]), v) for k, v in expected.items())
    return "ok" if err <= TOLERANCE else f"wrong: relative error {err:.3g}"


# text that NumPy, onnx or Python write, never a message in the user's terms
RAW_PATTERNS = re.compile("|".join([
    r"operands could not be broadcast", r"gufunc", r"core dimension", r"cannot reshape array", r"out of bounds",
    r"index out of range", r"setting an array element", r"object has no attribute", r"not subscriptable",
    r"unsupported operand type", r"positional argument", r"unhashable type", r"NoneType", r"invalid literal",
    r"Traceback", r"\b(Key|Index|Type|Value|Attribute|ZeroDivision|Assertion|Runtime)Error\b", r"is undefined!",
    r"\[(Shape|Type)InferenceError\]", r"onnx_cpp2py", r"\.(cc|cpp|h|py):\d+", r", \]", r"dtype\(", r"np\.\w+\(", r"array\(", r"<\w+ object at"]))


def sizes(model, feeds: dict, expected: dict) -> set[int]:
    """Every axis size of a case's inputs, initializers and expected outputs: the sizes a message may show."""
    dims = {d for a in list(feeds.values()) + list(expected.values()) for d in np.shape(a)}
    return dims | {d for t in model.graph.initializer for d in t.dims}


def raw_text(message: str, case_sizes: set[int]) -> str | None:
    """Why a refusal's message is not in the user's terms (None when it is): a library's or Python's own
    text, or a shape whose first axis is the frontend's probe batch where the case has no axis that long."""
    from compiler.frontend import PROBE_BATCH
    m = RAW_PATTERNS.search(message)
    if m:
        return f"library text '{m.group(0)}'"
    if PROBE_BATCH not in case_sizes and re.search(rf"\[{PROBE_BATCH}(, \d+)*\]", message):
        return f"a shape with the probe batch {PROBE_BATCH}"
    return None


def run_all(selected: dict) -> dict:
    """name -> outcome of every variant of the cases in `selected` (name -> case)."""
    out = {}
    for case in selected.values():
        for name, model, feeds, expected in variants(case):
            out[name] = outcome(model, feeds, expected)
    return out


def kind(result: str) -> str:
    return result.split(":")[0]


def op_of(name: str, all_cases: dict) -> str:
    """The op a node case tests (an expanded function case counts for its op); a folder case's folder."""
    if "/" in name:
        return f"({name.split('/')[0]} models)"
    base = re.sub(r"_expanded.*$", "", name.split("@")[0])
    c = all_cases.get(base) or all_cases.get(name.split("@")[0])
    nodes = c.model.graph.node if c is not None else []
    return nodes[0].op_type if len(nodes) == 1 else base


def _counts(items) -> str:
    items = list(items)
    c = Counter(kind(r) for _, r in items)
    return (f"{c['ok']} of {sum(c.values())} compile and match; {c['refused']} refused, "
            f"{c['wrong'] + c['inexact']} wrong, {c['internal'] + c['raw']} internal errors or raw messages, "
            f"{c['skipped']} skipped")


def either(results: dict) -> int:
    """Float32 tests (as written) that compile and match in at least one variant."""
    return sum(1 for n, r in results.items() if "@" not in n and "ok" in (r, results.get(n + "@const")))


def table(results: dict, all_cases: dict) -> str:
    per = defaultdict(Counter)
    for name, r in results.items():
        per[op_of(name, all_cases)][kind(r)] += 1
    lines = ["# ONNX conformance", "",
             f"The onnx package's node test cases (onnx {onnx.__version__}, `onnx.backend.test.case.node`, built from",
             "their definitions as onnx's own runner does) and the model folders it ships (" + ", ".join(FOLDERS) + "):",
             "each compiled for ISAAC calibrated on its own inputs, run ideal (`pimrun --ideal`, in-process), required",
             "to equal the compiler's quantised integer reference bit for bit, and compared with the expected outputs",
             f"(max abs error over max abs expected value <= {TOLERANCE}). A test runs as written where its inputs and",
             "outputs are float32, and as `NAME@const` with its inputs after the first turned into constants (weights",
             "as a deployed model has them; shapes, indices) where it has more. A refusal is one line in the user's",
             "terms: one that shows NumPy's, onnx's or Python's own text, or the frontend's probe batch, counts as a",
             "raw message, a failure like a wrong result or an internal error.", "",
             "Regenerated by `python tests/compiler/onnx_conformance.py`; the expected outcome of every case is",
             "tests/compiler/conformance_expected.json, which that command checks (`--update` rewrites it, `--check`",
             "only checks: CI) and tests/compiler/test_onnx_conformance.py checks in part.", "",
             "- float32 tests as written: " + _counts((n, r) for n, r in results.items() if "@" not in n),
             "- with constants (`@const`): " + _counts((n, r) for n, r in results.items() if "@" in n),
             "- every case: " + _counts(results.items()),
             f"- float32 tests that compile and match as written or with constants: {either(results)} of "
             f"{sum('@' not in n for n in results)}", ""]
    reasons = Counter(re.sub(r"node (computing '[^']*'|\S+) \(", "node (", r[len("refused: "):]).split(" at node(s)")[0]
                      for r in results.values() if kind(r) == "refused")
    lines += ["The most frequent refusals (node names left out):", ""]
    lines += [f"- {k} x {why}" for why, k in reasons.most_common(15)] + [""]
    lines += ["| op | cases | ok | refused | wrong | internal or raw | skipped |", "|---|---:|---:|---:|---:|---:|---:|"]
    for op in sorted(per):
        c = per[op]
        lines.append(f"| {op} | {sum(c.values())} | {c['ok']} | {c['refused']} | {c['wrong'] + c['inexact']} | "
                     f"{c['internal'] + c['raw']} | {c['skipped']} |")
    return "\n".join(lines) + "\n"


def load_expected() -> dict:
    return json.loads(EXPECTED.read_text())


def failures(results: dict) -> dict:
    """Outcomes the suite may not hold: wrong, inexact, raw or internal."""
    return {n: r for n, r in results.items() if kind(r) in ("wrong", "inexact", "raw", "internal")}


def regressions(results: dict, expected: dict) -> list[str]:
    """Failures, and cases expected ok that are not; a changed refusal or a new ok is reported, not failed."""
    bad = [f"{n}: {r}" for n, r in failures(results).items()]
    for name, r in results.items():
        want = expected.get(name)
        if want is not None and kind(want) == "ok" and kind(r) != "ok":
            bad.append(f"{name}: was ok, now {r}")
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--update", action="store_true", help="rewrite the expected outcomes from this run")
    ap.add_argument("--check", action="store_true", help="only check against the expected outcomes (write nothing)")
    ap.add_argument("--only", nargs="*", help="test names (prefixes) to run")
    args = ap.parse_args(argv)
    if onnx.__version__ != ONNX_VERSION:
        print(f"note: onnx {onnx.__version__} here, the expected outcomes are from onnx {ONNX_VERSION}")
    t0 = time.perf_counter()
    all_cases = cases()
    sel = {k: v for k, v in all_cases.items() if not args.only or any(k.startswith(p) for p in args.only)}
    results = run_all(sel)
    seconds = time.perf_counter() - t0
    counts = Counter(kind(r) for r in results.values())
    print(f"{len(results)} cases in {seconds:.0f} s: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
          + f"; float32 tests ok as written {sum(r == 'ok' for n, r in results.items() if '@' not in n)}, "
          f"in either variant {either(results)}, of {sum('@' not in n for n in results)}")
    if args.only:
        for k, v in sorted(results.items()):
            print(f"{k}: {v}")
        return 0
    expected = load_expected()
    if args.update:
        EXPECTED.write_text(json.dumps(dict(sorted(results.items())), indent=0) + "\n")
    if not args.check:
        TABLE.write_text(table(results, all_cases))
    for name, r in sorted(results.items()):
        if expected.get(name) != r and kind(r) in ("ok", "refused", "skipped"):
            print(f"changed: {name}: {expected.get(name)} -> {r}")
    bad = regressions(results, expected)
    for b in bad:
        print(b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
