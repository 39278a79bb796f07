"""The Python API: compile, save / load, run and verify, as the two CLIs do."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from isa import Target, parse_program, print_program, read_program
from isa import Program as IsaProgram


class Program:
    """A compiled program: its text (exactly what pimrun reads) and, when it came from `compile`, the compile
    report and the quantised graph the verification ladder needs."""

    def __init__(self, text: str, compiled=None, model=None):
        self.text = text
        self._compiled = compiled
        self._model = model
        self._isa: IsaProgram | None = None

    @property
    def isa(self) -> IsaProgram:
        if self._isa is None:
            self._isa = parse_program(self.text)
        return self._isa

    @property
    def target(self) -> Target:
        return self.isa.target

    @property
    def report(self) -> dict | None:
        """Every pass's report (None for a program loaded from a file)."""
        return None if self._compiled is None else self._compiled.report()

    def save(self, path) -> None:
        from runtime.io import write_text
        write_text(path, self.text)

    def __repr__(self) -> str:
        return f"<pimc.Program for {self.target.name}: {self.text.count(chr(10))} lines>"


class Stats:
    """What a run counted: attribute access to the figures (`stats.converts_per_mac`), `to_json()` for the
    dict that `pimrun --stats` writes, `layers` per layer."""

    def __init__(self, data: dict):
        self._data = data

    def to_json(self) -> dict:
        return self._data

    def dumps(self) -> str:
        from runtime.io import _default
        return json.dumps(self._data, indent=1, default=_default)

    def __getattr__(self, name):
        try:
            return self.__dict__["_data"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key):
        return self._data[key]

    def __repr__(self) -> str:
        from runtime.results import summary_lines
        return f"<pimc.Stats {summary_lines(self._data)[0]}>"


def compile(model, target: str | Target = "raella", calib=None, **options) -> Program:
    """Compile an ONNX model (path or ModelProto) for a target (preset name, TOML path or Target).

    `calib`: an array (single-input model) or {input name: array}. `options`: compile options by name
    (see `pimc.options()`); an unknown or ill-typed one is a CompileError."""
    from compiler.pipeline import compile_model
    from isa import load_target
    from passes.options import Options
    t = target if isinstance(target, Target) else load_target(str(target))
    c = compile_model(model, t, calib, options=Options.make(options))
    return Program(print_program(c.program), c, model)


def load(path) -> Program:
    """A .pimasm file, parsed and validated as pimrun does."""
    p = Program(Path(path).read_text(), None)
    p._isa = read_program(path)
    return p


def _feeds(program: Program, inputs) -> dict[str, np.ndarray]:
    names = [i.attr("name") for i in program.isa.code if i.op == "input"]
    if isinstance(inputs, np.ndarray):
        if len(names) != 1:
            from runtime.errors import RuntimeFault
            raise RuntimeFault(f"the program has {len(names)} inputs ({', '.join(names)}); pass a dict")
        return {names[0]: inputs}
    return dict(inputs)


def run(program: Program | str, inputs, ideal: bool = False, noise: float = 0.0, seed: int = 0,
        chunk: int | None = None) -> tuple[dict[str, np.ndarray], Stats]:
    """Run a program (or a .pimasm path) on a batch: {output name: array}, Stats. Same as pimrun."""
    from runtime.cli import check_feeds
    from runtime.errors import RuntimeFault
    from runtime.machine import Machine
    from runtime.results import stats_json
    if not isinstance(program, Program):
        program = load(program)
    if noise < 0:
        raise RuntimeFault(f"noise must be >= 0, got {noise}")
    m = Machine(program.isa, ideal=ideal, noise=noise, seed=seed)
    feeds = _feeds(program, inputs)
    check_feeds(m, feeds)
    outs = m.run(feeds, chunk=chunk)
    return outs, Stats(stats_json(m))


def verify(program: Program, inputs, labels=None) -> dict:
    """The verification ladder (onnxruntime float, quantised reference, pimrun ideal, pimrun target) of a
    program made by `compile`; `result["ideal_equals_reference"]` must be True."""
    from compiler.verify import ladder
    if program._compiled is None:
        raise ValueError("verify needs a Program made by pimc.compile (it compares against the ONNX model)")
    return ladder(program._compiled, program._model, _feeds(program, inputs), labels)


def options() -> list[tuple[str, str, object, str]]:
    """(name, type, default, meaning) of every compile option."""
    from passes.options import Options
    return Options.describe()
