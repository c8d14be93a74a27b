"""Lasagne's ``lasagne.init`` on initlab's catalogue: same class names, arguments and defaults.

Lasagne's dense weights are ``(in, out)`` (layout ``"lasagne_dense"``), its conv weights ``(out, in, *k)``
(fans as torch), or ``(in, k0, k1, out)`` with ``c01b=True``. Its gains default to 1 (so ``HeNormal()`` is
LeCun's init) and may be ``'relu'`` (sqrt(2)); ``Normal`` defaults to std 0.01, ``Uniform`` to ``U(+-0.01)``;
``Sparse(sparsity)`` keeps that FRACTION OF NON-ZERO incoming weights per unit (Martens 2010). Each
factory returns an initlab ``Initializer``.

>>> HeNormal(gain="relu")  # sqrt(2), He's own default: not repeated in the repr
He(layout='lasagne_dense')
"""

from __future__ import annotations

from typing import Any

from initlab.initializers import Constant as _Constant
from initlab.initializers import Glorot as _Glorot
from initlab.initializers import He as _He
from initlab.initializers import Initializer
from initlab.initializers import Normal as _Normal
from initlab.initializers import Orthogonal as _Orthogonal
from initlab.initializers import Sparse as _Sparse
from initlab.initializers import Uniform as _Uniform

__all__ = ["Constant", "Normal", "Uniform", "Glorot", "GlorotNormal", "GlorotUniform", "He", "HeNormal",
           "HeUniform", "Orthogonal", "Sparse"]

_DISTRIBUTIONS = {"Normal": "normal", "Uniform": "uniform"}


def _layout(c01b: bool) -> str:
    return "c01b" if c01b else "lasagne_dense"


def _distribution(initializer: Any) -> str:
    name = getattr(initializer, "__name__", initializer)
    if name not in _DISTRIBUTIONS:
        raise ValueError(f"initializer must be Normal or Uniform (Lasagne's classes); got {initializer!r}")
    return _DISTRIBUTIONS[name]


def Constant(val: float = 0.0) -> Initializer:  # noqa: N802 - Lasagne's names
    return _Constant(val)


def Normal(std: float = 0.01, mean: float = 0.0) -> Initializer:  # noqa: N802
    return _Normal(std=std, mean=mean)


def Uniform(range: float | tuple[float, float] = 0.01, std: float | None = None,  # noqa: N802
            mean: float = 0.0) -> Initializer:
    return _Uniform(range=range, std=std, mean=mean)


def Glorot(initializer: Any, gain: Any = 1.0, c01b: bool = False) -> Initializer:  # noqa: N802
    return _Glorot(_distribution(initializer), gain, layout=_layout(c01b))


def GlorotNormal(gain: Any = 1.0, c01b: bool = False) -> Initializer:  # noqa: N802
    return _Glorot("normal", gain, layout=_layout(c01b))


def GlorotUniform(gain: Any = 1.0, c01b: bool = False) -> Initializer:  # noqa: N802
    return _Glorot("uniform", gain, layout=_layout(c01b))


def He(initializer: Any, gain: Any = 1.0, c01b: bool = False) -> Initializer:  # noqa: N802
    return _He(_distribution(initializer), gain, layout=_layout(c01b))


def HeNormal(gain: Any = 1.0, c01b: bool = False) -> Initializer:  # noqa: N802
    return _He("normal", gain, layout=_layout(c01b))


def HeUniform(gain: Any = 1.0, c01b: bool = False) -> Initializer:  # noqa: N802
    return _He("uniform", gain, layout=_layout(c01b))


def Orthogonal(gain: Any = 1.0) -> Initializer:  # noqa: N802
    return _Orthogonal(gain=gain)


def Sparse(sparsity: float = 0.1, std: float = 0.01) -> Initializer:  # noqa: N802
    return _Sparse(sparsity, std, meaning="nonzero_per_unit", layout="lasagne_dense")
