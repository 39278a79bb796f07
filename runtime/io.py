"""Reading input files and writing outputs atomically (temp file + rename), for both CLIs.

A command's outputs are checked together before any work (check_paths: folders exist, no two outputs and no
output and input are one file) and, inside `committed_together()`, renamed into place together once every
one of them has been written: a failure, SIGINT or SIGTERM leaves no temp file and every old file as it was.
"""
from __future__ import annotations

import json
import os
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from isa.host import memory_budget

from .guard import Terminated

LABEL_KEYS = ("y", "label", "labels")


def open_npy(path, error=ValueError, label: str = ""):
    """np.load without pickles: an ndarray or an NpzFile; a missing or unreadable file, or an .npy whose
    header declares more bytes than this host can still give, is one `error` line starting with `label`
    (default the path). An .npz member's size is checked when it is read (load_arrays)."""
    label = label or str(path)
    try:
        with open(path, "rb") as f:
            nbytes = _declared_bytes(f)
    except FileNotFoundError:
        raise error(f"{label}: no such file") from None
    except Exception as e:
        raise error(f"{label}: not a .npy/.npz file ({str(e)[:100]})") from None
    _check_size(nbytes, label, error)
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:
        raise error(f"{label}: not a .npy/.npz file ({str(e)[:100]})") from None


def _declared_bytes(f) -> int:
    """The data size an .npy header declares (0 for anything that is not an .npy: np.load judges it)."""
    if f.read(6) != b"\x93NUMPY":
        return 0
    version = tuple(f.read(2))
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(f)
    return int(np.prod(shape, dtype=object)) * dtype.itemsize


def _check_size(nbytes: int, label, error) -> None:
    budget = memory_budget()
    if nbytes > budget:
        raise error(f"{label}: declares {nbytes} bytes of data, more than the {budget} bytes of memory this host "
                    "can still give")


def load_arrays(path: str | Path, names: list[str], error=ValueError) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """.npy for a single-input model; .npz keyed by input names (a single-input model also takes key 'x').
    Returns the feeds and the labels ('y') if the file has them. An array that is not plain numbers (strings,
    objects, pickles, records) is one `error` line naming it."""
    path = str(path)
    data = open_npy(path, error)
    if isinstance(data, np.ndarray):
        if len(names) != 1:
            raise error(f"{path}: the model has {len(names)} inputs ({', '.join(names)}); give an .npz keyed by them")
        return {names[0]: _numbers(data, path, names[0], error)}, None
    keys = set(data.files)
    feeds = {}
    for n in names:
        if n in keys:
            feeds[n] = _member(data, n, path, error)
        elif len(names) == 1 and "x" in keys:
            feeds[n] = _member(data, "x", path, error)
        else:
            raise error(f"{path}: no array for input '{n}' (file has: {', '.join(sorted(keys)[:20])})")
    labels = next((_member(data, k, path, error) for k in LABEL_KEYS if k in keys), None)
    return feeds, labels


def _member(data, key: str, path, error) -> np.ndarray:
    try:
        info = data.zip.getinfo(key + ".npy")
    except (AttributeError, KeyError):
        info = None
    label = f"{path}: array '{key}'"
    if info is not None:
        _check_size(info.file_size, label, error)
        try:
            with data.zip.open(info) as f:
                nbytes = _declared_bytes(f)
        except Exception as e:
            raise error(f"{label} cannot be read ({str(e)[:100]})") from None
        _check_size(nbytes, label, error)
    try:
        x = data[key]
    except Exception as e:      # pickled objects (allow_pickle=False), a corrupt member
        raise error(f"{path}: array '{key}' cannot be read ({str(e)[:100]})") from None
    return _numbers(x, path, key, error)


F32_MAX = float(np.finfo(np.float32).max)


def _numbers(x: np.ndarray, path, key: str, error) -> np.ndarray:
    """Plain real numbers; wider floats no larger than float32's range (the programs and onnxruntime take
    float32: a cast would overflow). NaN and infinity are left to the caller, which counts them."""
    if x.dtype.kind not in "biuf":
        raise error(f"{path}: array '{key}' holds {x.dtype} values, not real numbers")
    if x.dtype.kind == "f" and x.dtype.itemsize > 4:
        big = np.abs(np.where(np.isfinite(x), x, 0)).max(initial=0)
        if big > F32_MAX:
            raise error(f"{path}: array '{key}' holds values up to {big:.3g}, beyond float32")
    return x


def check_output(path: str | Path | None) -> None:
    """Refuse an output whose folder does not exist, before any work is done (no folder is ever created)."""
    if path is not None and not Path(path).parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {Path(path).parent} does not exist")


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)     # hard links
    except OSError:
        return False


def check_paths(outputs: dict, inputs: dict | None = None, error=ValueError) -> None:
    """Before any work: every output's folder exists, no two outputs name one file and no output names an
    input. `outputs` and `inputs` map an option ('-o', '--stats') to its path (None: not given); a
    collision is one `error` line naming both options."""
    outs = [(k, Path(v)) for k, v in outputs.items() if v is not None]
    ins = [(k, Path(v)) for k, v in (inputs or {}).items() if v is not None]
    for k, p in outs:
        check_output(p)
        if p.is_dir():
            raise error(f"{k} {p} is a folder, not a file")
    for i, (k, p) in enumerate(outs):
        for k2, p2 in outs[i + 1:]:
            if _same_file(p, p2):
                raise error(f"{k} {p} and {k2} {p2} are the same file; give each output its own path")
        for k2, p2 in ins:
            if _same_file(p, p2):
                raise error(f"{k} {p} would overwrite the input {k2} {p2}; write it elsewhere")


_pending: list[tuple[str, Path]] | None = None      # (temp, target) of the open commit group, if any


@contextmanager
def committed_together():
    """Every atomic_write inside the block leaves its temp beside the target; they are renamed into place
    together when the block ends without an error, and removed when it does not (SIGTERM included), so a
    command's outputs all change or none does."""
    global _pending
    outer, _pending = _pending, []
    try:
        with _signals_raise():
            yield
            for tmp, path in _pending:
                os.replace(tmp, path)
            _pending.clear()
    finally:
        for tmp, _ in _pending:
            if os.path.exists(tmp):
                os.unlink(tmp)
        _pending = outer


@contextmanager
def _signals_raise():
    try:
        old = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:              # not the main thread: the caller owns the signals
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _terminate(signum, frame):
    raise Terminated(f"terminated by signal {signum}")


def atomic_write(path: str | Path, write) -> None:
    """write(tmp_path) then rename over path (inside committed_together(): at the group's end), so a failure
    never leaves a partial file."""
    path = Path(path)
    check_output(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or ".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)          # mkstemp's 0600 would otherwise stick to the output
        if _pending is not None:
            _pending.append((tmp, path))
        else:
            os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path, text: str) -> None:
    atomic_write(path, lambda p: Path(p).write_text(text))


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1, default=_default) + "\n")


def write_arrays(path, arrays: dict[str, np.ndarray]) -> None:
    path = str(path)
    if path.endswith(".npz"):
        atomic_write(path, lambda p: _save(p, np.savez, **arrays))
    else:
        if len(arrays) != 1:
            raise ValueError(f"{path}: the program has {len(arrays)} outputs; write them to an .npz")
        atomic_write(path, lambda p: _save(p, np.save, next(iter(arrays.values()))))


def _save(path, save, *args, **kwargs):
    with open(path, "wb") as f:         # a file object: NumPy appends no .npy / .npz to the name
        save(f, *args, **kwargs)


def _default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)
