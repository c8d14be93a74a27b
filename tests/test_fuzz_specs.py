"""Property-based fuzz of spec strings, shapes and dtypes.

``initlab.get(spec).sample(shape, dtype=..., generator=...)`` either succeeds with every value finite, or raises
one of the library's documented errors (``ValueError`` for a bad value, ``TypeError`` for a wrong type), never
``OverflowError``, ``ZeroDivisionError``, ``RuntimeError``, ``AttributeError``, ``IndexError``... Finite
arguments must never give non-finite values: ``normal(std=1e6)`` into float16 must be refused, not return inf.

Over large magnitudes (1e300, 1e38 into float16, a 400-digit int) every argument that sets a magnitude is fuzzed
into float16, bfloat16, float32 and float64, through torch's stream and the Philox one, against an oracle that
restates the documented bound (docs/reliability.md): refused, naming the argument and the dtype, exactly when the
bound leaves the dtype's range; sampled, all finite, otherwise.
Examples are derandomized: the file runs the same examples every time, in a few seconds.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import initlab
from initlab.initializers.registry import entry

FAST = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
OTHER_DTYPES = [torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64]
DOCUMENTED = (ValueError, TypeError)

NAMES = initlab.available() + ["xavier_uniform", "kaiming_normal", "msra", "dirac", "trunc_normal", "HeNormal", "nope"]
KEYS = sorted({key for name in initlab.available() for key in entry(name).cls._defaults()} | {"foo"})

# argument values, as the source text of a spec (nan and inf are not literals: they must be refused as such)
MODERATE = st.one_of(
    st.sampled_from(["0", "0.0", "-0.0", "1", "-1", "0.5", "2", "3", "1e-300", "-1e-300", "1e-30", "100", "-100"]),
    st.floats(-1e3, 1e3, allow_nan=False).map(repr),
    st.integers(-10, 10).map(str),
)
NON_FINITE = st.sampled_from(["nan", "inf", "-inf", "1e400", "-1e400", "float('nan')"])
WORDS = st.sampled_from(["'relu'", "'tanh'", "'selu'", "'fan_in'", "'fan_out'", "'fan_avg'", "'normal'", "'uniform'",
                         "'truncated_normal'", "'torch'", "'keras'", "'c01b'", "'jax'", "'x'", "''"])
OTHER = st.sampled_from(["None", "True", "False", "(0, 1)", "(1, 0)", "(-2, 2)", "(0.0,)", "[1, 2]", "(1, 2, 3)",
                         "{'a': 1}", "(0, 'a')"])
HUGE = st.sampled_from(["1e300", "-1e300", "1e38", "1e6", "65504.0", "1e308", "1e154", "9" * 400])

ANY_SHAPE = st.lists(st.integers(0, 8), min_size=0, max_size=5).map(tuple)
WEIGHT_SHAPE = st.lists(st.integers(1, 8), min_size=2, max_size=4).map(tuple)  # what most initializers can fill
SHAPES = st.one_of(ANY_SHAPE, WEIGHT_SHAPE, WEIGHT_SHAPE)
DTYPES = st.sampled_from(FLOAT_DTYPES * 3 + OTHER_DTYPES)  # mostly floating: those get sampled


def _own_keys(name: str) -> list[str]:
    try:
        return sorted(entry(name).cls._defaults())
    except ValueError:  # an unknown name
        return []


@st.composite
def specs(draw: st.DrawFn, values: st.SearchStrategy[str]) -> str:
    """A registry name, bare or called with positional and keyword arguments: mostly the initializer's own
    keywords (so many specs are valid and get sampled), sometimes any other, sometimes repeated."""
    name = draw(st.sampled_from(NAMES))
    if draw(st.integers(0, 9)) == 0:
        return name
    own = _own_keys(name)
    key = st.sampled_from(own) if own and draw(st.integers(0, 4)) else st.sampled_from(KEYS)
    args = draw(st.lists(values, max_size=2)) if draw(st.integers(0, 3)) == 0 else []
    kwargs = draw(st.lists(st.tuples(key, values), max_size=3))
    return f"{name}({', '.join([*args, *(f'{k}={v}' for k, v in kwargs)])})"


def sample_or_refuse(spec: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor | None:
    """The property: values all finite, or a documented error (anything else propagates and fails)."""
    try:
        ini = initlab.get(spec)
        out = ini.sample(shape, dtype=dtype, generator=torch.Generator().manual_seed(0))
    except DOCUMENTED:
        return None
    assert dtype in FLOAT_DTYPES, f"{spec} sampled a {dtype} tensor"
    assert tuple(out.shape) == shape and out.dtype == dtype
    bad = int((~torch.isfinite(out)).sum())
    assert not bad, f"{spec} on {shape} {dtype}: {bad} non-finite value(s) of {out.numel()} from finite arguments"
    return out


@FAST
@given(spec=specs(st.one_of(MODERATE, MODERATE, NON_FINITE, WORDS, OTHER)), shape=SHAPES, dtype=DTYPES)
def test_fuzz_spec_strings(spec, shape, dtype):
    sample_or_refuse(spec, shape, dtype)


@FAST
@given(name=st.sampled_from(initlab.available()), shape=SHAPES, dtype=DTYPES)
def test_fuzz_shapes_and_dtypes(name, shape, dtype):
    sample_or_refuse(name, shape, dtype)


@FAST
@given(name=st.sampled_from(initlab.available()), shape=SHAPES, dtype=DTYPES)
def test_fuzz_init_in_place(name, shape, dtype):
    """init_ fills a tensor with finite values, or refuses and leaves every byte (and the version) as it was."""
    t = torch.arange(math.prod(shape), dtype=torch.float64).reshape(shape).to(dtype)
    before, version = t.clone(), t._version
    try:
        initlab.get(name).init_(t, generator=torch.Generator().manual_seed(0))
    except DOCUMENTED:
        assert torch.equal(t, before) and t._version == version
        return
    assert dtype in FLOAT_DTYPES
    assert torch.isfinite(t).all()


@FAST
@given(shape=st.one_of(ANY_SHAPE, st.lists(st.integers(-3, 8), max_size=5)),
       layout=st.sampled_from(["torch", "torch_transposed", "keras", "jax", "lasagne_dense", "c01b", "x"]),
       groups=st.one_of(st.integers(-1, 4), st.just(1.5)), chunks=st.integers(-1, 4),
       axes=st.one_of(st.none(), st.tuples(st.integers(-4, 4), st.integers(-4, 4))))
def test_fuzz_fans(shape, layout, groups, chunks, axes):
    in_axis, out_axis = axes if axes is not None else (None, None)
    try:
        f = initlab.fans(shape, layout, groups=groups, chunks=chunks, in_axis=in_axis, out_axis=out_axis)
    except DOCUMENTED:
        return
    assert f.fan_in >= 0 and f.fan_out >= 0 and math.isfinite(f.fan_in) and math.isfinite(f.fan_out)


# --------------------------------------------------------------------------------------------------
# Large magnitudes: refused exactly when the documented bound (docs/reliability.md) leaves the dtype's range.
# The oracle below restates the rule from the formulas, independently of the initializers' own _reach.

SIGMAS = 9.0  # a normal reaches |mean| + 9 std (initlab.sampling.NORMAL_SIGMAS)
SQRT3 = math.sqrt(3.0)
TRUNC2 = 0.87962566103423978  # std of N(0, 1) cut at +-2: variance_scaling's truncated normal is unit / TRUNC2 * std
UNIT = 1.0 + 1e-6  # an entry of an orthonormal row, with a margin for rounding


def _oracle(name: str, key: str, v: float) -> tuple[float, float] | None:
    """(bound on |values|, bound on the intermediates: a uniform's width, a truncated normal's spread) for
    ``name(key=v)`` on a (4, 4) weight (fans 4 and 4; delta_orthogonal: (4, 4, 3, 3)), or None when the
    constructor itself must refuse ``v``."""
    if v < 0 and (key in ("std", "scale", "range") or key == "gain" and name != "identity"):
        return None
    if key == "gain" and name.startswith(("glorot", "he")) and not math.isfinite(v * v):
        return None  # gain^2, the variance scale, is not a float
    std_fan = v * math.sqrt(2.0 / 8.0) if name.startswith("glorot") else v / 2.0  # gain / sqrt(fan_in = 4)
    table = {
        ("constant", "value"): (abs(v), 0.0),
        ("normal", "std"): (SIGMAS * v, 0.0), ("rbm_normal", "std"): (SIGMAS * v, 0.0),
        ("sparse", "std"): (SIGMAS * v, 0.0), ("normal", "mean"): (abs(v) + SIGMAS, 0.0),
        ("uniform", "range"): (v, 2 * v), ("uniform", "std"): (SQRT3 * v, 2 * SQRT3 * v),
        ("truncated_normal", "std"): (2 * v, 4 * v), ("truncated_normal", "mean"): (abs(v) + 2, 4.0),
        ("variance_scaling", "scale"): (2 * math.sqrt(max(v, 0.0)) / 2 / TRUNC2, 0.0),
        ("orthogonal", "gain"): (v * UNIT, 0.0), ("delta_orthogonal", "gain"): (v * UNIT, 0.0),
        ("identity", "gain"): (abs(v), 0.0),
    }
    if (name, key) in table:
        return table[(name, key)]
    if name in ("glorot", "glorot_uniform", "he_uniform"):  # uniform: +-sqrt(3) std, width twice that
        return SQRT3 * std_fan, 2 * SQRT3 * std_fan
    return SIGMAS * std_fan, 0.0  # glorot_normal, he, he_normal: untruncated normals


MAGNITUDES = [("constant", "value"), ("normal", "std"), ("normal", "mean"), ("uniform", "range"), ("uniform", "std"),
              ("truncated_normal", "std"), ("truncated_normal", "mean"), ("variance_scaling", "scale"),
              ("glorot", "gain"), ("glorot_normal", "gain"), ("glorot_uniform", "gain"), ("he", "gain"),
              ("he_normal", "gain"), ("he_uniform", "gain"), ("rbm_normal", "std"), ("orthogonal", "gain"),
              ("delta_orthogonal", "gain"), ("identity", "gain"), ("sparse", "std")]
LARGE = st.one_of(HUGE, st.floats(1e4, 1e308).map(repr), st.floats(-1e308, -1e4).map(repr),
                  st.floats(1.0, 1e6).map(repr))  # the last mostly fits: the other outcome


def sample_or_refuse_large(name: str, key: str, text: str, dtype: torch.dtype, rng: str) -> str:
    """``name(key=text)`` into ``dtype``: refused (a ValueError naming ``key`` and, for a range refusal, the dtype)
    exactly when the oracle's bound leaves the range; otherwise sampled, every value finite. Says which."""
    shape = (4, 4, 3, 3) if name == "delta_orthogonal" else (4, 4)
    v = float(text) if len(text) < 400 else math.inf  # the 400-digit int: beyond every float
    bounds = _oracle(name, key, v)
    precision = torch.float32 if rng == "philox" or dtype != torch.float64 else torch.float64
    limit, inner = min(torch.finfo(dtype).max, torch.finfo(precision).max), torch.finfo(precision).max
    spec = f"{name}({key}={text})"
    source = {"rng": "philox", "seed": 0, "key": "w"} if rng == "philox" else {"generator": torch.Generator()}
    try:
        out = initlab.get(spec).sample(shape, dtype=dtype, **source)
    except ValueError as exc:
        message = str(exc)
        assert re.search(rf"\b{key}\b", message), f"{spec} into {dtype}: the message does not name {key}: {message}"
        if bounds is None or math.isinf(v):
            return "refused by the constructor"
        fits = bounds[0] <= limit and bounds[1] <= inner
        edge = min(abs(bounds[0] / limit - 1), abs(bounds[1] / inner - 1)) < 1e-9  # rounding decides at the edge
        assert not fits or edge, f"{spec} into {dtype} ({rng}) refused although its bound {bounds} fits: {message}"
        named = dtype if bounds[0] > limit and torch.finfo(dtype).max <= inner else precision
        assert str(named).split(".")[-1] in message, f"{spec} into {dtype}: the message names no {named}: {message}"
        return "refused for the range"
    assert bounds is not None, f"{spec}: the constructor accepted an invalid value"
    assert bounds[0] <= limit * (1 + 1e-9) and bounds[1] <= inner * (1 + 1e-9), (
        f"{spec} into {dtype} ({rng}) accepted although its bound {bounds} is beyond {limit:g}")
    bad = int((~torch.isfinite(out)).sum())
    assert not bad, f"{spec} into {dtype} ({rng}): {bad} non-finite value(s) from finite arguments"
    return "sampled"


@pytest.mark.parametrize("name, key", MAGNITUDES, ids=[f"{n}-{k}" for n, k in MAGNITUDES])
@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(value=LARGE, dtype=st.sampled_from(FLOAT_DTYPES), rng=st.sampled_from(["torch", "philox"]))
def test_fuzz_large_magnitudes(name, key, value, dtype, rng):
    sample_or_refuse_large(name, key, value, dtype, rng)


@pytest.mark.parametrize("name, key", MAGNITUDES, ids=[f"{n}-{k}" for n, k in MAGNITUDES])
def test_large_magnitudes_reach_both_outcomes(name, key):
    """The fuzz above is not vacuous: for every argument a value into float16 is sampled (finite), a larger one
    refused for the range, through torch's stream and the Philox one."""
    gain_squared = key == "gain" and name.startswith(("glorot", "he"))  # 1e300^2 is refused by the constructor
    for rng in ("torch", "philox"):
        assert sample_or_refuse_large(name, key, "0.5", torch.float16, rng) == "sampled"
        assert sample_or_refuse_large(name, key, "1e12", torch.float16, rng) == "refused for the range"
        assert sample_or_refuse_large(name, key, "1e300", torch.float32, rng) == (
            "refused by the constructor" if gain_squared else "refused for the range")


F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64


@pytest.mark.parametrize("spec, key, dtype", [
    ("normal(std=1e6)", "std", F16),  # 65504 is float16's max
    ("normal(std=1e300)", "std", F32),
    ("normal(mean=1e300)", "mean", F32),
    ("constant(1e300)", "value", F32),  # was torch's RuntimeError 'value cannot be converted ... without overflow'
    ("constant(1e5)", "value", F16),
    ("constant(-1e39)", "value", BF16),
    ("uniform(1e300)", "range", F32),  # was torch's RuntimeError 'from is out of bounds for float'
    ("uniform(2e38)", "range", F32),  # the values fit, the width high - low does not (torch: 'to-from ... exceed')
    ("truncated_normal(std=1e300)", "std", F32),
    ("variance_scaling(1e300)", "scale", F32),
    ("he(gain=1e154)", "gain", F32),  # scale 1e308 is a float64, std 5e153 no float32
    ("he(gain=1e300)", "gain", F64),  # gain^2 is no float64: refused naming gain, not scale
    ("orthogonal(gain=1e300)", "gain", F32),
    ("sparse(std=1e300)", "std", F32),  # was NaN: inf * 0 for the masked entries
    ("identity(gain=1e300)", "gain", F16),
    ("normal(std=" + "9" * 400 + ")", "std", F32),
])
def test_large_finite_arguments_are_refused(spec, key, dtype):
    with pytest.raises(ValueError) as info:
        initlab.get(spec).sample((4, 4), dtype=dtype, generator=torch.Generator().manual_seed(0))
    assert re.search(rf"\b{key}\b", str(info.value)), str(info.value)
    assert "scale" not in str(info.value) or key == "scale", f"blames scale, not {key}: {info.value}"


@pytest.mark.parametrize("spec, dtype", [
    ("normal(std=1e3)", F16),  # 9e3 < 65504
    ("normal(std=1e300)", F64),
    ("he(gain=1e3)", F32),
    ("constant(65504.0)", F16),  # float16's largest value, exactly
    ("uniform(1.5e38)", F32),  # width 3e38 < 3.4e38
    ("identity(gain=3e38)", BF16),
])
def test_large_arguments_in_range_are_sampled(spec, dtype):
    out = sample_or_refuse(spec, (4, 4), dtype)
    assert out is not None, f"{spec} into {dtype} was refused although it fits"
