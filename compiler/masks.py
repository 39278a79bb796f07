"""Token-mask arithmetic, recognised by what it computes rather than by how an exporter wrote it.

Exporters turn an attention mask [B, S] into an additive bias for the scores, a float mask for pooling, or a
count of valid tokens, through Shape / Range / Gather / Expand / Where chains whose constants depend on the
batch the model was traced with. Converting those nodes one by one would bake that batch in. Instead the
frontend evaluates the whole integer region on probes, and where a region tensor reaches the float part of the
model it is matched against two per-sample forms, checked on fresh random masks:

- select: out[b, ..., j at `axis`, ...] = on if mask[b, j] else off   (broadcast over the other axes)
- count:  out[b, ...] = table[n_b], n_b = number of valid tokens of sample b

Either becomes one IR op `maskfn` reading the integer input; anything else is a FrontendError.
"""
from __future__ import annotations

import numpy as np

from ir import FrontendError

TRIALS = 3


def _ancestors(fe, t: str) -> list:
    """The region nodes computing t, in model order."""
    need, nodes = {t}, []
    for n in reversed(fe.model.graph.node):
        if need & set(n.output):
            nodes.append(n)
            need |= {i for i in n.input if i and i in fe.region}
    return nodes[::-1]


def _evaluate(fe, nodes, feeds: dict, t: str) -> np.ndarray:
    from .frontend import evaluate_node
    env = dict(feeds)
    for n in nodes:
        ins = {i: env[i] if i in env else fe.value(i) for i in n.input if i}
        for o, v in zip([o for o in n.output if o], evaluate_node(n, fe.model, ins)):
            env[o] = np.asarray(v)
    return env[t]


def _select_form(v: np.ndarray, m: np.ndarray):
    """(axis, on, off) if v is the mask placed at one axis and broadcast, else None."""
    B, S = m.shape
    if not m.any() or m.all():
        return None
    on, off = v[np.nonzero(m)[0][0]], None
    for ax in range(1, v.ndim):
        if v.shape[ax] != S:
            continue
        shape = [1] * v.ndim
        shape[0], shape[ax] = B, S
        placed = np.broadcast_to(m.reshape(shape), v.shape)
        vals_on, vals_off = np.unique(v[placed]), np.unique(v[~placed])
        if len(vals_on) == 1 and len(vals_off) == 1:
            return ax, float(vals_on[0]), float(vals_off[0])
    return None


def materialise(fe, t: str) -> None:
    """Emit the IR op that computes region tensor t from the model's integer input, or raise."""
    nodes = _ancestors(fe, t)
    sources = sorted({i for n in nodes for i in n.input if i in fe.g.inputs})
    if len(sources) != 1:
        raise FrontendError(f"tensor {t}: integer arithmetic over {len(sources)} inputs ({', '.join(sources)}) "
                            "is not a token mask this compiler recognises")
    src = sources[0]
    probe = fe.probe[src]
    if probe.ndim != 2:
        raise FrontendError(f"tensor {t}: mask input {src} must be [batch, tokens], got {list(probe.shape)}")
    B, S = probe.shape
    rng = np.random.default_rng(0)
    trials = []
    for _ in range(TRIALS):
        m = rng.integers(0, 2, (B, S))
        m[:, 0] = 1
        m[0, -1] = 0
        trials.append((m, _evaluate(fe, nodes, {src: m.astype(probe.dtype)}, t)))
    node = type("N", (), {"name": f"mask:{t}", "op_type": "maskfn"})()
    forms = [_select_form(v.astype(np.float64), m != 0) for m, v in trials]
    v0 = trials[0][1]
    if all(f is not None and f == forms[0] for f in forms):
        ax, on, off = forms[0]
        # an exporter's -inf for masked keys (TorchScript's SDPA) becomes float32's lowest finite value, as
        # HF's eager attention writes it: softmax gives those keys 0 either way, and programs hold finite numbers
        lim = float(np.finfo(np.float32).max)
        on, off = (float(np.clip(x, -lim, lim)) for x in (on, off))
        shape = [1] * (v0.ndim - 1)
        shape[ax - 1] = S
        fe.emit(node, "maskfn", [src], t, mode="select", axis=ax, shape=tuple(shape), on=on, off=off)
        return
    # count form: tabulate every count 0..S, then check the random trials against the table
    table = np.stack([_evaluate(fe, nodes, {src: (np.arange(S)[None, :] < n).repeat(B, 0).astype(probe.dtype)}, t)[0]
                      for n in range(S + 1)]).astype(np.float64)
    for m, v in trials:
        if v.shape[1:] != table.shape[1:] or not np.array_equal(table[(m != 0).sum(axis=1)], v.astype(np.float64)):
            raise FrontendError(f"tensor {t}: the mask arithmetic computing it is neither a per-token select nor a "
                                "function of the valid-token count")
    fe.emit(node, "maskfn", [src], t, mode="count", shape=tuple(table.shape[1:]), table=table.reshape(S + 1, -1))
