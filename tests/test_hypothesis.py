"""Property tests over random shapes, layouts, groups/chunks and dtypes (fp32, fp16, bf16, fp64).

``derandomize=True`` makes hypothesis draw the same examples on every run (a fixed seed), and every sample
uses a seeded generator, so these tests are deterministic.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

import initlab
from initlab import (
    FanInUniform,
    GlorotNormal,
    GlorotUniform,
    GlorotUniformSigmoid,
    He,
    HeNormal,
    HeUniform,
    LeCunNormal,
    LeCunUniform,
    Orthogonal,
    VarianceScaling,
)

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
TRUNC2 = stats.truncnorm(-2, 2).std()  # std of N(0, 1) cut at +-2 (scipy, independent of initlab)
MAX_NUMEL = 40_000


def ref_fans(shape, layout, groups, chunks):
    """Reference fans (REFERENCE.md section 1, written out independently of initlab.shapes)."""
    d = shape
    if layout in ("keras", "jax"):
        rf = math.prod(d[:-2])
        return d[-2] * rf, d[-1] // groups // chunks * rf
    if layout == "c01b":
        rf = d[1] * d[2]
        return d[0] * rf, d[3] // groups // chunks * rf
    if layout == "lasagne_dense" and len(d) == 2:
        return d[0], d[1] // groups // chunks
    rf = math.prod(d[2:])
    return d[1] * rf, d[0] // groups // chunks * rf


@st.composite
def weights(draw):
    """(shape, layout, groups, chunks): the output axis of the layout is a multiple of groups * chunks."""
    layout = draw(st.sampled_from(["torch", "torch_transposed", "keras", "jax", "lasagne_dense", "c01b"]))
    ndim = 4 if layout == "c01b" else draw(st.integers(2, 5))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    chunks = draw(st.sampled_from([1, 1, 3]))
    if layout in ("keras", "jax", "c01b") or (layout == "lasagne_dense" and ndim == 2):
        out_axis = ndim - 1
    else:
        out_axis = 0
    kernel_axes = (set(range(ndim - 2)) if layout in ("keras", "jax") else {1, 2} if layout == "c01b"
                   else set(range(2, ndim)))
    shape = []
    for axis in range(ndim):
        if axis == out_axis:
            shape.append(groups * chunks * draw(st.integers(1, 4) | st.integers(8, 32)))
        elif axis in kernel_axes:
            shape.append(draw(st.integers(1, 5)))
        else:
            shape.append(draw(st.integers(1, 8) | st.integers(16, 128)))  # small, or large enough to test std
    shape = tuple(shape)
    # keep samples small: shrink the largest non-output axis until the tensor is small enough
    while math.prod(shape) > MAX_NUMEL:
        axis = max((a for a in range(ndim) if a != out_axis), key=lambda a: shape[a])
        shape = shape[:axis] + (max(1, shape[axis] // 2),) + shape[axis + 1:]
    return shape, layout, groups, chunks


PRESETS = {  # name -> (scale, mode, distribution) it stands for
    "HeNormal": (HeNormal, 2.0, "fan_in", "normal"),
    "HeUniform": (HeUniform, 2.0, "fan_in", "uniform"),
    "HeTruncated": (lambda **kw: He("truncated_normal", **kw), 2.0, "fan_in", "truncated_normal"),
    "GlorotNormal": (GlorotNormal, 1.0, "fan_avg", "normal"),
    "GlorotUniform": (GlorotUniform, 1.0, "fan_avg", "uniform"),
    "GlorotUniformSigmoid": (GlorotUniformSigmoid, 16.0, "fan_avg", "uniform"),
    "LeCunNormal": (LeCunNormal, 1.0, "fan_in", "normal"),
    "LeCunUniform": (LeCunUniform, 1.0, "fan_in", "uniform"),
    "FanInUniform": (FanInUniform, 1.0 / 3.0, "fan_in", "uniform"),
}


@st.composite
def variance_schemes(draw, layout, groups, chunks):
    fan_options = dict(layout=layout, groups=groups, chunks=chunks)
    if draw(st.booleans()):
        scale = draw(st.floats(0.1, 4.0))
        mode = draw(st.sampled_from(["fan_in", "fan_out", "fan_avg", "fan_geo_avg"]))
        distribution = draw(st.sampled_from(["normal", "uniform", "truncated_normal"]))
        return VarianceScaling(scale, mode, distribution, **fan_options), scale, mode, distribution
    factory, scale, mode, distribution = PRESETS[draw(st.sampled_from(sorted(PRESETS)))]
    return factory(**fan_options), scale, mode, distribution


@settings(SETTINGS, max_examples=100)  # the main property test: ~1 ms an example
@given(data=st.data(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31 - 1))
def test_variance_scaling_properties(data, dtype, seed):
    shape, layout, groups, chunks = data.draw(weights())
    ini, scale, mode, distribution = data.draw(variance_schemes(layout, groups, chunks))

    # expected_std is sqrt(scale / n) with the fans of the layout
    fan_in, fan_out = ref_fans(shape, layout, groups, chunks)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2,
         "fan_geo_avg": math.sqrt(fan_in * fan_out)}[mode]
    expected = ini.expected_std(shape)
    assert expected == pytest.approx(math.sqrt(scale / n), rel=1e-12)

    w = ini.sample(shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    assert w.shape == shape and w.dtype == dtype
    assert torch.isfinite(w).all()
    x = w.double()
    eps = torch.finfo(dtype).eps
    # support: uniform within sqrt(3) std, truncated within 2 std / 0.8796 (exactly, after any cast)
    if distribution == "uniform":
        assert float(x.abs().max()) <= math.sqrt(3) * expected * (1 + eps)
    elif distribution == "truncated_normal":
        assert float(x.abs().max()) <= 2 * expected / TRUNC2 * (1 + 1e-6)
    # std within 6 standard errors (sd of a sample std <= sigma / sqrt(2 numel) for these distributions),
    # plus the rounding of the cast (relative eps); only when the sample is large enough to say anything
    if w.numel() >= 1000:
        rel = 6 / math.sqrt(2 * w.numel()) + eps
        assert float(x.std()) == pytest.approx(expected, rel=rel)
        assert abs(float(x.mean())) < 6 * expected / math.sqrt(w.numel()) + eps * expected


@SETTINGS
@given(data=st.data(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31 - 1),
       gain=st.sampled_from([1.0, 0.5, "relu", "tanh"]))
def test_orthogonal_properties(data, dtype, seed, gain):
    layout = data.draw(st.sampled_from(["torch", "keras", "jax"]))
    ndim = data.draw(st.integers(2, 4))
    shape = tuple(data.draw(st.lists(st.integers(1, 40), min_size=ndim, max_size=ndim)))
    if ndim > 2:  # conv-like: small kernels
        shape = (shape[0], shape[1], *(min(s, 4) for s in shape[2:])) if layout == "torch" else \
            (*(min(s, 4) for s in shape[:-2]), shape[-2], shape[-1])
    ini = Orthogonal(gain=gain, layout=layout)
    w = ini.sample(shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    assert w.shape == shape and w.dtype == dtype and torch.isfinite(w).all()
    m = (w.reshape(shape[0], -1) if layout == "torch" else w.reshape(-1, shape[-1]).T).double() / ini.gain
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    # fp64 to 1e-10, fp32 to 1e-5; half precision: each entry is rounded (relative eps), so a Gram entry is off
    # by at most ~2 eps (sum of |q_i q_j| <= 1); allow 4 eps
    tol = {torch.float64: 1e-10, torch.float32: 1e-5}.get(dtype, 4 * torch.finfo(dtype).eps)
    torch.testing.assert_close(gram, torch.eye(gram.shape[0], dtype=torch.float64), atol=tol, rtol=0)


PLAIN = ["normal", "uniform", "truncated_normal", "rbm_normal", "constant", "zeros", "ones", "sparse",
         "identity", "delta_orthogonal"]


@SETTINGS
@given(name=st.sampled_from(PLAIN), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31 - 1),
       dims=st.lists(st.integers(1, 30), min_size=2, max_size=4))
def test_every_initializer_gives_finite_values_of_the_right_dtype(name, dtype, seed, dims):
    ini = initlab.get(name)
    shape = tuple(dims)
    if name == "sparse":
        shape = shape[:2]
    elif name == "delta_orthogonal":
        shape = (max(shape[0], shape[1]), *shape[1:]) if len(shape) > 2 else (shape[0] + shape[1], shape[1], 3)
    t = torch.empty(shape, dtype=dtype)
    out = ini.init_(t, generator=torch.Generator().manual_seed(seed))
    assert out is t and t.shape == shape and t.dtype == dtype
    assert torch.isfinite(t).all()
    if name == "truncated_normal":
        assert float(t.abs().max()) <= 2.0
