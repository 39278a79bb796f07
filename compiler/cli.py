"""pimc: compile an ONNX model for a ReRAM PIM target into a .pimasm program."""
from __future__ import annotations

import argparse
import sys
import time
from functools import lru_cache
from pathlib import Path

from runtime.guard import guarded
from runtime.progress import Progress
from runtime.version import __version__

@lru_cache(maxsize=4)
def _input_names(model_path) -> list[str]:
    from .frontend import load_onnx
    m = load_onnx(model_path)
    inits = {i.name for i in m.graph.initializer}
    return [i.name for i in m.graph.input if i.name not in inits]


@lru_cache(maxsize=4)
def _data(path, model_path, error):
    """Feeds and labels of a data file, read once however many options name it."""
    import numpy as np
    from runtime.io import load_arrays
    feeds, labels = load_arrays(path, _input_names(model_path), error=error)
    for name, x in feeds.items():
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise error(f"{path}: input '{name}' holds {int(np.sum(~np.isfinite(x)))} NaN or infinite values")
    return feeds, labels


def _options(args) -> dict:
    from ir import CompileError
    opts = {"error_budget": args.error_budget, "no_speculation": args.no_speculation}
    opts["saturation_budget"] = args.saturation_budget
    if args.row_group is not None:
        opts["row_group"] = args.row_group
    if args.schedule:
        opts["schedule"] = args.schedule
    opts |= {"bank_select": not args.no_bank_select, "replication": not args.no_replication,
             "weight_reuse": not args.no_weight_reuse}
    opts |= {"attention": args.attention, "vector": args.vector, "smooth": args.smooth}
    if args.sparse_attention:
        opts |= {"sparse_attention": args.sparse_attention, "sparse_mask": args.sparse_mask,
                 "predict_bits": args.predict_bits}
    if args.outputs:
        opts["outputs"] = args.outputs
    opts["weights"] = args.weights
    if args.slicing:
        if args.slicing == "adaptive":
            opts["slicing"] = "adaptive"
        else:
            try:
                opts["slicing"] = tuple(int(v) for v in args.slicing.split(","))
            except ValueError:
                raise CompileError(f"--slicing takes 'adaptive' or comma-separated widths, got {args.slicing!r}") from None
    return opts


def _shapes(specs) -> dict[str, tuple[int, ...]]:
    """--shape NAME=D1,D2,... (the dimensions after the batch), repeatable."""
    from ir import CompileError
    shapes = {}
    for spec in specs or ():
        name, _, dims = spec.partition("=")
        try:
            shapes[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise CompileError(f"--shape takes NAME=D1,D2,... (the sizes after the batch), got {spec!r}") from None
        if not name or not dims:
            raise CompileError(f"--shape takes NAME=D1,D2,... (the sizes after the batch), got {spec!r}")
    return shapes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="pimc", description=__doc__)
    ap.add_argument("--version", action="version", version=f"pimc {__version__}")
    ap.add_argument("model", help="an ONNX model (float, or quantised QDQ / QLinear*)")
    ap.add_argument("-o", "--output", required=True, help="the .pimasm program to write")
    ap.add_argument("--target", default="raella", help="isaac | raella | aras | PATH.toml (default raella)")
    ap.add_argument("--calib", help="calibration inputs: .npy (one input) or .npz keyed by input names")
    ap.add_argument("--report", help="write every pass's report (and the verification) to this JSON file")
    ap.add_argument("--plots", help="write PNG figures into this folder (runs the program on --verify or --calib data)")
    ap.add_argument("--verify", help="run the verification ladder on these inputs (.npy / .npz, labels as 'y')")
    ap.add_argument("--encoding", choices=("center", "differential", "unsigned"),
                    help="override the target's weight encoding: center (RAELLA's Center+Offset), differential "
                         "(Zero+Offset), unsigned (ISAAC's offset binary)")
    ap.add_argument("--slicing", help="weight slicing: 'adaptive' (RAELLA's Algorithm 1) or widths such as 4,2,2 "
                                      "for every layer (default: the target's)")
    ap.add_argument("--error-budget", type=float, default=0.09, help="adaptive slicing's error budget (0.09)")
    ap.add_argument("--no-speculation", action="store_true", help="eight 1-bit input slices, no speculation")
    ap.add_argument("--row-group", type=int, metavar="G",
                    help="rows summed per ADC conversion in every layer (0: all rows at once); default: each layer's "
                         "fewest turns within --saturation-budget")
    ap.add_argument("--saturation-budget", type=float, default=0.01,
                    help="row groups: largest relative L2 error the ADC's clipping may add to a layer (0.01)")
    ap.add_argument("--schedule", choices=("naive", "overlap", "aras"),
                    help="weight-rewriting schedule for a target that rewrites weights (default aras): naive writes a "
                         "layer then computes it, overlap writes the next layers as PE rows free up, aras adds bank "
                         "selection, replication and weight reuse")
    ap.add_argument("--no-bank-select", action="store_true", help="aras: the 15 x 256 KB baseline buffer, no ILP")
    ap.add_argument("--no-replication", action="store_true", help="aras: one copy of every layer")
    ap.add_argument("--no-weight-reuse", action="store_true", help="aras: weights as quantised, not shifted")
    ap.add_argument("--attention", choices=("retransformer", "naive", "digital"), default="retransformer",
                    help="attention products: ReTransformer's reordering (only the input X is written into crossbars),"
                         " naive (K^T and V written at run time), or digital (on the vector unit)")
    ap.add_argument("--sparse-attention", metavar="topk:K|threshold:T",
                    help="keep per query the K largest attention scores (or those within T of the row max); the "
                         "products run on PIM banks in IP / SVM mode and K, V are stored (attention becomes naive)")
    ap.add_argument("--sparse-mask", choices=("predict", "oracle"), default="predict",
                    help="sparse attention's mask: from scores predicted on the bank with the top --predict-bits "
                         "bits of the Q and K codes (default; charged), or from the exact scores (an oracle)")
    ap.add_argument("--predict-bits", type=int, default=4, metavar="B",
                    help="the predictor's bits of the 8-bit Q and K codes, 1..8 (default 4)")
    ap.add_argument("--vector", choices=("auto", "fp32", "int8"), default="auto",
                    help="digital ops: integer (CNNs) or the float32 vector unit (transformers); auto picks")
    ap.add_argument("--smooth", choices=("layernorm", "all", "none"), default="layernorm",
                    help="SmoothQuant per-channel smoothing of crossbar inputs (vector unit only)")
    ap.add_argument("--shape", action="append", metavar="NAME=D1,D2,...",
                    help="sizes of an input's dimensions after the batch, for a model that leaves them symbolic "
                         "(repeatable; default: the calibration data's)")
    ap.add_argument("--weights", choices=("symmetric", "asymmetric"), default="symmetric",
                    help="per-channel weight codes: symmetric int8, or a scale and zero point per channel (R0)")
    ap.add_argument("--outputs", metavar="NAME,...", help="compile only these outputs of the model (default all)")
    ap.add_argument("--quiet", action="store_true", help="print nothing but errors (no summary, no progress)")
    args = ap.parse_args(argv)
    bar = Progress("pimc", enabled=not args.quiet)
    from ir import CompileError, FrontendError          # imported after parsing: --help stays fast
    from isa import AsmError
    from runtime.errors import RuntimeFault
    return guarded("pimc", (FrontendError, CompileError, AsmError, RuntimeFault, OSError), bar, lambda: _run(args, bar))


def _run(args, bar) -> int:
    from ir import CompileError
    from isa import load_target, parse_program, print_program
    from runtime.io import check_paths, committed_together, write_json, write_text
    from runtime.machine import Machine

    from .pipeline import compile_model
    t0 = time.perf_counter()
    plots = {}
    if args.plots:
        from .plots import PLOT_FILES
        if not Path(args.plots).is_dir():       # the CLIs create no folders
            raise CompileError(f"--plots {args.plots}: no such folder (create it first)")
        plots = {f"--plots' {f}": Path(args.plots) / f for f in PLOT_FILES}
    target_file = args.target if str(args.target).endswith(".toml") else None
    check_paths({"-o": args.output, "--report": args.report} | plots,
                {"the model": args.model, "--calib": args.calib, "--verify": args.verify, "--target": target_file},
                CompileError)
    target = load_target(args.target)
    if args.encoding:
        enc = "center_offset" if args.encoding == "center" else args.encoding
        target = target.replace(encoding=enc, flip=target.flip and enc == "unsigned")
    calib = _data(args.calib, args.model, CompileError)[0] if args.calib else None
    compiled = compile_model(args.model, target, calib, options=_options(args), progress=bar,
                             shapes=_shapes(args.shape))
    text = print_program(compiled.program)
    seconds = time.perf_counter() - t0
    report = compiled.report() | {"compile_seconds": round(seconds, 3), "program_bytes": len(text),
                                  "program_lines": text.count("\n")}
    verify = None
    if args.verify:
        from .verify import format_ladder, ladder
        feeds, labels = _data(args.verify, args.model, CompileError)
        bar.phase("verifying (float, reference, ideal and target runs)")
        verify = ladder(compiled, args.model, feeds, labels)
        report["verification"] = {k: v for k, v in verify.items() if k != "stats"}
    if args.plots:
        from .plots import write_plots
        feeds = _data(args.verify or args.calib, args.model, CompileError)[0] if (args.verify or args.calib) else None
        if feeds is None:
            raise CompileError("--plots needs data to run on: give --verify or --calib")
        lo, hi = target.adc_range
        span = max(hi - lo, 16)
        bar.phase("running for the plots")
        m = Machine(parse_program(text), hist_range=(lo - span, hi + span))
        m.run(feeds)
    bar.close()
    with committed_together():              # the program, the report and the plots, or none of them
        if args.plots:
            report["plots"] = write_plots(m.stats.to_json(), m.stats.histogram(), (lo, hi), args.plots)
        write_text(args.output, text)
        if args.report:
            write_json(args.report, report)
    if not args.quiet:
        writes = [i for i in compiled.program.code if i.op == "xbwrite"]
        logical, physical = len({i.attr("lxb", i.attr("xb")) for i in writes}), len({i.attr("xb") for i in writes})
        print(f"pimc: {args.output}: {report['program_lines']} lines, {len(text)} bytes, compiled in {seconds:.2f} s")
        print(f"pimc: crossbars: {logical} logical (weight blocks), {physical} physical of {target.xbars} on "
              f"{target.name}" + ("" if target.program_once else f", {len(writes)} crossbar writes per inference"))
        if args.report:
            print(f"pimc: report written to {args.report}")
        if args.plots:
            print(f"pimc: plots written to {args.plots}/: {', '.join(sorted(report['plots']))}")
        if verify:
            print(format_ladder(verify))
    return 0


if __name__ == "__main__":
    sys.exit(main())
