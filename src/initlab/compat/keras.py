"""Keras 3's initializers on initlab's catalogue: same names, arguments and defaults.

Keras lays kernels out as ``(*k, in, out)`` (layout ``"keras"``); its Glorot, He and LeCun normals are
TRUNCATED at 2 std with the variance corrected (``std = sqrt(scale / n) / 0.8796...``); its plain
``TruncatedNormal`` cuts at mean +- 2 std without correction. Each factory returns an initlab
``Initializer`` (call ``.init_``, ``.sample`` or ``.array``; pass ``generator=`` where Keras takes ``seed``).

>>> GlorotNormal()
Glorot(distribution='truncated_normal', layout='keras')
"""

from __future__ import annotations

from initlab.initializers import Constant, Glorot, He, Initializer, Normal, Uniform
from initlab.initializers import Identity as _Identity
from initlab.initializers import Orthogonal as _Orthogonal
from initlab.initializers import TruncatedNormal as _TruncatedNormal
from initlab.initializers import VarianceScaling as _VarianceScaling

__all__ = [
    "Constant", "Zeros", "Ones", "RandomNormal", "RandomUniform", "TruncatedNormal", "VarianceScaling",
    "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "LeCunNormal", "LeCunUniform", "Orthogonal",
    "Identity",
]

LAYOUT = "keras"


def Zeros() -> Initializer:  # noqa: N802 - Keras' names
    return Constant(0.0)


def Ones() -> Initializer:  # noqa: N802
    return Constant(1.0)


def RandomNormal(mean: float = 0.0, stddev: float = 0.05) -> Initializer:  # noqa: N802
    return Normal(std=stddev, mean=mean)


def RandomUniform(minval: float = -0.05, maxval: float = 0.05) -> Initializer:  # noqa: N802
    return Uniform(range=(minval, maxval))


def TruncatedNormal(mean: float = 0.0, stddev: float = 0.05) -> Initializer:  # noqa: N802
    return _TruncatedNormal(std=stddev, mean=mean, bounds=(-2.0, 2.0))


def VarianceScaling(scale: float = 1.0, mode: str = "fan_in",  # noqa: N802
                    distribution: str = "truncated_normal") -> Initializer:
    return _VarianceScaling(scale, mode, distribution, layout=LAYOUT)


def GlorotNormal() -> Initializer:  # noqa: N802
    return Glorot("truncated_normal", layout=LAYOUT)


def GlorotUniform() -> Initializer:  # noqa: N802
    return Glorot("uniform", layout=LAYOUT)


def HeNormal() -> Initializer:  # noqa: N802
    return He("truncated_normal", layout=LAYOUT)


def HeUniform() -> Initializer:  # noqa: N802
    return He("uniform", layout=LAYOUT)


def LeCunNormal() -> Initializer:  # noqa: N802
    return _VarianceScaling(1.0, "fan_in", "truncated_normal", layout=LAYOUT)


def LeCunUniform() -> Initializer:  # noqa: N802
    return _VarianceScaling(1.0, "fan_in", "uniform", layout=LAYOUT)


def Orthogonal(gain: float = 1.0) -> Initializer:  # noqa: N802
    """Orthonormal columns (the last axis holds the units), times ``gain``."""
    return _Orthogonal(gain=gain, layout=LAYOUT)


def Identity(gain: float = 1.0) -> Initializer:  # noqa: N802
    """``gain * eye`` for 2-D kernels."""
    return _Identity(gain=gain)
