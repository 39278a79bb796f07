"""Graph IR: typed tensors and ops over a networkx DiGraph.

Activation shapes are per sample: every activation carries an implicit leading batch axis, so one compiled
graph runs any batch. Constants carry their full shape. After quantisation an activation is either `u8`
codes with a per-tensor (scale, zero) or an `i32` accumulator with a per-channel scale vector.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    data: np.ndarray | None = None       # constants only
    dtype: str = "f32"                   # f32 | u8 | i32
    scale: float | np.ndarray | None = None
    zero: int = 0
    qhint: dict | None = None            # quantisation given by the model itself (QDQ / QLinear*)
    qaxis: int = -1                      # the channel axis of a per-channel (i32) scale

    @property
    def is_const(self) -> bool:
        return self.data is not None


@dataclass
class Op:
    name: str
    kind: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)


class Graph:
    def __init__(self):
        self.tensors: dict[str, Tensor] = {}
        self.ops: dict[str, Op] = {}
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.output_names: list[str] = []    # the model's names for the outputs, kept through renames

    # -- building ------------------------------------------------------------------------------------
    def add_tensor(self, t: Tensor) -> Tensor:
        self.tensors[t.name] = t
        return t

    def const(self, name: str, data) -> str:
        data = np.asarray(data)
        self.tensors[name] = Tensor(name, data.shape, data=data)
        return name

    def add_op(self, kind: str, name: str, inputs, outputs, **attrs) -> Op:
        op = Op(name, kind, list(inputs), list(outputs), attrs)
        self.ops[name] = op
        return op

    def remove_op(self, name: str) -> None:
        del self.ops[name]

    def unique(self, base: str) -> str:
        name, i = base, 1
        while name in self.tensors or name in self.ops:
            name, i = f"{base}_{i}", i + 1
        return name

    # -- queries -------------------------------------------------------------------------------------
    def producer(self, tensor: str) -> Op | None:
        for op in self.ops.values():
            if tensor in op.outputs:
                return op
        return None

    def consumers(self, tensor: str) -> list[Op]:
        return [op for op in self.ops.values() if tensor in op.inputs]

    def dag(self) -> nx.DiGraph:
        g = nx.DiGraph()
        made = {}
        for i, op in enumerate(self.ops.values()):
            g.add_node(op.name, order=i)
            made.update({t: op.name for t in op.outputs})
        for op in self.ops.values():
            for t in op.inputs:
                if t in made:
                    g.add_edge(made[t], op.name, tensor=t)
        return g

    def topo(self) -> list[Op]:
        g = self.dag()
        order = nx.lexicographical_topological_sort(g, key=lambda n: g.nodes[n]["order"])
        return [self.ops[n] for n in order]

    def prune(self) -> None:
        """Drop ops and tensors that no graph output depends on."""
        g = self.dag()
        keep = set()
        for out in self.outputs:
            p = self.producer(out)
            if p:
                keep |= nx.ancestors(g, p.name) | {p.name}
        self.ops = {k: v for k, v in self.ops.items() if k in keep}
        used = set(self.inputs) | set(self.outputs)
        for op in self.ops.values():
            used |= set(op.inputs) | set(op.outputs)
        self.tensors = {k: v for k, v in self.tensors.items() if k in used}

    def replace_uses(self, old: str, new: str) -> None:
        for op in self.ops.values():
            op.inputs = [new if t == old else t for t in op.inputs]
        self.outputs = [new if t == old else t for t in self.outputs]
