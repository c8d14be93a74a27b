"""initlab.compat: torch.nn.init bit for bit; Keras, JAX and Lasagne conventions."""

import math

import numpy as np
import pytest
import torch
import torch.nn.init as tinit

import initlab
from initlab.compat import jax as cjax
from initlab.compat import keras as ckeras
from initlab.compat import lasagne as classagne
from initlab.compat import torch as ctorch

SHAPES = [(30, 20), (16, 8, 3, 3), (4, 1, 3, 3), (100, 1000), (64, 3, 5, 5), (5, 7, 2), (2, 3, 2, 2, 2)]

RANDOM_CALLS = [
    ("uniform_", dict(a=-0.3, b=0.7)),
    ("uniform_", dict()),
    ("normal_", dict(mean=0.1, std=0.3)),
    ("normal_", dict()),
    ("trunc_normal_", dict()),
    ("trunc_normal_", dict(std=0.02)),
    ("trunc_normal_", dict(mean=0.0, std=1.0, a=1.5, b=3.0)),  # low-mass interval: the uniform-proposal branch
    ("trunc_normal_", dict(mean=0.5, std=0.1, a=0.3, b=0.6)),
    ("xavier_uniform_", dict()),
    ("xavier_uniform_", dict(gain=1.7)),
    ("xavier_normal_", dict(gain=0.3)),
    ("kaiming_uniform_", dict(a=math.sqrt(5))),  # torch's Linear/Conv default
    ("kaiming_uniform_", dict(nonlinearity="tanh")),
    ("kaiming_normal_", dict()),
    ("kaiming_normal_", dict(mode="fan_out", nonlinearity="relu")),
    ("kaiming_normal_", dict(a=0.2, mode="fan_in")),
    ("orthogonal_", dict()),
    ("orthogonal_", dict(gain=1.3)),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name,kwargs", RANDOM_CALLS, ids=lambda v: str(v))
@pytest.mark.parametrize("seed", [0, 12345])
def test_bit_identical_to_torch(name, kwargs, shape, seed):
    ours, theirs = torch.empty(shape), torch.empty(shape)
    getattr(tinit, name)(theirs, **kwargs, generator=torch.Generator().manual_seed(seed))
    getattr(ctorch, name)(ours, **kwargs, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(ours, theirs)


def test_bit_identical_without_generator_uses_global_rng_like_torch():
    a, b = torch.empty(50, 40), torch.empty(50, 40)
    torch.manual_seed(7)
    tinit.kaiming_uniform_(a, a=math.sqrt(5))
    torch.manual_seed(7)
    ctorch.kaiming_uniform_(b, a=math.sqrt(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("shape", [(4, 6), (6, 4), (5, 5)])
def test_eye_constant_ones_zeros(shape):
    for name, args in [("eye_", ()), ("constant_", (0.25,)), ("ones_", ()), ("zeros_", ())]:
        a, b = torch.randn(shape), torch.randn(shape)
        getattr(tinit, name)(a, *args)
        getattr(ctorch, name)(b, *args)
        assert torch.equal(a, b), name


@pytest.mark.parametrize("shape,groups", [((8, 4, 3), 1), ((6, 4, 3, 3), 2), ((4, 2, 3, 3, 3), 2), ((3, 5, 4, 4), 1)])
def test_dirac_matches_torch(shape, groups):
    a, b = torch.randn(shape), torch.randn(shape)
    tinit.dirac_(a, groups)
    ctorch.dirac_(b, groups)
    assert torch.equal(a, b)


def test_sparse_values_match_torch_and_mask_follows_generator():
    shape, sparsity = (40, 30), 0.3
    a, b = torch.empty(shape), torch.empty(shape)
    tinit.sparse_(a, sparsity, generator=torch.Generator().manual_seed(1))
    ctorch.sparse_(b, sparsity, generator=torch.Generator().manual_seed(1))
    both = (a != 0) & (b != 0)
    assert torch.equal(a[both], b[both])  # same normal draws where both are non-zero
    # torch's meaning: ceil(sparsity * rows) zeros in every column
    assert ((b == 0).sum(0) == math.ceil(sparsity * shape[0])).all()
    c = torch.empty(shape)
    ctorch.sparse_(c, sparsity, generator=torch.Generator().manual_seed(1))
    assert torch.equal(b, c)  # the mask honours the generator: fully reproducible


@pytest.mark.parametrize("name", ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                                  "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"])
def test_calculate_gain_matches(name):
    assert ctorch.calculate_gain(name) == tinit.calculate_gain(name)


@pytest.mark.parametrize("slope", [0, 0.01, 0.2, 1, 3.5])
def test_calculate_gain_leaky_params(slope):
    assert ctorch.calculate_gain("leaky_relu", slope) == tinit.calculate_gain("leaky_relu", slope)


def test_torch_errors_match():
    w = torch.randn(3, 4, 5)
    before = w.clone()
    with pytest.raises(ValueError, match="2 dimensions"):
        ctorch.eye_(w)
    with pytest.raises(ValueError, match="3, 4, or 5"):
        ctorch.dirac_(torch.randn(3, 4))
    with pytest.raises(ValueError, match="Mode fan_bad not supported"):
        ctorch.kaiming_normal_(w, mode="fan_bad")
    with pytest.raises(ValueError, match="not a valid number"):
        ctorch.calculate_gain("leaky_relu", "x")
    with pytest.raises(ValueError, match="at least 2 dims"):
        ctorch.xavier_uniform_(torch.randn(5))
    assert torch.equal(w, before)


def test_half_precision_is_sampled_in_fp32_then_cast():
    # torch samples in the target precision; initlab samples in float32 and casts: same values, rounded
    g = dict(generator=torch.Generator().manual_seed(3))
    half = ctorch.kaiming_normal_(torch.empty(64, 32, dtype=torch.bfloat16), **g)
    full = ctorch.kaiming_normal_(torch.empty(64, 32), generator=torch.Generator().manual_seed(3))
    assert torch.equal(half, full.to(torch.bfloat16))
    q = ctorch.orthogonal_(torch.empty(16, 16, dtype=torch.float16), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(q.float() @ q.float().T, torch.eye(16), atol=5e-3)  # fp16 rounding ~1e-3 per entry


# --- Keras / JAX -----------------------------------------------------------------------------------------

def test_keras_layout_and_truncation():
    shape = (3, 3, 64, 128)  # (*k, in, out)
    fan_in, fan_out = 9 * 64, 9 * 128
    he = ckeras.HeNormal()
    assert he.expected_std(shape) == pytest.approx(math.sqrt(2 / fan_in))
    w = he.sample(shape, generator=torch.Generator().manual_seed(0))
    limit = 2 * math.sqrt(2 / fan_in) / 0.87962566103423978
    assert w.abs().max() <= limit  # truncated at 2 (corrected) std
    # 73728 samples: the std estimate has relative error ~ 1/sqrt(2n) = 0.26%; allow 2%
    assert w.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)
    glorot = ckeras.GlorotUniform()
    bound = math.sqrt(6 / (fan_in + fan_out))
    w = glorot.sample(shape, generator=torch.Generator().manual_seed(0))
    assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound


def test_keras_plain_defaults():
    assert ckeras.RandomUniform().bounds == (-0.05, 0.05)
    assert ckeras.RandomNormal().std == 0.05
    tn = ckeras.TruncatedNormal()
    assert tn.limits == pytest.approx((-0.1, 0.1))  # mean +- 2 std, no variance correction
    assert tn.expected_std((10,)) < 0.05


def test_keras_orthogonal_columns():
    w = ckeras.Orthogonal().sample((3, 3, 16, 32), generator=torch.Generator().manual_seed(0))
    flat = w.reshape(-1, 32)  # Keras: (prod(rest), units), orthonormal columns
    assert torch.allclose(flat.T @ flat, torch.eye(32), atol=1e-5)


def test_jax_conventions():
    assert cjax.uniform().bounds == (0.0, 0.01)
    tn = cjax.truncated_normal(stddev=0.5, lower=-1.0, upper=3.0)
    assert tn.limits == (-0.5, 1.5)
    vs = cjax.variance_scaling(2.0, "fan_in", "normal", in_axis=0, out_axis=1)
    assert vs.fans_of((10, 20)).fan_in == 10
    w = cjax.delta_orthogonal().sample((4, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    assert w[1, 1].abs().sum() > 0 and w[2, 2].abs().sum() == 0  # centre (k-1)//2 = 1 for k = 4
    centre = w[1, 1]
    assert torch.allclose(centre.T @ centre, torch.eye(8), atol=1e-5)


# --- Lasagne ---------------------------------------------------------------------------------------------

def test_lasagne_dense_layout_and_default_gain():
    shape = (200, 50)  # (in, out)
    he = classagne.HeNormal()  # gain 1 by default: LeCun
    assert he.expected_std(shape) == pytest.approx(math.sqrt(1 / 200))
    assert classagne.HeNormal(gain="relu").expected_std(shape) == pytest.approx(math.sqrt(2 / 200))
    glorot = classagne.GlorotUniform()
    assert glorot.expected_std(shape) == pytest.approx(math.sqrt(2 / 250))


def test_lasagne_conv_and_c01b():
    assert classagne.HeNormal().expected_std((32, 16, 3, 3)) == pytest.approx(math.sqrt(1 / (16 * 9)))
    c01b = classagne.HeNormal(c01b=True).expected_std((16, 3, 3, 32))
    assert c01b == pytest.approx(math.sqrt(1 / (16 * 9)))
    g = classagne.GlorotUniform(c01b=True).expected_std((16, 3, 3, 32))
    assert g == pytest.approx(math.sqrt(2.0 / ((16 + 32) * 9)))


def test_lasagne_uniform_and_normal_defaults():
    assert classagne.Uniform().bounds == (-0.01, 0.01)
    assert classagne.Uniform((0.0, 2.0)).bounds == (0.0, 2.0)
    lo, hi = classagne.Uniform(std=1.0, mean=1.0).bounds
    assert (lo, hi) == pytest.approx((1 - math.sqrt(3), 1 + math.sqrt(3)))
    assert classagne.Normal().std == 0.01


def test_lasagne_sparse_is_fraction_of_nonzero_inputs():
    shape = (100, 20)  # (in, out): each of the 20 units keeps int(0.15 * 100) = 15 inputs
    w = classagne.Sparse(sparsity=0.15).sample(shape, generator=torch.Generator().manual_seed(0))
    assert ((w != 0).sum(0) == 15).all()


def test_lasagne_glorot_needs_a_distribution_class():
    with pytest.raises(ValueError, match="Normal or Uniform"):
        classagne.Glorot("bogus")
    assert classagne.Glorot(classagne.Normal).distribution == "normal"


def test_compat_results_are_initlab_initializers_that_round_trip():
    for ini in [ckeras.HeNormal(), ckeras.Orthogonal(), cjax.glorot_normal(), classagne.HeUniform(gain="relu"),
                classagne.Sparse(), cjax.delta_orthogonal()]:
        assert initlab.get(repr(ini)) == ini
        assert initlab.get(ini.to_config()) == ini


def test_numpy_output_for_other_frameworks():
    arr = ckeras.GlorotNormal().array((5, 5, 3, 8), rng=np.random.default_rng(0))
    assert arr.dtype == np.float32 and arr.shape == (5, 5, 3, 8)
