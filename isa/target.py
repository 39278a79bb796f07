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
COMPUTE_LATENCIES = ("per_slice", "per_vector")


def row_groups(rows: int, group: int) -> int:
    """How many turns a crossbar of `rows` used rows takes with `group` rows summed per conversion (0: one)."""
    return max(1, -(-rows // group)) if group else 1


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
    # PIM banks of sparse attention (runtime/banks.py; ASP-DAC'23 overview sec. 4.2): an M x N PE array each; the
    # overview's M, N "around 8": 8 x 8, so an IP / SVM primitive (1 x MN = 64) is full on a head of width 64 and
    # half used on MiniLM's 32 (measured in docs/sparse_attention.md)
    bank_m: int = 8
    bank_n: int = 8
    # what xbar_cycle_ns covers: one input slice's pass through a crossbar (a vector of 8 one-bit slices takes 8),
    # or a whole input vector, all its slices (ARAS sec. III gives 96 cycles without saying which)
    compute_latency: str = "per_slice"
    # technology node and areas per unit (um^2) from the component models (isa/energy.py); 0: not given. The
    # stats' area_mm2 multiplies them by the chip's counts (chip_area_mm2)
    tech_node_nm: float = 0.0
    area_adc_um2: float = 0.0        # one ADC
    area_dac_um2: float = 0.0        # one row's DAC / driver
    area_crossbar_um2: float = 0.0   # one crossbar: cells and row / column drivers
    area_buffer_um2: float = 0.0     # one tile's buffer
    area_digital_um2: float = 0.0    # one shift-add unit (one per ADC)

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

    def mvm_ns(self, islices, recover: int = 0, parts: int = 1, groups: int = 1) -> float:
        """Crossbar time of one input vector through one crossbar: its input slices (and speculation's 8 recovery
        bits) for each input part (a signed input runs as two), each row group in turn (partial wordline
        activation), at xbar_cycle_ns per slice or per whole vector (compute_latency)."""
        passes = len(islices) + (8 if recover else 0)
        per = passes / len(islices) if self.compute_latency == "per_vector" else passes
        return parts * groups * per * self.xbar_cycle_ns

    def chip_area_mm2(self) -> dict:
        """The chip's area by component, mm^2: the per-unit areas (isa/energy.py derives the presets') times the
        chip's units, one shift-add per ADC; zeros where the target gives no area."""
        adcs = self.xbars * self.adcs_per_xbar
        return {"adc": adcs * self.area_adc_um2 * 1e-6,
                "dac": self.xbars * self.rows * self.area_dac_um2 * 1e-6,
                "crossbar": self.xbars * self.area_crossbar_um2 * 1e-6,
                "buffers": self.tiles * self.area_buffer_um2 * 1e-6,
                "digital": adcs * self.area_digital_um2 * 1e-6}

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
        got = repr(value)
        raise AsmError(f"{where}: '{key}' must be {want}, got {got if len(got) <= 60 else got[:57] + '...'}")
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


# Bounds a real chip stays far inside; they keep every count within what the runtime's arrays and the
# 32-bit accumulator hold (a layer's rows under 2^15 keep a crossbar sum under 2^30, see passes/quantize.py).
INT_LIMITS = {"rows": 1 << 14, "cols": 1 << 14, "cell_bits": 8, "dac_bits": 8, "adc_bits": 30,
              "adcs_per_xbar": 1 << 14, "tiles": 1 << 20, "imas_per_tile": 1024, "xbars_per_ima": 1024,
              "buffer_kb_per_tile": 1 << 20, "bank_m": 1024, "bank_n": 1024}
MAX_XBARS = 1 << 24
POSITIVE = ("xbar_cycle_ns", "write_row_ns", "digital_ops_per_ns")
NON_NEGATIVE = ("e_adc_convert", "e_dac_pulse", "e_cell_read", "e_buffer_byte", "e_digital_op", "e_write_pulse",
                "static_mw_per_tile", "dram_gbps", "gbuf_mw_per_kb", "tech_node_nm", "area_adc_um2", "area_dac_um2",
                "area_crossbar_um2", "area_buffer_um2", "area_digital_um2")


def _check(t: Target, where: str) -> None:
    def bad(msg):
        raise AsmError(f"{where}: {msg}")
    if t.encoding not in ENCODINGS:
        bad(f"encoding must be one of {', '.join(ENCODINGS)}, got {t.encoding!r}")
    for k, hi in INT_LIMITS.items():
        if not 1 <= getattr(t, k) <= hi:
            bad(f"{k} must be in 1..{hi}, got {getattr(t, k)}")
    if t.xbars > MAX_XBARS:
        bad(f"the chip has {t.xbars} crossbars (tiles x imas_per_tile x xbars_per_ima); at most {MAX_XBARS}")
    if t.adcs_per_xbar > t.cols:
        bad(f"adcs_per_xbar ({t.adcs_per_xbar}) must not exceed cols ({t.cols})")
    for k in POSITIVE:         # time and rates divide: zero, negative, infinite or NaN cannot be meant
        if not 0 < getattr(t, k) <= 1e12:
            bad(f"{k} must be positive and at most 1e12, got {getattr(t, k)}")
    for k in NON_NEGATIVE:     # energies, powers, bandwidths: 0 turns a term off
        if not 0 <= getattr(t, k) <= 1e12:
            bad(f"{k} must be in [0, 1e12], got {getattr(t, k)}")
    for k, slices, width in (("weight_slices", t.weight_slices, t.cell_bits), ("input_slices", t.input_slices, t.dac_bits)):
        if sum(slices) != 8 or any(not 1 <= s <= width for s in slices):
            bad(f"{k} {list(slices)} must be widths in 1..{width} summing to 8")
    if not 0 <= t.recovery_bits <= t.dac_bits:
        bad(f"recovery_bits must be in 0..{t.dac_bits} (dac_bits)")
    if t.compute_latency not in COMPUTE_LATENCIES:
        bad(f"compute_latency must be one of {', '.join(COMPUTE_LATENCIES)}, got {t.compute_latency!r}")
    if t.flip and t.encoding != "unsigned":
        bad("flip applies only to the unsigned encoding")
    if t.imas_per_row < 0 or t.imas_per_row and t.imas_per_tile % t.imas_per_row:
        bad(f"imas_per_row must divide imas_per_tile ({t.imas_per_tile}), got {t.imas_per_row}")
    if len(t.gbuf_banks_kb) > 1024 or any(not 1 <= kb <= 1 << 20 for kb in t.gbuf_banks_kb):
        bad("gbuf_banks_kb must hold at most 1024 sizes in 1..1048576 (KB)")


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
