"""``torch.nn.init``, function for function, on initlab's catalogue.

Same names, signatures and defaults as torch 2.13; for float32 tensors and the same generator state the
values are bit-identical to torch's. Differences, all deliberate:

* half-precision tensors (fp16, bf16) are sampled in float32 and cast (torch samples in the target
  precision; its ``orthogonal_`` cannot run there at all);
* ``sparse_``'s mask is drawn from ``generator`` too (torch draws it from the global RNG, an open torch bug),
  so its zero pattern differs from torch's while the non-zero values are the same;
* ``calculate_gain`` also knows elu, gelu, silu/swish, mish, softplus, softsign, hardtanh, relu6 and prelu.

Fans follow torch exactly, including its over-count of ``fan_out`` for grouped convolutions
(``torch_compatible=True``); use ``initlab.fans(..., groups=g)`` for the corrected value.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from initlab.gains import gain as _gain
from initlab.initializers import (
    Constant,
    GlorotNormal,
    GlorotUniform,
    HeNormal,
    HeUniform,
    Identity,
    Normal,
    Orthogonal,
    Sparse,
    TruncatedNormal,
    Uniform,
)

__all__ = [
    "calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_",
]


def calculate_gain(nonlinearity: str, param: Any = None) -> float:
    """torch's recommended gain: linear/conv/sigmoid 1, tanh 5/3, relu sqrt(2), leaky_relu sqrt(2/(1+a^2)),
    selu 3/4 (plus the extra names of ``initlab.gain``). Errors as torch's own: a leaky_relu slope that is not
    a number is torch's ValueError (``initlab.gain`` says TypeError, naming ``param``)."""
    if nonlinearity == "leaky_relu" and param is not None and (
            isinstance(param, bool) or not isinstance(param, (int, float))):
        raise ValueError(f"negative_slope {param} not a valid number")
    return _gain(nonlinearity, param, rule="torch")


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Fill with ``U(a, b)``."""
    return Uniform(range=(a, b)).init_(tensor, generator=generator)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Fill with ``N(mean, std^2)``."""
    return Normal(std=std, mean=mean).init_(tensor, generator=generator)


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator: torch.Generator | None = None) -> Tensor:
    """Fill with ``N(mean, std^2)`` cut at the ABSOLUTE values ``[a, b]`` (no variance correction)."""
    return TruncatedNormal(std=std, mean=mean, bounds=(a, b), absolute=True).init_(tensor, generator=generator)


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with ``val``."""
    return Constant(val).init_(tensor)


def ones_(tensor: Tensor) -> Tensor:
    """Fill with 1."""
    return Constant(1.0).init_(tensor)


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with 0."""
    return Constant(0.0).init_(tensor)


def eye_(tensor: Tensor) -> Tensor:
    """The identity matrix (2-D tensors only)."""
    if tensor.ndim != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    return Identity().init_(tensor)


def dirac_(tensor: Tensor, groups: int = 1) -> Tensor:
    """The Dirac delta (3-, 4-, 5-D tensors), one identity per group."""
    if tensor.ndim not in (3, 4, 5):
        raise ValueError("Only tensors with 3, 4, or 5 dimensions are supported")
    return Identity(groups=groups).init_(tensor)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """``U(+-gain * sqrt(6 / (fan_in + fan_out)))`` (Glorot & Bengio 2010)."""
    return GlorotUniform(gain=gain, torch_compatible=True).init_(tensor, generator=generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """``N(0, gain^2 * 2 / (fan_in + fan_out))`` (Glorot & Bengio 2010)."""
    return GlorotNormal(gain=gain, torch_compatible=True).init_(tensor, generator=generator)


def _kaiming_mode(mode: str) -> str:
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of ['fan_in', 'fan_out']")
    return mode


def kaiming_uniform_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator: torch.Generator | None = None) -> Tensor:
    """``U(+-gain * sqrt(3 / fan))``, gain from ``calculate_gain(nonlinearity, a)`` (He et al. 2015)."""
    g = calculate_gain(nonlinearity, a)
    return HeUniform(gain=g, mode=_kaiming_mode(mode), torch_compatible=True).init_(tensor, generator=generator)


def kaiming_normal_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator: torch.Generator | None = None) -> Tensor:
    """``N(0, gain^2 / fan)``, gain from ``calculate_gain(nonlinearity, a)`` (He et al. 2015)."""
    g = calculate_gain(nonlinearity, a)
    return HeNormal(gain=g, mode=_kaiming_mode(mode), torch_compatible=True).init_(tensor, generator=generator)


def orthogonal_(tensor: Tensor, gain: float = 1, generator: torch.Generator | None = None) -> Tensor:
    """A (semi-)orthogonal matrix times ``gain``, trailing dims flattened (Saxe et al. 2013)."""
    return Orthogonal(gain=gain).init_(tensor, generator=generator)


def sparse_(tensor: Tensor, sparsity: float, std: float = 0.01, generator: torch.Generator | None = None) -> Tensor:
    """``N(0, std^2)`` with ``ceil(sparsity * rows)`` zeros per column (Martens 2010, torch's meaning).

    The mask comes from ``generator`` as well (see the module docstring)."""
    return Sparse(sparsity, std, meaning="zero_per_column").init_(tensor, generator=generator)
