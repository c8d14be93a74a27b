"""Keras 3's initializers on initlab's catalogue, and initlab's initializers as Keras initializers.

Presets (Keras' names, arguments and defaults; each returns an initlab ``Initializer``: call ``.init_``,
``.sample`` or ``.array``; pass ``generator=`` where Keras takes ``seed``). Keras lays kernels out as
``(*k, in, out)`` (layout ``"keras"``); its Glorot, He and LeCun normals are TRUNCATED at 2 std with the
variance corrected (``std = sqrt(scale / n) / 0.8796...``); its plain ``TruncatedNormal`` cuts at
mean +- 2 std without correction.

>>> GlorotNormal()
Glorot(distribution='truncated_normal', layout='keras')

Adapters (``keras.initializers.Initializer`` subclasses, registered for serialization as
``initlab>KerasInitializer`` and ``initlab>ForActivation``; keras is imported on first use of these names,
so initlab imports without it; tested with ``KERAS_BACKEND=torch``):

* ``KerasInitializer(initializer, seed=None)``: any initlab initializer or spec (a preset above,
  ``"orthogonal"``, ``"he_normal(gain='tanh')"``); one in torch's layout (the default) is re-read in Keras'
  ``(*k, in, out)``, explicit axes and other layouts are kept;
* ``ForActivation(activation, param=None, mode="fan_in", distribution="truncated_normal", groups=1,
  depthwise=False, seed=None)``: ``var = gain(activation)^2 / n(mode)`` with initlab's quadrature gain
  ``1 / sqrt(E[f(z)^2])`` for any activation; ``groups=G`` reads ``Conv2D(groups=G)`` kernels
  ``(*k, in/G, out)`` (fan_out ``out/G * rf``, Keras counts ``out * rf``); ``depthwise=True`` reads
  ``DepthwiseConv2D`` kernels ``(kh, kw, in, multiplier)`` (fan_in ``kh * kw``, fan_out
  ``multiplier * kh * kw``; Keras counts ``in * kh * kw`` and ``multiplier * kh * kw``).

They draw with ``keras.random`` from ``seed`` as Keras' own initializers do (an int or ``None``: the same values
at every call; a ``keras.random.SeedGenerator``: new values each call); initializers without a Keras recipe
(``sparse``, ``delta_orthogonal``, ...) are drawn by initlab's sampler from a torch generator seeded with
``seed``. To load a saved model that uses them in a new process, ``import initlab.compat.keras`` after
keras (or call :func:`register`) first.
"""

from __future__ import annotations

import functools
import math
import random
import sys
from typing import Any

from initlab.compat._recipes import activation_scale, host_sample, recipe, with_layout
from initlab.initializers import Constant, Glorot, He, Initializer, Normal, Uniform
from initlab.initializers import Identity as _Identity
from initlab.initializers import Orthogonal as _Orthogonal
from initlab.initializers import TruncatedNormal as _TruncatedNormal
from initlab.initializers import VarianceScaling as _VarianceScaling
from initlab.initializers import get as _get
from initlab.shapes import shape_of
from initlab.validate import check_flag, check_seed

__all__ = [
    "Constant", "Zeros", "Ones", "RandomNormal", "RandomUniform", "TruncatedNormal", "VarianceScaling",
    "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "LeCunNormal", "LeCunUniform", "Orthogonal",
    "Identity", "register",
]  # KerasInitializer and ForActivation are left out: a star-import must not import keras

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


# --- adapters: keras.initializers.Initializer subclasses, built when first asked for -----------------

_ADAPTERS = ("KerasInitializer", "ForActivation")


def __getattr__(name: str) -> Any:
    if name in _ADAPTERS:
        return register()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def register() -> dict[str, type]:
    """Import keras, build the adapter classes and register them with ``keras.saving`` (package ``initlab``);
    returns them by name. Called by the first use of ``KerasInitializer`` or ``ForActivation``."""
    try:
        import keras
    except ImportError as exc:
        raise ImportError(f"initlab.compat.keras.KerasInitializer and ForActivation need keras 3 "
                          f"(pip install 'initlab[keras]'; tested with KERAS_BACKEND=torch): {exc}") from exc
    base = _make_keras_initializer(keras)
    classes = {"KerasInitializer": base, "ForActivation": _make_for_activation(keras, base)}
    for name, cls in classes.items():
        keras.saving.register_keras_serializable(package="initlab", name=name)(cls)
    return classes


def _make_keras_initializer(keras: Any) -> type:
    class KerasInitializer(keras.initializers.Initializer):
        """Any initlab initializer or spec as a Keras initializer, drawn with ``keras.random`` from ``seed``.

        ``initializer``: an initlab ``Initializer``, a spec string or a config dict; in torch's layout (the
        default) it is re-read in Keras' ``(*k, in, out)``. ``seed``: an int, a ``keras.random.SeedGenerator`` or
        None (a random int fixed at construction), as Keras' own initializers.
        """

        def __init__(self, initializer: Any = "he_normal", seed: Any = None) -> None:
            self.initializer = with_layout(_get(initializer), LAYOUT)
            self._init_seed = seed
            self.seed = _keras_seed(keras, seed)

        def __call__(self, shape: Any, dtype: Any = None) -> Any:
            dims = shape_of(shape)
            return _draw(keras, self._initializer_for(dims), dims, dtype, self.seed)

        def _initializer_for(self, dims: tuple[int, ...]) -> Initializer:
            return self.initializer

        def _seed_config(self) -> Any:
            return keras.saving.serialize_keras_object(self._init_seed)

        def get_config(self) -> dict[str, Any]:
            return {"initializer": self.initializer.to_config(), "seed": self._seed_config()}

        def __repr__(self) -> str:
            return f"KerasInitializer({self.initializer!r}, seed={self._init_seed!r})"

    KerasInitializer.__module__ = __name__
    return KerasInitializer


def _make_for_activation(keras: Any, base: type) -> type:
    class ForActivation(base):
        """``var = gain(activation)^2 / n(mode)``, initlab's quadrature gain (see the module docstring)."""

        def __init__(self, activation: str = "relu", param: float | None = None, mode: str = "fan_in",
                     distribution: str = "truncated_normal", groups: int = 1, depthwise: bool = False,
                     seed: Any = None) -> None:
            scale = activation_scale(activation, param)
            check_flag(depthwise, "depthwise")
            spec = _VarianceScaling(scale, mode, distribution, layout=LAYOUT, groups=groups)
            if depthwise and groups != 1:
                raise ValueError(f"groups must be 1 with depthwise=True (a depthwise kernel's groups are its "
                                 f"input channels); got groups={groups!r}")
            super().__init__(spec, seed)
            self.activation, self.param, self.mode, self.distribution = activation, param, mode, distribution
            self.groups, self.depthwise = groups, depthwise

        def _initializer_for(self, dims: tuple[int, ...]) -> Initializer:
            if not self.depthwise:
                return self.initializer
            if len(dims) < 3:
                raise ValueError(f"shape must be a depthwise kernel (*k, in, multiplier) with depthwise=True; "
                                 f"got {dims}")
            n = len(dims)  # in: one group per input channel; every other axis but (in, multiplier) is spatial
            return self.initializer.replace(in_axis=[], out_axis=[n - 2, n - 1], groups=dims[-2])

        def get_config(self) -> dict[str, Any]:
            return {"activation": self.activation, "param": self.param, "mode": self.mode,
                    "distribution": self.distribution, "groups": self.groups, "depthwise": self.depthwise,
                    "seed": self._seed_config()}

        def __repr__(self) -> str:
            shown = {k: v for k, v in self.get_config().items() if k != "seed"}
            args = ", ".join(f"{k}={v!r}" for k, v in shown.items())
            return f"ForActivation({args}, seed={self._init_seed!r})"

    ForActivation.__module__ = __name__
    return ForActivation


def _keras_seed(keras: Any, seed: Any) -> Any:
    if seed is None:
        return random.SystemRandom().randint(1, 10**9)  # as Keras: fixed at construction; no global state used
    if isinstance(seed, dict):
        seed = keras.saving.deserialize_keras_object(seed)
    if isinstance(seed, keras.random.SeedGenerator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, a keras.random.SeedGenerator or None; got {seed!r} "
                        f"({type(seed).__name__})")
    return check_seed(seed)


def _float_dtype(keras: Any, dtype: Any) -> str:
    accepted = "a floating-point dtype ('float32', 'bfloat16', 'float16', 'float64') or None"
    try:
        name = keras.backend.standardize_dtype(keras.config.floatx() if dtype is None else dtype)
    except (ValueError, TypeError, AttributeError):
        raise TypeError(f"dtype must be {accepted}; got {dtype!r}") from None
    if name not in ("float16", "bfloat16", "float32", "float64"):
        raise TypeError(f"dtype must be {accepted}: initlab initializers draw real weights; got {name}")
    return name


def _draw(keras: Any, ini: Initializer, dims: tuple[int, ...], dtype: Any, seed: Any) -> Any:
    """Keras' ``initializer(shape, dtype)``: every check before anything is drawn."""
    name = _float_dtype(keras, dtype)
    ini._check_shape(dims)
    if math.prod(dims) == 0:
        return keras.ops.zeros(dims, dtype=name)
    rec = recipe(ini, dims)
    if rec is None or rec.kind == "delta_orthogonal" or (rec.kind == "orthogonal" and rec.column_axis != -1):
        return _host(keras, ini, dims, name, seed)
    if rec.kind == "truncated_normal" and (rec.low, rec.high) != (-2.0, 2.0):
        return _host(keras, ini, dims, name, seed)  # keras.random cuts at 2 std only
    r = keras.random
    if rec.kind == "constant":
        return keras.ops.full(dims, rec.mean, dtype=name)
    if rec.kind == "normal":
        return r.normal(dims, mean=rec.mean, stddev=rec.std, dtype=name, seed=seed)
    if rec.kind == "uniform":
        return r.uniform(dims, minval=rec.low, maxval=rec.high, dtype=name, seed=seed)
    if rec.kind == "truncated_normal":
        return r.truncated_normal(dims, mean=rec.mean, stddev=rec.std, dtype=name, seed=seed)
    return keras.initializers.Orthogonal(gain=rec.gain, seed=seed)(dims, dtype=name)


def _host(keras: Any, ini: Initializer, dims: tuple[int, ...], name: str, seed: Any) -> Any:
    """initlab's own sampler, seeded from ``seed`` (an int seed: the same values at every call)."""
    if not isinstance(seed, int):  # a SeedGenerator: one int from its stream
        seed = int(keras.ops.convert_to_numpy(keras.random.randint((), 0, 2**31 - 1, seed=seed)))
    return keras.ops.convert_to_tensor(host_sample(ini, dims, name, seed), dtype=name)


if "keras" in sys.modules:  # keras already loaded: register now, so that saved models load without a touch
    register()
