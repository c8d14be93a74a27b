"""``jax.nn.initializers`` on initlab's catalogue: same names, arguments and defaults.

JAX lays kernels out as ``(*k, in, out)`` (``in_axis=-2, out_axis=-1``); ``variance_scaling`` with
``"truncated_normal"`` corrects the variance (``/ 0.8796...``); ``truncated_normal(stddev, lower, upper)``
takes its bounds in std units and does not; ``uniform(scale)`` is ``U[0, scale)``; ``delta_orthogonal``
puts the orthogonal matrix at ``(k - 1) // 2``. Each function returns an initlab ``Initializer``; where JAX
takes a PRNG key, pass ``generator=`` (or ``rng=`` to ``.array``).
"""

from __future__ import annotations

from collections.abc import Sequence

from initlab.initializers import Constant, DeltaOrthogonal, Initializer, Normal, Orthogonal, TruncatedNormal, Uniform
from initlab.initializers import VarianceScaling as _VarianceScaling

__all__ = [
    "constant", "zeros", "ones", "normal", "uniform", "truncated_normal", "variance_scaling", "glorot_normal",
    "glorot_uniform", "he_normal", "he_uniform", "lecun_normal", "lecun_uniform", "xavier_normal",
    "xavier_uniform", "kaiming_normal", "kaiming_uniform", "orthogonal", "delta_orthogonal",
]

Axes = int | Sequence[int]


def constant(value: float) -> Initializer:
    return Constant(value)


zeros = Constant(0.0)
ones = Constant(1.0)


def normal(stddev: float = 1e-2) -> Initializer:
    return Normal(std=stddev)


def uniform(scale: float = 1e-2) -> Initializer:
    return Uniform(range=(0.0, scale))


def truncated_normal(stddev: float = 1e-2, lower: float = -2.0, upper: float = 2.0) -> Initializer:
    return TruncatedNormal(std=stddev, bounds=(lower, upper))


def variance_scaling(scale: float, mode: str, distribution: str, in_axis: Axes = -2,
                     out_axis: Axes = -1) -> Initializer:
    return _VarianceScaling(scale, mode, distribution, layout="jax", in_axis=in_axis, out_axis=out_axis)


def glorot_normal(in_axis: Axes = -2, out_axis: Axes = -1) -> Initializer:
    return variance_scaling(1.0, "fan_avg", "truncated_normal", in_axis, out_axis)


def glorot_uniform(in_axis: Axes = -2, out_axis: Axes = -1) -> Initializer:
    return variance_scaling(1.0, "fan_avg", "uniform", in_axis, out_axis)


def he_normal(in_axis: Axes = -2, out_axis: Axes = -1) -> Initializer:
    return variance_scaling(2.0, "fan_in", "truncated_normal", in_axis, out_axis)


def he_uniform(in_axis: Axes = -2, out_axis: Axes = -1) -> Initializer:
    return variance_scaling(2.0, "fan_in", "uniform", in_axis, out_axis)


def lecun_normal(in_axis: Axes = -2, out_axis: Axes = -1) -> Initializer:
    return variance_scaling(1.0, "fan_in", "truncated_normal", in_axis, out_axis)


def lecun_uniform(in_axis: Axes = -2, out_axis: Axes = -1) -> Initializer:
    return variance_scaling(1.0, "fan_in", "uniform", in_axis, out_axis)


xavier_normal, xavier_uniform = glorot_normal, glorot_uniform
kaiming_normal, kaiming_uniform = he_normal, he_uniform


def orthogonal(scale: float = 1.0, column_axis: int = -1) -> Initializer:
    if column_axis not in (-1, 0):
        raise ValueError(f"column_axis must be -1 (JAX's default) or 0; got {column_axis!r}")
    return Orthogonal(gain=scale, layout="jax" if column_axis == -1 else "torch")


def delta_orthogonal(scale: float = 1.0, column_axis: int = -1) -> Initializer:
    if column_axis != -1:
        raise ValueError(f"column_axis must be -1 (JAX's default); got {column_axis!r}")
    return DeltaOrthogonal(gain=scale, center="jax", layout="jax")
