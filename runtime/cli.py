"""pimrun: execute a .pimasm program bit-accurately on the host."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from isa import AsmError, read_program
from runtime.version import __version__

from .errors import RuntimeFault
from .guard import guarded
from .io import check_paths, committed_together, load_arrays, open_npy, write_arrays, write_json
from .machine import MAX_NOISE, Machine
from .progress import Progress
from .results import stats_json, summary_lines
from .timeline import trace_path, write_timeline
from .similarity import cosines, nearest_same_group


def run_file(path, input_path, ideal=False, chunk=None, hist_range=None, progress=None, noise=0.0, seed=0,
             check=None, workers=None, scheduler=None):
    """Parse, validate and run a program file on an input file: (machine, outputs, labels). `check(machine)`
    runs before the batch does, so an option that cannot apply fails before any work. With `workers` or
    `scheduler` the batch runs sharded on a Dask cluster (runtime/shard.py) and the machine holds the merged
    stats."""
    if progress:
        progress.phase("parsing and validating the program")
    prog = read_program(path)
    m = Machine(prog, ideal=ideal, hist_range=hist_range, filename=str(path), noise=noise, seed=seed)
    if check:
        check(m)
    names = [i.attr("name") for i in m.inputs]
    feeds, labels = load_arrays(input_path, names, error=RuntimeFault)
    check_feeds(m, feeds)
    if progress:
        progress.phase("running samples")
    if not (workers or scheduler):
        return m, m.run(feeds, chunk=chunk, progress=progress), labels
    from . import shard
    with shard.client(workers, scheduler) as c:
        outs, stats = shard.run(c, prog, feeds, ideal=ideal, chunk=chunk, noise=noise, seed=seed,
                                hist_range=hist_range, filename=str(path), progress=progress)
    if m.cells is not None:      # a schedule's account reads one sample's activations off a machine that ran
        m.run({k: v[:1] for k, v in feeds.items()}, chunk=chunk)
    m.stats = stats
    return m, outs, labels


def check_feeds(m: Machine, feeds) -> None:
    n, first = None, None
    for ins in m.inputs:
        x = feeds[ins.attr("name")]
        want = tuple(ins.attr("shape"))
        if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
            raise RuntimeFault(f"input '{ins.attr('name')}' has shape {list(x.shape)}, the program expects "
                               f"[N, {', '.join(map(str, want))}]")
        if ins.attr("dtype") == "i64":
            if x.dtype.kind not in "iub":
                raise RuntimeFault(f"input '{ins.attr('name')}' has dtype {x.dtype}, the program expects integers")
        elif x.dtype.kind != "f":
            raise RuntimeFault(f"input '{ins.attr('name')}' has dtype {x.dtype}, the program expects float32")
        elif not np.isfinite(x).all():
            raise RuntimeFault(f"input '{ins.attr('name')}' holds {int(np.sum(~np.isfinite(x)))} NaN or infinite "
                               "values")
        if n is not None and len(x) != n:
            raise RuntimeFault(f"inputs disagree on the batch size: '{first}' has {n} samples, "
                               f"'{ins.attr('name')}' has {len(x)}")
        n, first = len(x), first or ins.attr("name")
    if not n:
        raise RuntimeFault("the input batch is empty")


def _timeline_check(m: Machine) -> None:
    if m.cells is None:
        raise RuntimeFault(f"--timeline: target {m.t.name} is program-once, its program has no schedule")


def load_reference(path) -> np.ndarray:
    """--reference: a .npy (or an .npz holding one array) of the float outputs to compare with."""
    data = open_npy(path, RuntimeFault, f"--reference {path}")
    if not isinstance(data, np.ndarray):
        if len(data.files) != 1:
            raise RuntimeFault(f"--reference {path}: holds {len(data.files)} arrays, give one")
        data = data[data.files[0]]
    if data.dtype.kind not in "biuf":
        raise RuntimeFault(f"--reference {path}: holds {data.dtype} values, not real numbers")
    if data.dtype.kind == "f" and not np.isfinite(data).all():      # a cosine to them would be NaN
        raise RuntimeFault(f"--reference {path}: holds {int(np.sum(~np.isfinite(data)))} NaN or infinite values")
    return data


def input_groups(path) -> np.ndarray | None:
    """The `group` array of an .npz input (paraphrase groups, classes, ...), if it has one."""
    data = np.load(path, allow_pickle=False)
    return data["group"] if not isinstance(data, np.ndarray) and "group" in data.files else None


def scores(outs: dict, labels, groups, reference, reference_name) -> list[str]:
    """The lines that judge a one-output program: top-1 against labels, the nearest-neighbour same-group rate
    against groups, the mean cosine to a reference. Raises RuntimeFault if the reference does not fit."""
    y = next(iter(outs.values()))
    if reference is not None:
        if len(outs) != 1:
            raise RuntimeFault(f"--reference: the program has {len(outs)} outputs, it compares one")
        if reference.shape != y.shape:
            raise RuntimeFault(f"--reference {reference_name} has shape {list(reference.shape)}, the output "
                               f"'{next(iter(outs))}' has {list(y.shape)}")
    if len(outs) != 1:
        return []
    lines = []
    if labels is not None and y.ndim == 2 and len(labels) == len(y):
        hit = int(np.sum(y.argmax(1) == labels))
        lines.append(f"top-1 accuracy {hit / len(y):.4f} ({hit}/{len(y)})")
    if groups is not None and groups.ndim == 1 and len(groups) == len(y) >= 2 and y.ndim >= 2:
        same = nearest_same_group(y, groups)
        lines.append(f"nearest neighbour in the same group (cosine, excluding self) {same / len(y):.4f} "
                     f"({same}/{len(y)})")
    if reference is not None:
        cos = cosines(y, reference)
        lines.append(f"mean cosine to {reference_name} {cos.mean():.4f} (min {cos.min():.4f})")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="pimrun", description=__doc__)
    ap.add_argument("--version", action="version", version=f"pimrun {__version__}")
    ap.add_argument("program", help="a .pimasm file from pimc")
    ap.add_argument("--input", required=True, help=".npy (one input) or .npz keyed by input names")
    ap.add_argument("-o", "--output", help=".npy (one output) or .npz keyed by output names")
    ap.add_argument("--stats", help="write the event counts, energy and time to this JSON file")
    ap.add_argument("--ideal", action="store_true", help="an ADC wide enough never to saturate, no noise")
    ap.add_argument("--noise", type=float, default=0.0,
                    help="analog noise E on column sums (e.g. 0.05 for 5%%; RAELLA thesis sec. 7.3)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the noise")
    ap.add_argument("--chunk", type=int, help="samples per batch chunk (default: as many as fit in 1 GiB of "
                                           "buffers, measured on the first sample)")
    ap.add_argument("--timeline", metavar="T.png", help="a rewriting target's schedule: writes and computes per layer "
                                                        "(PNG), and per PE row in a Chrome trace beside it "
                                                        "(T.trace.json)")
    ap.add_argument("--workers", type=int, help="run the batch in shards on a local Dask cluster of this many "
                                                "processes (same outputs and stats)")
    ap.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run the batch in shards on this running Dask "
                                                                   "cluster")
    ap.add_argument("--quiet", action="store_true", help="print nothing but errors (no summary, no progress)")
    ap.add_argument("--reference", metavar="REF.npy", help="float outputs (e.g. onnxruntime's) to print the "
                                                            "mean cosine similarity to")
    args = ap.parse_args(argv)
    bar = Progress("pimrun", enabled=not args.quiet)
    return guarded("pimrun", (AsmError, RuntimeFault, ValueError, OSError), bar, lambda: _run(args, bar))


def _run(args, bar) -> int:
    check_paths({"-o": args.output, "--stats": args.stats, "--timeline": args.timeline,
                 "--timeline's trace": trace_path(args.timeline) if args.timeline else None},
                {"the program": args.program, "--input": args.input, "--reference": args.reference}, RuntimeFault)
    if not 0 <= args.noise <= MAX_NOISE:          # NaN fails too
        raise RuntimeFault(f"--noise must be in [0, {MAX_NOISE:g}], got {args.noise}")
    if not 0 <= args.seed < 1 << 64:
        raise RuntimeFault(f"--seed must be in [0, 2^64), got {args.seed}")
    if args.chunk is not None and not 1 <= args.chunk <= 1 << 31:
        raise RuntimeFault(f"--chunk must be in 1..2^31 samples, got {args.chunk}")
    if args.workers is not None and (args.workers < 1 or args.scheduler):
        raise RuntimeFault("--workers must be >= 1 and cannot go with --scheduler")
    if args.workers is not None and args.workers > 1024:
        raise RuntimeFault(f"--workers must be at most 1024, got {args.workers}")
    reference = load_reference(args.reference) if args.reference else None      # fail before the run
    m, outs, labels = run_file(args.program, args.input, args.ideal,
                               args.chunk, progress=bar,
                               noise=args.noise, seed=args.seed, check=_timeline_check if args.timeline else None,
                               workers=args.workers, scheduler=args.scheduler)
    bar.close()
    stats = stats_json(m)
    judged = scores(outs, labels, input_groups(args.input), reference, args.reference)   # before any file
    with committed_together():              # all of them or none
        if args.timeline:
            write_timeline(stats["schedule"], args.timeline)
        if args.output:
            write_arrays(args.output, outs)
        if args.stats:
            write_json(args.stats, stats)
    if not args.quiet:
        for line in summary_lines(stats):
            print(line)
        if args.timeline:
            print(f"timeline written to {args.timeline} and {trace_path(args.timeline)}")
        for line in judged:
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
