"""The variance-scaling family: one core, with Glorot, He, LeCun and the classic rules as presets.

``var = scale / n`` where ``n`` is ``fan_in``, ``fan_out``, ``(fan_in + fan_out) / 2`` or
``sqrt(fan_in * fan_out)`` (``mode``), and the fans follow the weight's ``layout``:

* ``uniform``: ``U(-sqrt(3 var), sqrt(3 var))``;
* ``normal``: ``N(0, var)``, untruncated;
* ``truncated_normal``: ``N(0, 1)`` truncated to ``[-2, 2]`` times ``sqrt(var) / 0.8796...``, so the
  variance is exactly ``var`` (Keras 3 and JAX ``variance_scaling``).

A ``gain`` (torch, Lasagne) multiplies the std: ``scale = gain^2``. A gain may be given as a number or
a nonlinearity name (``"relu"`` -> sqrt(2), as Lasagne's ``gain='relu'``).
"""

from __future__ import annotations

import math
import sys
from typing import Any

import torch

from initlab import sampling
from initlab.gains import resolve_gain
from initlab.initializers.base import FanBased
from initlab.initializers.basic import TRUNC2_STD, Normal, clamp_cast
from initlab.shapes import MODES
from initlab.validate import check_choice, check_number

DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")
_DISTRIBUTION_ALIASES = {"untruncated_normal": "normal"}
FAN_DEFAULTS: dict[str, Any] = dict(layout="torch", groups=1, chunks=1, in_axis=None, out_axis=None,
                                    torch_compatible=False)


class VarianceScaling(FanBased):
    """``var = scale / n(mode)`` with the given distribution (see the module docstring).

    Glorot & Bengio 2010 (``scale=1, mode="fan_avg"``), He et al. 2015 (``scale=2, mode="fan_in"``),
    LeCun et al. 1998 (``scale=1, mode="fan_in"``); Keras 3 / JAX ``VarianceScaling``.

    >>> vs = VarianceScaling(2.0, "fan_in", "normal")
    >>> vs.expected_std((256, 512)) == (2 / 512) ** 0.5
    True
    """

    name = "variance_scaling"
    formula = 'var = scale / n(mode)'
    reference = 'Keras 3 / JAX variance_scaling'

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal", *,
                 layout: str = "torch", groups: int = 1, chunks: int = 1, in_axis: Any = None,
                 out_axis: Any = None, torch_compatible: bool = False) -> None:
        self.scale = check_number(scale, "scale", minimum=0.0)
        self.mode = check_choice(mode, "mode", MODES)
        dist = _DISTRIBUTION_ALIASES.get(distribution, distribution)
        self.distribution = check_choice(dist, "distribution", DISTRIBUTIONS)
        self._set_fan_options(layout, groups, chunks, in_axis, out_axis, torch_compatible)
        self._stds: dict[tuple[int, ...], float] = {}  # std_for by shape (the object is immutable)
        self._record(scale=scale, mode=mode, distribution=distribution, **_given_fan_options(
            layout=layout, groups=groups, chunks=chunks, in_axis=in_axis, out_axis=out_axis,
            torch_compatible=torch_compatible))
        self._freeze()

    @classmethod
    def _defaults(cls) -> dict[str, Any]:
        return {**super()._defaults(), **FAN_DEFAULTS}

    @property
    def symmetric(self) -> bool:
        return self.scale == 0.0

    def std_for(self, shape: Any) -> float:
        """``sqrt(scale / n)``, evaluated in the order torch uses (``gain / sqrt(fan)`` for He,
        ``gain * sqrt(2 / (fan_in + fan_out))`` for Glorot; ``sqrt(gain^2) == gain`` exactly in IEEE
        arithmetic), so the presets reproduce torch.nn.init bit for bit."""
        key = tuple(shape)
        std = self._stds.get(key)
        if std is None:  # one draw asks up to three times (the range check, the draw, the cast): fans once
            f = self.fans_of(shape)
            n = f.for_mode(self.mode)
            if n <= 0:
                raise ValueError(f"fan {self.mode} of shape {key} is 0: nothing to scale by")
            if self.mode == "fan_avg":
                std = math.sqrt(self.scale) * math.sqrt(2.0 / float(f.fan_in + f.fan_out))
            else:
                std = math.sqrt(self.scale) / math.sqrt(n)
            if len(self._stds) < 256:
                self._stds[key] = std
        return std

    def expected_std(self, shape: Any) -> float:
        return self.std_for(shape)

    def _reach(self, shape):
        std = self.std_for(shape)
        arguments = ("gain",) if "gain" in self._args else ("scale",)  # the user's argument, not a derived one
        if self.distribution == "normal":
            return sampling.normal_reach(0.0, std, arguments)
        if self.distribution == "uniform":
            bound = math.sqrt(3.0) * std
            return sampling.uniform_reach(-bound, bound, arguments)
        return sampling.Reach(2.0 * std / TRUNC2_STD, arguments)

    def _draw(self, shape, dtype, device, generator):
        std = self.std_for(shape)
        if self.distribution == "normal":
            return sampling.normal(shape, 0.0, std, dtype=dtype, device=device, generator=generator)
        if self.distribution == "uniform":
            bound = math.sqrt(3.0) * std
            return sampling.uniform(shape, -bound, bound, dtype=dtype, device=device, generator=generator)
        unit = sampling.truncated_normal(shape, 0.0, 1.0, -2.0, 2.0, dtype=dtype, device=device,
                                         generator=generator)
        return unit.mul_(std / TRUNC2_STD)

    def _finish(self, values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if self.distribution != "truncated_normal" or values.numel() == 0:
            return values.to(dtype)
        limit = 2.0 * self.std_for(values.shape) / TRUNC2_STD
        return clamp_cast(values, dtype, -limit, limit)


def _given_fan_options(**options: Any) -> dict[str, Any]:
    """Only the fan options that differ from their defaults (keeps reprs short)."""
    return {k: v for k, v in options.items() if FAN_DEFAULTS[k] != v}


class _Preset(VarianceScaling):
    """A named preset: records its own arguments, builds the core with the mapped scale/mode/distribution."""

    def _build(self, scale: float, mode: str, distribution: str, fan_options: dict[str, Any]) -> None:
        unknown = set(fan_options) - set(FAN_DEFAULTS)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected argument(s) {sorted(unknown)}; "
                            f"fan options are {sorted(FAN_DEFAULTS)}")
        VarianceScaling.__init__(self, scale, mode, distribution, **fan_options)


def _scale_from_gain(gain: Any) -> float:
    """``gain^2``, refused (naming ``gain``, the user's argument) when it is not a finite float."""
    g = resolve_gain(gain)
    if not math.isfinite(g * g):
        raise ValueError(f"gain must be at most {math.sqrt(sys.float_info.max):.6g} (gain^2 must be a finite float); "
                         f"got {gain!r}")
    return g * g


class Glorot(_Preset):
    """Glorot & Bengio 2010 "normalized" init: ``var = gain^2 * 2 / (fan_in + fan_out)``.

    Uniform bound ``gain * sqrt(6 / (fan_in + fan_out))`` (torch ``xavier_uniform_``, Lasagne ``GlorotUniform``).
    """

    name = "glorot"
    formula = 'var = gain^2 * 2 / (fan_in + fan_out)'
    reference = 'Glorot & Bengio 2010'

    def __init__(self, distribution: str = "uniform", gain: Any = 1.0, **fan_options: Any) -> None:
        self.gain = resolve_gain(gain)
        self._record(distribution=distribution, gain=gain, **fan_options)
        self._build(_scale_from_gain(gain), "fan_avg", distribution, fan_options)


class GlorotNormal(Glorot):
    """Glorot normal (torch ``xavier_normal_``: untruncated): ``std = gain * sqrt(2 / (fan_in + fan_out))``."""

    name = "glorot_normal"
    formula = 'N(0, gain^2 * 2 / (fan_in + fan_out))'
    reference = 'Glorot & Bengio 2010; torch xavier_normal_'

    def __init__(self, gain: Any = 1.0, **fan_options: Any) -> None:
        self._record(gain=gain, **fan_options)
        super().__init__("normal", gain, **fan_options)


class GlorotUniform(Glorot):
    """Glorot uniform: ``U(+-gain * sqrt(6 / (fan_in + fan_out)))`` (torch ``xavier_uniform_``)."""

    name = "glorot_uniform"
    formula = 'U(+-gain * sqrt(6 / (fan_in + fan_out)))'
    reference = 'Glorot & Bengio 2010; torch xavier_uniform_'

    def __init__(self, gain: Any = 1.0, **fan_options: Any) -> None:
        self._record(gain=gain, **fan_options)
        super().__init__("uniform", gain, **fan_options)


class GlorotUniformSigmoid(Glorot):
    """The 4x rule for logistic units (Glorot & Bengio 2010; Bengio 2012): ``U(+-4 sqrt(6 / (fan_in + fan_out)))``."""

    name = "glorot_uniform_sigmoid"
    formula = 'U(+-4 sqrt(6 / (fan_in + fan_out)))'
    reference = 'Glorot & Bengio 2010; Bengio 2012 (logistic)'

    def __init__(self, **fan_options: Any) -> None:
        self._record(**fan_options)
        super().__init__("uniform", 4.0, **fan_options)


class He(_Preset):
    """He et al. 2015 (Kaiming, MSRA): ``var = gain^2 / fan``, gain sqrt(2) for ReLU by default.

    ``gain`` may be a nonlinearity: ``He(gain=("leaky_relu"))`` or a number. torch ``kaiming_normal_``
    (std ``gain / sqrt(fan)``), Lasagne ``HeNormal`` (whose default gain is 1, i.e. LeCun).
    """

    name = "he"
    formula = 'var = gain^2 / fan (gain sqrt(2) for ReLU)'
    reference = 'He et al. 2015'

    def __init__(self, distribution: str = "normal", gain: Any = "relu", mode: str = "fan_in",
                 **fan_options: Any) -> None:
        self.gain = resolve_gain(gain)
        self._record(distribution=distribution, gain=gain, mode=mode, **fan_options)
        self._build(_scale_from_gain(gain), mode, distribution, fan_options)


class HeNormal(He):
    """He normal: ``N(0, gain^2 / fan)``, untruncated (torch ``kaiming_normal_``)."""

    name = "he_normal"
    formula = 'N(0, gain^2 / fan_in)'
    reference = 'He et al. 2015; torch kaiming_normal_'

    def __init__(self, gain: Any = "relu", mode: str = "fan_in", **fan_options: Any) -> None:
        self._record(gain=gain, mode=mode, **fan_options)
        super().__init__("normal", gain, mode, **fan_options)


class HeUniform(He):
    """He uniform: ``U(+-gain * sqrt(3 / fan))`` (torch ``kaiming_uniform_``)."""

    name = "he_uniform"
    formula = 'U(+-gain * sqrt(3 / fan_in))'
    reference = 'He et al. 2015; torch kaiming_uniform_'

    def __init__(self, gain: Any = "relu", mode: str = "fan_in", **fan_options: Any) -> None:
        self._record(gain=gain, mode=mode, **fan_options)
        super().__init__("uniform", gain, mode, **fan_options)


class LeCunNormal(_Preset):
    """LeCun et al. 1998 (efficient backprop): ``N(0, 1 / fan_in)``; the SELU init (Klambauer et al. 2017)."""

    name = "lecun_normal"
    formula = 'N(0, 1 / fan_in)'
    reference = 'LeCun et al. 1998; Klambauer et al. 2017 (SELU)'

    def __init__(self, **fan_options: Any) -> None:
        self._record(**fan_options)
        self._build(1.0, "fan_in", "normal", fan_options)


class LeCunUniform(_Preset):
    """LeCun uniform: ``U(+-sqrt(3 / fan_in))``."""

    name = "lecun_uniform"
    formula = 'U(+-sqrt(3 / fan_in))'
    reference = 'LeCun et al. 1998'

    def __init__(self, **fan_options: Any) -> None:
        self._record(**fan_options)
        self._build(1.0, "fan_in", "uniform", fan_options)


class FanInUniform(_Preset):
    """``U(+-1 / sqrt(fan_in))``: torch's default for Linear and Conv (``kaiming_uniform_(a=sqrt(5))``)
    and Glorot & Bengio's "standard" init. Pre-activations get variance 1/3 for unit-variance inputs."""

    name = "fan_in_uniform"
    formula = 'U(+-1 / sqrt(fan_in))'
    reference = "torch Linear/Conv default; Glorot & Bengio 'standard'"

    def __init__(self, **fan_options: Any) -> None:
        self._record(**fan_options)
        self._build(1.0 / 3.0, "fan_in", "uniform", fan_options)


class RBMNormal(Normal):
    """The small Gaussian of Hinton's RBM guide (2010): ``N(0, 0.01^2)``."""

    name = "rbm_normal"
    formula = 'N(0, 0.01^2)'
    reference = 'Hinton 2010, A practical guide to training RBMs'

    def __init__(self, std: float = 0.01) -> None:
        self._record(std=std)
        super().__init__(std, 0.0)
