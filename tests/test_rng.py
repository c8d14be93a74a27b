"""initlab.rng: Philox4x32-10 known answers, an independent cross-check, bit-identical backends, slices,
thread counts, parameter order, statistics, approximation error bounds, half precision, bad arguments."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import ndtr, ndtri

from initlab import get, rng
from initlab.initializers import available

try:
    import numba
except ImportError:  # the numba tests skip; the torch path is tested all the same
    numba = None
HAS_NUMBA = numba is not None
needs_numba = pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed (pip install initlab[fast])")
BACKENDS = ["torch"] + (["numba"] if HAS_NUMBA else [])
KEY = rng.key_for(2024, "tests.weight")

# Random123's known-answer vectors for Philox4x32-10 (kat_vectors): counter, key -> output
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def _sample(dist: str, n, backend: str, **kw) -> torch.Tensor:
    return getattr(rng, dist)(n, kw.pop("key", KEY), backend=backend, **kw)


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype in (torch.float16, torch.bfloat16):
        return torch.equal(a.view(torch.int16), b.view(torch.int16))
    if a.dtype == torch.float32:
        return torch.equal(a.view(torch.int32), b.view(torch.int32))
    if a.dtype == torch.float64:
        return torch.equal(a.view(torch.int64), b.view(torch.int64))
    return torch.equal(a, b)


# -- known answers ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("counter, key, expected", KAT)
def test_known_answers_reference_and_torch_core(counter, key, expected):
    assert rng.philox4x32(counter, key) == expected
    words = rng._t_philox_counters(*(torch.tensor([c], dtype=torch.int64) for c in counter), key)
    assert tuple(int(w) for w in words) == expected


@needs_numba
def test_known_answers_numba_core():
    rng._numba_kernel()
    core = rng._nb_philox

    @numba.njit
    def run(c, k, out):
        for i in range(c.shape[0]):
            out[i, 0], out[i, 1], out[i, 2], out[i, 3] = core(c[i, 0], c[i, 1], c[i, 2], c[i, 3], k[i, 0], k[i, 1])

    c = np.array([v[0] for v in KAT], dtype=np.uint32)
    k = np.array([v[1] for v in KAT], dtype=np.uint32)
    out = np.zeros((len(KAT), 4), dtype=np.uint32)
    run(c, k, out)
    assert [tuple(int(w) for w in row) for row in out] == [v[2] for v in KAT]


@pytest.mark.parametrize("backend", BACKENDS)
def test_known_answer_through_the_public_api(backend):
    # element i = word i % 4 of block i // 4; block 0 with draw 0 is the all-zero counter
    assert tuple(rng.bits(4, (0, 0), backend=backend).tolist()) == KAT[0][2]


# -- an independent implementation ------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("first_block, draw", [(1, 0), (2**32 - 37, 0), (5, 7), (2**40 + 3, 2**32 - 1)])
def test_long_streams_match_randomgen(backend, first_block, draw):
    randomgen = pytest.importorskip("randomgen")
    blocks = 1 << 14  # 65536 words per case; crosses the c0 -> c1 carry in the second case
    key = rng.key_for(7, "cross.check")
    # randomgen's counter is one 128-bit integer (c0 lowest) and it increments BEFORE each block
    gen = randomgen.Philox(key=key[0] | key[1] << 32, counter=first_block - 1 + (draw << 64), number=4, width=32)
    expected = torch.from_numpy(gen.random_raw(4 * blocks).astype(np.int64))
    got = rng.bits(4 * blocks, key, offset=4 * first_block, draw=draw, backend=backend)
    assert torch.equal(got, expected)


# -- two backends, one stream ------------------------------------------------------------------------------
SIZES = [1, 2, 3, 4, 5, 7, 8, 13, 4095, 4096, 4097, 16387]
OFFSETS = [0, 1, 2, 3, 6, 4093, 4 * 2**32 - 5, 2**41 + 1]
DISTS = {
    "uniform": dict(low=-0.3, high=0.7),
    "normal": dict(mean=0.25, std=1.5),
    "truncated_normal": dict(mean=0.1, std=0.8, low=-1.0, high=2.0),
}


@needs_numba
@pytest.mark.parametrize("dist", sorted(DISTS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_numba_equals_torch_bit_for_bit(dist, dtype):
    for n in SIZES:
        for offset in OFFSETS:
            kw = dict(DISTS[dist], offset=offset, dtype=dtype)
            a, b = _sample(dist, n, "torch", **kw), _sample(dist, n, "numba", **kw)
            assert _bits_equal(a, b), (dist, dtype, n, offset)


@needs_numba
@pytest.mark.parametrize("params", [dict(low=0.0, high=1.0), dict(low=-1e-30, high=1e-30), dict(low=5.0, high=5.0)])
def test_numba_equals_torch_uniform_edges(params):
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        a = rng.uniform(9999, KEY, **params, dtype=dtype, backend="torch")
        assert _bits_equal(a, rng.uniform(9999, KEY, **params, dtype=dtype, backend="numba"))


@needs_numba
@pytest.mark.parametrize("low, high", [(-2.0, 2.0), (2.5, 4.0), (-10.0, -9.0), (-1e3, 1e3), (5.0, 30.0), (-1e-3, 1e-3)])
def test_numba_equals_torch_truncated_intervals(low, high):
    a = rng.truncated_normal(20001, KEY, low=low, high=high, backend="torch")
    assert _bits_equal(a, rng.truncated_normal(20001, KEY, low=low, high=high, backend="numba"))


@needs_numba
def test_numba_equals_torch_bits_and_large_fill():
    assert torch.equal(rng.bits(10007, KEY, offset=3, draw=2, backend="torch"),
                       rng.bits(10007, KEY, offset=3, draw=2, backend="numba"))
    a = rng.fill_normal_(torch.empty(257, 1031), KEY, backend="torch")  # ~260k elements: many numba tasks
    assert _bits_equal(a, rng.fill_normal_(torch.empty(257, 1031), KEY, backend="numba"))


@needs_numba
def test_half_conversions_match_torch_on_random_bit_patterns():
    rng._numba_kernel()
    to_f16, to_bf16 = rng._nb_f16_bits, rng._nb_bf16_bits

    @numba.njit(error_model="numpy")
    def convert(x, a, b):
        for i in range(x.size):
            a[i] = to_f16(x[i])
            b[i] = to_bf16(x[i])

    words = np.random.default_rng(0).integers(0, 2**32, 1 << 20, dtype=np.int64).astype(np.uint32)
    edges = np.array([65504, 65519.996, 65520, 2**-14, 2**-24, 2**-25, 1.5 * 2**-25, 3.3961e38, 0.0], np.float32)
    x = np.concatenate([words.view(np.float32), edges, -edges, np.nextafter(edges, np.float32(np.inf))])
    x = x[np.isfinite(x)].astype(np.float32)
    a, b = np.empty(x.size, np.uint16), np.empty(x.size, np.uint16)
    convert(x, a, b)
    t = torch.from_numpy(x)
    assert np.array_equal(a, t.to(torch.float16).view(torch.int16).numpy().view(np.uint16))
    assert np.array_equal(b, t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16))


# -- slices, threads, order ---------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dist", sorted(DISTS))
def test_a_slice_alone_equals_the_slice_of_the_whole(backend, dist):
    whole = _sample(dist, 9000, backend, **DISTS[dist])
    cuts = np.random.default_rng(1).integers(0, 9000, size=(25, 2))
    for a, b in [(0, 9000), (0, 1), (8999, 9000), (4096, 8192), (1, 4095)] + [tuple(sorted(c)) for c in cuts]:
        part = _sample(dist, int(b - a), backend, offset=int(a), **DISTS[dist])
        assert _bits_equal(part, whole[a:b]), (a, b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_row_shard_of_a_weight_through_an_initializer(backend):
    init = get("normal(std=0.02)")
    rng.set_backend(backend)
    try:
        whole = init.sample((64, 33), rng="philox", seed=3, key="enc.weight")
        shard = init.sample((10, 33), rng="philox", seed=3, key="enc.weight", offset=10 * 33)
    finally:
        rng.set_backend("auto")
    assert torch.equal(shard, whole[10:20])


def test_fill_of_a_non_contiguous_tensor_uses_row_major_order():
    t = torch.empty(8, 6).t()
    rng.fill_uniform_(t, KEY, backend="torch")
    assert torch.equal(t, rng.uniform((6, 8), KEY, backend="torch"))


@needs_numba
def test_identical_under_one_and_two_threads():
    torch_threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    inits = [get(n) for n in ("he_normal", "glorot_uniform", "truncated_normal", "sparse", "orthogonal")]
    results = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            torch.set_num_threads(threads)
            numba.set_num_threads(threads)
            out = [_sample(d, 300_001, "numba", **DISTS[d]) for d in sorted(DISTS)]
            out += [i.sample((96, 80), rng="philox", seed=5, key=f"p{j}") for j, i in enumerate(inits)]
            assert torch.get_num_threads() == threads  # haar_q put the caller's thread count back
            results.append(out)
    finally:
        torch.set_num_threads(torch_threads)
        numba.set_num_threads(numba_threads)
    one, two = results
    # orthogonal included: its QR runs in float64 on one LAPACK thread whatever the caller's setting (a plain
    # torch.linalg.qr of a 96 x 80 float64 matrix already differs between 1 and 2 MKL threads)
    assert all(_bits_equal(a, b) for a, b in zip(one, two))


@needs_numba
def test_first_numba_use_leaves_torch_thread_count_alone():
    # numba's OpenMP layer sets the OpenMP thread count when it starts its threads; torch reads the same one
    code = ("import torch\n"
            "torch.set_num_threads(1)\n"
            "from initlab import rng\n"
            "rng.uniform(10, (1, 2), backend='numba')\n"
            "assert torch.get_num_threads() == 1, torch.get_num_threads()\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_parameter_order_and_additions_change_nothing_else():
    shapes = {"embed.weight": (50, 16), "block.0.attn.weight": (48, 16), "block.0.mlp.weight": (64, 16),
              "head.weight": (10, 16)}
    init = get("he_normal")

    def build(names):
        return {n: init.sample(shapes[n], rng="philox", seed=11, key=n) for n in names}

    forward = build(list(shapes))
    backward = build(list(reversed(shapes)))
    fewer = build(["head.weight", "embed.weight"])
    assert all(torch.equal(forward[n], backward[n]) for n in shapes)
    assert all(torch.equal(forward[n], fewer[n]) for n in fewer)
    assert not torch.equal(forward["block.0.attn.weight"][:16], forward["embed.weight"][:16])


def test_key_derivation_is_the_documented_hash():
    import hashlib

    digest = hashlib.sha256(b"initlab.philox4x32-10.v1\x00" + (5).to_bytes(8, "little") + b"fc.weight").digest()
    assert rng.key_for(5, "fc.weight") == (int.from_bytes(digest[:4], "little"), int.from_bytes(digest[4:8], "little"))
    # pinned: changing these changes every philox-initialized model, so it must be deliberate (and versioned)
    assert rng.key_for(0, "") == (0x5A345697, 0xC4A5BBB4)
    assert rng.key_for(5, "fc.weight") == (0x9FC80AA4, 0x98D62E48)
    assert rng.key_for(2**64 - 1, "encoder.layers.0.self_attn.in_proj_weight") == (0xA57E3F34, 0x539C1989)
    assert rng.key_for(0, "é") != rng.key_for(0, "e")


# -- statistics (fixed keys: deterministic; tolerances from the sample size) -----------------------------------
N = 1 << 20  # moments and KS
NC = 1 << 18  # correlations
FIVE_SIGMA = 5 / math.sqrt(NC)  # a correlation of independent samples has sd 1/sqrt(n)


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.double().numpy(), b.double().numpy())[0, 1])


def test_uniform_moments_ks_and_bounds():
    x = rng.uniform(N, KEY, backend="torch").double().numpy()
    sd = 1 / math.sqrt(12)
    assert abs(x.mean() - 0.5) < 5 * sd / math.sqrt(N)
    assert abs(x.var() - 1 / 12) < 5 * math.sqrt(1 / 180) / math.sqrt(N)  # sd of s^2: sqrt((1/80 - 1/144) / N)
    assert stats.kstest(x, "uniform").pvalue > 1e-3
    assert x.min() >= 0 and x.max() < 1
    grid = x * 2**24  # the 24-bit grid: every value is k * 2**-24 exactly
    assert np.array_equal(grid, np.floor(grid))


def test_normal_moments_and_ks():
    z = rng.normal(N, KEY, backend="torch").double().numpy()
    assert abs(z.mean()) < 5 / math.sqrt(N)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / N)
    assert abs(stats.skew(z)) < 5 * math.sqrt(6 / N)
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24 / N)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert np.abs(z).max() <= math.sqrt(48 * math.log(2))  # u1 >= 2**-24


def test_truncated_normal_moments_ks_and_bounds():
    low, high = -2.0, 2.0
    x = rng.truncated_normal(N // 2, KEY, low=low, high=high, backend="torch").double().numpy()
    dist = stats.truncnorm(low, high)
    assert abs(x.mean() - dist.mean()) < 5 * dist.std() / math.sqrt(N // 2)
    assert abs(x.var() - dist.var()) < 5 * math.sqrt(2 / (N // 2)) * dist.var()
    assert stats.kstest(x, dist.cdf).pvalue > 1e-3
    assert x.min() >= low and x.max() <= high
    tail = rng.truncated_normal(NC, KEY, low=2.5, high=4.0, backend="torch").double().numpy()
    assert stats.kstest(tail, stats.truncnorm(2.5, 4.0).cdf).pvalue > 1e-3


@pytest.mark.parametrize("dist", sorted(DISTS))
def test_no_correlation_between_adjacent_keys_counters_and_draws(dist):
    kw = DISTS[dist]
    x = _sample(dist, NC, "torch", **kw)
    neighbours = {
        "adjacent raw key": _sample(dist, NC, "torch", key=(KEY[0] ^ 1, KEY[1]), **kw),
        "adjacent name": _sample(dist, NC, "torch", key=rng.key_for(2024, "tests.weigh"), **kw),
        "next draw": _sample(dist, NC, "torch", draw=1, **kw),
    }
    for what, y in neighbours.items():
        assert abs(_corr(x, y)) < FIVE_SIGMA, what
    for lag in (1, 2, 3, 4, 5):  # same block (1-3), adjacent blocks (4, 5)
        assert abs(_corr(x[:-lag], x[lag:])) < FIVE_SIGMA, lag
        centred = (x - x.mean()) ** 2
        assert abs(_corr(centred[:-lag], centred[lag:])) < FIVE_SIGMA, ("squares", lag)


# -- approximation error bounds ---------------------------------------------------------------------------
def test_ln_error_bound():
    """ln of 24-bit u1 in (0, 1]: within 1e-7 relative of float64 log (exhaustively over all 2**24: 8.0e-8).
    Here every 4th value plus the 2**16 smallest and largest (where the reduction and f -> 0 matter)."""
    v = torch.cat([torch.arange(1, 2**24 + 1, 4), torch.arange(1, 2**16), torch.arange(2**24 - 2**16, 2**24 + 1)])
    u = v.to(torch.float32) * 2**-24
    got = rng._t_ln(u).double().numpy()
    ref = np.log(u.double().numpy())
    assert np.all(got[ref == 0] == 0)
    nz = ref != 0
    assert (np.abs(got[nz] - ref[nz]) / np.abs(ref[nz])).max() < 1e-7


def _reference_cos_sin(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of 2 pi t / 2**24 in float64, with the same exact quadrant reduction."""
    v = (t + 2**21) & 0xFFFFFF
    q = v >> 22
    x = ((v & 0x3FFFFF) - 2**21) * (math.pi * 2.0**-23)
    c, s = np.cos(x), np.sin(x)
    return (np.choose(q, [c, -s, -c, s]), np.choose(q, [s, c, -s, -c]))


def test_sin_cos_error_bound():
    """cos and sin of the 24-bit angles: within 2e-7 relative (exhaustively over all 2**24: 1.5e-7); zeros
    exact. Here every 4th angle plus 4096 around each multiple of pi/4 (quadrant edges, zero crossings)."""
    edges = (np.arange(8)[:, None] * 2**21 + np.arange(-2048, 2048)[None, :]).ravel() % 2**24
    t = np.concatenate([np.arange(0, 2**24, 4), edges]).astype(np.int64)
    cos, sin = rng._t_sincos(torch.from_numpy(t << 8))
    for got, ref in zip((cos, sin), _reference_cos_sin(t)):
        got = got.double().numpy()
        nz = ref != 0
        assert (np.abs(got[nz] - ref[nz]) / np.abs(ref[nz])).max() < 2e-7
        assert np.all(got[~nz] == 0)


def test_normal_error_bound_against_float64_box_muller():
    """Each normal within 4e-7 relative of float64 Box-Muller on the same words (measured 2.6e-7)."""
    g = np.random.default_rng(3)
    w = [torch.from_numpy(g.integers(0, 2**32, 1 << 20, dtype=np.int64)) for _ in range(2)]
    vals = rng._t_values("normal", [w[0], w[1], w[0], w[1]], (0.0, 1.0))
    r = np.sqrt(-2 * np.log(((w[0] >> 8) + 1).double().numpy() * 2.0**-24))
    for got, ref in zip((vals[:, 0], vals[:, 1]), _reference_cos_sin((w[1] >> 8).numpy())):
        ref = r * ref
        got = got.double().numpy()
        nz = ref != 0
        assert (np.abs(got[nz] - ref[nz]) / np.abs(ref[nz])).max() < 4e-7


@pytest.mark.parametrize("low, high", [(-2.0, 2.0), (0.0, 3.0), (2.5, 4.0), (-10.0, -9.0), (-1e3, 1e3), (5.0, 30.0)])
def test_truncated_normal_error_bound_against_float64_inverse_cdf(low, high):
    """Within 1e-6 * max(1, |x|) of float64 ndtri on the same u (measured 4.2e-7)."""
    k = np.concatenate([np.arange(0, 2**23, 61), np.arange(2000), 2**23 - 1 - np.arange(2000)]).astype(np.int64)
    w = torch.from_numpy(k << 9)
    got = rng._t_values("truncated_normal", [w] * 4, rng._truncated_params(0.0, 1.0, low, high))[:, 0]
    u = (k + 0.5) * 2.0**-23
    width = (ndtr(-low) - ndtr(-high)) if low > 0 else (ndtr(high) - ndtr(low))
    lower = ndtr(low) + u * width
    ref = np.clip(np.where(lower <= 0.5, ndtri(lower), -ndtri(ndtr(-high) + (1 - u) * width)), low, high)
    assert (np.abs(got.double().numpy() - ref) / np.maximum(np.abs(ref), 1)).max() < 1e-6


def test_torch_sqrt_path_is_correctly_rounded():
    x = torch.from_numpy(np.random.default_rng(4).uniform(0, 34, 1 << 20).astype(np.float32))
    assert torch.equal(rng._t_sqrt(x), torch.from_numpy(np.sqrt(x.numpy())))


# -- half precision ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_never_non_finite_and_stays_in_bounds(backend, dtype):
    big = 1e4 if dtype == torch.float16 else 1e30  # 5.77 * std still representable
    for values in (rng.normal(1 << 18, KEY, std=big, dtype=dtype, backend=backend),
                   rng.normal(1 << 18, KEY, dtype=dtype, backend=backend),
                   rng.uniform(1 << 18, KEY, low=-1.0, high=1.0, dtype=dtype, backend=backend),
                   rng.truncated_normal(1 << 18, KEY, std=0.02, low=-0.04, high=0.04, dtype=dtype, backend=backend)):
        assert bool(values.isfinite().all())
    u = rng.uniform(1 << 18, KEY, low=-1.0, high=1.0, dtype=dtype, backend=backend).float()
    assert float(u.min()) >= -1 and float(u.max()) <= 1
    for name in ("he_normal", "truncated_normal", "orthogonal", "glorot_uniform"):
        w = get(name).sample((64, 48), dtype=dtype, rng="philox", seed=1, key="w")
        assert w.dtype == dtype and bool(w.isfinite().all())


# -- the initializers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", available())
def test_every_initializer_draws_from_philox(name):
    init = get(name)
    shape = (24, 12, 3, 3) if name == "delta_orthogonal" else (24, 12)
    a = init.sample(shape, rng="philox", seed=9, key="layer.weight")
    assert torch.equal(a, init.sample(shape, rng="philox", seed=9, key="layer.weight"))
    t = torch.zeros(shape)
    assert torch.equal(init.init_(t, rng="philox", seed=9, key="layer.weight"), a)
    b = init.sample(shape, rng="philox", seed=10, key="layer.weight")
    if not init.symmetric and name not in ("identity", "sparse"):
        assert not torch.equal(a, b)


def test_structured_initializers_keep_their_properties_under_philox():
    q = get("orthogonal").sample((40, 60), rng="philox", key="q")
    assert torch.allclose(q @ q.T, torch.eye(40), atol=1e-5)
    w = get("sparse(sparsity=0.25)").sample((30, 40), rng="philox", key="s")
    assert ((w != 0).sum(dim=1) == 10).all()
    w2 = get("sparse(sparsity=0.25)").sample((30, 40), rng="philox", key="s2")
    assert not torch.equal(w != 0, w2 != 0)


def test_explicit_key_and_seeded_name_agree():
    init = get("glorot_uniform")
    key = rng.key_for(4, "fc.weight")
    assert torch.equal(init.sample((8, 8), rng="philox", key=key), init.sample((8, 8), rng="philox", seed=4,
                                                                               key="fc.weight"))


def test_torch_rng_paths_are_unchanged():
    init = get("he_normal")
    a = init.sample((16, 16), generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, init.sample((16, 16), rng="torch", generator=torch.Generator().manual_seed(0)))
    g = torch.Generator().manual_seed(0)
    assert torch.equal(a, torch.nn.init.kaiming_normal_(torch.empty(16, 16), generator=g))


# -- bad arguments -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(rng="numpy"), ValueError, r"rng must be one of 'torch', 'philox'; got 'numpy'"),
    (dict(rng=1), TypeError, "rng must be one of 'torch', 'philox'; got 1 \\(int\\)"),
    (dict(rng="philox", generator=torch.Generator()), ValueError, "generator="),
    (dict(seed=1), ValueError, "rng='philox'"),
    (dict(key="w"), ValueError, "rng='philox'"),
    (dict(offset=4), ValueError, "rng='philox'"),
    (dict(rng="philox", seed=1, key=(1, 2)), ValueError, "seed="),
    (dict(rng="philox", seed=-1), ValueError, "seed must be"),
    (dict(rng="philox", seed=1.5), TypeError, "seed must be"),
    (dict(rng="philox", key=(1, 2, 3)), TypeError, "key must be a pair"),
    (dict(rng="philox", key=(2**32, 0)), ValueError, r"key\[0\] must be an int in \[0, 4294967295\]"),
    (dict(rng="philox", offset=-1), ValueError, "offset must be"),
    (dict(rng="philox", offset=1.0), TypeError, "offset must be"),
])
def test_initializer_bad_rng_arguments(kwargs, error, match):
    t = torch.full((4, 4), 7.0)
    with pytest.raises(error, match=match):
        get("he_normal").init_(t, **kwargs)
    assert bool((t == 7).all())
    with pytest.raises(error, match=match):
        get("he_normal").sample((4, 4), **kwargs)


@pytest.mark.parametrize("call, error, match", [
    (lambda: rng.uniform(4, KEY, backend="cuda"), ValueError, "backend must be one of 'auto', 'numba', 'torch'"),
    (lambda: rng.set_backend("fast"), ValueError, "backend must be one of"),
    (lambda: rng.uniform(4, KEY, dtype=torch.int32), TypeError, "dtype must be one of"),
    (lambda: rng.uniform(4, KEY, low=1.0, high=0.0), ValueError, "low must be <= high"),
    (lambda: rng.uniform(4, KEY, high=math.inf), ValueError, "high must be a finite number"),
    (lambda: rng.normal(4, KEY, std=-1.0), ValueError, "std must be a finite number >= 0"),
    (lambda: rng.normal(4, KEY, mean="0"), TypeError, "mean must be a finite number"),
    (lambda: rng.truncated_normal(4, KEY, low=1.0, high=1.0), ValueError, "low must be < high"),
    (lambda: rng.truncated_normal(4, KEY, std=0.0, low=1.0, high=2.0), ValueError, "excludes the mean"),
    (lambda: rng.normal((2, -1), KEY), ValueError, "negative"),
    (lambda: rng.normal("3", KEY), TypeError, "shape must be"),
    (lambda: rng.normal(4, KEY, draw=-1), ValueError, "draw must be"),
    (lambda: rng.normal(4, KEY, offset=2**62), ValueError, "offset"),
    (lambda: rng.normal(4, KEY, draw=1.0), TypeError, "draw must be"),
    (lambda: rng.normal(4, (1.0, 2.0)), TypeError, r"key\[0\] must be an int"),
    (lambda: rng.normal(4, 7), TypeError, "key must be a pair"),
    (lambda: rng.key_for(2**64, "w"), ValueError, "seed must be"),
    (lambda: rng.key_for(True, "w"), TypeError, "seed must be"),
    (lambda: rng.key_for(0, b"w"), TypeError, "name must be a str"),
    (lambda: rng.fill_normal_(np.zeros(3), KEY), TypeError, "tensor must be a torch.Tensor"),
    (lambda: rng.fill_normal_(torch.zeros(3, dtype=torch.int64), KEY), TypeError, "dtype must be one of"),
])
def test_rng_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_meta_and_empty_tensors_are_left_alone():
    meta = torch.empty(3, 3, device="meta")
    assert rng.fill_normal_(meta, KEY) is meta
    assert rng.normal((0, 5), KEY).shape == (0, 5)
    assert get("he_normal").init_(torch.empty(0, 4), rng="philox").shape == (0, 4)


def test_zero_std_truncated_normal_is_the_mean():
    assert bool((rng.truncated_normal(10, KEY, mean=0.5, std=0.0, low=0.0, high=1.0, backend="torch") == 0.5).all())


def test_module_imports_and_works_without_numba():
    code = ("import sys; sys.modules['numba'] = None\n"
            "import torch\n"
            "from initlab import rng, get\n"
            "assert not rng.numba_available()\n"
            "a = rng.normal(1000, (1, 2))\n"
            "assert torch.equal(a, rng.normal(1000, (1, 2), backend='torch'))\n"
            "get('orthogonal').sample((8, 8), rng='philox', key='w')\n"
            "try:\n"
            "    rng.normal(10, (1, 2), backend='numba')\n"
            "except ImportError as e:\n"
            "    assert 'initlab[fast]' in str(e)\n"
            "else:\n"
            "    raise AssertionError('no ImportError')\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
