"""Target description: one frozen dataclass read from a TOML preset or a user's file.

TOML sections only group keys for the reader; every key is unique and lands in one flat field, so the
program header can carry the whole target as `.target key = value` lines.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import AsmError

PRESETS = Path(__file__).parent / "targets"
ENCODINGS = ("unsigned", "differential", "center_offset")


@dataclass(frozen=True)
class Target:
    name: str
    # crossbar
    rows: int
    cols: int
    cell_bits: int
    dac_bits: int
    # ADC: captures the adc_bits least-significant bits of a column sum, step 1
    adc_bits: int
    adc_signed: bool
    adcs_per_xbar: int
    # weight encoding and slicing
    encoding: str
    flip: bool
    weight_slices: tuple[int, ...]
    input_slices: tuple[int, ...]
    recovery_bits: int           # 0: input slices as given; else they speculate and recover in slices this wide
    adaptive_slicing: bool       # per-layer weight slicing by RAELLA's Algorithm 1 (weight_slices otherwise)
    # chip
    tiles: int
    imas_per_tile: int
    xbars_per_ima: int
    buffer_kb_per_tile: int
    program_once: bool
    # timing
    xbar_cycle_ns: float
    write_row_ns: float
    digital_ops_per_ns: float
    # energy, pJ per event (static in mW)
    e_adc_convert: float
    e_dac_pulse: float
    e_cell_read: float
    e_buffer_byte: float
    e_digital_op: float
    e_write_pulse: float
    static_mw_per_tile: float
    # optional keys, for targets that rewrite weights during inference (program_once = false); at their
    # defaults they are left out of the program header
    imas_per_row: int = 0        # IMAs (APUs) of one PE row, which share inputs and hold one layer; 0: a whole tile
    dram_gbps: float = 0.0       # DRAM bandwidth for weight writes, GB/s (= bytes per ns); 0: unbounded
    gbuf_banks_kb: tuple[int, ...] = ()   # global-buffer banks, KB each; () : no bank model
    gbuf_mw_per_kb: float = 0.0  # static power of a powered bank per KB, mW
    # PIM banks of sparse attention (runtime/banks.py; ASP-DAC'23 overview sec. 4.2): an M x N PE array each; 4 x 8 = 32
    # PEs equals MiniLM's head dim, so an IP / SVM primitive (1 x MN) covers one head's q, k or v row per cycle
    bank_m: int = 4
    bank_n: int = 8

    @property
    def row_xbars(self) -> int:
        """Crossbars of one PE row (the unit a layer is placed in)."""
        return (self.imas_per_row or self.imas_per_tile) * self.xbars_per_ima

    @property
    def pe_rows(self) -> int:
        return self.xbars // self.row_xbars

    @property
    def xbars(self) -> int:
        return self.tiles * self.imas_per_tile * self.xbars_per_ima

    @property
    def adc_range(self) -> tuple[int, int]:
        if self.adc_signed:
            return -(1 << (self.adc_bits - 1)), (1 << (self.adc_bits - 1)) - 1
        return 0, (1 << self.adc_bits) - 1

    def to_dict(self) -> dict:
        """Every key, except optional ones at their default (so older headers stay byte-identical)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in _OPTIONAL or v != _OPTIONAL[k]}

    def replace(self, **kw) -> "Target":
        return from_dict({**self.to_dict(), **kw}, where=f"target {self.name}")


_FIELDS = {f.name: f.type for f in dataclasses.fields(Target)}
_OPTIONAL = {f.name: f.default for f in dataclasses.fields(Target) if f.default is not dataclasses.MISSING}


def _coerce(key: str, value, where: str):
    want = _FIELDS[key]
    if want == "bool":
        ok = isinstance(value, bool)
    elif want == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif want == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif want == "str":
        ok = isinstance(value, str)
    else:  # tuple[int, ...]
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        value = tuple(value) if ok else value
    if not ok:
        raise AsmError(f"{where}: '{key}' must be {want}, got {value!r}")
    return value


def from_dict(d: dict, where: str = "target") -> Target:
    unknown = sorted(set(d) - set(_FIELDS))
    if unknown:
        raise AsmError(f"{where}: unknown key(s) {', '.join(unknown)}")
    missing = [k for k in _FIELDS if k not in d and k not in _OPTIONAL]
    if missing:
        raise AsmError(f"{where}: missing key(s) {', '.join(missing)}")
    t = Target(**{k: _coerce(k, d[k], where) for k in _FIELDS if k in d})
    _check(t, where)
    return t


def _check(t: Target, where: str) -> None:
    def bad(msg):
        raise AsmError(f"{where}: {msg}")
    if t.encoding not in ENCODINGS:
        bad(f"encoding must be one of {', '.join(ENCODINGS)}, got {t.encoding!r}")
    for k in ("rows", "cols", "cell_bits", "dac_bits", "adc_bits", "adcs_per_xbar", "tiles", "imas_per_tile",
              "xbars_per_ima", "buffer_kb_per_tile"):
        if getattr(t, k) < 1:
            bad(f"{k} must be >= 1")
    for k, slices, width in (("weight_slices", t.weight_slices, t.cell_bits), ("input_slices", t.input_slices, t.dac_bits)):
        if sum(slices) != 8 or any(not 1 <= s <= width for s in slices):
            bad(f"{k} {list(slices)} must be widths in 1..{width} summing to 8")
    if not 0 <= t.recovery_bits <= t.dac_bits:
        bad(f"recovery_bits must be in 0..{t.dac_bits} (dac_bits)")
    if t.flip and t.encoding != "unsigned":
        bad("flip applies only to the unsigned encoding")
    if t.adc_bits > 30:
        bad("adc_bits must be <= 30")
    if t.imas_per_row < 0 or t.imas_per_row and t.imas_per_tile % t.imas_per_row:
        bad(f"imas_per_row must divide imas_per_tile ({t.imas_per_tile}), got {t.imas_per_row}")
    if t.bank_m < 1 or t.bank_n < 1:
        bad("bank_m and bank_n must be >= 1")
    if t.dram_gbps < 0 or t.gbuf_mw_per_kb < 0 or any(kb < 1 for kb in t.gbuf_banks_kb):
        bad("dram_gbps and gbuf_mw_per_kb must be >= 0, gbuf_banks_kb sizes >= 1")


def _flatten(doc: dict, where: str) -> dict:
    flat = {}
    for k, v in doc.items():
        items = v.items() if isinstance(v, dict) else [(k, v)]
        for kk, vv in items:
            if isinstance(vv, dict):
                raise AsmError(f"{where}: nested table [{k}.{kk}] is not allowed")
            if kk in flat:
                raise AsmError(f"{where}: key '{kk}' given twice")
            flat[kk] = vv
    return flat


def load_target(spec: str | Path) -> Target:
    """A preset name (isaac, raella, aras) or a path to a TOML file."""
    spec = str(spec)
    path = Path(spec)
    if not spec.endswith(".toml"):
        presets = sorted(p.stem for p in PRESETS.glob("*.toml"))
        if spec not in presets:         # a name, never a path: '../x' does not leave the presets folder
            raise AsmError(f"unknown target {spec[:80]!r} (presets: {', '.join(presets)}; or give a .toml path)")
        path = PRESETS / f"{spec}.toml"
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise AsmError(f"target file {spec} not found") from None
    except OSError as e:
        raise AsmError(f"cannot read target file {spec}: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise AsmError(f"bad target TOML {spec}: {e}") from None
    return from_dict(_flatten(doc, spec), where=spec)
