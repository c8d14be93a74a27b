"""Plain distributions: constants, normal, uniform, truncated normal."""

from __future__ import annotations

import math
from typing import Any

import torch

from initlab import sampling
from initlab.initializers.base import Initializer
from initlab.validate import check_flag, check_number

# std of N(0, 1) truncated to [-2, 2]: the variance correction of the variance-scaling family
TRUNC2_STD = 0.87962566103423978


def truncated_std_factor(low: float, high: float) -> float:
    """Std of ``N(0, 1)`` truncated to ``[low, high]`` (in std units)."""
    pdf = lambda x: math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)  # noqa: E731
    mass = 0.5 * (math.erf(high / math.sqrt(2)) - math.erf(low / math.sqrt(2)))
    mean = (pdf(low) - pdf(high)) / mass
    second = 1 + (low * pdf(low) - high * pdf(high)) / mass
    return math.sqrt(max(second - mean * mean, 0.0))


def inner_bounds(low: float, high: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The closest values of ``dtype`` inside ``[low, high]`` (a cast can round a sample outward)."""
    lo, hi = torch.tensor(low, dtype=dtype), torch.tensor(high, dtype=dtype)
    if float(lo) < low:
        lo = torch.nextafter(lo, torch.tensor(math.inf, dtype=dtype))
    if float(hi) > high:
        hi = torch.nextafter(hi, torch.tensor(-math.inf, dtype=dtype))
    return lo, hi


class Constant(Initializer):
    """Every entry equal to ``value``. Biases and norm layers only: hidden weights stay symmetric.

    >>> Constant(0.1).sample((2, 2))
    tensor([[0.1000, 0.1000],
            [0.1000, 0.1000]])
    """

    name = "constant"
    formula = 'w = value'
    reference = '-'

    def __init__(self, value: float = 0.0) -> None:
        self.value = check_number(value, "value")
        self._record(value=value)
        self._freeze()

    @property
    def symmetric(self) -> bool:
        return True

    def expected_std(self, shape: Any) -> float:
        return 0.0

    def _reach(self, shape):
        return sampling.Reach(abs(self.value), ("value",))

    def _draw(self, shape, dtype, device, generator):
        return torch.full(shape, self.value, dtype=dtype, device=device)


class Zeros(Constant):
    """All zeros (biases; output layers, Bengio 2012; the last layer of a residual branch, SkipInit)."""

    name = "zeros"
    formula = 'w = 0'
    reference = 'Bengio 2012 (output layers); SkipInit'

    def __init__(self) -> None:
        self._record()
        super().__init__(0.0)


class Ones(Constant):
    """All ones (normalization scales)."""

    name = "ones"
    formula = 'w = 1'
    reference = 'norm-layer scales'

    def __init__(self) -> None:
        self._record()
        super().__init__(1.0)


class Normal(Initializer):
    """``N(mean, std^2)``, untruncated. torch ``normal_`` (default std 1); Lasagne ``Normal`` uses std 0.01.

    >>> Normal(std=0.01).expected_std((100, 100))
    0.01
    """

    name = "normal"
    formula = 'N(mean, std^2)'
    reference = 'torch normal_'

    def __init__(self, std: float = 1.0, mean: float = 0.0) -> None:
        self.std = check_number(std, "std", minimum=0.0)
        self.mean = check_number(mean, "mean")
        self._record(std=std, mean=mean)
        self._freeze()

    @property
    def symmetric(self) -> bool:
        return self.std == 0.0

    def expected_std(self, shape: Any) -> float:
        return self.std

    def _reach(self, shape):
        named = [k for k, part in (("std", self.std), ("mean", self.mean)) if part]  # those that contribute
        return sampling.normal_reach(self.mean, self.std, tuple(named))

    def _draw(self, shape, dtype, device, generator):
        return sampling.normal(shape, self.mean, self.std, dtype=dtype, device=device, generator=generator)


class Uniform(Initializer):
    """Uniform, with Lasagne's three ways of saying which interval.

    * ``range=r`` (a number): ``U(-r, r)``;
    * ``range=(a, b)``: ``U(a, b)`` (the default ``(0, 1)`` is torch's ``uniform_``);
    * ``std=s`` (and ``mean=m``): ``U(m - sqrt(3) s, m + sqrt(3) s)``, which has std ``s``.

    >>> Uniform(0.05).bounds
    (-0.05, 0.05)
    >>> Uniform(std=1.0).bounds[1] == 3 ** 0.5
    True
    """

    name = "uniform"
    formula = 'U(a, b) | U(-r, r) | mean +- sqrt(3) std'
    reference = 'Lasagne Uniform; torch uniform_'

    def __init__(self, range: float | tuple[float, float] = (0.0, 1.0), std: float | None = None,
                 mean: float = 0.0) -> None:
        mean = check_number(mean, "mean")
        if std is not None:
            s = check_number(std, "std", minimum=0.0)
            low, high = mean - math.sqrt(3) * s, mean + math.sqrt(3) * s
        elif isinstance(range, (tuple, list)):
            if len(range) != 2:
                raise ValueError(f"range must be a number r (for U(-r, r)) or a pair (low, high); got {range!r}")
            low = check_number(range[0], "range[0]")
            high = check_number(range[1], "range[1]")
            if high < low:
                raise ValueError(f"range must satisfy low <= high; got {range!r}")
        else:
            r = check_number(range, "range", minimum=0.0)
            low, high = -r, r
        self.bounds = (low, high)
        self._record(range=range, std=std, mean=mean)
        self._freeze()

    @property
    def symmetric(self) -> bool:
        return self.bounds[0] == self.bounds[1]

    def expected_std(self, shape: Any) -> float:
        return (self.bounds[1] - self.bounds[0]) / math.sqrt(12)

    def _reach(self, shape):
        low, high = self.bounds
        keys = ("std", "mean") if self._args["std"] is not None else ("range",)
        return sampling.uniform_reach(low, high, keys)

    def _draw(self, shape, dtype, device, generator):
        return sampling.uniform(shape, *self.bounds, dtype=dtype, device=device, generator=generator)


class TruncatedNormal(Initializer):
    """``N(mean, std^2)`` truncated to ``bounds``, WITHOUT variance correction (std is that of the parent).

    ``bounds`` are in std units around the mean (default ``(-2, 2)``: Keras' and JAX's cut); with
    ``absolute=True`` they are absolute cut-offs, as torch's ``trunc_normal_(a, b)`` (whose defaults
    ``(-2, 2)`` make ``trunc_normal_(std=0.02)`` practically untruncated). Values stay inside the bounds
    after a cast to fp16/bf16.

    >>> t = TruncatedNormal(std=0.5).sample((1000,), generator=torch.Generator().manual_seed(0))
    >>> bool(t.abs().max() <= 1.0)
    True
    """

    name = "truncated_normal"
    formula = 'N(mean, std^2) cut at bounds (std units, or absolute)'
    reference = 'Keras/JAX; torch trunc_normal_'

    def __init__(self, std: float = 1.0, mean: float = 0.0, bounds: tuple[float, float] = (-2.0, 2.0),
                 absolute: bool = False) -> None:
        self.std = check_number(std, "std", minimum=0.0)
        self.mean = check_number(mean, "mean")
        if not isinstance(bounds, (tuple, list)):  # a wrong type: TypeError (initlab.validate's vocabulary)
            raise TypeError(f"bounds must be a pair (low, high); got {bounds!r}")
        if len(bounds) != 2:
            raise ValueError(f"bounds must be a pair (low, high); got {bounds!r}")
        check_flag(absolute, "absolute")
        low = check_number(bounds[0], "bounds[0]")
        high = check_number(bounds[1], "bounds[1]")
        if not low < high:
            raise ValueError(f"bounds must satisfy low < high; got {bounds!r}")
        if absolute:
            self.limits = (low, high)
        else:
            self.limits = (self.mean + low * self.std, self.mean + high * self.std)
        if self.std == 0 and not self.limits[0] <= self.mean <= self.limits[1]:
            raise ValueError(f"bounds {bounds!r} exclude the mean {mean!r} while std is 0")
        self._record(std=std, mean=mean, bounds=bounds, absolute=absolute)
        self._freeze()

    @property
    def symmetric(self) -> bool:
        return self.std == 0.0

    def expected_std(self, shape: Any) -> float:
        if self.std == 0:
            return 0.0
        lo, hi = ((b - self.mean) / self.std for b in self.limits)
        return self.std * truncated_std_factor(lo, hi)

    def _reach(self, shape):
        # the rejection sampler also computes x - mean (x in the limits), draws N(mean, std) and U(low, high)
        low, high = self.limits
        work = max(self.std, high - low, abs(low - self.mean), abs(high - self.mean))
        return sampling.Reach(max(abs(low), abs(high)), ("std", "mean", "bounds"), work=work)

    def _point(self, precision: torch.dtype) -> float | None:
        """The one value to fill with when the distribution is a point in ``precision``: std 0, or limits too
        close together to hold two values of it (``mean=1e20, std=1``: ``1e20 +- 2`` is one float)."""
        if self.std == 0:
            return self.mean
        lo, hi = inner_bounds(*self.limits, precision)
        if lo < hi:
            return None
        return float(lo) if lo == hi else float(torch.tensor(self.mean, dtype=precision))  # none inside: the nearest

    def _draw(self, shape, dtype, device, generator):
        point = self._point(sampling.draw_precision(dtype, generator))
        if point is not None:
            return torch.full(shape, point, dtype=dtype, device=device)
        return sampling.truncated_normal(shape, self.mean, self.std, *self.limits, dtype=dtype, device=device,
                                         generator=generator)

    def _finish(self, values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return clamp_cast(values, dtype, *self.limits)


def clamp_cast(values: torch.Tensor, dtype: torch.dtype, low: float, high: float) -> torch.Tensor:
    """Cast to ``dtype``, pulling back inside ``[low, high]`` any value the rounding pushed out."""
    out = values.to(dtype)
    if out.dtype == values.dtype:
        return out
    lo, hi = inner_bounds(low, high, dtype)
    return out.clamp(lo.to(out.device), hi.to(out.device))
