"""pimsweep: a design-space sweep. A TOML file names models (ONNX, calibration and evaluation data, a metric)
and points over target keys, pimc options and run options; every point is compiled (once per distinct
program), run on its model's data, locally or on a Dask cluster, and judged. RESULTS_DIR gets points.jsonl
(one JSON line appended per finished point, with its per-layer stats: what survives an interruption),
results.csv (one row per point: settings, every scalar stat, the metric, compile and run seconds, the error of
a point that failed) and PNG plots, written together once every point has finished (or none of them),
programs/ (the compiled programs, keyed by a content hash of model, calibration, target and options). The file format is in docs/sweeps.md.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import os
import re
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

from ir import CompileError, FrontendError
from isa import AsmError, Target, load_target, print_program, read_program
from runtime.errors import RuntimeFault
from runtime.guard import guarded, one_line
from runtime.io import LABEL_KEYS, atomic_write, check_paths, committed_together, load_arrays, write_json, write_text
from runtime.machine import Machine
from runtime.progress import Progress
from runtime.results import stats_json

METRICS = ("top1", "agreement", "cosine", "nn")
_TYPES = {f.name: f.type for f in dataclasses.fields(Target) if f.name != "name"}
_CHOICES = {"schedule": ("naive", "overlap", "aras"), "attention": ("retransformer", "naive", "digital"),
            "vector": ("auto", "fp32", "int8"), "smooth": ("layernorm", "all", "none"),
            "weights": ("symmetric", "asymmetric"), "sparse_mask": ("predict", "oracle")}
OPTIONS = {"slicing": "slicing", "error_budget": "float", "no_speculation": "bool", "schedule": "str",
           "bank_select": "bool", "replication": "bool", "weight_reuse": "bool", "reuse_max_clip": "float", "reuse_loss_budget": "float",
           "attention": "str", "vector": "str", "smooth": "str", "sparse_attention": "str",
           "sparse_mask": "str", "predict_bits": "int",
           "slicing_last_layer": "bool", "outputs": "str", "weights": "str"}
RUN = {"noise": "float", "seed": "int", "ideal": "bool"}
KEYS = {"target": "str"} | _TYPES | OPTIONS | RUN          # what a point may set
MODEL_KEYS = {"name": "str", "onnx": "path", "calib": "path", "data": "path", "metric": "str", "samples": "int",
              "reference": "path", "labels": "str"}
PLOTS = ("accuracy_energy.png", "accuracy_noise.png", "converts_adc_bits.png")
HEAD = ("point_id", "model", "name", "label", "metric", "score", "compile_s", "run_s", "error")


# ---- the sweep file ------------------------------------------------------------------------------------

class _Lines:
    """Line numbers of keys in the TOML text, for schema errors (tomllib keeps none)."""

    def __init__(self, text: str):
        self.lines = text.splitlines()

    def find(self, table: str | None, index: int, key: str | None) -> int:
        seen: dict[str, int] = {}
        cur, header = (None, 0), 1
        for no, line in enumerate(self.lines, 1):
            s = line.strip()
            m = re.match(r"^\[\[\s*([\w.-]+)\s*\]\]", s) or re.match(r"^\[\s*([\w.-]+)\s*\]", s)
            if m:
                seen[m.group(1)] = seen.get(m.group(1), -1) + 1
                cur = (m.group(1), seen[m.group(1)])
                if cur == (table, index):
                    header = no
                    if key is None:
                        return no
                continue
            if cur == (table, index) and key is not None and re.match(rf'^["\']?{re.escape(key)}["\']?\s*=', s):
                return no
        return header


def _type_ok(kind: str, v) -> bool:
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind in ("str", "path"):
        return isinstance(v, str)
    if kind == "slicing":
        return v == "adaptive" or _type_ok("tuple[int, ...]", v)
    return isinstance(v, list) and all(_type_ok("int", x) for x in v)      # tuple[int, ...]


def _value_error(key: str, v) -> str | None:
    kind = KEYS[key]
    if not _type_ok(kind, v):
        want = {"slicing": "'adaptive' or a list of widths", "tuple[int, ...]": "a list of integers"}.get(kind, kind)
        return f"'{key}' must be {want}, got {v!r}"
    if key in _CHOICES and v not in _CHOICES[key]:
        return f"'{key}' must be one of {', '.join(_CHOICES[key])}, got {v!r}"
    if key == "noise" and v < 0:
        return f"'noise' must be >= 0, got {v}"
    return None


@dataclasses.dataclass
class Model:
    name: str
    onnx: Path
    data: Path
    metric: str
    calib: Path | None = None
    samples: int | None = None
    reference: Path | None = None
    labels: str | None = None       # the data's key of the labels (default: y, label or labels)

    def digest(self) -> str:
        """Content hash of the model's files and how it is judged."""
        h = hashlib.sha256()
        for p in (self.onnx, self.calib, self.data, self.reference):
            h.update(_file_hash(p).encode() if p else b"-")
        h.update(f"{self.metric}/{self.samples}/{self.labels}".encode())
        return h.hexdigest()[:16]


@dataclasses.dataclass
class Point:
    index: int
    model: Model
    name: str
    label: str
    settings: dict
    id: str = ""
    target: Target | None = None
    error: str | None = None        # a target that cannot be built: the point fails without running
    program: str = ""               # content hash of what pimc compiles

    @property
    def options(self) -> dict:
        return {k: tuple(v) if isinstance(v, list) else v for k, v in self.settings.items() if k in OPTIONS}

    @property
    def run_options(self) -> dict:
        return {k: self.settings.get(k, d) for k, d in (("noise", 0.0), ("seed", 0), ("ideal", False))}


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_sweep(path: str | Path) -> list[Point]:
    """Read and check a sweep file: its points in order. A bad file raises CompileError naming the file,
    the line and the key."""
    path = Path(path)
    try:
        text = path.read_text()
        doc = tomllib.loads(text)
    except FileNotFoundError:
        raise CompileError(f"{path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CompileError(f"{path}: bad TOML: {e}") from None
    lines = _Lines(text)

    def bad(table, index, key, msg):
        raise CompileError(f"{path}:{lines.find(table, index, key)}: {msg}")

    for k in doc:
        if k not in ("model", "base", "point", "grid"):
            bad(k if isinstance(doc[k], dict) else None, 0, None if isinstance(doc[k], dict) else k,
                f"unknown key '{k}' (a sweep has [[model]], [base], [[point]] and [grid])")
    if not isinstance(doc.get("model"), list) or not doc["model"]:
        bad(None, 0, "model", "a sweep needs at least one [[model]] table")
    for k in ("base", "grid"):
        if not isinstance(doc.get(k, {}), dict):
            bad(None, 0, k, f"'{k}' must be a table [{k}]")
    if not isinstance(doc.get("point", []), list):
        bad(None, 0, "point", "'point' must be an array of tables [[point]]")

    models = []
    for i, m in enumerate(doc["model"]):
        for k, v in m.items():
            if k not in MODEL_KEYS:
                bad("model", i, k, f"unknown model key '{k}' (model keys: {', '.join(MODEL_KEYS)})")
            if not _type_ok(MODEL_KEYS[k], v):
                bad("model", i, k, f"'{k}' must be {MODEL_KEYS[k].replace('path', 'a path')}, got {v!r}")
        for k in ("name", "onnx", "data", "metric"):
            if k not in m:
                bad("model", i, None, f"[[model]] number {i + 1} has no '{k}'")
        if m["metric"] not in METRICS:
            bad("model", i, "metric", f"'metric' must be one of {', '.join(METRICS)}, got {m['metric']!r}")
        if m.get("samples", 1) < 1:
            bad("model", i, "samples", "'samples' must be >= 1")
        if any(o.name == m["name"] for o in models):
            bad("model", i, "name", f"two models are named '{m['name']}'")
        files = {}
        for k in ("onnx", "calib", "data", "reference"):
            if k in m:
                p = (path.parent / m[k]).resolve()
                if not p.is_file():
                    bad("model", i, k, f"'{k}': no such file {m[k]} (paths are relative to the sweep file)")
                files[k] = p
        keys = (m["labels"],) if "labels" in m else LABEL_KEYS
        if m["metric"] == "top1" or "labels" in m:
            try:
                d = np.load(files["data"], allow_pickle=False)
                has = not isinstance(d, np.ndarray) and any(k in d.files for k in keys)
            except (OSError, ValueError):
                has = False
            if not has:
                bad("model", i, "labels" if "labels" in m else "metric",
                    f"no labels ({'/'.join(keys)}) in the data {m['data']} (an .npz)")
        models.append(Model(m["name"], files["onnx"], files["data"], m["metric"], files.get("calib"),
                            m.get("samples"), files.get("reference"), m.get("labels")))

    def check(table, index, d, allow=()):
        for k, v in d.items():
            if k in allow:
                continue
            if k not in KEYS:
                bad(table, index, k, f"unknown key '{k}' (not a target key, a pimc option or a run option)")
            err = _value_error(k, v)
            if err:
                bad(table, index, k, err)
    base = doc.get("base", {})
    check("base", 0, base)
    points = doc.get("point") or [{}]
    for i, p in enumerate(doc.get("point", [])):
        check("point", i, p, allow=("name",))
        if not isinstance(p.get("name", ""), str):
            bad("point", i, "name", "'name' must be a string")
    grid = doc.get("grid", {})
    for k, vs in grid.items():
        if not isinstance(vs, list) or not vs:
            bad("grid", 0, k, f"grid key '{k}' must be a non-empty list of values")
        if k not in KEYS:
            bad("grid", 0, k, f"unknown key '{k}' (not a target key, a pimc option or a run option)")
        for v in vs:
            err = _value_error(k, v)
            if err:
                bad("grid", 0, k, err)
        for i, p in enumerate(doc.get("point", [])):
            if k in p:
                bad("point", i, k, f"'{k}' is set both here and in [grid]")

    out = []
    for m in models:
        for i, p in enumerate(points):
            for combo in itertools.product(*grid.values()):
                g = dict(zip(grid, combo))
                settings = base | {k: v for k, v in p.items() if k != "name"} | g
                name = p.get("name", f"point {i + 1}" if doc.get("point") else "base")
                label = " ".join([name] + [f"{k}={_cell(v)}" for k, v in g.items()])
                out.append(_resolve(Point(len(out), m, name, label, settings), path.parent))
    return out


def _resolve(p: Point, here: Path) -> Point:
    """The point's target (a preset or file with its keys replaced, as pimc --encoding does for flip), its
    program's content hash and its own id."""
    s = p.settings
    digest = p.model.digest()
    p.id = hashlib.sha256(json.dumps([digest, p.name, s], sort_keys=True).encode()).hexdigest()[:16]
    try:
        spec = s.get("target", "raella")
        t = load_target(here / spec if spec.endswith(".toml") else spec)
        over = {k: v for k, v in s.items() if k in _TYPES}
        if "encoding" in over and "flip" not in over:
            over["flip"] = t.flip and over["encoding"] == "unsigned"
        p.target = t.replace(**over) if over else t
    except AsmError as e:
        p.error = one_line(e)
        return p
    h = hashlib.sha256()
    for f in (p.model.onnx, p.model.calib):
        h.update(_file_hash(f).encode() if f else b"-")
    h.update(json.dumps([p.target.to_dict(), p.options], sort_keys=True, default=list).encode())
    p.program = h.hexdigest()[:16]
    return p


def _cell(v) -> str:
    return "-".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


# ---- work on a worker ----------------------------------------------------------------------------------

def _input_names(onnx_path) -> list[str]:
    from .frontend import load_onnx
    g = load_onnx(onnx_path).graph
    inits = {i.name for i in g.initializer}
    return [i.name for i in g.input if i.name not in inits]


def compile_point(p: Point, cache: str) -> dict:
    """Compile p's program into the cache (once: a program already there is reused): {"path", "compile_s"}
    or {"error"} with the one-line error of a point that cannot compile."""
    from .pipeline import compile_model
    path = Path(cache) / f"{p.program}.pimasm"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return json.loads(meta.read_text()) | {"path": str(path)}
    t0 = time.perf_counter()
    try:
        calib = None
        if p.model.calib:
            calib = load_arrays(p.model.calib, _input_names(p.model.onnx), error=CompileError)[0]
        text = print_program(compile_model(p.model.onnx, p.target, calib, options=p.options).program)
    except (FrontendError, CompileError, AsmError, RuntimeFault, ValueError, OSError, MemoryError) as e:
        return {"error": one_line(e)}
    except Exception as e:           # a bug: this point's row says so, the sweep goes on
        return {"error": f"internal error: {type(e).__name__}: {one_line(e)}"}
    info = {"compile_s": round(time.perf_counter() - t0, 3)}
    write_text(path, text)
    write_json(meta, info)
    return info | {"path": str(path)}


def run_point(p: Point, compiled: dict, reference: str | None) -> dict:
    """Run a compiled point on its model's data and judge it: its results row."""
    row = _head(p) | {"compile_s": compiled.get("compile_s", "")}
    if "error" in compiled:
        return row | {"error": compiled["error"]}
    try:
        prog = read_program(compiled["path"])
        ro = p.run_options
        m = Machine(prog, ideal=ro["ideal"], noise=ro["noise"], seed=ro["seed"], filename=compiled["path"])
        feeds, labels = _data(p.model, [i.attr("name") for i in m.inputs])
        t0 = time.perf_counter()
        outs = m.run(feeds)
        run_s = time.perf_counter() - t0
        stats = stats_json(m)
        ref = np.load(reference) if reference else None
        score = judge(p.model.metric, next(iter(outs.values())), labels, ref)
    except (AsmError, RuntimeFault, ValueError, OSError, MemoryError) as e:
        return row | {"error": one_line(e)}
    except Exception as e:
        return row | {"error": f"internal error: {type(e).__name__}: {one_line(e)}"}
    return row | {"score": score, "run_s": round(run_s, 3)} | _flat({k: v for k, v in stats.items() if k != "target"}) \
        | {"layers": [{k: v for k, v in layer.items() if not isinstance(v, dict)} for layer in stats.get("layers", [])]}


def _head(p: Point) -> dict:
    return {"point_id": p.id, "model": p.model.name, "name": p.name, "label": p.label, "metric": p.model.metric,
            "score": "", "compile_s": "", "run_s": "", "error": ""} | \
        {k: _cell(v) for k, v in p.settings.items()} | \
        ({f"target.{k}": _cell(v) for k, v in p.target.to_dict().items()} if p.target else {})


def _data(m: Model, names: list[str]):
    feeds, labels = load_arrays(m.data, names, error=RuntimeFault)
    if m.labels:
        labels = np.load(m.data, allow_pickle=False)[m.labels]
    if m.samples:
        feeds = {k: v[:m.samples] for k, v in feeds.items()}
        labels = None if labels is None else labels[:m.samples]
    return feeds, labels


def _flat(d: dict, prefix="") -> dict:
    """Scalar stats with dotted keys (energy_pj.adc, per_inference.time_ns, ...); per-layer lists left out."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        elif v is None or isinstance(v, (int, float, str, bool)):
            if k != "notes":
                out[prefix + k] = v
    return out


def judge(metric: str, y: np.ndarray, labels, ref) -> float:
    """top1: accuracy against the labels; agreement: top-1 agreement with float; cosine: mean cosine to float;
    nn: how often a sample's nearest neighbour (cosine) shares its label, or without labels is float's
    nearest neighbour."""
    if metric == "top1":
        return float(np.mean(y.argmax(1) == labels))
    if metric == "agreement":
        return float(np.mean(y.argmax(1) == ref.argmax(1)))
    a = y.reshape(len(y), -1).astype(np.float64)
    if metric == "cosine":
        b = ref.reshape(len(ref), -1).astype(np.float64)
        return float(np.mean(np.sum(a * b, 1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1),
                                                           1e-30)))
    nn = _nearest(a)
    if labels is not None:
        return float(np.mean(labels[nn] == labels))
    return float(np.mean(nn == _nearest(ref.reshape(len(ref), -1).astype(np.float64))))


def _nearest(a: np.ndarray) -> np.ndarray:
    e = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-30)
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(1)


# ---- the driver ----------------------------------------------------------------------------------------

def references(points: list[Point], outdir: Path) -> dict[str, str]:
    """Float outputs (onnxruntime, first output) of every model whose metric needs them, once per model:
    model name -> .npy path."""
    out = {}
    for m in {p.model.name: p.model for p in points}.values():
        if m.metric == "top1":
            continue
        (outdir / "reference").mkdir(parents=True, exist_ok=True)
        if m.reference:
            ref = np.load(m.reference)
            path = outdir / "reference" / f"{m.name}-{m.digest()}.npy"
            if not path.exists():
                atomic_write(path, lambda f: np.save(f, ref[:m.samples] if m.samples else ref))
        else:
            path = outdir / "reference" / f"{m.name}-{m.digest()}.npy"
            if not path.exists():
                from .verify import onnx_float
                feeds, _ = _data(m, _input_names(m.onnx))
                y = next(iter(onnx_float(m.onnx, feeds).values()))
                atomic_write(path, lambda f: np.save(f, y))
        out[m.name] = str(path)
    return out


class Results:
    """points.jsonl (appended, fsynced, per finished point) and results.csv (rewritten from it)."""

    def __init__(self, outdir: Path, points: list[Point], resume: bool):
        self.dir = outdir
        self.log = outdir / "points.jsonl"
        self.order = {p.id: p.index for p in points}
        if self.log.exists() and not resume:
            raise CompileError(f"{outdir} holds an earlier sweep's points.jsonl: give --resume to continue it, "
                               "or another directory")
        self.rows = []
        if self.log.exists():
            for line in self.log.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:       # the line an interruption cut short
                    continue
                if not row.get("error"):            # failed points run again
                    self.rows.append(row)
        outdir.mkdir(exist_ok=True)         # RESULTS_DIR only: its parent must exist (checked by sweep())
        write_text(self.log, "".join(json.dumps(r) + "\n" for r in self.rows))
        self.done = {r["point_id"] for r in self.rows}

    def add(self, row: dict) -> None:
        with open(self.log, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.rows.append(row)

    def write_csv(self) -> None:
        rows = sorted(self.rows, key=lambda r: self.order.get(r["point_id"], len(self.order)))
        cols = list(HEAD)
        for r in rows:                  # per-layer lists stay in points.jsonl
            cols += [k for k, v in r.items() if k not in cols and not isinstance(v, list)]
        buf = io.StringIO()
        w = csv.DictWriter(buf, cols, restval="", lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        write_text(self.dir / "results.csv", buf.getvalue())


def sweep(path, outdir, workers=None, scheduler=None, resume=False, report=print) -> Results:
    """Run the sweep file `path` into `outdir`; report(line) for every finished point."""
    points = load_sweep(path)
    outdir = Path(outdir)
    if not outdir.parent.is_dir():
        raise CompileError(f"-o {outdir}: folder {outdir.parent} does not exist (pimsweep creates RESULTS_DIR, "
                           "not the folders above it)")
    if outdir.exists() and not outdir.is_dir():
        raise CompileError(f"-o {outdir} is a file, not a folder")
    if outdir.is_dir():     # a folder pimsweep creates holds neither an input nor a folder in an output's place
        inputs = {f"model {m.name}'s {k}": getattr(m, k) for m in {p.model.name: p.model for p in points}.values()
                  for k in ("onnx", "calib", "data", "reference")}
        check_paths({"results.csv": outdir / "results.csv"} | {n: outdir / n for n in PLOTS},
                    inputs | {"the sweep file": path}, CompileError)
    res = Results(outdir, points, resume)
    todo = [p for p in points if p.id not in res.done]
    cache = outdir / "programs"
    cache.mkdir(parents=True, exist_ok=True)
    refs = references(todo, outdir)

    def finish(row):
        res.add(row)
        report(f"[{len(res.rows)}/{len(points)}] {row['model']} {row['label']}: "
               + (f"error: {row['error']}" if row["error"] else
                  f"{row['metric']} {row['score']:.4f}, {row['converts_per_mac']:.4f} converts/MAC, "
                  f"{row['per_inference.energy_incl_weight_writes_pj'] / 1e6:.3f} uJ/inference including weight writes"))

    for p in [p for p in todo if p.error]:
        finish(_head(p) | {"error": p.error})
    todo = [p for p in todo if not p.error]
    if not (workers or scheduler):
        compiled = {}
        for p in todo:
            if p.program not in compiled:
                compiled[p.program] = compile_point(p, str(cache))
            finish(run_point(p, compiled[p.program], refs.get(p.model.name)))
    else:
        from distributed import as_completed
        from runtime.shard import client
        with client(workers, scheduler) as c:
            comp = {}
            for p in todo:
                if p.program not in comp:
                    comp[p.program] = c.submit(compile_point, p, str(cache), pure=False)
            runs = [c.submit(run_point, p, comp[p.program], refs.get(p.model.name), pure=False) for p in todo]
            for f in as_completed(runs):
                finish(f.result())
    with committed_together():          # results.csv and the plots, or none of them
        res.write_csv()
        plot(res.rows, outdir)
    return res


# ---- plots ---------------------------------------------------------------------------------------------

def pareto(xs, ys) -> list[int]:
    """Indices of the points no other point beats on both (lower x, higher y), by increasing x."""
    order = sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i]))
    front, best = [], -np.inf
    for i in order:
        if ys[i] > best:
            front.append(i)
            best = ys[i]
    return front


def plot(rows: list[dict], outdir: Path) -> list[str]:
    """accuracy_energy.png (with each model's Pareto front), accuracy_noise.png, converts_adc_bits.png."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in rows if not r.get("error")]
    if not ok:
        return []
    models = sorted({r["model"] for r in ok})
    written = []

    def save(fig, name):
        fig.tight_layout()
        atomic_write(outdir / name, lambda f: fig.savefig(f, dpi=110, format="png"))
        plt.close(fig)
        written.append(name)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in models:
        rs = [r for r in ok if r["model"] == m]
        xs = [r["per_inference.energy_incl_weight_writes_pj"] / 1e6 for r in rs]
        ys = [r["score"] for r in rs]
        ax.scatter(xs, ys, s=18, label=m)
        front = pareto(xs, ys)
        ax.plot([xs[i] for i in front], [ys[i] for i in front], "--", lw=1)
        for i in front:
            ax.annotate(rs[i]["label"], (xs[i], ys[i]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    metrics = ", ".join(sorted({r["metric"] for r in ok}))
    ax.set(xlabel="energy per inference, weight writes included (uJ)", ylabel=metrics, title="metric against energy (dashed: Pareto front)")
    ax.legend(fontsize=7)
    save(fig, "accuracy_energy.png")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    lines: dict[tuple, dict] = {}
    for r in ok:
        lines.setdefault((r["model"], r["name"]), {}).setdefault(float(r.get("noise") or 0.0), []).append(r["score"])
    for (m, name), pts in lines.items():
        xs = sorted(pts)
        ax.plot([100 * x for x in xs], [np.mean(pts[x]) for x in xs], "o-", ms=3, label=f"{m} {name}")
    ax.set(xlabel="noise E (%)", ylabel=f"{metrics} (mean over seeds and other keys)", title="metric against noise")
    ax.legend(fontsize=6)
    save(fig, "accuracy_noise.png")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in models:
        rs = [r for r in ok if r["model"] == m]
        ax.scatter([int(r["target.adc_bits"]) for r in rs], [r["converts_per_mac"] for r in rs], s=18, label=m)
    ax.set(xlabel="ADC bits", ylabel="ADC converts per MAC", title="converts/MAC against ADC bits")
    ax.legend(fontsize=7)
    save(fig, "converts_adc_bits.png")
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="pimsweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", help="the sweep file (TOML; see docs/sweeps.md)")
    ap.add_argument("-o", "--output", required=True, metavar="RESULTS_DIR", help="folder for results and plots")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, help="run the points on a local Dask cluster of this many processes")
    g.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run the points on this running Dask cluster "
                                                                  "(its workers must see the sweep's files and RESULTS_DIR)")
    ap.add_argument("--resume", action="store_true", help="keep the points RESULTS_DIR already has, run the rest "
                                                          "(and those that failed)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    bar = Progress("pimsweep", enabled=False)

    def body():
        if args.workers is not None and args.workers < 1:
            raise CompileError(f"--workers must be >= 1, got {args.workers}")
        t0 = time.perf_counter()
        res = sweep(args.sweep, args.output, args.workers, args.scheduler, args.resume,
                    report=(lambda line: None) if args.quiet else (lambda line: print(line, flush=True)))
        if not args.quiet:
            failed = sum(1 for r in res.rows if r.get("error"))
            print(f"pimsweep: {len(res.rows)} points in {args.output}/results.csv ({failed} failed), "
                  f"{time.perf_counter() - t0:.1f} s")
        return 0
    return guarded("pimsweep", (CompileError, FrontendError, AsmError, RuntimeFault, OSError), bar, body)


if __name__ == "__main__":
    sys.exit(main())
