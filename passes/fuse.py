"""Fuse Relu / Clip into the op that produces their input (conv, linear, add), as RAELLA folds the
activation into requantisation (RAELLA thesis sec. 2.4). Contract: graph semantics unchanged; the producer gains attr
act=(lo, hi) and takes over the activation's output tensor."""
from __future__ import annotations

from dataclasses import dataclass, field

from ir import Graph

FUSABLE = ("conv", "linear", "add", "matmul")


@dataclass
class FuseReport:
    fused: list[str] = field(default_factory=list)


class FuseActivations:
    name = "fuse_activations"

    def run(self, g: Graph, ctx) -> FuseReport:
        rep = FuseReport()
        for op in list(g.topo()):
            if op.kind not in ("relu", "clip"):
                continue
            src = op.inputs[0]
            prod = g.producer(src)
            if prod is None or prod.kind not in FUSABLE or "act" in prod.attrs or src in g.outputs \
                    or len(g.consumers(src)) != 1:
                continue
            lo, hi = (0.0, float("inf")) if op.kind == "relu" else (op.attrs["lo"], op.attrs["hi"])
            prod.attrs["act"] = (lo, hi)
            prod.outputs = [op.outputs[0]]
            g.remove_op(op.name)
            del g.tensors[src]
            rep.fused.append(f"{op.name} -> {prod.name}")
        return rep
