"""Compile options: every option once, with its type, default and meaning.

`Options.make(mapping)` is the one way in: it refuses an unknown name or an ill-typed value with a
CompileError naming the option, so a typo never silently falls back to a default. Passes read the fields.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ir import CompileError


def _opt(default, meaning: str, choices: tuple | None = None):
    return field(default=default, metadata={"meaning": meaning, "choices": choices})


@dataclass(frozen=True)
class Options:
    slicing: Any = _opt(None, "weight slicing: 'adaptive' (RAELLA's search), widths such as (4, 2, 2) for every "
                              "layer, or {layer: widths}; None takes the target's")
    error_budget: float = _opt(0.09, "adaptive slicing's error budget (mean relative error per layer)")
    slicing_last_layer: bool = _opt(False, "let adaptive slicing choose the last layer too (else eight 1-bit slices)")
    row_group: Any = _opt(None, "rows summed per ADC conversion (partial wordline activation): an int for every "
                                "layer (0: all rows), or {layer: int}; None: each layer's fewest turns within "
                                "saturation_budget (passes/row_groups.py)")
    saturation_budget: float = _opt(0.01, "row groups: largest relative L2 error the ADC's clipping may add to a "
                                          "layer's product on calibration rows")
    encoding: str | None = _opt(None, "weight encoding override; None takes the target's",
                                ("unsigned", "differential", "center_offset"))
    no_speculation: bool = _opt(False, "eight 1-bit input slices instead of the target's speculation")
    signed_inputs: str = _opt("split", "a layer input with a zero point: run as positive and negative parts, or "
                                       "keep the u8 codes and fold the zero point into the bias", ("split", "offset"))
    schedule: str | None = _opt(None, "weight-rewriting schedule (rewriting targets; None: aras)",
                                ("naive", "overlap", "aras"))
    bank_select: bool = _opt(True, "aras: choose buffer banks by ILP (else the 15 x 256 KB baseline)")
    replication: bool = _opt(True, "aras: replicate layers where it pays")
    weight_reuse: bool = _opt(True, "aras: shift weights so rewrites reuse cell contents")
    reuse_max_clip: float = _opt(0.01, "aras weight reuse: largest share of a layer's weights that may clip")
    reuse_loss_budget: float = _opt(0.002, "aras weight reuse: largest output error (relative L2 against no "
                                           "shift, on held-apart calibration samples) a center may cost")
    cell_timed_plan: bool = _opt(True, "aras: time plans on the cells their writes change")
    attention: str = _opt("retransformer", "attention products: ReTransformer reordering, naive (K^T, V written "
                                           "at run time) or digital", ("retransformer", "naive", "digital"))
    sparse_attention: str | None = _opt(None, "topk:K or threshold:T: sparse attention on PIM banks")
    sparse_mask: str = _opt("predict", "sparse attention's mask: from scores predicted on the bank with the top "
                                       "bits of the Q and K codes (charged), or from the exact scores (an oracle, "
                                       "not charged)", ("predict", "oracle"))
    predict_bits: int = _opt(4, "sparse attention's predictor: the most significant bits of the 8-bit Q and K codes "
                                "it multiplies (1..8)")
    vector: str = _opt("auto", "digital ops: integer, float32 vector unit, or auto", ("auto", "fp32", "int8"))
    smooth: str = _opt("layernorm", "SmoothQuant smoothing of crossbar inputs", ("layernorm", "all", "none"))
    weights: str = _opt("symmetric", "weight quantisation per output channel: symmetric int8 codes, or a scale and "
                                     "a zero point over the channel's range (R0)", ("symmetric", "asymmetric"))
    outputs: str | None = _opt(None, "the model's outputs to compile, comma-separated (None: all; e.g. to leave out "
                                     "an exporter's echo of its token ids)")

    @classmethod
    def make(cls, options: Options | dict | None = None, **more) -> Options:
        """Options from a mapping and keywords; an unknown name or a value of the wrong type is a CompileError."""
        if isinstance(options, Options):
            return dataclasses.replace(options, **more) if more else options
        given = dict(options or {}) | more
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise CompileError(f"unknown compile option(s) {', '.join(unknown)} (known: {', '.join(known)})")
        for name, value in given.items():
            _check(known[name], value)
        return cls(**given)

    @classmethod
    def describe(cls) -> list[tuple[str, str, Any, str]]:
        """(name, type, default, meaning) of every option, for documentation and --help text."""
        return [(f.name, str(f.type), f.default, f.metadata["meaning"]) for f in dataclasses.fields(cls)]


def _check(f: dataclasses.Field, value) -> None:
    choices = f.metadata["choices"]
    kind = {"float": (int, float), "int": (int,), "bool": (bool,), "str": (str,), "str | None": (str, type(None))}.get(str(f.type))
    ok = kind is None or (isinstance(value, kind) and not (kind != (bool,) and isinstance(value, bool)))
    if ok and choices and value is not None:
        ok = value in choices
    if not ok:
        want = f"one of {', '.join(choices)}" if choices else str(f.type)
        raise CompileError(f"compile option {f.name}={value!r}: expected {want}")
    lo, hi = RANGES.get(f.name, (None, None))
    if lo is not None and not lo <= value <= hi:        # NaN fails too
        raise CompileError(f"compile option {f.name}={value!r}: expected a number in [{lo}, {hi}]")


RANGES = {"error_budget": (0.0, 100.0), "saturation_budget": (0.0, 100.0),    # a mean relative error per layer:
          "predict_bits": (1, 8)}                                                 # 0 exact, 1 already all error
