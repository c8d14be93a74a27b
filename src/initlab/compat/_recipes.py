"""What the JAX and Keras adapters draw with their framework's own RNG: an initlab initializer and a shape
become a plain recipe (a distribution and its numbers), which each adapter hands to ``jax.random`` or
``keras.random``. The numbers come from the initializer itself (``VarianceScaling.std_for`` with its fans,
gains and groups), so a formula is stated once, in initlab; only the draw moves to the other framework.

>>> from initlab.initializers import HeNormal, Sparse
>>> recipe(HeNormal(layout="jax"), (200, 50)).std == (2 / 200) ** 0.5
True
>>> recipe(Sparse(), (20, 10)) is None  # no native recipe: the adapter falls back to initlab's own sampler
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from initlab.gains import resolve_activation, variance_gain
from initlab.initializers import (
    Constant,
    DeltaOrthogonal,
    Initializer,
    Normal,
    Orthogonal,
    TruncatedNormal,
    Uniform,
    VarianceScaling,
)
from initlab.initializers.basic import TRUNC2_STD

KINDS = ("constant", "normal", "uniform", "truncated_normal", "orthogonal", "delta_orthogonal")


@dataclass(frozen=True)
class Recipe:
    """One draw. ``constant``: ``mean``; ``normal``: ``mean + std * N(0, 1)``; ``uniform``: ``U(low, high)``;
    ``truncated_normal``: ``mean + std * N(0, 1)`` cut to ``[low, high]`` (std units, no variance correction);
    ``orthogonal``: orthonormal along ``column_axis``, times ``gain``; ``delta_orthogonal``: JAX's, times ``gain``."""

    kind: str
    mean: float = 0.0
    std: float = 0.0
    low: float = 0.0
    high: float = 0.0
    gain: float = 1.0
    column_axis: int = -1


def _draws_like(ini: Initializer, cls: type[Initializer]) -> bool:
    """``ini`` is a ``cls`` that draws exactly as ``cls`` does (a subclass that overrides the draw is not)."""
    return isinstance(ini, cls) and type(ini)._draw is cls._draw and type(ini)._finish is cls._finish


def recipe(ini: Initializer, shape: tuple[int, ...]) -> Recipe | None:
    """The recipe of ``ini`` for a weight of ``shape`` (checked by the caller), or None when ``ini`` has none."""
    if _draws_like(ini, VarianceScaling):
        std = ini.std_for(shape)
        if ini.distribution == "normal":
            return Recipe("normal", std=std)
        if ini.distribution == "uniform":
            return Recipe("uniform", low=-math.sqrt(3.0) * std, high=math.sqrt(3.0) * std)
        return Recipe("truncated_normal", std=std / TRUNC2_STD, low=-2.0, high=2.0)
    if _draws_like(ini, Constant):
        return Recipe("constant", mean=ini.value)
    if _draws_like(ini, Normal):
        return Recipe("normal", mean=ini.mean, std=ini.std)
    if _draws_like(ini, Uniform):
        return Recipe("uniform", low=ini.bounds[0], high=ini.bounds[1])
    if _draws_like(ini, TruncatedNormal):
        if ini.std == 0:
            return Recipe("constant", mean=ini.mean)
        low, high = ((limit - ini.mean) / ini.std for limit in ini.limits)
        return Recipe("truncated_normal", mean=ini.mean, std=ini.std, low=low, high=high)
    if _draws_like(ini, Orthogonal):  # units on the first axis (torch, lasagne) or the last (keras, jax, c01b)
        first = ini.layout in ("torch", "torch_transposed", "lasagne_dense")
        return Recipe("orthogonal", gain=ini.gain, column_axis=0 if first else -1)
    if _draws_like(ini, DeltaOrthogonal) and ini.center == "jax" and ini.layout in ("keras", "jax"):
        return Recipe("delta_orthogonal", gain=ini.gain)
    return None


def with_layout(ini: Initializer, layout: str) -> Initializer:
    """``ini`` re-read in ``layout`` when it takes a layout and has torch's, the default (and no explicit axes):
    ``initlab.get("he_normal")`` means torch's ``(out, in)``; handed to JAX or Keras it must read their
    ``(*k, in, out)``. Other layouts (``"c01b"``, ...) and ``in_axis``/``out_axis`` are kept."""
    config = ini.to_config()
    if "layout" in ini._defaults() and config.get("layout", "torch") == "torch" and config.get("in_axis") is None:
        return ini.replace(layout=layout)
    return ini


def activation_scale(activation: str, param: float | None = None) -> float:
    """``gain^2`` for ``activation`` with initlab's quadrature gain ``1 / sqrt(E[f(z)^2])``, ``z ~ N(0, 1)``
    (:func:`initlab.gains.variance_gain`): the ``scale`` of a variance-scaling initializer that keeps the
    second moment of the pre-activations through ``activation``. A name, so that configs stay plain data.

    >>> round(activation_scale("relu"), 12), round(activation_scale("gelu"), 4), activation_scale("selu")
    (2.0, 2.3517, 1.0)
    """
    if not isinstance(activation, str):
        raise TypeError(f"activation must be an activation name such as 'relu', 'gelu' or 'silu' (see "
                        f"initlab.gains.ACTIVATION_NAMES); got {activation!r} ({type(activation).__name__})")
    act = resolve_activation(activation, param, argname="activation")
    return variance_gain(act) ** 2


_TORCH_DTYPES = {"float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def host_sample(ini: Initializer, shape: tuple[int, ...], dtype: str, seed: int) -> np.ndarray:
    """The fallback of both adapters: ``ini``'s own sampler on the host, from a torch generator seeded with
    ``seed``, in torch's ``dtype`` of that name (float32 for the others), returned as float32 or float64 NumPy
    (NumPy has no bfloat16; the adapter casts to ``dtype``)."""
    sample_dtype = _TORCH_DTYPES.get(dtype, torch.float32)
    values = ini.sample(shape, dtype=sample_dtype, generator=torch.Generator().manual_seed(seed))
    return values.to(torch.float64 if sample_dtype == torch.float64 else torch.float32).numpy()
