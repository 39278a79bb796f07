"""Crossbar mapping: each conv / linear becomes a weight matrix (K_g rows x N filters, im2col row order
channel, ky, kx) tiled onto crossbars.

Contract: op.attrs["xbars"] lists, per crossbar, the global im2col rows [r0, r1) and filters [c0, c1) it
holds; a filter takes one physical column per weight slice. A grouped conv whose groups are small packs
several groups block-diagonally into one crossbar (disjoint rows and columns); a group larger than a
crossbar is tiled like a dense layer. Raises CompileError when a program-once target is too small (a
rewriting target takes any number: backend/schedule.py places them in turn).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ir import CompileError, Graph
from runtime.crossbar import block_mask

CROSSBAR_OPS = ("conv", "linear")


def weight_matrix(op) -> tuple[np.ndarray, int]:
    """(K_g x N) integer weights and the group count, in the crossbar's row order."""
    w = op.attrs["q"]["w"]
    if op.kind == "conv":
        return w.reshape(w.shape[0], -1).T.copy(), op.attrs["group"]
    return w, op.attrs.get("group", 1)     # a grouped linear (attention heads): column block g reads row block g


@dataclass
class MappingReport:
    layers: dict = field(default_factory=dict)     # layer -> {crossbars, rows_used_mean, utilisation}
    crossbars: int = 0
    capacity: int = 0


def tile_layer(kg: int, n: int, groups: int, rows: int, cols: int, nslices: int) -> list[tuple]:
    """Crossbar blocks ((r0, r1), (c0, c1)) of a (kg x n) layer matrix with `groups` groups."""
    fpx = cols // nslices                     # filters per crossbar
    ng = n // groups
    tiles = []
    if groups > 1 and kg <= rows and ng <= fpx:
        per = min(rows // kg, fpx // ng)
        for g0 in range(0, groups, per):
            g1 = min(groups, g0 + per)
            tiles.append(((g0 * kg, g1 * kg), (g0 * ng, g1 * ng)))
    else:
        for grp in range(groups):
            for r0 in range(0, kg, rows):
                for c0 in range(0, ng, fpx):
                    tiles.append(((grp * kg + r0, grp * kg + min(kg, r0 + rows)),
                                  (grp * ng + c0, grp * ng + min(ng, c0 + fpx))))
    return tiles


class MapCrossbars:
    name = "map_crossbars"

    def run(self, g: Graph, ctx) -> MappingReport:
        t = ctx.target
        rep = MappingReport(capacity=t.xbars)
        next_id = 0
        for op in g.topo():
            if op.kind not in CROSSBAR_OPS:
                continue
            # a slicing chosen per layer (adaptive slicing, --slicing) or the target's
            slices = tuple(op.attrs.get("slices") or t.weight_slices)
            wm, groups = weight_matrix(op)
            kg, n = wm.shape
            ng = n // groups
            tiles = tile_layer(kg, n, groups, t.rows, t.cols, len(slices))
            op.attrs["wm"] = wm
            op.attrs["xbars"] = [{"xb": next_id + i, "rows": r, "cols": c} for i, (r, c) in enumerate(tiles)]
            op.attrs["slices"] = slices
            op.attrs["kg"], op.attrs["ng"] = kg, ng
            next_id += len(tiles)
            used = [block_mask(r, c, kg, ng).sum() * len(slices) for r, c in tiles]
            rep.layers[op.name] = {
                "crossbars": len(tiles),
                "slices": list(slices),
                "rows_used_mean": float(np.mean([r[1] - r[0] for r, _ in tiles])),
                "utilisation": float(np.sum(used) / (len(tiles) * t.rows * t.cols)),
            }
        rep.crossbars = next_id
        if next_id > t.xbars and t.program_once:     # a rewriting target places them in turn (backend/schedule.py)
            raise CompileError(f"the model needs {next_id} crossbars, target {t.name} has {t.xbars}"
                               " (a program-once target cannot rewrite weights)")
        return rep
