"""Pass manager: passes are named units, Graph -> Graph in place, each returning a report dataclass."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ir import Graph
from isa import Target

from .options import Options


@dataclass
class Context:
    """What passes may read besides the graph: the target, calibration feeds, user options."""
    target: Target
    calib: dict[str, np.ndarray] | None = None
    options: Options = field(default_factory=Options)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    channel_ranges: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)   # last axis

    def __post_init__(self):
        self.options = Options.make(self.options)


class Pass(Protocol):
    name: str

    def run(self, graph: Graph, ctx: Context) -> Any: ...


@dataclass
class PassRecord:
    name: str
    seconds: float
    report: Any

    def to_json(self) -> dict:
        rep = dataclasses.asdict(self.report) if dataclasses.is_dataclass(self.report) else self.report
        return {"pass": self.name, "seconds": round(self.seconds, 4), "report": rep}


def run_passes(graph: Graph, passes: list[Pass], ctx: Context, progress=None) -> list[PassRecord]:
    records = []
    for p in passes:
        t0 = time.perf_counter()
        report = p.run(graph, ctx)
        records.append(PassRecord(p.name, time.perf_counter() - t0, report))
        if progress:
            progress(p.name)
    return records
