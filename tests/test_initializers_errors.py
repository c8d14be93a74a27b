"""Every bad input named in issue 2: the error type, a message naming the argument and the accepted values,
and the user's tensor left exactly as it was."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import initlab
from initlab import (
    Constant,
    DeltaOrthogonal,
    Glorot,
    GlorotNormal,
    He,
    HeNormal,
    HeUniform,
    Identity,
    LeCunNormal,
    Normal,
    Orthogonal,
    Sparse,
    TruncatedNormal,
    Uniform,
    VarianceScaling,
)


def assert_rejected(exc: type[Exception], match: str, fill, tensor: torch.Tensor) -> None:
    """``fill(tensor)`` raises ``exc`` with a message matching ``match`` and leaves ``tensor`` untouched."""
    before = tensor.clone()
    version = tensor._version  # bumped by any in-place write, even one that writes the same values
    with pytest.raises(exc, match=match):
        fill(tensor)
    assert tensor.dtype == before.dtype and tensor.shape == before.shape
    assert torch.equal(tensor, before)
    assert tensor._version == version


def weight(shape=(8, 4, 3, 3), dtype=torch.float32) -> torch.Tensor:
    return torch.arange(math.prod(shape), dtype=torch.float64).reshape(shape).to(dtype) / 7


# --------------------------------------------------------------------------------------------------
# Bad constructor arguments: ValueError at construction, before the tensor is touched.
# (factory, message) -- the message names the argument and the accepted values.

CONSTRUCTION = [
    # negative std or scale
    (lambda: Normal(std=-1.0), r"std must be a finite number >= 0; got -1\.0"),
    (lambda: TruncatedNormal(std=-0.1), r"std must be a finite number >= 0; got -0\.1"),
    (lambda: Uniform(std=-2.0), r"std must be a finite number >= 0; got -2\.0"),
    (lambda: Sparse(std=-0.01), r"std must be a finite number >= 0; got -0\.01"),
    (lambda: VarianceScaling(scale=-1.0), r"scale must be a finite number >= 0; got -1\.0"),
    (lambda: GlorotNormal(gain=-1.0), r"gain must be a non-negative finite number; got -1\.0"),
    (lambda: Orthogonal(gain=-2.0), r"gain must be a non-negative finite number; got -2\.0"),
    (lambda: Normal(std=math.nan), r"std must be a finite number >= 0; got nan"),
    (lambda: VarianceScaling(scale=math.inf), r"scale must be a finite number >= 0; got inf"),
    (lambda: Uniform(range=-1.0), r"range must be a finite number >= 0; got -1\.0"),
    (lambda: Uniform(range=(1.0, 0.0)), r"range must satisfy low <= high; got \(1\.0, 0\.0\)"),
    (lambda: Uniform(range=(1.0, 2.0, 3.0)), r"range must be a number r .* or a pair \(low, high\)"),
    (lambda: TruncatedNormal(bounds=(2.0, -2.0)), r"bounds must satisfy low < high; got \(2\.0, -2\.0\)"),
    (lambda: TruncatedNormal(bounds=(1.0, 2.0, 3.0)), r"bounds must be a pair \(low, high\)"),
    # sparsity outside [0, 1]
    (lambda: Sparse(sparsity=1.5), r"sparsity must be in \[0, 1\]; got 1\.5"),
    (lambda: Sparse(sparsity=-0.1), r"sparsity must be (>= 0|in \[0, 1\]); got -0\.1"),
    # unknown mode
    (lambda: VarianceScaling(mode="fan_sum"),
     r"mode must be one of 'fan_in', 'fan_out', 'fan_avg', 'fan_geo_avg'; got 'fan_sum'"),
    (lambda: HeNormal(mode="in"), r"mode must be one of 'fan_in'.*got 'in'"),
    (lambda: He(mode="fan_in_out"), r"mode must be one of 'fan_in'.*got 'fan_in_out'"),
    # unknown distribution
    (lambda: VarianceScaling(distribution="gaussian"),
     r"distribution must be one of 'normal', 'truncated_normal', 'uniform'; got 'gaussian'"),
    (lambda: Glorot(distribution="laplace"), r"distribution must be one of 'normal'.*got 'laplace'"),
    (lambda: He(distribution="Normal"), r"distribution must be one of 'normal'.*got 'Normal'"),
    # unknown layout
    (lambda: VarianceScaling(layout="tf"),
     r"layout must be one of 'torch', 'torch_transposed', 'keras', 'jax', 'lasagne_dense', 'c01b'; got 'tf'"),
    (lambda: HeUniform(layout="nchw"), r"layout must be one of 'torch'.*'c01b'; got 'nchw'"),
    (lambda: Orthogonal(layout="tf"), r"layout must be one of 'torch'.*got 'tf'"),
    (lambda: DeltaOrthogonal(layout="c01b"), r"layout must be one of 'torch', 'keras', 'jax'; got 'c01b'"),
    (lambda: Sparse(layout="c01b"), r"layout must be one of 'torch', 'lasagne_dense', 'keras', 'jax'; got 'c01b'"),
    # unknown nonlinearity (a gain given by name)
    (lambda: He(gain="rectifier"), r"nonlinearity must be one of .*relu.*tanh.*; got 'rectifier'"),
    (lambda: Orthogonal(gain="foo"), r"nonlinearity must be one of .*relu.*; got 'foo'"),
    (lambda: GlorotNormal(gain="hardswish"), r"nonlinearity 'hardswish' has no rule='torch' gain; accepted names"),
    # other choices and fan options
    (lambda: Sparse(meaning="dense"), r"meaning must be one of 'nonzero_per_unit', 'zero_per_column'; got 'dense'"),
    (lambda: DeltaOrthogonal(center="middle"), r"center must be one of 'torch', 'jax'; got 'middle'"),
    (lambda: HeNormal(groups=0), r"groups must be a positive int; got 0"),
    (lambda: LeCunNormal(chunks=-3), r"chunks must be a positive int; got -3"),
    (lambda: Identity(groups=0), r"groups must be a positive int; got 0"),
    (lambda: VarianceScaling(in_axis=0), r"in_axis and out_axis must be given together"),
]


def test_a_wrong_type_is_a_type_error():  # initlab.validate's vocabulary
    with pytest.raises(TypeError, match=r"std must be a finite number >= 0; got '0\.1'"):
        Normal(std="0.1")
    w = weight()
    assert_rejected(TypeError, "std must be a finite number >= 0", lambda t: Normal(std="0.1").init_(t), w)


@pytest.mark.parametrize("factory,match", CONSTRUCTION, ids=[m[:40] for _, m in CONSTRUCTION])
def test_bad_constructor_argument(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()  # raises at construction, not later when a shape comes
    w = weight()
    assert_rejected(ValueError, match, lambda t: factory().init_(t), w)


def test_unexpected_fan_option_is_a_type_error():
    with pytest.raises(TypeError, match=r"HeNormal got unexpected argument\(s\) \['foo'\]; fan options are"):
        HeNormal(foo=1)


# --------------------------------------------------------------------------------------------------
# Shapes an initializer cannot fill: ValueError at init_, tensor unchanged

FAN_BASED = ["variance_scaling", "glorot", "glorot_normal", "glorot_uniform", "glorot_uniform_sigmoid", "he",
             "he_normal", "he_uniform", "lecun_normal", "lecun_uniform", "fan_in_uniform"]


@pytest.mark.parametrize("name", FAN_BASED)
@pytest.mark.parametrize("shape", [(5,), ()])
def test_too_few_dims_for_fans(name, shape):
    w = weight(shape)
    assert_rejected(ValueError, r"fans need a weight of at least 2 dims under layout 'torch'; got shape",
                    initlab.get(name).init_, w)


@pytest.mark.parametrize("layout", ["torch_transposed", "lasagne_dense", "c01b"])
def test_too_few_dims_for_fans_other_layouts(layout):
    assert_rejected(ValueError, f"at least 2 dims under layout '{layout}'", HeNormal(layout=layout).init_,
                    weight((5,)))


def test_c01b_needs_four_dims():
    assert_rejected(ValueError, r"layout 'c01b' needs a 4-dim weight \(in, k0, k1, out\); got shape \(8, 3, 16\)",
                    GlorotNormal(layout="c01b").init_, weight((8, 3, 16)))


def test_groups_must_divide_the_output_dim():
    assert_rejected(ValueError, r"groups=3 does not divide the output dimension 8", HeNormal(groups=3).init_,
                    weight((8, 4, 3, 3)))
    assert_rejected(ValueError, r"chunks=5 does not divide the output dimension 24", GlorotNormal(chunks=5).init_,
                    weight((24, 8)))


def test_axes_out_of_range():
    assert_rejected(ValueError, r"out_axis=3 is out of range for a weight of 3 dims",
                    VarianceScaling(in_axis=0, out_axis=3).init_, weight((3, 4, 5)))


@pytest.mark.parametrize("shape", [(5,), ()])
def test_orthogonal_needs_two_dims(shape):
    assert_rejected(ValueError, r"Orthogonal needs a weight of at least 2 dims", Orthogonal().init_, weight(shape))


def test_delta_orthogonal_needs_out_at_least_in():
    conv = nn.Conv2d(8, 4, 3)  # weight (4, 8, 3, 3): 4 outputs < 8 inputs
    assert_rejected(ValueError, r"DeltaOrthogonal needs out_channels >= in_channels; got shape \(4, 8, 3, 3\) "
                    r"\(4 < 8\)", DeltaOrthogonal().init_, conv.weight)
    assert_rejected(ValueError, r"out_channels >= in_channels", DeltaOrthogonal(layout="keras").init_,
                    weight((3, 3, 8, 4)))


@pytest.mark.parametrize("shape", [(8, 4), (8, 4, 3, 3, 3, 3)])
def test_delta_orthogonal_needs_a_conv_kernel(shape):
    assert_rejected(ValueError, r"DeltaOrthogonal needs a 3-, 4- or 5-dim conv kernel", DeltaOrthogonal().init_,
                    weight(shape))


def test_identity_shapes():
    assert_rejected(ValueError, r"Identity needs a 2-dim \(eye\) or 3-, 4-, 5-dim \(Dirac\) weight",
                    Identity().init_, weight((5,)))
    assert_rejected(ValueError, r"groups=3 does not divide the output dimension", Identity(groups=3).init_,
                    weight((8, 4, 3, 3)))
    assert_rejected(ValueError, r"groups applies to conv kernels \(3-5 dims\) only", Identity(groups=2).init_,
                    weight((8, 4)))


def test_sparse_needs_two_dims():
    assert_rejected(ValueError, r"Sparse needs a 2-dim weight; got shape \(3, 4, 5\)", Sparse().init_,
                    weight((3, 4, 5)))


# --------------------------------------------------------------------------------------------------
# Integer, bool and complex tensors: TypeError, for every initializer of the registry

def _shape_for(ini) -> tuple[int, ...]:
    return (8, 4, 3, 3) if isinstance(ini, DeltaOrthogonal) else (8, 4)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64])
@pytest.mark.parametrize("name", initlab.available())
def test_non_float_tensors(name, dtype):
    ini = initlab.get(name)
    w = torch.ones(_shape_for(ini), dtype=dtype)
    assert_rejected(TypeError, rf"tensor dtype must be a floating-point dtype \(float16, bfloat16, float32, "
                    rf"float64\).*got {dtype}", ini.init_, w)
    assert_rejected(TypeError, "floating-point", ini, w)  # __call__ on a tensor


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_sample_with_a_non_float_dtype(dtype):
    with pytest.raises(TypeError, match=f"dtype must be a floating-point dtype .*got {dtype}"):
        HeNormal().sample((8, 4), dtype=dtype)


@pytest.mark.parametrize("dtype", [np.int32, np.bool_, np.complex64])
def test_array_with_a_non_float_dtype(dtype):
    with pytest.raises(TypeError, match="dtype must be a floating-point numpy dtype"):
        HeNormal().array((8, 4), dtype=dtype)
    a = np.ones((8, 4), dtype=dtype)
    before = a.copy()
    with pytest.raises(TypeError, match="dtype must be a floating-point numpy dtype"):
        HeNormal()(a)
    assert np.array_equal(a, before)


def test_init_needs_a_tensor():
    a = np.ones((8, 4), dtype=np.float32)
    with pytest.raises(TypeError, match="tensor must be a torch.Tensor; got ndarray"):
        HeNormal().init_(a)
    assert np.array_equal(a, np.ones((8, 4), dtype=np.float32))


def test_half_tensor_and_parameter_unchanged_on_error():
    assert_rejected(ValueError, "at least 2 dims", HeNormal().init_, weight((6,), torch.bfloat16))
    p = nn.Parameter(weight((4, 8, 3, 3)))
    assert_rejected(ValueError, "out_channels >= in_channels", DeltaOrthogonal().init_, p)
    assert p.requires_grad


# --------------------------------------------------------------------------------------------------
# initlab.get: bad spec strings, unknown names, bad configs

@pytest.mark.parametrize("spec,match", [
    ("normal(std=", r"cannot parse initializer spec 'normal\(std=': .*never closed"),
    ("", r"cannot parse initializer spec ''"),
    ("normal(std=x)", r"initializer spec 'normal\(std=x\)': arguments must be literals"),
    ("normal(*[1])", r"arguments must be literals"),
    ("normal.std", r"initializer spec must look like 'name' or 'name\(arg=value, \.\.\.\)'; got 'normal.std'"),
    ("1 + 2", r"must look like 'name' or 'name\(arg=value, \.\.\.\)'"),
    ("normal(std=0.01)(1)", r"must look like 'name'"),
    ("normal(foo=1)", r"initializer spec 'normal\(foo=1\)': .*unexpected keyword argument 'foo'; "
                      r"Normal accepts: std, mean"),
    ("normal(0.1, 0.0, 3)", r"Normal accepts: std, mean"),
    ("normal(std=-1)", r"std must be a finite number >= 0; got -1"),
    ("orthogonal(gain='foo')", r"nonlinearity must be one of .*got 'foo'"),
    ("normal(**{'std': 5})", r"(arguments must be literals|must look like|\*\*)"),
])
def test_bad_spec_strings(spec, match):
    with pytest.raises(ValueError, match=match):
        initlab.get(spec)


@pytest.mark.parametrize("name", ["foo", "he_normall", "kaimin", "Glorot_Uniformm"])
def test_unknown_initializer_name(name):
    with pytest.raises(ValueError, match=rf"unknown initializer '{name}'; available: constant, .*he_normal.*"
                                         r"\(aliases: .*xavier_uniform"):
        initlab.get(name)
    with pytest.raises(ValueError, match=rf"unknown initializer '{name}'"):
        initlab.get({"name": name})


def test_bad_configs():
    with pytest.raises(ValueError, match=r"an initializer config needs a 'name' key; got keys \['std'\]"):
        initlab.get({"std": 0.1})
    with pytest.raises(ValueError, match=r"std must be a finite number >= 0"):
        initlab.get({"name": "normal", "std": -1})
    with pytest.raises(ValueError, match=r"unexpected keyword argument 'foo'; Normal accepts: std, mean"):
        initlab.get({"name": "normal", "foo": 1})


@pytest.mark.parametrize("spec", [3, None, 0.1, nn.Linear, ["normal"]])
def test_spec_of_the_wrong_type(spec):
    with pytest.raises(TypeError, match=r"an initializer spec must be a name, a 'name\(args\)' string, a config "
                                        r"dict or an Initializer; got"):
        initlab.get(spec)


def test_replace_validates():
    x = Normal(0.1)
    with pytest.raises(ValueError, match=r"Normal has no argument\(s\) \['foo'\]; accepted: \['mean', 'std'\]"):
        x.replace(foo=1)
    with pytest.raises(ValueError, match=r"std must be a finite number >= 0"):
        x.replace(std=-1)
    with pytest.raises(ValueError, match=r"layout must be one of"):
        HeNormal().replace(layout="tf")
    assert x == Normal(0.1)


# --------------------------------------------------------------------------------------------------
# Values beyond the target dtype's finite range: refused from the arguments, before anything is drawn

F16_MAX = 65504.0


def test_the_refusal_names_the_argument_the_dtype_and_its_range():
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    w = weight((8, 4), torch.float16)
    assert_rejected(ValueError, r"^std=1000000\.0 gives values up to 9e\+06 in magnitude \(a normal reaches \|mean\| "
                    r"\+ 9 std\), beyond float16's finite range \(\+-65504\): give a smaller value, or fill a wider "
                    r"dtype$", lambda t: Normal(std=1e6).init_(t, generator=g), w)
    assert torch.equal(g.get_state(), state)  # the generator did not move
    assert_rejected(ValueError, r"^gain=100000\.0 gives values up to .*beyond float16's finite range",
                    HeNormal(gain=1e5).init_, w)  # the user's argument, not the derived scale or std
    assert_rejected(ValueError, r"^scale=1e\+20 gives values .*beyond float16's",
                    VarianceScaling(scale=1e20).init_, w)
    assert_rejected(ValueError, r"^range=\(0\.0, 70000\.0\) gives values up to 70000 .*float16",
                    Uniform(range=(0.0, 7e4)).init_, w)
    assert_rejected(ValueError, r"^mean=-70000\.0 gives values", Normal(mean=-7e4, std=0.0).init_, w)


@pytest.mark.parametrize("make, fits, beyond", [
    # (initializer from a magnitude, largest that fits float16, a little more): the boundary of each bound
    (lambda m: Normal(std=m), F16_MAX / 9, F16_MAX / 9 * 1.001),  # |mean| + 9 std
    (lambda m: Normal(mean=m, std=1.0), F16_MAX - 9, F16_MAX - 8),
    (lambda m: Constant(m), F16_MAX, F16_MAX * 1.001),
    (lambda m: Identity(gain=m), F16_MAX, F16_MAX * 1.001),
    (lambda m: Uniform(range=m), F16_MAX, F16_MAX * 1.001),  # max(|low|, |high|)
    (lambda m: Uniform(std=m), F16_MAX / 3**0.5, F16_MAX / 3**0.5 * 1.001),  # sqrt(3) std
    (lambda m: TruncatedNormal(std=m), F16_MAX / 2, F16_MAX / 2 * 1.001),  # cut at 2 std
    (lambda m: Orthogonal(gain=m), F16_MAX / (1 + 1e-6), F16_MAX * 1.001),  # |entries| <= 1 (+1e-6 rounding)
    (lambda m: Sparse(std=m), F16_MAX / 9, F16_MAX / 9 * 1.001),
    (lambda m: HeNormal(gain=m), F16_MAX / 9 * 2, F16_MAX / 9 * 2 * 1.001),  # std = gain / sqrt(fan_in = 4)
    (lambda m: HeUniform(gain=m), F16_MAX / 3**0.5 * 2, F16_MAX / 3**0.5 * 2 * 1.001),
    (lambda m: VarianceScaling(scale=m), (F16_MAX * 0.87962566 / 2 * 2) ** 2 * 0.999, (F16_MAX / 2 * 2) ** 2),
], ids=["normal-std", "normal-mean", "constant", "identity", "uniform-range", "uniform-std", "truncated",
        "orthogonal", "sparse", "he-normal", "he-uniform", "variance-scaling"])
def test_the_bound_is_where_the_documentation_puts_it(make, fits, beyond):
    g = torch.Generator().manual_seed(0)
    out = make(fits).sample((4, 4), dtype=torch.float16, generator=g)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="float16's finite range"):
        make(beyond).sample((4, 4), dtype=torch.float16, generator=g)


def test_the_width_of_a_uniform_must_fit_the_sampling_precision():
    # values within +-2e38 fit float32, but torch computes low + (high - low) u and refuses a width of 4e38
    with pytest.raises(ValueError, match=r"range=2e\+38 needs intermediate values up to 4e\+38 .*float32"):
        Uniform(range=2e38).sample((4,))
    assert torch.isfinite(Uniform(range=1.5e38).sample((1000,), generator=torch.Generator().manual_seed(0))).all()
    assert torch.isfinite(Uniform(range=2e38).sample((4,), dtype=torch.float64)).all()  # float64 draws: room


def test_the_philox_stream_draws_float32_values_even_for_float64():
    assert torch.isfinite(Normal(std=1e300).sample((4,), dtype=torch.float64)).all()  # torch's stream: float64
    with pytest.raises(ValueError, match=r"std=1e\+300 .*beyond float32's finite range .*the precision the values "
                                         r"are drawn in: give a smaller value$"):
        Normal(std=1e300).sample((4,), dtype=torch.float64, rng="philox", seed=0)
    out = Normal(std=1e30).sample((64,), dtype=torch.float64, rng="philox", seed=0)
    assert torch.isfinite(out).all() and out.abs().max() > 1e29


def test_every_initializer_states_a_reach_that_bounds_its_values():
    """Every initializer of the registry takes part in the check (a new one without ``_reach`` fails here), and
    its reach is an upper bound on what it draws: 20 draws of 4096 values each, seeds 0-19, float64."""
    for name in initlab.available():
        ini = initlab.get(name)
        shape = (16, 16, 3, 3) if name == "delta_orthogonal" else (64, 64)
        reach = ini._reach(shape)
        assert reach is not None and (reach.values > 0 or name in ("zeros", "constant")), name
        for seed in range(20):
            out = ini.sample(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
            assert float(out.abs().max()) <= reach.values, (name, seed, float(out.abs().max()), reach)


def test_huge_ints_are_refused_as_values():
    for make, name in [(lambda: Normal(std=10**400), "std"), (lambda: Constant(-(10**400)), "value"),
                       (lambda: He(gain=10**400), "gain"), (lambda: Identity(gain=10**5000), "gain")]:
        with pytest.raises(ValueError, match=rf"^{name} must be a? ?(non-negative )?finite"):
            make()


def test_a_truncation_interval_narrower_than_the_precision_is_a_point():
    # mean=1e20, std=1: mean +- 2 std is a single float; both streams fill with it instead of failing
    for source in ({"generator": torch.Generator().manual_seed(0)}, {"rng": "philox", "seed": 0}):
        out = TruncatedNormal(std=1.0, mean=1e20).sample((4,), **source)
        assert torch.equal(out, torch.full((4,), 1e20))
    spread = TruncatedNormal(std=1.0, mean=1e3).sample((256,), generator=torch.Generator().manual_seed(0))
    assert spread.unique().numel() > 100  # a representable interval is still sampled


def test_fan_axes_and_flags_are_checked_at_construction():
    with pytest.raises(TypeError, match=r"in_axis must be None, an int or a sequence of distinct ints"):
        VarianceScaling(in_axis="a", out_axis="b")
    with pytest.raises(ValueError, match=r"in_axis must be .*; got \(0, 0\)"):
        VarianceScaling(in_axis=(0, 0), out_axis=1)
    with pytest.raises(TypeError, match=r"torch_compatible must be True or False; got 'no'"):
        HeNormal(torch_compatible="no")
    ok = VarianceScaling(2.0, in_axis=[np.int64(-2)], out_axis=(-1,))  # numpy ints and lists are fine
    assert ok.fans_of((3, 4)) == initlab.fans((3, 4), "keras")
    # no axis (JAX's convention): the fan is the receptive field alone, a depthwise kernel's fan_in
    assert VarianceScaling(in_axis=[], out_axis=[2, 3]).fans_of((3, 3, 8, 2)).fan_in == 9
