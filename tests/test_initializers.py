"""The initializer catalogue: distributions, structured initializers, dtypes, generators, API and configs.

Statistical tolerances. For ``n`` i.i.d. samples of std ``sigma``:

* the sample mean has std ``sigma / sqrt(n)``; we allow ``6 sigma / sqrt(n)``;
* the sample std has std ``sigma * sqrt((kurtosis - 1) / (4 n))``, at most ``sigma / sqrt(2 n)`` for the
  distributions here (normal: kurtosis 3; uniform 1.8 and truncated normals < 3 are lighter-tailed); we allow
  a relative error of ``6 / sqrt(2 n)``, about 3% at ``n ~ 20000``: far tighter than any fan or gain mistake
  (a factor 2 in a fan is a 29% change in std, a missing truncation correction 12%);
* the KS test rejects at ``p < 1e-4``: under the null ``p`` is uniform, so a correct sampler fails a given
  fixed seed with probability 1e-4. With ``n ~ 20000`` it detects a 3% scale error (D ~ 0.007).

Every random draw uses a fixed-seed ``torch.Generator``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

import initlab
from initlab import (
    Constant,
    DeltaOrthogonal,
    FanInUniform,
    Glorot,
    GlorotNormal,
    GlorotUniform,
    GlorotUniformSigmoid,
    He,
    HeNormal,
    HeUniform,
    Identity,
    LeCunNormal,
    LeCunUniform,
    Normal,
    Ones,
    Orthogonal,
    RBMNormal,
    Sparse,
    TruncatedNormal,
    Uniform,
    VarianceScaling,
    Zeros,
)

# std of N(0, 1) truncated to [-2, 2], from scipy (not from initlab): the variance-scaling correction
TRUNC2 = stats.truncnorm(-2, 2).std()
KS_ALPHA = 1e-4


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def check_sample(w: torch.Tensor, dist) -> None:
    """Mean and std within 6 standard errors (see the module docstring), and a KS test against ``dist``."""
    x = w.detach().double().flatten().numpy()
    n = x.size
    mean, std = dist.mean(), dist.std()
    assert abs(x.mean() - mean) < 6 * std / math.sqrt(n), (x.mean(), mean)
    assert abs(x.std() / std - 1) < 6 / math.sqrt(2 * n), (x.std(), std)
    p = stats.kstest(x, dist.cdf).pvalue
    assert p > KS_ALPHA, f"KS p-value {p:.2e}"


def uniform_bound(b: float, low: float | None = None):
    """scipy's U(low, b) (default symmetric U(-b, b))."""
    low = -b if low is None else low
    return stats.uniform(low, b - low)


def truncated(std: float):
    """The variance-scaling truncated normal: N(0, 1) cut at +-2, scaled so that its std is ``std``."""
    return stats.truncnorm(-2, 2, scale=std / TRUNC2)


# (initializer, shape, the exact distribution, with fans computed by hand in the comment)
DIST_CASES = [
    # plain distributions
    (Normal(std=0.02), (256, 128), stats.norm(0, 0.02)),
    (Normal(std=0.5, mean=1.0), (20000,), stats.norm(1.0, 0.5)),
    (RBMNormal(), (256, 128), stats.norm(0, 0.01)),
    (Uniform(), (200, 100), uniform_bound(1.0, 0.0)),  # torch uniform_ default U(0, 1)
    (Uniform(0.05), (200, 100), uniform_bound(0.05)),  # scalar range r: U(-r, r)
    (Uniform(range=(-1.0, 3.0)), (200, 100), uniform_bound(3.0, -1.0)),
    (Uniform(std=2.0, mean=1.0), (200, 100), uniform_bound(1 + 2 * math.sqrt(3), 1 - 2 * math.sqrt(3))),
    (TruncatedNormal(), (200, 100), stats.truncnorm(-2, 2)),
    (TruncatedNormal(std=0.5, mean=1.0, bounds=(-1.0, 3.0)), (200, 100), stats.truncnorm(-1, 3, loc=1, scale=0.5)),
    (TruncatedNormal(std=0.02, absolute=True), (200, 100), stats.truncnorm(-100, 100, scale=0.02)),
    # little mass inside the bounds (6.5% and 5%): the uniform-proposal branch of the sampler
    (TruncatedNormal(bounds=(1.5, 3.0)), (200, 100), stats.truncnorm(1.5, 3.0)),
    (TruncatedNormal(std=2.0, mean=0.5, bounds=(-1.0, -0.5), absolute=True), (200, 100),
     stats.truncnorm(-0.75, -0.5, loc=0.5, scale=2.0)),
    # variance scaling, layout torch (out, in/g, *k): fan_in = 32*9 = 288
    (HeNormal(), (64, 32, 3, 3), stats.norm(0, math.sqrt(2 / 288))),
    # torch_transposed (in, out/g, *k): fan_in = 64*9 = 576
    (HeUniform(layout="torch_transposed"), (32, 64, 3, 3), uniform_bound(math.sqrt(6 / 576))),
    # grouped conv, groups=4: fan_out = 64/4*9 = 144 (torch would say 576)
    (HeNormal(mode="fan_out", groups=4), (64, 16, 3, 3), stats.norm(0, math.sqrt(2 / 144))),
    (HeNormal(mode="fan_out", groups=4, torch_compatible=True), (64, 16, 3, 3), stats.norm(0, math.sqrt(2 / 576))),
    # keras / jax (*k, in, out): fan_in = 288, fan_out = 576, fan_avg = 432
    (GlorotNormal(layout="keras"), (3, 3, 32, 64), stats.norm(0, math.sqrt(1 / 432))),
    (GlorotUniform(layout="jax"), (3, 3, 32, 64), uniform_bound(math.sqrt(3 / 432))),
    (VarianceScaling(1.0, "fan_geo_avg", "truncated_normal", layout="keras"), (3, 3, 32, 64),
     truncated(math.sqrt(1 / math.sqrt(288 * 576)))),
    # packed attention (3E, E), E = 128: chunks=3 gives fans (128, 128); without, (128, 384)
    (GlorotUniform(chunks=3), (384, 128), uniform_bound(math.sqrt(6 / 256))),
    (GlorotUniform(), (384, 128), uniform_bound(math.sqrt(6 / 512))),
    # c01b (in, k0, k1, out): fan_in = 32*9 = 288
    (LeCunNormal(layout="c01b"), (32, 3, 3, 64), stats.norm(0, math.sqrt(1 / 288))),
    # lasagne_dense (in, out): fan_in = 256
    (LeCunUniform(layout="lasagne_dense"), (256, 128), uniform_bound(math.sqrt(3 / 256))),
    # groups=2, fan_in = 16*9 = 144, fan_out = 64/2*9 = 288, fan_avg = 216
    (VarianceScaling(2.0, "fan_avg", "truncated_normal", groups=2), (64, 16, 3, 3), truncated(math.sqrt(2 / 216))),
    # explicit axes: fan_in = 16*8 = 128
    (VarianceScaling(0.5, "fan_in", "uniform", in_axis=(0, 1), out_axis=2), (16, 8, 256),
     uniform_bound(math.sqrt(3 * 0.5 / 128))),
    # Keras' he_normal (truncated) and a tanh Glorot; fans (128, 256), fan_avg 192
    (He(distribution="truncated_normal"), (256, 128), truncated(math.sqrt(2 / 128))),
    (Glorot("truncated_normal", gain="tanh"), (256, 128), truncated(5 / 3 * math.sqrt(1 / 192))),
    # torch's Linear/Conv default U(+-1/sqrt(fan_in)) and the 4x sigmoid rule
    (FanInUniform(), (128, 256), uniform_bound(1 / 16)),
    (GlorotUniformSigmoid(), (128, 256), uniform_bound(4 * math.sqrt(6 / 384))),
    (HeUniform(gain="leaky_relu", mode="fan_out"), (128, 256),
     uniform_bound(math.sqrt(2 / (1 + 0.01**2)) * math.sqrt(3 / 128))),
]


@pytest.mark.parametrize("ini,shape,dist", DIST_CASES, ids=[f"{c[0]!r}-{c[1]}" for c in DIST_CASES])
def test_distribution(ini, shape, dist):
    w = ini.sample(shape, generator=seeded(1))
    assert w.shape == shape and w.dtype == torch.float32
    check_sample(w, dist)
    # expected_std is the exact std of the distribution it samples
    assert ini.expected_std(shape) == pytest.approx(dist.std(), rel=1e-12)
    # every value lies in the support (uniform and truncated bounds), up to float32 rounding
    lo, hi = dist.support()
    span = max(abs(lo), abs(hi)) if math.isfinite(lo) and math.isfinite(hi) else 0.0
    assert float(w.min()) >= lo - 1e-6 * span and float(w.max()) <= hi + 1e-6 * span


@pytest.mark.parametrize("seed", [2, 3])
def test_truncated_bounds_exact_in_float32(seed):
    t = TruncatedNormal(std=0.3, mean=0.1, bounds=(-1.5, 0.5))
    w = t.sample((50000,), generator=seeded(seed))
    lo, hi = t.limits
    assert lo == pytest.approx(0.1 - 0.45) and hi == pytest.approx(0.1 + 0.15)
    assert float(w.min()) >= np.float32(lo) and float(w.max()) <= np.float32(hi)


def test_expected_std_matches_torch_formulas():
    """The torch-layout presets use exactly torch's fans and gains."""
    for shape in [(128, 256), (64, 32, 3, 3), (16, 8, 5)]:
        fi, fo = nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
        relu = nn.init.calculate_gain("relu")
        assert HeNormal().expected_std(shape) == pytest.approx(relu / math.sqrt(fi), rel=1e-15)
        assert HeNormal(mode="fan_out").expected_std(shape) == pytest.approx(relu / math.sqrt(fo), rel=1e-15)
        assert GlorotNormal(gain=1.5).expected_std(shape) == pytest.approx(1.5 * math.sqrt(2 / (fi + fo)), rel=1e-15)
        # uniform bounds: kaiming_uniform_ gain*sqrt(3/fan), xavier_uniform_ gain*sqrt(6/(fi+fo))
        assert math.sqrt(3) * HeUniform().expected_std(shape) == pytest.approx(relu * math.sqrt(3 / fi), rel=1e-15)
        assert math.sqrt(3) * GlorotUniform().expected_std(shape) == pytest.approx(math.sqrt(6 / (fi + fo)),
                                                                                 rel=1e-15)
        # torch's default init of Linear/Conv: kaiming_uniform_(a=sqrt(5)), i.e. U(+-1/sqrt(fan_in))
        default_bound = nn.init.calculate_gain("leaky_relu", math.sqrt(5)) * math.sqrt(3 / fi)
        assert math.sqrt(3) * FanInUniform().expected_std(shape) == pytest.approx(default_bound, rel=1e-12)


def test_fan_in_uniform_matches_nn_linear_default():
    with torch.random.fork_rng():  # nn.Linear draws from the global RNG: seed it, and restore it afterwards
        torch.manual_seed(0)
        lin = nn.Linear(256, 128)
    ours = FanInUniform().sample(lin.weight.shape, generator=seeded(0))
    bound = 1 / 16
    for w in (lin.weight.detach(), ours):
        assert float(w.abs().max()) <= bound
        assert float(w.abs().max()) > 0.99 * bound  # fills the interval (32768 samples)
    assert stats.ks_2samp(lin.weight.detach().flatten().numpy(), ours.flatten().numpy()).pvalue > KS_ALPHA


def test_layouts_give_the_same_distribution_for_the_same_weight():
    """A (64, 32, 3, 3) torch conv weight laid out for Keras, cuda-convnet or as explicit axes gets the same std;
    a ConvTranspose weight (in, out, *k) gets the fans of the conv it transposes."""
    for cls in (HeNormal, GlorotUniform, LeCunNormal, FanInUniform):
        torch_std = cls().expected_std((64, 32, 3, 3))
        assert cls(layout="keras").expected_std((3, 3, 32, 64)) == torch_std
        assert cls(layout="jax").expected_std((3, 3, 32, 64)) == torch_std
        assert cls(layout="c01b").expected_std((32, 3, 3, 64)) == torch_std
        assert cls(in_axis=1, out_axis=0).expected_std((64, 32, 3, 3)) == torch_std
        assert cls(layout="torch_transposed").expected_std((64, 32, 3, 3)) == torch_std
    assert HeNormal(layout="keras").expected_std((3, 3, 32, 64)) == pytest.approx(math.sqrt(2 / 288), rel=1e-15)


def test_mha_chunks_restore_the_variance_of_three_separate_weights():
    e = 64
    separate = GlorotUniform().expected_std((e, e))
    assert GlorotUniform(chunks=3).expected_std((3 * e, e)) == separate
    # without chunks, Xavier sees fan_out = 3E: half the variance of three (E, E) weights
    assert GlorotUniform().expected_std((3 * e, e)) ** 2 == pytest.approx(separate**2 / 2, rel=1e-12)


# --------------------------------------------------------------------------------------------------
# Orthogonal

def unit_matrix(w: torch.Tensor, layout: str) -> torch.Tensor:
    """The (units, rest) matrix of a weight: units first for torch, last for keras."""
    return w.reshape(w.shape[0], -1) if layout == "torch" else w.reshape(-1, w.shape[-1]).T


ORTHO_CASES = [
    ((128, 32), "torch"), ((32, 128), "torch"), ((64, 64), "torch"),  # tall, wide, square
    ((16, 8, 3, 3), "torch"), ((64, 2, 3, 3), "torch"), ((10, 4, 5), "torch"),  # conv: wide and tall
    ((128, 32), "keras"), ((32, 128), "keras"), ((3, 3, 8, 16), "keras"), ((3, 3, 2, 64), "keras"),
    ((5, 4, 10), "jax"),
]


@pytest.mark.parametrize("gain", [1.0, 1.5, "relu"])
@pytest.mark.parametrize("shape,layout", ORTHO_CASES)
def test_orthogonal(shape, layout, gain):
    ini = Orthogonal(gain=gain, layout=layout)
    g = ini.gain
    w = ini.sample(shape, generator=seeded(0))
    assert w.shape == shape and w.dtype == torch.float32
    m = unit_matrix(w, "torch" if layout == "torch" else "keras")
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    # Q Q^T = I within 1e-5 in fp32 (times gain^2)
    torch.testing.assert_close(gram / g**2, torch.eye(gram.shape[0]), atol=1e-5, rtol=0)
    # the rms of the entries is exactly gain / sqrt(max(rows, cols)): the Frobenius norm is fixed
    rms = float(w.double().pow(2).mean().sqrt())
    assert rms == pytest.approx(ini.expected_std(shape), rel=1e-5)


def test_orthogonal_is_haar_distributed():
    """Without the sign fix, Q[0, 0] = a00 / R00 has a fixed sign with LAPACK's Householder QR; with it,
    Q[0, 0] is symmetric around 0. 400 draws: fraction positive ~ 0.5 +- 0.025 (binomial); bound +-0.15."""
    g = seeded(7)
    first = torch.stack([Orthogonal().sample((5, 3), generator=g)[0, 0] for _ in range(400)])
    assert 0.35 < float((first > 0).double().mean()) < 0.65
    # E[Q00^2] = 1/5 for a Haar column of length 5; sample mean of 400 has sd ~ 0.008; bound 0.05
    assert float(first.pow(2).mean()) == pytest.approx(0.2, abs=0.05)


def test_orthogonal_layouts_differ_only_in_which_axis_holds_units():
    wt = Orthogonal().sample((16, 72), generator=seeded(0))
    wk = Orthogonal(layout="keras").sample((3, 3, 8, 16), generator=seeded(0))
    torch.testing.assert_close(unit_matrix(wk, "keras"), wt, atol=0, rtol=0)


# --------------------------------------------------------------------------------------------------
# DeltaOrthogonal

@pytest.mark.parametrize("shape,centre", [((16, 8, 3, 3), (1, 1)), ((16, 8, 5), (2,)), ((8, 8, 3, 3, 3), (1, 1, 1)),
                                          ((16, 8, 4, 4), (2, 2))])
def test_delta_orthogonal_torch_layout(shape, centre):
    ini = DeltaOrthogonal(gain=1.5)
    w = ini.sample(shape, generator=seeded(0))
    c = w[(slice(None), slice(None), *centre)]
    torch.testing.assert_close(c.T @ c / 1.5**2, torch.eye(shape[1]), atol=1e-5, rtol=0)  # out >= in
    mask = torch.ones_like(w, dtype=torch.bool)
    mask[(slice(None), slice(None), *centre)] = False
    assert torch.count_nonzero(w[mask]) == 0
    assert float(w.double().pow(2).mean().sqrt()) == pytest.approx(ini.expected_std(shape), rel=1e-5)


def test_delta_orthogonal_centre_torch_vs_jax_for_even_kernels():
    tw = DeltaOrthogonal().sample((8, 4, 4, 4), generator=seeded(0))
    jw = DeltaOrthogonal(center="jax").sample((8, 4, 4, 4), generator=seeded(0))
    assert torch.count_nonzero(tw[:, :, 2, 2]) == 32 and torch.count_nonzero(tw[:, :, 1, 1]) == 0  # k // 2
    assert torch.count_nonzero(jw[:, :, 1, 1]) == 32 and torch.count_nonzero(jw[:, :, 2, 2]) == 0  # (k - 1) // 2
    torch.testing.assert_close(tw[:, :, 2, 2], jw[:, :, 1, 1], atol=0, rtol=0)
    # odd kernels: the same centre
    assert torch.equal(DeltaOrthogonal().sample((8, 4, 3), generator=seeded(0)),
                       DeltaOrthogonal(center="jax").sample((8, 4, 3), generator=seeded(0)))


def test_delta_orthogonal_keras_layout():
    w = DeltaOrthogonal(layout="keras").sample((3, 3, 8, 16), generator=seeded(0))
    c = w[1, 1]  # (in, out)
    torch.testing.assert_close(c @ c.T, torch.eye(8), atol=1e-5, rtol=0)
    assert torch.count_nonzero(w) == torch.count_nonzero(c)


def test_delta_orthogonal_conv_preserves_norms():
    """A delta-orthogonal kernel maps each pixel's channel vector by a matrix with orthonormal columns."""
    w = DeltaOrthogonal().sample((16, 8, 3, 3), generator=seeded(0))
    x = torch.randn(2, 8, 10, 10, generator=seeded(1))
    y = F.conv2d(x, w, padding=1)
    torch.testing.assert_close(y.norm(dim=1), x.norm(dim=1), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# Identity (eye / Dirac)

@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4)])
def test_identity_eye_matches_torch(shape):
    assert torch.equal(Identity().sample(shape), nn.init.eye_(torch.empty(shape)))
    assert torch.equal(Identity(gain=2.5).sample(shape), 2.5 * nn.init.eye_(torch.empty(shape)))


@pytest.mark.parametrize("shape,groups", [((6, 4, 3, 3), 1), ((4, 2, 3), 1), ((4, 4, 3, 3, 3), 1), ((4, 4, 2, 2), 1),
                                          ((2, 6, 3, 3), 1), ((8, 4, 3, 3), 2), ((6, 2, 3), 3), ((8, 1, 3, 3), 8)])
def test_identity_dirac_matches_torch(shape, groups):
    expected = nn.init.dirac_(torch.empty(shape), groups=groups)
    w = Identity(groups=groups).sample(shape)
    assert torch.equal(w, expected)
    assert float(w.std(unbiased=False)) == pytest.approx(Identity(groups=groups).expected_std(shape), rel=1e-6)


def test_identity_conv_passes_input_through():
    x = torch.randn(2, 8, 7, 7, generator=seeded(0))
    assert torch.equal(F.conv2d(x, Identity().sample((8, 8, 3, 3)), padding=1), x)
    assert torch.equal(F.conv2d(x, Identity(groups=4).sample((8, 2, 3, 3)), padding=1, groups=4), x)


def test_identity_aliases():
    assert isinstance(initlab.get("eye"), Identity) and isinstance(initlab.get("dirac"), Identity)


# --------------------------------------------------------------------------------------------------
# Sparse: both meanings

def test_sparse_nonzero_per_unit_exact_counts():
    """Martens / Lasagne: each unit keeps floor(sparsity * fan_in) non-zero incoming weights."""
    w = Sparse(sparsity=0.15, std=0.5).sample((64, 100), generator=seeded(0))  # torch layout (out, in)
    assert torch.equal(torch.count_nonzero(w, dim=1), torch.full((64,), 15))
    w = Sparse(sparsity=0.15, std=0.5, layout="lasagne_dense").sample((100, 64), generator=seeded(0))  # (in, out)
    assert torch.equal(torch.count_nonzero(w, dim=0), torch.full((64,), 15))
    # the kept subsets differ from unit to unit
    assert len({tuple(torch.nonzero(row).flatten().tolist()) for row in (w != 0).T}) > 60


@pytest.mark.parametrize("sparsity", [0.1, 0.25, 0.5])
def test_sparse_zero_per_column_exact_counts_like_torch(sparsity):
    """torch sparse_: ceil(sparsity * rows) zeros in every column of (out, in)."""
    shape = (64, 30)
    w = Sparse(sparsity, meaning="zero_per_column").sample(shape, generator=seeded(0))
    t = nn.init.sparse_(torch.empty(shape), sparsity, generator=seeded(0))
    expected = math.ceil(sparsity * 64)
    assert torch.equal((w == 0).sum(dim=0), torch.full((30,), expected))
    assert torch.equal((t == 0).sum(dim=0), torch.full((30,), expected))
    wl = Sparse(sparsity, meaning="zero_per_column", layout="lasagne_dense").sample((30, 64), generator=seeded(0))
    assert torch.equal((wl == 0).sum(dim=1), torch.full((30,), expected))


def test_sparse_values_are_normal():
    ini = Sparse(sparsity=0.5, std=0.02)
    w = ini.sample((256, 400), generator=seeded(3))
    check_sample(w[w != 0], stats.norm(0, 0.02))  # 51200 non-zeros
    # expected_std is the std of all entries, zeros included: std * sqrt(kept fraction)
    assert float(w.double().std()) == pytest.approx(ini.expected_std((256, 400)), rel=6 / math.sqrt(2 * w.numel()))


@pytest.mark.parametrize("meaning", ["nonzero_per_unit", "zero_per_column"])
def test_sparse_mask_comes_from_the_generator(meaning):
    ini = Sparse(0.3, meaning=meaning)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        a = ini.sample((40, 50), generator=seeded(5))
        torch.manual_seed(2)  # a different global state must not change anything
        b = ini.sample((40, 50), generator=seeded(5))
    assert torch.equal(a, b)
    c = ini.sample((40, 50), generator=seeded(6))
    assert not torch.equal(a != 0, c != 0)


# --------------------------------------------------------------------------------------------------
# Every registry initializer: dtypes, generators, API

REGISTRY = initlab.available()


def shape_for(ini) -> tuple[int, ...]:
    if isinstance(ini, DeltaOrthogonal):
        return (32, 16, 3, 3)
    if isinstance(ini, Sparse):
        return (192, 144)
    return (96, 32, 3, 3)


def is_deterministic(ini) -> bool:
    return ini.symmetric or isinstance(ini, Identity)


@pytest.mark.parametrize("name", REGISTRY)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(name, dtype):
    ini = initlab.get(name)
    shape = shape_for(ini)
    w32 = ini.sample(shape, generator=seeded(0))
    w = ini.sample(shape, dtype=dtype, generator=seeded(0))
    assert w.dtype == dtype and w.shape == shape
    assert torch.isfinite(w).all()
    # sampled in fp32 and cast: each value within one rounding of the fp32 draw of the same seed
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(w.float(), w32, rtol=eps, atol=1e-7)
    assert float(w.float().std()) == pytest.approx(float(w32.std()), rel=eps, abs=1e-12)
    # init_ on a half tensor gives the same values
    t = torch.zeros(shape, dtype=dtype)
    assert ini.init_(t, generator=seeded(0)) is t
    assert torch.equal(t, w)


# Bounds chosen just above a rounding midpoint of the target dtype, so a plain cast rounds some samples
# OUT of the bounds: fp16 spacing on [1, 2) is 2^-10 (midpoint 1 + 2^-11 = 1.000488 < 1.0006), bf16 spacing
# is 2^-7 (midpoint 1.0039 < 1.005). Expected samples in the rounding band: ~0.24 * 1.1e-4 * 1e6 ~ 27 (fp16),
# ~0.24 * 1.1e-3 * 2e5 ~ 53 (bf16); the test asserts the band is populated, so it cannot pass vacuously.
HALF_BOUNDS = [(torch.float16, 1.0006, 1_000_000), (torch.bfloat16, 1.005, 200_000)]


def rounding_midpoint(dtype: torch.dtype, limit: float) -> float:
    """The midpoint between 1 and the next value of ``dtype``: samples above it round up, past ``limit``."""
    eps = torch.finfo(dtype).eps
    assert 1 + eps / 2 < limit < 1 + eps
    return 1 + eps / 2


@pytest.mark.parametrize("dtype,limit,n", HALF_BOUNDS)
def test_truncated_normal_stays_inside_bounds_after_cast(dtype, limit, n):
    ini = TruncatedNormal(std=1.0, bounds=(-limit, limit), absolute=True)
    w32 = ini.sample((n,), generator=seeded(0)).double()
    assert int((w32.abs() > rounding_midpoint(dtype, limit)).sum()) > 5  # values a plain cast rounds outwards
    w = ini.sample((n,), dtype=dtype, generator=seeded(0)).double()
    assert float(w.abs().max()) <= limit


@pytest.mark.parametrize("dtype,limit,n", HALF_BOUNDS)
@pytest.mark.parametrize("cls", [VarianceScaling, He])
def test_variance_scaling_truncated_stays_inside_bounds_after_cast(dtype, limit, n, cls):
    # scale chosen so that the cut-off 2 * std / 0.8796 lands on `limit` (fan_in = 100)
    std = limit * TRUNC2 / 2
    ini = (VarianceScaling(std**2 * 100, "fan_in", "truncated_normal") if cls is VarianceScaling
           else He("truncated_normal", gain=std * 10))
    shape = (n // 100, 100)
    assert 2 * ini.expected_std(shape) / TRUNC2 == pytest.approx(limit, rel=1e-12)
    w32 = ini.sample(shape, generator=seeded(0)).double()
    assert int((w32.abs() > rounding_midpoint(dtype, limit)).sum()) > 5  # values a plain cast rounds outwards
    w = ini.sample(shape, dtype=dtype, generator=seeded(0)).double()
    assert float(w.abs().max()) <= limit


@pytest.mark.parametrize("np_dtype,limit,n", [(np.float16, 1.0006, 1_000_000)])
def test_truncated_normal_array_stays_inside_bounds_after_cast(np_dtype, limit, n):
    """The numpy path must keep the bounds too (same band argument as above)."""
    ini = TruncatedNormal(std=1.0, bounds=(-limit, limit), absolute=True)
    a = ini.array((n,), rng=0, dtype=np_dtype)
    assert a.dtype == np_dtype
    assert float(np.abs(a.astype(np.float64)).max()) <= limit


@pytest.mark.parametrize("name", REGISTRY)
def test_generator_reproducibility_and_global_rng_untouched(name):
    ini = initlab.get(name)
    shape = shape_for(ini)
    state = torch.get_rng_state()
    a = ini.sample(shape, generator=seeded(11))
    b = ini.sample(shape, generator=seeded(11))
    t = ini.init_(torch.empty(shape), generator=seeded(12))
    arr = ini.array(shape, rng=13)
    assert torch.equal(torch.get_rng_state(), state), "a generator was passed: the global RNG must not move"
    assert torch.equal(a, b)
    if not is_deterministic(ini):
        assert not torch.equal(a, t)
        assert not np.array_equal(a.numpy(), arr)


@pytest.mark.parametrize("name", ["he_normal", "orthogonal", "sparse", "truncated_normal"])
def test_without_generator_uses_the_global_rng(name):
    ini = initlab.get(name)
    shape = shape_for(ini)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        a = ini.sample(shape)
        torch.manual_seed(3)
        b = ini.sample(shape)
        c = ini.sample(shape)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("name", REGISTRY)
def test_sample_init_array_and_call_agree(name):
    ini = initlab.get(name)
    shape = shape_for(ini)
    s = ini.sample(shape, generator=seeded(4))
    t = torch.empty(shape)
    assert ini.init_(t, generator=seeded(4)) is t
    assert torch.equal(t, s)
    assert np.array_equal(ini.array(shape, rng=4), s.numpy())
    assert ini.array(shape, rng=4).dtype == np.float32
    t2 = torch.empty(shape)
    assert ini(t2, generator=seeded(4)) is t2 and torch.equal(t2, s)
    assert torch.equal(ini(shape, generator=seeded(4)), s)
    arr = np.zeros(shape, dtype=np.float32)
    assert ini(arr, rng=4) is arr and np.array_equal(arr, s.numpy())
    # float64: sampled in float64 from the same generator
    s64 = ini.sample(shape, dtype=torch.float64, generator=seeded(4))
    a64 = ini.array(shape, rng=4, dtype=np.float64)
    assert a64.dtype == np.float64 and np.array_equal(a64, s64.numpy())


@pytest.mark.parametrize("name", ["normal", "sparse"])
def test_call_honours_rng_for_every_target(name):
    """``ini(target, rng=seed)`` must use the seed whatever the target (tensor, array or shape)."""
    ini = initlab.get(name)
    shape = shape_for(ini)
    expected = ini.array(shape, rng=9)
    with torch.random.fork_rng():
        assert np.array_equal(ini(shape, rng=9).numpy(), expected)
        assert np.array_equal(ini(torch.empty(shape), rng=9).numpy(), expected)
        # and generator= for an array target
        arr = np.zeros(shape, dtype=np.float32)
        assert np.array_equal(ini(arr, generator=seeded(9)), expected)


def test_numpy_rng():
    ini = HeNormal()
    a = ini.array((64, 32), rng=np.random.default_rng(0))
    b = ini.array((64, 32), rng=np.random.default_rng(0))
    assert np.array_equal(a, b)
    rng = np.random.default_rng(0)
    assert not np.array_equal(ini.array((64, 32), rng=rng), ini.array((64, 32), rng=rng))  # the rng advances
    assert a.std() == pytest.approx(math.sqrt(2 / 32), rel=6 / math.sqrt(2 * a.size))


@pytest.mark.parametrize("name", REGISTRY)
def test_meta_and_empty_tensors_are_no_ops(name):
    ini = initlab.get(name)
    shape = shape_for(ini)
    meta = torch.empty(shape, device="meta")
    assert ini.init_(meta) is meta and meta.is_meta
    g = seeded(0)
    state = g.get_state()
    empty_shape = (0, 0, 3, 3) if isinstance(ini, DeltaOrthogonal) else (0, 5)
    empty = torch.empty(empty_shape)
    assert ini.init_(empty, generator=g) is empty
    assert torch.equal(g.get_state(), state)  # nothing drawn
    s = ini.sample(empty_shape, dtype=torch.float16, generator=g)
    assert s.shape == empty_shape and s.dtype == torch.float16


@pytest.mark.parametrize("name", ["he_normal", "orthogonal", "identity", "zeros", "sparse"])
def test_init_on_parameters(name):
    ini = initlab.get(name)
    lin = nn.Linear(32, 16)
    p = lin.weight
    before = p.detach().clone()
    out = ini.init_(p, generator=seeded(0))
    assert out is p and isinstance(p, nn.Parameter)
    assert p.requires_grad and p.is_leaf and p.grad_fn is None
    assert torch.equal(p.detach(), ini.sample((16, 32), generator=seeded(0)))
    assert not torch.equal(p.detach(), before)
    lin(torch.ones(2, 32)).sum().backward()  # the parameter still trains
    assert p.grad is not None


def test_init_on_a_non_contiguous_view():
    w = torch.zeros(32, 64)
    HeNormal().init_(w.T, generator=seeded(0))
    assert torch.equal(w.T, HeNormal().sample((64, 32), generator=seeded(0)))


# --------------------------------------------------------------------------------------------------
# Configs: repr, to_config, get, replace

NON_DEFAULT = [
    Constant(0.1), Normal(std=0.02, mean=-1.0), Uniform(0.05), Uniform(range=(-1.0, 3.0)), Uniform(std=2.0, mean=1.0),
    TruncatedNormal(0.02, bounds=(-1.0, 1.0), absolute=True), TruncatedNormal(0.5, 0.1, (-3.0, 1.0)),
    VarianceScaling(2.0, "fan_avg", "uniform", layout="keras", groups=2, chunks=3),
    VarianceScaling(0.5, "fan_geo_avg", "untruncated_normal", in_axis=(0, 1), out_axis=-1),
    VarianceScaling(1.0, "fan_out", "normal", groups=4, torch_compatible=True),
    Glorot("truncated_normal", gain="tanh"), GlorotNormal(gain=2.0, layout="c01b"), GlorotUniform(chunks=3),
    GlorotUniformSigmoid(layout="lasagne_dense"), He("uniform", gain=nn.init.calculate_gain("leaky_relu", 0.2),
                                                     mode="fan_out"),
    HeNormal(mode="fan_out", layout="torch_transposed"), HeUniform(gain="leaky_relu"), LeCunNormal(layout="jax"),
    LeCunUniform(groups=2), FanInUniform(layout="keras"), RBMNormal(0.1), Orthogonal(gain="relu", layout="keras"),
    DeltaOrthogonal(1.5, center="jax", layout="keras"), Identity(gain=2.0, groups=2),
    Sparse(0.3, 0.1, meaning="zero_per_column", layout="lasagne_dense"), Zeros(), Ones(),
]
ALL_SPECS = REGISTRY + sorted(initlab.aliases())


def _round_trip(x):
    assert initlab.get(repr(x)) == x
    assert hash(initlab.get(repr(x))) == hash(x)
    config = x.to_config()
    assert initlab.get(config) == x
    text = json.dumps(config)
    assert initlab.get(json.loads(text)) == x
    assert initlab.get(config).to_config() == config


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_registry_round_trip(spec):
    x = initlab.get(spec)
    assert isinstance(x, initlab.Initializer)
    assert x.name in REGISTRY
    _round_trip(x)


@pytest.mark.parametrize("x", NON_DEFAULT, ids=repr)
def test_non_default_round_trip(x):
    _round_trip(x)
    y = initlab.get(repr(x))
    if isinstance(x, Sparse):
        shape = (30, 24)
    else:  # out = 24 is divisible by every groups * chunks above, in = 8 <= out for DeltaOrthogonal
        shape = (3, 3, 8, 24) if x.to_config().get("layout") in ("keras", "jax", "c01b") else (24, 8, 3, 3)
    assert torch.equal(x.sample(shape, generator=seeded(0)), y.sample(shape, generator=seeded(0)))
    # repr shows exactly the non-default arguments
    assert (repr(x) == repr(type(x)())) == (x == type(x)())


@pytest.mark.parametrize("gain", [nn.LeakyReLU(0.2), nn.Tanh(), torch.tanh, nn.ReLU])
def test_round_trip_with_a_module_or_function_gain(gain):
    """A gain given as an activation module, class or function must still give a parseable repr and a JSON
    config that rebuild the same initializer."""
    for x in (He(gain=gain), Orthogonal(gain=gain), GlorotUniform(gain=gain)):
        json.dumps(x.to_config())
        for y in (initlab.get(repr(x)), initlab.get(x.to_config())):
            assert y == x and y.gain == x.gain
            assert torch.equal(y.sample((16, 8), generator=seeded(0)), x.sample((16, 8), generator=seeded(0)))


@pytest.mark.parametrize("alias,cls", [("xavier_uniform", GlorotUniform), ("xavier_normal", GlorotNormal),
                                       ("xavier", Glorot), ("kaiming_normal", HeNormal), ("kaiming_uniform", HeUniform),
                                       ("kaiming", He), ("msra", HeNormal), ("dirac", Identity), ("eye", Identity),
                                       ("torch_default", FanInUniform), ("rbm", RBMNormal), ("HeNormal", HeNormal),
                                       ("He_Normal", HeNormal), ("XAVIER_UNIFORM", GlorotUniform)])
def test_aliases(alias, cls):
    assert type(initlab.get(alias)) is cls


def test_aliases_point_into_the_registry():
    assert set(initlab.aliases().values()) <= set(REGISTRY)


def test_get_accepts_every_kind_of_spec():
    assert initlab.get("normal(std=0.01)") == Normal(std=0.01)
    assert initlab.get("normal(0.01)") == Normal(0.01)
    assert initlab.get("normal(std=0.01)").expected_std((3, 3)) == 0.01
    o = initlab.get("orthogonal(gain='relu')")
    assert o == Orthogonal(gain="relu") and o.gain == math.sqrt(2)
    assert initlab.get("HeNormal(mode='fan_out')") == HeNormal(mode="fan_out")
    assert initlab.get("uniform(range=(-1, 2))").bounds == (-1.0, 2.0)
    assert initlab.get(" he_normal ") == HeNormal()
    assert initlab.get({"name": "normal", "std": 0.01}) == Normal(std=0.01)
    assert initlab.get({"name": "kaiming_normal", "mode": "fan_out"}) == HeNormal(mode="fan_out")
    x = HeUniform()
    assert initlab.get(x) is x
    assert initlab.get(HeNormal) == HeNormal()


def test_equality_is_by_config():
    assert Normal(0.01) == Normal(std=0.01) and Normal(0.01) != Normal(0.02)
    assert Zeros() != Constant(0.0)  # different registry names
    assert HeNormal() != VarianceScaling(2.0, "fan_in", "normal")  # same numbers, different object kind
    assert len({Normal(0.01), Normal(std=0.01), Normal(0.02)}) == 2


def test_equal_initializers_have_equal_hashes():
    """Python's contract: a == b implies hash(a) == hash(b) (sets and dict keys rely on it)."""
    pairs = [(Normal(2), Normal(2.0)), (VarianceScaling(2), VarianceScaling(2.0)), (Constant(1), Constant(1.0)),
             (Uniform(range=(0, 1)), Uniform(range=(0.0, 1.0)))]
    for a, b in pairs:
        assert a == b
        assert hash(a) == hash(b), (a, b)
        assert len({a, b}) == 1


def test_replace():
    x = HeNormal()
    y = x.replace(layout="keras", mode="fan_out")
    assert x == HeNormal() and y == HeNormal(mode="fan_out", layout="keras")
    assert y.expected_std((3, 3, 32, 64)) == pytest.approx(math.sqrt(2 / 576), rel=1e-15)
    assert GlorotUniform().replace(chunks=3).expected_std((384, 128)) == GlorotUniform().expected_std((128, 128))
    assert Orthogonal().replace(gain="relu").gain == math.sqrt(2)
    assert VarianceScaling().replace(groups=4, scale=2.0) == VarianceScaling(2.0, groups=4)
    assert Normal(0.1).replace(mean=1.0) == Normal(0.1, 1.0)


def test_initializers_are_immutable():
    x = Normal(0.1)
    with pytest.raises(AttributeError, match="immutable"):
        x.std = 0.2
    assert x.std == 0.1


def test_symmetric():
    assert Constant(0.3).symmetric and Zeros().symmetric and Ones().symmetric and Normal(std=0.0).symmetric
    assert VarianceScaling(0.0).symmetric and Uniform(0.0).symmetric and TruncatedNormal(0.0).symmetric
    for name in ("normal", "he_normal", "orthogonal", "identity", "sparse", "uniform", "truncated_normal"):
        assert not initlab.get(name).symmetric


def test_constants():
    assert torch.equal(Constant(0.1).sample((2, 3)), torch.full((2, 3), 0.1))
    assert torch.equal(Zeros().sample((2, 3), dtype=torch.bfloat16), torch.zeros(2, 3, dtype=torch.bfloat16))
    assert torch.equal(Ones().init_(torch.empty(4)), torch.ones(4))
    assert Constant(0.1).expected_std((5, 5)) == 0.0
