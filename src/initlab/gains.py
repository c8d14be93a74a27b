"""Gains: the factor on the weights' std that keeps signal variance through an activation.

Two rules:

* ``rule="torch"`` reproduces ``torch.nn.init.calculate_gain`` exactly (linear, conv*, sigmoid -> 1;
  tanh -> 5/3; relu -> sqrt(2); leaky_relu(a) -> sqrt(2 / (1 + a^2)), a = 0.01 by default;
  selu -> 3/4) and extends it to elu, gelu, silu/swish, mish, softplus, softsign, hardtanh, relu6 and
  prelu, whose gains are the variance-preserving ones below (prelu uses the leaky formula, slope 0.25
  by default as ``nn.PReLU``).
* ``rule="variance"`` returns ``1 / sqrt(E[f(z)^2])`` with ``z ~ N(0, 1)`` (He et al. 2015, generalised):
  the gain that keeps the second moment of the pre-activation fixed from layer to layer. It works for
  any name, any torch activation module (instance or class) and any callable.

Expectations are computed by composite Gauss-Legendre quadrature on [-14, 14] with break points at
the kinks of the common activations (0, +-1, +-3, +-6), so piecewise-linear units such as ReLU are
integrated exactly: ``gain("relu", rule="variance") == sqrt(2)`` to rounding.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

RULES = ("torch", "variance")

# --------------------------------------------------------------------------------------------------
# Gaussian expectations


@functools.lru_cache(maxsize=1)
def gaussian_nodes() -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``z`` and weights ``w`` with ``sum(w * g(z)) ~= E[g(Z)]``, ``Z ~ N(0, 1)``.

    Composite 48-point Gauss-Legendre on the pieces between the break points, times the normal density.
    """
    breaks = [-14.0, -10.0, -6.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 10.0, 14.0]
    x, w = np.polynomial.legendre.leggauss(48)
    zs, ws = [], []
    for a, b in zip(breaks[:-1], breaks[1:]):
        zs.append((b - a) / 2 * x + (a + b) / 2)
        ws.append((b - a) / 2 * w)
    z, w = np.concatenate(zs), np.concatenate(ws)
    w = w * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return z, w


def expect(fn: Callable[[torch.Tensor], torch.Tensor], std: float | np.ndarray = 1.0, mean: float = 0.0) -> Any:
    """``E[fn(mean + std * Z)]`` for ``Z ~ N(0, 1)``; ``std`` may be an array (one expectation each).

    ``fn`` receives a float64 torch tensor of shape ``(*np.shape(std), nodes)``; it may return extra
    leading dimensions (several quantities stacked at once): the expectation contracts the last axis.

    >>> round(float(expect(lambda x: torch.relu(x) ** 2)), 12)
    0.5
    """
    z, w = gaussian_nodes()
    s = np.asarray(std, dtype=np.float64)
    grid = torch.from_numpy(mean + s[..., None] * z)
    with torch.no_grad():
        vals = fn(grid)
    vals = vals.detach().to(torch.float64).numpy()
    out = vals @ w
    return float(out) if np.ndim(out) == 0 else out


# --------------------------------------------------------------------------------------------------
# Activations


@dataclass(frozen=True)
class Activation:
    """A resolved activation: a canonical ``name``, its parameter if any, and an elementwise ``fn``."""

    name: str
    param: float | None = None
    fn: Callable[[torch.Tensor], torch.Tensor] = field(default=lambda x: x, compare=False, repr=False)
    # a gate: the product of independent factors a(z1) * b(z2) (SwiGLU, GeGLU, squeeze-excitation)
    factors: tuple[Activation, ...] = field(default=(), compare=False, repr=False)
    # an average pool of n positions after fn (math.inf: a global pool of unknown size); see pooled()
    pool: float = field(default=0.0, compare=False, repr=False)

    @property
    def is_linear(self) -> bool:
        return self.name == "linear"

    @property
    def is_gate(self) -> bool:
        return bool(self.factors)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def second_moment(self, std: Any = 1.0) -> Any:
        """``E[f(std * z)^2]``; for a gate ``prod_i E[f_i(std * z_i)^2]`` (independent factors)."""
        if self.factors:
            return math.prod(f.second_moment(std) for f in self.factors)
        m2 = expect(lambda x: self.fn(x) ** 2, std)
        if self.pool:
            mean = expect(self.fn, std)
            return np.sqrt(_pooled_floor(mean, m2, self.pool) * m2)
        return m2

    def __str__(self) -> str:
        return self.name if self.param is None else f"{self.name}({self.param:g})"


def gate(factors: Sequence[Activation]) -> Activation:
    """The activation of a product of independent factors ``f_1(z_1) * f_2(z_2)``, ``z_i ~ N(0, 1)``.

    Its second moment is the product of the factors' (quadrature over both), which is what the layer
    reading the product needs: SwiGLU ``silu(g) * u`` has ``E[silu(z)^2] * 1``.

    >>> g = gate([resolve_activation("silu"), resolve_activation(None)])
    >>> str(g), round(variance_gain(g), 4) == round(variance_gain(resolve_activation("silu")), 4)
    ('gate(silu*linear)', True)
    """
    factors = tuple(factors)

    def fn(x: torch.Tensor) -> torch.Tensor:  # the same input to every factor: a stand-in for plots only
        return math.prod((f.fn(x) for f in factors[1:]), start=factors[0].fn(x))

    return Activation(f"gate({'*'.join(str(f) for f in factors)})", None, fn, factors)


# canonical name -> (function of (x, param), default param)
_FUNCS: dict[str, tuple[Callable[[torch.Tensor, Any], torch.Tensor], float | None]] = {
    "linear": (lambda x, p: x, None),
    "relu": (lambda x, p: F.relu(x), None),
    "leaky_relu": (lambda x, p: F.leaky_relu(x, p), 0.01),
    "prelu": (lambda x, p: F.leaky_relu(x, p), 0.25),
    "rrelu": (lambda x, p: F.leaky_relu(x, p), (1 / 8 + 1 / 3) / 2),
    "tanh": (lambda x, p: torch.tanh(x), None),
    "sigmoid": (lambda x, p: torch.sigmoid(x), None),
    "selu": (lambda x, p: F.selu(x), None),
    "elu": (lambda x, p: F.elu(x, p), 1.0),
    "celu": (lambda x, p: F.celu(x, p), 1.0),
    "gelu": (lambda x, p: F.gelu(x), None),
    "gelu_tanh": (lambda x, p: F.gelu(x, approximate="tanh"), None),
    "silu": (lambda x, p: F.silu(x), None),
    "mish": (lambda x, p: F.mish(x), None),
    "softplus": (lambda x, p: F.softplus(x, p), 1.0),
    "softsign": (lambda x, p: F.softsign(x), None),
    "hardtanh": (lambda x, p: F.hardtanh(x), None),
    "relu6": (lambda x, p: F.relu6(x), None),
    "hardswish": (lambda x, p: F.hardswish(x), None),
    "hardsigmoid": (lambda x, p: F.hardsigmoid(x), None),
    "logsigmoid": (lambda x, p: F.logsigmoid(x), None),
    "tanhshrink": (lambda x, p: F.tanhshrink(x), None),
    "softshrink": (lambda x, p: F.softshrink(x, p), 0.5),
    "hardshrink": (lambda x, p: F.hardshrink(x, p), 0.5),
    "sin": (lambda x, p: torch.sin(x), None),
    "abs": (lambda x, p: torch.abs(x), None),
}

ALIASES = {
    "identity": "linear",
    "none": "linear",
    "conv1d": "linear",
    "conv2d": "linear",
    "conv3d": "linear",
    "conv_transpose1d": "linear",
    "conv_transpose2d": "linear",
    "conv_transpose3d": "linear",
    "rectify": "relu",  # Lasagne's name
    "leakyrectify": "leaky_relu",
    "leaky_rectify": "leaky_relu",
    "logistic": "sigmoid",
    "swish": "silu",
    "leakyrelu": "leaky_relu",
    "lrelu": "leaky_relu",
}

ACTIVATION_NAMES = tuple(sorted(set(_FUNCS) | set(ALIASES)))

# nn.Module classes -> (canonical name, attribute holding the parameter)
ACTIVATION_MODULES: dict[type, tuple[str, str | None]] = {
    nn.Identity: ("linear", None),
    nn.ReLU: ("relu", None),
    nn.LeakyReLU: ("leaky_relu", "negative_slope"),
    nn.PReLU: ("prelu", "weight"),
    nn.RReLU: ("rrelu", None),
    nn.Tanh: ("tanh", None),
    nn.Sigmoid: ("sigmoid", None),
    nn.SELU: ("selu", None),
    nn.ELU: ("elu", "alpha"),
    nn.CELU: ("celu", "alpha"),
    nn.GELU: ("gelu", "approximate"),
    nn.SiLU: ("silu", None),
    nn.Mish: ("mish", None),
    nn.Softplus: ("softplus", "beta"),
    nn.Softsign: ("softsign", None),
    nn.Hardtanh: ("hardtanh", None),
    nn.ReLU6: ("relu6", None),
    nn.Hardswish: ("hardswish", None),
    nn.Hardsigmoid: ("hardsigmoid", None),
    nn.LogSigmoid: ("logsigmoid", None),
    nn.Tanhshrink: ("tanhshrink", None),
    nn.Softshrink: ("softshrink", "lambd"),
    nn.Hardshrink: ("hardshrink", "lambd"),
}

# functions -> canonical name (functional calls found when tracing a model)
_FUNCTIONS: dict[Any, str] = {
    F.relu: "relu",
    F.relu_: "relu",
    torch.relu: "relu",
    torch.relu_: "relu",
    F.leaky_relu: "leaky_relu",
    F.tanh: "tanh",
    torch.tanh: "tanh",
    F.sigmoid: "sigmoid",
    torch.sigmoid: "sigmoid",
    F.selu: "selu",
    torch.selu: "selu",
    F.elu: "elu",
    F.celu: "celu",
    F.gelu: "gelu",
    F.silu: "silu",
    F.mish: "mish",
    F.softplus: "softplus",
    F.softsign: "softsign",
    F.hardtanh: "hardtanh",
    F.relu6: "relu6",
    F.hardswish: "hardswish",
    F.hardsigmoid: "hardsigmoid",
    F.logsigmoid: "logsigmoid",
    torch.sin: "sin",
    torch.abs: "abs",
}
# tensor methods (x.relu(), x.sigmoid(), ...) as they appear in torch.fx call_method nodes
METHOD_NAMES = {"relu": "relu", "relu_": "relu", "tanh": "tanh", "tanh_": "tanh", "sigmoid": "sigmoid",
                "sigmoid_": "sigmoid", "sin": "sin", "abs": "abs"}


def _named(name: str, param: Any = None) -> Activation:
    func, default = _FUNCS[name]
    if name == "gelu" and param == "tanh":
        name, param = "gelu_tanh", None
    if name in ("gelu", "gelu_tanh"):
        param = None
    if param is not None:
        if isinstance(param, bool) or not isinstance(param, (int, float)):
            raise TypeError(f"param (the {name} parameter) must be a finite number; got {param!r} "
                            f"({type(param).__name__})")
        if not math.isfinite(param):
            raise ValueError(f"param (the {name} parameter) must be a finite number; got {param!r}")
    p = default if param is None else float(param)
    return Activation(name, p, lambda x, _f=func, _p=p: _f(x, _p))


def is_activation(obj: Any) -> bool:
    """True when ``obj`` is a known activation (name, module, module class or function)."""
    if isinstance(obj, Activation):
        return True
    if isinstance(obj, str):
        key = obj.lower()
        return ALIASES.get(key, key) in _FUNCS
    if isinstance(obj, nn.Module):
        return type(obj) in ACTIVATION_MODULES
    if isinstance(obj, type):
        return obj in ACTIVATION_MODULES
    try:
        return obj in _FUNCTIONS
    except TypeError:
        return False


def resolve_activation(act: Any, param: float | None = None, *, argname: str = "nonlinearity") -> Activation:
    """Turn a name, an ``nn.Module`` (instance or class), a function or any callable into an Activation.

    Unknown callables become ``Activation("custom:<name>", fn=callable)``; ``None`` is linear. ``argname``
    is the caller's name for the argument (``activation``, ``nonlinearity``), used in error messages.

    >>> resolve_activation(nn.LeakyReLU(0.2))
    Activation(name='leaky_relu', param=0.2)
    """
    if act is None:
        return _named("linear")
    if isinstance(act, Activation):
        return act
    if isinstance(act, str):
        key = act.lower()
        key = ALIASES.get(key, key)
        if key not in _FUNCS:
            raise ValueError(
                f"{argname} must be one of {', '.join(ACTIVATION_NAMES)}, an activation module or a "
                f"callable; got {act!r}"
            )
        return _named(key, param)
    if isinstance(act, type) and issubclass(act, nn.Module):
        if act in ACTIVATION_MODULES:
            return resolve_activation(act())
        raise ValueError(f"{argname}: class {act.__name__} is not a known activation; pass an instance")
    if isinstance(act, nn.Module) and type(act) in ACTIVATION_MODULES:
        name, attr = ACTIVATION_MODULES[type(act)]
        value = getattr(act, attr) if attr else None
        if isinstance(value, torch.Tensor):
            value = float(value.detach().float().mean())
        if name == "hardtanh" and (act.min_val, act.max_val) != (-1.0, 1.0):
            return Activation(f"custom:{act!r}", None, act)
        return _named(name, value)
    try:
        if act in _FUNCTIONS:
            return _named(_FUNCTIONS[act], param)
    except TypeError:
        pass
    if callable(act):
        label = getattr(act, "__name__", None) or type(act).__name__
        return Activation(f"custom:{label}", None, act)
    raise TypeError(f"{argname} must be a name, an nn.Module, or a callable; got {type(act).__name__}")


# --------------------------------------------------------------------------------------------------
# Gains

_TORCH_TABLE = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3, "relu": math.sqrt(2.0), "selu": 3.0 / 4}
_TORCH_NAMES = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu")
def _pooled_floor(mean: Any, m2: Any, n: float) -> Any:
    """``E[p^2]`` for the average ``p`` of ``n`` independent positions: the mean survives, the spread shrinks."""
    return mean * mean + (0.0 if math.isinf(n) else (m2 - mean * mean) / n)


def pooled(act: Activation, n: float = math.inf) -> Activation:
    """The activation ``act`` followed by an average pool over ``n`` positions (``math.inf``: a global pool
    of unknown size), as the layer reading the pool sees it.

    The pool keeps the mean of ``act(z)`` and shrinks its spread by a factor between 1 (positions perfectly
    correlated: ``E[p^2] = E[act(z)^2]``) and ``1/n`` (independent: ``E[p^2] = mu^2 + (E[act^2] - mu^2)/n``);
    which one depends on the data, not on the model. The second moment used is the geometric mean of the two
    extremes, so the next layer's output lands within a factor ``(hi/lo)^(1/4)`` of its target whatever the
    correlation (for ReLU and a global pool: within x0.75 .. x1.33, where the plain ReLU gain gives x0.56 ..
    x1 and always errs low). Returns ``act`` itself when that does not apply: a linear or zero-mean ``act``
    (with a global pool the floor would be 0), a gate, or ``n <= 1``.

    >>> r = pooled(resolve_activation("relu"))
    >>> str(r), round(variance_gain(r) / variance_gain(resolve_activation("relu")), 3)
    ('avgpool(relu)', 1.331)
    """
    if act.factors or act.pool or act.is_linear or not n > 1:
        return act
    m2 = act.second_moment()
    floor = _pooled_floor(expect(act.fn), m2, n)
    if not floor > 1e-3 * m2:
        return act
    size = "" if math.isinf(n) else f"{n:g}"
    return Activation(f"avgpool{size}({act})", act.param, act.fn, (), float(n))


_EXTRA_NAMES = ("elu", "gelu", "silu", "swish", "mish", "softplus", "softsign", "hardtanh", "relu6", "prelu")


@functools.lru_cache(maxsize=256)
def _variance_gain_named(name: str, param: float | None) -> float:
    return 1.0 / math.sqrt(_named(name, param).second_moment())


def variance_gain(act: Activation) -> float:
    """``1 / sqrt(E[f(z)^2])``: the gain that preserves the second moment through ``act``."""
    if act.name in ("relu", "leaky_relu", "prelu", "rrelu"):
        slope = 0.0 if act.name == "relu" else float(act.param)
        return math.sqrt(2.0 / (1.0 + slope * slope))  # closed form (He et al. 2015)
    if act.name == "linear":
        return 1.0
    if act.name in _FUNCS:
        return _variance_gain_named(act.name, act.param)
    m2 = act.second_moment()
    if not math.isfinite(m2) or m2 <= 0:
        raise ValueError(f"nonlinearity {act.name}: E[f(z)^2] = {m2}, no variance-preserving gain exists")
    return 1.0 / math.sqrt(m2)


def gain(nonlinearity: Any = "linear", param: float | None = None, *, rule: str = "torch") -> float:
    """Recommended gain (factor on the std) for a nonlinearity.

    ``rule="torch"`` matches ``torch.nn.init.calculate_gain`` on its names; ``rule="variance"`` is
    ``1/sqrt(E[f(z)^2])`` for any activation (see the module docstring). ``param`` is the negative
    slope of leaky_relu/prelu or the parameter of elu/celu/softplus.

    >>> gain("relu"), gain("leaky_relu", 0.2), gain("tanh")
    (1.4142135623730951, 1.3867504905630728, 1.6666666666666667)
    >>> round(gain("tanh", rule="variance"), 4)
    1.5925
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}; got {rule!r}")
    act = resolve_activation(nonlinearity, param)
    if rule == "torch":
        if act.name in _TORCH_TABLE:
            return _TORCH_TABLE[act.name]
        if act.name == "leaky_relu":
            return math.sqrt(2.0 / (1 + act.param**2))
        if isinstance(nonlinearity, str) and nonlinearity.lower() not in _TORCH_NAMES + _EXTRA_NAMES:
            if act.name not in _EXTRA_NAMES:
                raise ValueError(
                    f"nonlinearity {nonlinearity!r} has no rule='torch' gain; accepted names: "
                    f"{', '.join(_TORCH_NAMES + _EXTRA_NAMES)} (or use rule='variance', which takes any)"
                )
    return variance_gain(act)


def resolve_gain(value: Any, rule: str = "torch") -> float:
    """A gain argument: a number, or a nonlinearity (Lasagne's ``gain='relu'``) turned into its gain."""
    if isinstance(value, bool) or not (isinstance(value, (int, float, str)) or callable(value)):
        raise TypeError(f"gain must be a non-negative number, a nonlinearity name or an activation; got {value!r} "
                        f"({type(value).__name__})")
    if isinstance(value, (int, float)):
        if not 0 <= value <= sys.float_info.max:  # also NaN, inf, and an int beyond float64 (10**400)
            raise ValueError(f"gain must be a non-negative finite number; got {value!r}")
        return float(value)
    try:
        return gain(value, rule=rule)
    except (ValueError, TypeError) as exc:  # an unknown name: say which argument carried it
        raise type(exc)(f"gain: {exc}") from None
