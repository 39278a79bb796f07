"""The runtime's fast paths against the plain definitions they replace: fused crossbar runs, the float64
requantisation, channels-last window kernels, DAC pulse arithmetic, the blocked exact product, threads."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtime import crossbar as X
from runtime import kernels as K
from runtime import machine as MM
from runtime import parallel
from runtime.machine import Machine
from tests.conftest import digits_compiled


@pytest.mark.parametrize("target, ideal", [("isaac", True), ("isaac", False), ("raella", True)])
def test_fused_runs_equal_one_product_per_crossbar(target, ideal, digits_test, monkeypatch):
    x = digits_test[0][:24]
    prog = digits_compiled(target).program
    fused = Machine(prog, ideal=ideal)
    a = fused.run({"image": x})["logits"]
    assert fused.fused or target != "isaac"              # isaac splits layers over crossbars: runs fused
    monkeypatch.setattr(MM, "_fuse", lambda *_: None)
    plain = Machine(prog, ideal=ideal)
    b = plain.run({"image": x})["logits"]
    assert np.array_equal(a, b)
    assert fused.stats.to_json() == plain.stats.to_json()


def test_requant_in_float64_equals_int64_at_rounding_ties():
    """Accumulators whose scaled value lies on or next to a .5 tie, for every shift the float path takes."""
    rng = np.random.default_rng(5)
    for shift in range(1, 48):
        mult = int(rng.integers(1, 1 << 31))
        k = rng.uniform(-10, 270, 300)
        y = np.floor(k * 2.0 ** shift / mult).astype(np.int64)
        y = np.concatenate([y - 1, y, y + 1])
        bias = int(rng.integers(-1000, 1000))
        acc = (y - bias)[np.abs(y - bias) < 1 << 24]
        zero = int(rng.integers(0, 30))
        want = K.requant(acc, mult, shift, zero, 0, 255, np.array([bias]))       # int64 arithmetic
        a32 = acc.astype(np.float32)[:, None]
        # without a bound, with the true one (the bias folded where that is exact), and with one too large to fold
        for bound in (None, int(np.abs(acc).max(initial=0)), 1 << 40):
            got = K.requant(a32, mult, shift, zero, 0, 255, np.array([bias]), bound)[:, 0]
            assert np.array_equal(got, want), (shift, bound)


def test_requant_folds_the_bias_only_where_exact():
    """The folded form runs when the bound makes acc * m exact, and not past 2^53; the float form not at all
    where the rounding constant's reach passes 2^53 or the accumulator is integer."""
    mult = (1 << 31) - 1
    for bound, fold in ((1 << 21, True), (1 << 22, True), (1 << 23, False), (None, False)):
        assert K.requant_plan(np.float32, 1, mult, 40, 0, 0, 255, np.array([3]), bound).fold is fold, bound
    assert K.requant_plan(np.float32, 1, mult, 46, 0, 0, 255) is None                 # 256 * 2^46 > 2^53
    assert K.requant_plan(np.int64, 1, mult, 40, 0, 0, 255) is None


@pytest.mark.parametrize("channels_last", [False, True])
def test_window_kernels_equal_the_sliding_window_definition(channels_last):
    rng = np.random.default_rng(1)
    for _ in range(40):
        x = rng.integers(0, 256, (2, int(rng.integers(1, 5)), int(rng.integers(3, 8)), int(rng.integers(3, 8))))
        x = x.astype(np.uint8)
        if channels_last:
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        k, s, d = [tuple(int(v) for v in rng.integers(1, 3, 2)) for _ in range(3)]
        pads = tuple(int(v) for v in rng.integers(0, 2, 4))
        fill = int(rng.integers(0, 256))
        v = K.windows(x, k, s, pads, d, fill)                                  # (B, C, OH, OW, kh, kw)
        B, C, OH, OW = v.shape[:4]
        want = v.transpose(0, 2, 3, 1, 4, 5).reshape(B, OH * OW, -1)
        assert np.array_equal(K.im2col(x, k, s, pads, d, fill), want)
        assert np.array_equal(K.maxpool(x, k, s, pads, d), K.windows(x, k, s, pads, d, 0).max(axis=(4, 5)))


@pytest.mark.parametrize("islices", [(1,) * 8, (4, 2, 2), (2, 2, 2, 2), (3, 3, 2)])
def test_pulses_are_the_sum_of_slice_values(islices):
    table = np.array([sum((c >> s) & ((1 << w) - 1) for s, w in zip(X.slice_shifts(islices), islices))
                      for c in range(256)])
    x = np.random.default_rng(2).integers(0, 256, (50, 7)).astype(np.uint8)
    assert np.array_equal(X.pulses(x, islices), table[x])
    assert np.array_equal(X.row_pulses(x, islices), table[x].sum(axis=0))


@pytest.mark.parametrize("wmax", [127, 600])                 # float32 below 2^24, float64 above
def test_blocked_product_is_exact_and_accumulates(wmax, monkeypatch):
    monkeypatch.setattr(X, "BLOCK_ROWS_ELEMS", 1 << 10)        # many blocks, split over the threads
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (3000, 140)).astype(np.uint8)
    w = rng.integers(-wmax, wmax + 1, (120, 9))
    want = x[:, 7:127].astype(np.int64) @ w
    got = X.product(x[:, 7:127], w)
    assert got.dtype == (np.float32 if X.product_bound(w) < X.EXACT_F32 else np.float64)
    assert np.array_equal(got, want)
    acc = np.ones((3000, 20))
    X.product(x[:, 7:127], w, acc[:, 5:14])
    assert np.array_equal(acc[:, 5:14], want + 1) and (acc[:, :5] == 1).all() and (acc[:, 14:] == 1).all()


def test_parallel_rows_cover_the_range_once_and_restore_blas(monkeypatch):
    monkeypatch.setattr(parallel, "WORKERS", 3)
    parts = []
    parallel.rows(1000, lambda a, b: parts.append((a, b)), 1 << 10, blas=True)
    cover = np.zeros(1000, int)
    for a, b in parts:
        cover[a:b] += 1
    assert len(parts) == 3 and (cover == 1).all()
    if parallel._BLAS:
        before = parallel._BLAS[0]()
        parallel.rows(10, lambda a, b: None, blas=True)
        assert parallel._BLAS[0]() == before


@pytest.mark.parametrize("hw", [(4, 4), (3, 5), (2, 2), (17, 17)])
def test_global_avgpool_equals_exact_rational_rounding(hw):
    """The narrow sums and the power-of-two shift give round-half-up of acc * mult / 2^shift / count."""
    from fractions import Fraction
    rng = np.random.default_rng(hw[0] * 31 + hw[1])
    x = rng.integers(0, 256, (3, 5) + hw).astype(np.uint8)
    x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)          # channels-last, as run
    zx, mult, shift, zy = 7, int(rng.integers(1 << 29, 1 << 31)), 31, 3
    got = K.global_avgpool(x, zx, mult, shift, zy, 0, 255)
    n = hw[0] * hw[1]
    for (b, c), v in np.ndenumerate(got[:, :, 0, 0]):
        s = int(x[b, c].astype(np.int64).sum()) - zx * n
        want = Fraction(s * mult, n << shift) + Fraction(1, 2)
        assert v == min(255, max(0, want.numerator // want.denominator + zy))


def _pool_case(name):
    """(program, feeds) of a model whose requant feeds a max pool: digits (2 x 2, no pads), `pools` (3 x 3,
    stride 2, pads 1), squeezenet_fire (asymmetric pads)."""
    from tests.compiler import cnn_blocks as cb

    if name == "digits":
        x = np.load(Path(__file__).parents[2] / "examples" / "digits" / "digits_test.npz")["x"][:32]
        return digits_compiled("isaac").program, {"image": x}
    from compiler.pipeline import compile_model

    model = cb.MODELS[name]()
    shape = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:])
    return compile_model(model, "isaac", cb.images(8, shape, seed=1)).program, {"x": cb.images(12, shape, seed=2)}


@pytest.mark.parametrize("ideal", [True, False])
@pytest.mark.parametrize("name", ["digits", "pools", "squeezenet_fire"])
def test_pooling_before_requant_changes_nothing(name, ideal, monkeypatch):
    """The max pool of the accumulators, then requant of the maxima, gives the codes and stats of requant then
    max pool (requant is monotone); it runs only where the pool alone reads the requant and no mult is < 0."""
    prog, feeds = _pool_case(name)
    fired = []
    real = MM._pool_after
    monkeypatch.setattr(MM, "_pool_after", lambda *a: fired.append(real(*a)) or fired[-1])
    pooled = Machine(prog, ideal=ideal)
    a = pooled.run(feeds)
    assert any(p is not None for p in fired)
    ins, acc = next((i, pooled.env[i.args[1].name]) for i in prog.code if i.op == "requant" and real(
        pooled, i, pooled.env[i.args[1].name], pooled.val(i.attr("mult"))) is not None)
    assert real(pooled, ins, acc, -pooled.val(ins.attr("mult"))) is None          # a falling requant: no
    monkeypatch.setattr(MM, "_pool_after", lambda *a: None)
    plain = Machine(prog, ideal=ideal)
    b = plain.run(feeds)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert pooled.stats.to_json() == plain.stats.to_json()
