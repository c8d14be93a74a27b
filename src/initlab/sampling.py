"""The one place where initlab draws random numbers.

Every initializer draws through these functions, always with an explicit ``torch.Generator`` (or
``None`` for torch's global RNG, only when the caller passes none). Draws happen on the generator's
device and in float32 (float64 when asked), so the same seed gives the same weights whatever the
target's device or dtype.

The ``generator`` may instead be an :class:`initlab.rng.Philox` stream (what ``rng="philox"`` on an
initializer creates): then each function draws from the counter-based generator, where a value is a
function of (key, element index, draw number) only, with no rejection loop; each call takes the stream's
next draw number. Orthogonal matrices are the QR of such a Gaussian, sparse masks rank its raw 32-bit
words. The torch-generator paths are untouched (``initlab.compat.torch`` stays bit-identical to
``torch.nn.init``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

Shape = Sequence[int]

# The most standard deviations a normal draw can lie from its mean, whatever the generator. torch's normals (CPU;
# cuRAND on CUDA) and the Philox ones are Box-Muller, r = sqrt(-2 ln u): with 53-bit uniforms (CPU float64, and CPU
# tensors under 16 elements) u >= 2**-53, so |z| <= sqrt(106 ln 2) = 8.57; with float32's 24-bit ones (CPU float32
# fills, the Philox stream) |z| <= 5.77. 9 covers both with a margin for rounding: a normal whose |mean| + 9 std fits
# the dtype can never overflow it, and the outcome of the check never depends on the seed. See docs/reliability.md.
NORMAL_SIGMAS = 9.0


class Reach(NamedTuple):
    """How far one draw of an initializer can go, worked out from its arguments before anything is drawn.

    ``values``: a bound on every ``|value|`` written (a normal's ``|mean| + NORMAL_SIGMAS * std``, a uniform's
    ``max(|low|, |high|)``, ``|gain|``...); ``arguments``: the names of the user's arguments that set it (the
    message shows them with their values); ``work``: a bound on what the draw computes along the way, in the
    sampling precision (a uniform's width ``high - low``: torch and Philox compute ``low + (high - low) u``);
    ``rule``: how ``values`` follows from the arguments, when it is not plain."""

    values: float
    arguments: tuple[str, ...]
    work: float = 0.0
    rule: str = ""


NORMAL_RULE = f"a normal reaches |mean| + {NORMAL_SIGMAS:g} std"


def normal_reach(mean: float, std: float, arguments: tuple[str, ...]) -> Reach:
    """The reach of ``N(mean, std^2)``: ``|mean| + NORMAL_SIGMAS * std``."""
    return Reach(abs(mean) + NORMAL_SIGMAS * std, arguments, rule=NORMAL_RULE)


def uniform_reach(low: float, high: float, arguments: tuple[str, ...]) -> Reach:
    """The reach of ``U(low, high)``: values within ``max(|low|, |high|)``, computed as ``low + (high - low) u``."""
    return Reach(max(abs(low), abs(high)), arguments, work=high - low)


def draw_precision(dtype: torch.dtype, generator: Any) -> torch.dtype:
    """The precision the values for a ``dtype`` target are computed in: :func:`compute_dtype` for torch's
    stream, float32 for a Philox stream (whose values are float32 numbers, held exactly by a float64 target)."""
    return torch.float32 if is_philox(generator) else compute_dtype(dtype)


_FINITE_MAX = {dt: torch.finfo(dt).max for dt in (torch.float16, torch.bfloat16, torch.float32, torch.float64)}


def _finite_max(dtype: torch.dtype) -> float:
    return _FINITE_MAX.get(dtype) or torch.finfo(dtype).max


def _range_text(dtype: torch.dtype) -> str:
    return f"{str(dtype).removeprefix('torch.')}'s finite range (+-{_finite_max(dtype):.6g})"


def check_reach(reach: Reach | None, dtype: torch.dtype, precision: torch.dtype,
                describe: Callable[[tuple[str, ...]], str] = ", ".join) -> None:
    """Refuse a draw whose values could be infinite (or NaN) in the target ``dtype``, or in the ``precision``
    they are computed in: ``ValueError`` naming the arguments (as ``describe`` shows them: an initializer
    gives their values) and the dtype's range. Arithmetic on the bound only: nothing is drawn, no tensor is read.

    >>> check_reach(Reach(9e6, ("std",), rule=NORMAL_RULE), torch.float16, torch.float32, lambda k: "std=1000000.0")
    Traceback (most recent call last):
    ...
    ValueError: std=1000000.0 gives values up to 9e+06 in magnitude (a normal reaches |mean| + 9 std), beyond float16's finite range (+-65504): give a smaller value, or fill a wider dtype
    """  # noqa: E501
    if reach is None:
        return
    target, inner = _finite_max(dtype), _finite_max(precision)
    if not reach.values <= min(target, inner):  # `not <=`: a NaN bound is refused too
        if target <= inner:
            where, fix = _range_text(dtype), "give a smaller value, or fill a wider dtype"
        else:  # a float64 target of a Philox stream: float32 values
            where, fix = f"{_range_text(precision)}, the precision the values are drawn in", "give a smaller value"
        rule = f" ({reach.rule})" if reach.rule else ""
        raise ValueError(f"{describe(reach.arguments)} gives values up to {reach.values:.6g} in magnitude{rule}, "
                         f"beyond {where}: {fix}")
    if not reach.work <= inner:
        raise ValueError(f"{describe(reach.arguments)} needs intermediate values up to {reach.work:.6g} while "
                         f"drawing, beyond {_range_text(precision)}, the precision the values are drawn in: give a "
                         "smaller value")


def is_philox(generator: Any) -> bool:
    """Whether ``generator`` is a counter-based :class:`initlab.rng.Philox` stream (not a torch.Generator)."""
    return getattr(generator, "is_philox", False) is True


def _philox_args(generator: Any, device: Any) -> dict[str, Any]:
    return dict(offset=generator.offset, draw=generator.next_draw(), device=device, backend=generator.backend)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Sampling precision for a target dtype: float64 stays float64, everything else uses float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _empty(shape: Shape, dtype: torch.dtype, device: torch.device | str | None, generator) -> torch.Tensor:
    if generator is not None:
        device = generator.device
    return torch.empty(tuple(shape), dtype=dtype, device=device)


def normal(shape: Shape, mean: float = 0.0, std: float = 1.0, *, dtype: torch.dtype = torch.float32,
           device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """``N(mean, std^2)`` samples (torch's ``normal_`` stream, so it matches ``nn.init.normal_``)."""
    if is_philox(generator):
        from initlab import rng

        return rng.normal(tuple(shape), generator.key, mean=mean, std=std, dtype=dtype,
                          **_philox_args(generator, device))
    return _empty(shape, dtype, device, generator).normal_(mean, std, generator=generator)


def uniform(shape: Shape, low: float = 0.0, high: float = 1.0, *, dtype: torch.dtype = torch.float32,
            device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """``U(low, high)`` samples (torch's ``uniform_`` stream)."""
    if is_philox(generator):
        from initlab import rng

        return rng.uniform(tuple(shape), generator.key, low=low, high=high, dtype=dtype,
                           **_philox_args(generator, device))
    return _empty(shape, dtype, device, generator).uniform_(low, high, generator=generator)


def _norm_cdf(x: float) -> float:
    return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0


def truncated_normal(shape: Shape, mean: float = 0.0, std: float = 1.0, low: float = -2.0, high: float = 2.0, *,
                     dtype: torch.dtype = torch.float32, device=None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``N(mean, std^2)`` restricted to the ABSOLUTE interval ``[low, high]``, by rejection.

    When the interval holds much of the mass (> 30%), normal draws outside it are redrawn; otherwise
    uniform proposals on the interval are accepted with probability ``pdf / pdf(mode)``. This is the
    scheme (and the draw order) of ``torch.nn.init.trunc_normal_`` in torch >= 2.12, so the two agree
    bit for bit in float32. No erfinv is involved, so it stays unbiased in any precision.

    With a :class:`initlab.rng.Philox` stream it is the inverse CDF instead (no rejection loop, so any slice
    can be drawn alone; see ``initlab.rng.truncated_normal``).
    """
    if is_philox(generator):
        from initlab import rng

        return rng.truncated_normal(tuple(shape), generator.key, mean=mean, std=std, low=low, high=high,
                                    dtype=dtype, **_philox_args(generator, device))
    out = _empty(shape, dtype, device, generator)
    if out.numel() == 0:
        return out
    lo = out.new_tensor(low, device="cpu").item()
    hi = out.new_tensor(high, device="cpu").item()
    mass = _norm_cdf((high - mean) / std) - _norm_cdf((low - mean) / std)
    if mass > 0.3:
        result = out.normal_(mean, std, generator=generator)
        while True:
            outside = (result < lo) | (result > hi)
            if not outside.any():
                return result
            redraw = torch.empty_like(result).normal_(mean, std, generator=generator)
            result = torch.where(outside, redraw, result)
    peak = max(low, min(mean, high))
    try:
        log_peak = -0.5 * ((peak - mean) / std) ** 2
    except OverflowError:  # checked before anything is drawn
        raise ValueError(f"bounds [{low!r}, {high!r}] lie beyond 1e154 std (std={std!r}) from the mean {mean!r}: "
                         "too far in the tail to sample; bring the bounds closer or widen std") from None
    result = out.uniform_(low, high, generator=generator)
    proposal = result.clone()
    accept = torch.empty_like(result)

    def log_density(x: torch.Tensor) -> torch.Tensor:  # in place, relative to the peak
        return x.sub_(mean).div_(std).pow_(2).mul_(-0.5).sub_(log_peak)

    pending = accept.uniform_(generator=generator).log_().gt(log_density(proposal))
    while pending.any():
        proposal.uniform_(low, high, generator=generator)
        result = torch.where(pending, proposal, result)
        rejected = accept.uniform_(generator=generator).log_().gt(log_density(proposal))
        pending = torch.where(pending, rejected, pending)
    return result


def randperm(n: int, *, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random permutation of ``range(n)`` (with a Philox stream: the stable argsort of ``n`` raw words)."""
    if is_philox(generator):
        return _philox_words((n,), device, generator).argsort(stable=True)
    if generator is not None:
        device = generator.device
    return torch.randperm(n, generator=generator, device=device)


def random_subsets(rows: int, size: int, count: int, *, device=None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``count`` independent random subsets of ``size`` indices out of ``range(rows)``, as a bool mask
    of shape ``(count, rows)`` (the ranks of one uniform draw per entry: one call, no Python loop).

    With a Philox stream the keys are raw 32-bit words, ranked by a stable sort, so ties (rare) resolve by
    position and the mask does not depend on the sort's thread count."""
    if is_philox(generator):
        keys = _philox_words((count, rows), device, generator)
        return keys.argsort(dim=1, stable=True).argsort(dim=1, stable=True) < size
    keys = uniform((count, rows), device=device, generator=generator)
    ranks = keys.argsort(dim=1).argsort(dim=1)
    return ranks < size


def _philox_words(shape: Shape, device: Any, generator: Any) -> torch.Tensor:
    from initlab import rng

    return rng.bits(tuple(shape), generator.key, **_philox_args(generator, device))


def generator_from(rng: int | np.random.Generator | torch.Generator | None,
                   device=None) -> torch.Generator | None:
    """A ``torch.Generator`` from a seed, a numpy Generator (one 63-bit draw from it) or a Generator."""
    if rng is None or isinstance(rng, torch.Generator):
        return rng
    if isinstance(rng, np.random.Generator):
        seed = int(rng.integers(0, 2**63 - 1))
    elif isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        seed = int(rng)
    else:
        raise TypeError(f"rng must be None, an int seed, a numpy Generator or a torch.Generator; "
                        f"got {type(rng).__name__}")
    return torch.Generator(device=device or "cpu").manual_seed(seed)
