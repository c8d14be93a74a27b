"""Structured initializers: orthogonal, delta-orthogonal, identity (eye / Dirac) and sparse."""

from __future__ import annotations

import math
from typing import Any

import torch

from initlab import sampling
from initlab.gains import resolve_gain
from initlab.initializers.base import Initializer
from initlab.shapes import check_positive_int, fans
from initlab.validate import check_choice, check_number

_UNIT_AXIS = {"torch": "first", "torch_transposed": "first", "lasagne_dense": "first", "keras": "last",
              "jax": "last", "c01b": "last"}


# an entry of a unit vector is at most 1; the margin covers the rounding of QR in float32
UNIT_ENTRY = 1.0 + 1e-6
UNIT_RULE = "an entry of an orthonormal row or column is at most 1 (1 + 1e-6 with rounding), times gain"


def orthogonal_matrix(rows: int, cols: int, *, dtype: torch.dtype, device: Any,
                      generator: torch.Generator | None) -> torch.Tensor:
    """A Haar-random (semi-)orthogonal ``(rows, cols)`` matrix: QR of a Gaussian matrix with the signs of
    R's diagonal moved into Q (Mezzadri 2007), so rows (if rows <= cols) or columns are orthonormal."""
    a = sampling.normal((rows, cols), dtype=dtype, device=device, generator=generator)
    if rows < cols:
        a = a.t()
    if sampling.is_philox(generator):  # the same matrix whatever the thread count or device (initlab.rng)
        from initlab.rng import haar_q

        q = haar_q(a).to(device=a.device, dtype=a.dtype)
    else:
        q, r = torch.linalg.qr(a)
        q = q * torch.diagonal(r).sign()
    return q.t() if rows < cols else q


class Orthogonal(Initializer):
    """(Semi-)orthogonal weights (Saxe et al. 2013), times ``gain``.

    The weight is viewed as a matrix ``(units, rest)``: units on the first axis for ``layout="torch"``
    (``(out, in, *k)``), on the last for ``"keras"``/``"jax"``; the rows (or columns, if fewer) are
    orthonormal. Computed in float32/64 and cast, so fp16/bf16 work (torch's ``orthogonal_`` has no
    half-precision QR). ``gain`` may be a nonlinearity name (``"relu"`` -> sqrt(2)).

    >>> w = Orthogonal().sample((3, 5), generator=torch.Generator().manual_seed(0))
    >>> torch.allclose(w @ w.T, torch.eye(3), atol=1e-6)
    True
    """

    name = "orthogonal"
    formula = 'QR of a Gaussian, sign-fixed; times gain'
    reference = 'Saxe et al. 2013; torch orthogonal_'

    def __init__(self, gain: Any = 1.0, *, layout: str = "torch") -> None:
        self.gain = resolve_gain(gain)
        self.layout = check_choice(layout, "layout", tuple(_UNIT_AXIS))
        self._record(gain=gain, layout=layout)
        self._freeze()

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if len(shape) < 2:
            raise ValueError(f"Orthogonal needs a weight of at least 2 dims; got shape {shape}")

    def _matrix_shape(self, shape: tuple[int, ...]) -> tuple[int, int]:
        units = shape[0] if _UNIT_AXIS[self.layout] == "first" else shape[-1]
        return units, math.prod(shape) // units

    def expected_std(self, shape: Any) -> float:
        rows, cols = self._matrix_shape(tuple(shape))
        return self.gain / math.sqrt(max(rows, cols))

    def _reach(self, shape):
        return sampling.Reach(self.gain * UNIT_ENTRY, ("gain",), rule=UNIT_RULE)

    def _draw(self, shape, dtype, device, generator):
        rows, cols = self._matrix_shape(shape)
        q = orthogonal_matrix(rows, cols, dtype=dtype, device=device, generator=generator) * self.gain
        if _UNIT_AXIS[self.layout] == "first":
            return q.reshape(shape)
        return q.t().reshape(shape)  # (rest, units) laid out as (*k, in, out)


class DeltaOrthogonal(Initializer):
    """Delta-orthogonal convolution kernels (Xiao et al. 2018): zero everywhere except the spatial centre,
    which holds an orthogonal ``(out, in)`` matrix times ``gain``; needs ``out >= in``.

    The centre is ``k // 2`` (torch ``dirac_``; ``center="torch"``) or ``(k - 1) // 2`` (JAX;
    ``center="jax"``); they differ for even kernels. ``layout`` is ``"torch"`` ``(out, in, *k)`` or
    ``"keras"``/``"jax"`` ``(*k, in, out)``.
    """

    name = "delta_orthogonal"
    formula = 'zero kernel, orthogonal (out, in) at the centre'
    reference = 'Xiao et al. 2018'

    def __init__(self, gain: Any = 1.0, *, center: str = "torch", layout: str = "torch") -> None:
        self.gain = resolve_gain(gain)
        self.center = check_choice(center, "center", ("torch", "jax"))
        self.layout = check_choice(layout, "layout", ("torch", "keras", "jax"))
        self._record(gain=gain, center=center, layout=layout)
        self._freeze()

    def _split(self, shape: tuple[int, ...]) -> tuple[int, int, tuple[int, ...]]:
        if self.layout == "torch":
            return shape[0], shape[1], shape[2:]
        return shape[-1], shape[-2], shape[:-2]

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if len(shape) not in (3, 4, 5):
            raise ValueError(f"DeltaOrthogonal needs a 3-, 4- or 5-dim conv kernel; got shape {shape}")
        out, inp, _ = self._split(shape)
        if out < inp:
            raise ValueError(f"DeltaOrthogonal needs out_channels >= in_channels; got shape {shape} "
                             f"({out} < {inp})")

    def expected_std(self, shape: Any) -> float:
        out, inp, k = self._split(tuple(shape))
        n = math.prod(shape)
        mean_sq = self.gain**2 * inp / n
        return math.sqrt(mean_sq)

    _reach = Orthogonal._reach  # the same bound: entries of an orthogonal matrix, times gain

    def _draw(self, shape, dtype, device, generator):
        out, inp, k = self._split(shape)
        q = orthogonal_matrix(out, inp, dtype=dtype, device=device, generator=generator) * self.gain
        centre = tuple((s // 2) if self.center == "torch" else (s - 1) // 2 for s in k)
        w = torch.zeros((out, inp, *k), dtype=dtype, device=q.device)
        w[(slice(None), slice(None), *centre)] = q
        if self.layout == "torch":
            return w
        return w.permute(*range(2, 2 + len(k)), 1, 0).contiguous()


class Identity(Initializer):
    """Identity-preserving weights: the eye for 2-D ``(out, in)`` (torch ``eye_``), the Dirac delta for
    3-5-D conv kernels ``(out, in/groups, *k)`` with one identity per group (torch ``dirac_``), times ``gain``.

    >>> Identity().sample((2, 3))
    tensor([[1., 0., 0.],
            [0., 1., 0.]])
    """

    name = "identity"
    formula = 'eye (2-D) / Dirac delta per group (3-5-D)'
    reference = 'torch eye_, dirac_'

    def __init__(self, gain: float = 1.0, groups: int = 1) -> None:
        self.gain = (check_number(gain, "gain")
                     if isinstance(gain, (int, float)) and not isinstance(gain, bool) else resolve_gain(gain))
        self.groups = check_positive_int(groups, "groups")
        self._record(gain=gain, groups=groups)
        self._freeze()

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if len(shape) not in (2, 3, 4, 5):
            raise ValueError(f"Identity needs a 2-dim (eye) or 3-, 4-, 5-dim (Dirac) weight; got shape {shape}")
        if len(shape) == 2 and self.groups != 1:
            raise ValueError("groups applies to conv kernels (3-5 dims) only")
        if shape[0] % self.groups:
            raise ValueError(f"groups={self.groups} does not divide the output dimension of shape {shape}")

    def expected_std(self, shape: Any) -> float:
        shape = tuple(shape)
        ones = self.groups * min(shape[0] // self.groups, shape[1])
        mean = self.gain * ones / math.prod(shape)
        return math.sqrt(max(self.gain**2 * ones / math.prod(shape) - mean * mean, 0.0))

    def _reach(self, shape):
        return sampling.Reach(abs(self.gain), ("gain",))

    def _draw(self, shape, dtype, device, generator):
        w = torch.zeros(shape, dtype=dtype, device=device)
        if len(shape) == 2:
            idx = torch.arange(min(shape), device=w.device)
            w[idx, idx] = self.gain
            return w
        per_group = shape[0] // self.groups
        d = torch.arange(min(per_group, shape[1]), device=w.device)
        centre = tuple(s // 2 for s in shape[2:])
        for g in range(self.groups):
            w[(g * per_group + d, d, *centre)] = self.gain
        return w


SPARSE_MEANINGS = ("nonzero_per_unit", "zero_per_column")


class Sparse(Initializer):
    """Sparse Gaussian weights, with the two opposite meanings of ``sparsity`` named explicitly.

    * ``meaning="nonzero_per_unit"`` (Martens 2010, Lasagne ``Sparse``): each unit keeps a random
      ``floor(sparsity * fan_in)`` of its incoming weights (drawn ``N(0, std^2)``), the rest are zero. Martens
      used 15 non-zero incoming weights per unit.
    * ``meaning="zero_per_column"`` (torch ``sparse_``): in each column of the 2-D ``(out, in)`` weight a random
      ``ceil(sparsity * out)`` entries are zero.

    The masks come from the same generator as the values (torch's ``sparse_`` ignores its generator for the
    mask). ``layout`` says where the units are: ``"torch"`` ``(out, in)``; ``"lasagne_dense"``/``"keras"``
    ``(in, out)``.
    """

    name = "sparse"
    formula = 'N(0, std^2) on a random subset, zero elsewhere'
    reference = 'Martens 2010; Lasagne Sparse; torch sparse_'

    def __init__(self, sparsity: float = 0.1, std: float = 0.01, *, meaning: str = "nonzero_per_unit",
                 layout: str = "torch") -> None:
        self.sparsity = check_number(sparsity, "sparsity")
        if not 0 <= self.sparsity <= 1:
            raise ValueError(f"sparsity must be in [0, 1]; got {sparsity!r}")
        self.std = check_number(std, "std", minimum=0.0)
        self.meaning = check_choice(meaning, "meaning", SPARSE_MEANINGS)
        self.layout = check_choice(layout, "layout", ("torch", "lasagne_dense", "keras", "jax"))
        self._record(sparsity=sparsity, std=std, meaning=meaning, layout=layout)
        self._freeze()

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 2:
            raise ValueError(f"Sparse needs a 2-dim weight; got shape {shape}")

    def _out_in(self, shape: tuple[int, ...]) -> tuple[int, int]:
        return (shape[0], shape[1]) if self.layout == "torch" else (shape[1], shape[0])

    def _kept_fraction(self, shape: tuple[int, ...]) -> float:
        out, inp = self._out_in(shape)
        if self.meaning == "nonzero_per_unit":
            return math.floor(self.sparsity * inp) / inp
        return 1.0 - math.ceil(self.sparsity * out) / out

    def expected_std(self, shape: Any) -> float:
        return self.std * math.sqrt(self._kept_fraction(tuple(shape)))

    def fans_of(self, shape: Any):
        return fans(shape, "torch" if self.layout == "torch" else "lasagne_dense")

    def _reach(self, shape):
        return sampling.normal_reach(0.0, self.std, ("std",))

    def _draw(self, shape, dtype, device, generator):
        out, inp = self._out_in(shape)
        values = sampling.normal((out, inp), 0.0, self.std, dtype=dtype, device=device, generator=generator)
        if self.meaning == "nonzero_per_unit":
            keep = sampling.random_subsets(inp, math.floor(self.sparsity * inp), out, device=device,
                                           generator=generator)
        else:  # zeros chosen per column (input) among the `out` rows
            zero = sampling.random_subsets(out, math.ceil(self.sparsity * out), inp, device=device,
                                           generator=generator)
            keep = ~zero.t()
        values = values * keep.to(values.device)
        return values if self.layout == "torch" else values.t().contiguous()
