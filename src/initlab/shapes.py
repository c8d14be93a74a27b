"""Fans: how many inputs feed a unit and how many outputs a unit feeds, under each framework's layout.

=================== ======================== ======================== ==========================
layout              weight shape             fan_in                   fan_out
=================== ======================== ======================== ==========================
``torch``           ``(out, in/g, *k)``      ``in/g * rf``            ``out/g * rf`` (torch: ``out * rf``)
``torch_transposed``  ``(in, out/g, *k)``    ``out/g * rf``           ``in/g * rf`` (torch: ``in * rf``)
``keras`` / ``jax`` ``(*k, in, out)``        ``in * rf``              ``out/g * rf``
``lasagne_dense``   ``(in, out)``            ``shape[0]``             ``shape[1]``
``c01b``            ``(in, k0, k1, out)``    ``in*k0*k1``             ``out*k0*k1``
=================== ======================== ======================== ==========================

``rf`` (receptive field) is the product of the kernel's spatial dims, 1 for dense weights; ``g`` is the
number of groups. torch over-counts ``fan_out`` of grouped and depthwise convolutions by ``groups``:
``(4, 1, 3, 3)`` with ``groups=4`` has fans ``(9, 9)``, torch says ``(9, 36)``; ``torch_compatible=True``
reproduces torch's numbers. ``chunks`` divides ``fan_out`` for a packed weight such as
MultiheadAttention's ``(3E, E)`` in-projection, so it is treated as three ``(E, E)`` weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

LAYOUTS = ("torch", "torch_transposed", "keras", "jax", "lasagne_dense", "c01b")
MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")


@dataclass(frozen=True)
class Fans:
    """Fans of one weight. ``fan_avg`` and ``fan_geo_avg`` are the arithmetic and geometric means."""

    fan_in: float
    fan_out: float
    receptive_field: int

    @property
    def fan_avg(self) -> float:
        return (self.fan_in + self.fan_out) / 2.0

    @property
    def fan_geo_avg(self) -> float:
        return math.sqrt(self.fan_in * self.fan_out)

    def for_mode(self, mode: str) -> float:
        """The ``n`` of ``var = scale / n`` for a variance-scaling ``mode``."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        return float(getattr(self, mode))

    def __iter__(self):  # so that ``fan_in, fan_out = fans(shape)`` reads naturally
        return iter((self.fan_in, self.fan_out))


def shape_of(obj: Any) -> tuple[int, ...]:
    """The shape of a tensor, an array, a ``torch.Size`` or a sequence of ints."""
    if hasattr(obj, "shape"):
        return tuple(int(s) for s in obj.shape)
    if isinstance(obj, (bool, str, bytes)):  # a string is a sequence, but of characters
        raise TypeError(f"shape must be a tensor, an array or a sequence of ints; got {obj!r}")
    if isinstance(obj, int):
        obj = (obj,)
    try:
        dims = tuple(obj)
    except TypeError:
        raise TypeError(f"shape must be a tensor, an array or a sequence of ints; got {type(obj).__name__}") from None
    if not all((isinstance(d, int) or hasattr(d, "__index__")) and not isinstance(d, (bool, np.bool_)) for d in dims):
        raise TypeError(f"shape must contain only ints; got {dims!r}")
    dims = tuple(int(d) for d in dims)
    if any(d < 0 for d in dims):
        raise ValueError(f"shape must not contain negative sizes; got {dims!r}")
    return dims


def _axes(value: int | Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    axes = (value,) if isinstance(value, int) else tuple(value)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{name}={value!r} is out of range for a weight of {ndim} dims")
        out.append(a % ndim)
    return tuple(out)


def check_positive_int(value: Any, name: str) -> int:
    """A positive int (``initlab.validate``'s vocabulary: a wrong type is a TypeError)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int; got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value


def fans(
    shape: Any,
    layout: str = "torch",
    *,
    groups: int = 1,
    chunks: int = 1,
    in_axis: int | Sequence[int] | None = None,
    out_axis: int | Sequence[int] | None = None,
    torch_compatible: bool = False,
) -> Fans:
    """Fan-in and fan-out of a weight of ``shape`` under ``layout`` (see the module table).

    ``in_axis``/``out_axis`` override the layout (JAX style: every other axis is receptive field).

    >>> fans((30, 20))
    Fans(fan_in=20.0, fan_out=30.0, receptive_field=1)
    >>> fans((4, 1, 3, 3), groups=4).fan_out, fans((4, 1, 3, 3), groups=4, torch_compatible=True).fan_out
    (9.0, 36.0)
    """
    dims = shape_of(shape)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    groups = check_positive_int(groups, "groups")
    chunks = check_positive_int(chunks, "chunks")
    ndim = len(dims)

    if in_axis is not None or out_axis is not None:
        if in_axis is None or out_axis is None:
            raise ValueError("in_axis and out_axis must be given together")
        if ndim < 2:
            raise ValueError(f"fans need a weight of at least 2 dims; got shape {dims}")
        ia, oa = _axes(in_axis, ndim, "in_axis"), _axes(out_axis, ndim, "out_axis")
        rf = math.prod(d for i, d in enumerate(dims) if i not in ia and i not in oa)
        n_in, n_out = math.prod(dims[i] for i in ia), math.prod(dims[i] for i in oa)
        out_groups = groups
    elif layout in ("keras", "jax"):
        if ndim == 0:
            return Fans(1.0, 1.0, 1)
        if ndim == 1:  # Keras' convention for vectors
            return Fans(float(dims[0]), float(dims[0]), 1)
        rf = math.prod(dims[:-2])
        n_in, n_out, out_groups = dims[-2], dims[-1], groups
    else:
        if ndim < 2:
            raise ValueError(
                f"fans need a weight of at least 2 dims under layout {layout!r}; got shape {dims} "
                "(biases and norm scales have no fans: use a constant or a plain distribution)"
            )
        if layout == "lasagne_dense" and ndim == 2:
            rf, n_in, n_out, out_groups = 1, dims[0], dims[1], groups
        elif layout == "c01b":
            if ndim != 4:
                raise ValueError(f"layout 'c01b' needs a 4-dim weight (in, k0, k1, out); got shape {dims}")
            rf, n_in, n_out, out_groups = dims[1] * dims[2], dims[0], dims[3], groups
        else:  # torch, torch_transposed, lasagne conv weights: (a, b, *k), fan_in from dim 1
            rf = math.prod(dims[2:])
            n_in, n_out = dims[1], dims[0]
            out_groups = 1 if torch_compatible else groups
    if n_out % out_groups:
        raise ValueError(f"groups={groups} does not divide the output dimension {n_out} of shape {dims}")
    if n_out % chunks:
        raise ValueError(f"chunks={chunks} does not divide the output dimension {n_out} of shape {dims}")
    return Fans(float(n_in * rf), float(n_out // out_groups // chunks * rf), int(rf))
