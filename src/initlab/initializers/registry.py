"""The registry: names -> initializers, and ``get`` which turns any spec into an initializer."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from initlab.initializers.base import Initializer
from initlab.initializers.basic import Constant, Normal, Ones, TruncatedNormal, Uniform, Zeros
from initlab.initializers.structured import DeltaOrthogonal, Identity, Orthogonal, Sparse
from initlab.initializers.variance import (
    FanInUniform,
    Glorot,
    GlorotNormal,
    GlorotUniform,
    GlorotUniformSigmoid,
    He,
    HeNormal,
    HeUniform,
    LeCunNormal,
    LeCunUniform,
    RBMNormal,
    VarianceScaling,
)


@dataclass(frozen=True)
class Entry:
    cls: type[Initializer]
    formula: str
    reference: str


_ENTRIES: dict[str, Entry] = {}
_ALIASES: dict[str, str] = {}


def register(cls: type[Initializer], formula: str, reference: str, aliases: tuple[str, ...] = ()) -> None:
    """Add an initializer class under ``cls.name`` (and ``aliases``) to the registry."""
    _ENTRIES[cls.name] = Entry(cls, formula, reference)
    for alias in (*aliases, cls.__name__):
        _ALIASES[alias] = cls.name


for _cls, _formula, _ref, _aliases in [
    (Constant, "w = value", "-", ("constant_",)),
    (Zeros, "w = 0", "Bengio 2012 (output layers); SkipInit", ("zero", "zeros_")),
    (Ones, "w = 1", "norm-layer scales", ("ones_",)),
    (Normal, "N(mean, std^2)", "torch normal_", ("random_normal", "normal_")),
    (Uniform, "U(a, b) | U(-r, r) | mean +- sqrt(3) std", "Lasagne Uniform; torch uniform_",
     ("random_uniform", "uniform_")),
    (TruncatedNormal, "N(mean, std^2) cut at bounds (std units, or absolute)", "Keras/JAX; torch trunc_normal_",
     ("trunc_normal", "trunc_normal_")),
    (VarianceScaling, "var = scale / n(mode)", "Keras 3 / JAX variance_scaling", ()),
    (Glorot, "var = gain^2 * 2 / (fan_in + fan_out)", "Glorot & Bengio 2010", ("xavier",)),
    (GlorotNormal, "N(0, gain^2 * 2 / (fan_in + fan_out))", "Glorot & Bengio 2010; torch xavier_normal_",
     ("xavier_normal", "xavier_normal_")),
    (GlorotUniform, "U(+-gain * sqrt(6 / (fan_in + fan_out)))", "Glorot & Bengio 2010; torch xavier_uniform_",
     ("xavier_uniform", "xavier_uniform_")),
    (GlorotUniformSigmoid, "U(+-4 sqrt(6 / (fan_in + fan_out)))", "Glorot & Bengio 2010; Bengio 2012 (logistic)",
     ("sigmoid_uniform",)),
    (He, "var = gain^2 / fan (gain sqrt(2) for ReLU)", "He et al. 2015", ("kaiming",)),
    (HeNormal, "N(0, gain^2 / fan_in)", "He et al. 2015; torch kaiming_normal_",
     ("kaiming_normal", "kaiming_normal_", "msra")),
    (HeUniform, "U(+-gain * sqrt(3 / fan_in))", "He et al. 2015; torch kaiming_uniform_",
     ("kaiming_uniform", "kaiming_uniform_")),
    (LeCunNormal, "N(0, 1 / fan_in)", "LeCun et al. 1998; Klambauer et al. 2017 (SELU)", ()),
    (LeCunUniform, "U(+-sqrt(3 / fan_in))", "LeCun et al. 1998", ()),
    (FanInUniform, "U(+-1 / sqrt(fan_in))", "torch Linear/Conv default; Glorot & Bengio 'standard'",
     ("torch_default", "standard")),
    (RBMNormal, "N(0, 0.01^2)", "Hinton 2010, A practical guide to training RBMs", ("rbm",)),
    (Orthogonal, "QR of a Gaussian, sign-fixed; times gain", "Saxe et al. 2013; torch orthogonal_",
     ("orthogonal_",)),
    (DeltaOrthogonal, "zero kernel, orthogonal (out, in) at the centre", "Xiao et al. 2018", ()),
    (Identity, "eye (2-D) / Dirac delta per group (3-5-D)", "torch eye_, dirac_", ("dirac", "eye", "dirac_", "eye_")),
    (Sparse, "N(0, std^2) on a random subset, zero elsewhere", "Martens 2010; Lasagne Sparse; torch sparse_",
     ("sparse_",)),
]:
    register(_cls, _formula, _ref, _aliases)


def available() -> list[str]:
    """The registry names, sorted (aliases such as ``xavier_normal``, ``kaiming_*``, ``msra``, ``dirac`` and
    ``eye`` are accepted by ``get`` too; see ``aliases()``)."""
    return sorted(_ENTRIES)


def aliases() -> dict[str, str]:
    """Every accepted alias -> its registry name (class names included)."""
    return dict(_ALIASES)


def entry(name: str) -> Entry:
    key = name if name in _ENTRIES else _ALIASES.get(name, _ALIASES.get(name.lower(), name.lower()))
    if key not in _ENTRIES:
        raise ValueError(f"unknown initializer {name!r}; available: {', '.join(available())} "
                         f"(aliases: {', '.join(sorted(a for a in _ALIASES if a.islower()))})")
    return _ENTRIES[key]


def _parse(spec: str) -> tuple[str, list[Any], dict[str, Any]]:
    try:
        node = ast.parse(spec.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"cannot parse initializer spec {spec!r}: {exc.msg}") from None
    if isinstance(node, ast.Name):
        return node.id, [], {}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if any(k.arg is None for k in node.keywords):
            raise ValueError(f"initializer spec {spec!r}: **kwargs is not supported; write name(arg=value, ...)")
        try:
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg is not None}
        except ValueError:
            raise ValueError(f"initializer spec {spec!r}: arguments must be literals (numbers, strings, "
                             "tuples, None, True/False)") from None
        return node.func.id, args, kwargs
    raise ValueError(f"initializer spec must look like 'name' or 'name(arg=value, ...)'; got {spec!r}")


def get(spec: Any) -> Initializer:
    """Any initializer spec -> an Initializer.

    Accepts an instance (returned as is), a registry name or alias (``"he_normal"``, ``"xavier_uniform"``),
    a call (``"normal(std=0.01)"``, ``"orthogonal(gain='relu')"``, ``"HeNormal(mode='fan_out')"``: what
    ``repr`` prints), or a config dict ``{"name": ..., **arguments}`` (what ``to_config`` returns).

    >>> get("normal(std=0.01)")
    Normal(std=0.01)
    >>> get(get("he_uniform").to_config())
    HeUniform()
    """
    if isinstance(spec, Initializer):
        return spec
    if isinstance(spec, dict):
        if "name" not in spec:
            raise ValueError(f"an initializer config needs a 'name' key; got keys {sorted(spec)}")
        args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items() if k != "name"}
        return _build(entry(str(spec["name"])).cls, [], args, repr(spec))
    if isinstance(spec, str):
        name, args, kwargs = _parse(spec)
        return _build(entry(name).cls, args, kwargs, repr(spec))
    if isinstance(spec, type) and issubclass(spec, Initializer):
        return spec()
    raise TypeError(f"an initializer spec must be a name, a 'name(args)' string, a config dict or an "
                    f"Initializer; got {type(spec).__name__}")


def _build(cls: type[Initializer], args: list[Any], kwargs: dict[str, Any], shown: str) -> Initializer:
    try:
        return cls(*args, **kwargs)
    except TypeError as exc:
        accepted = ", ".join(cls._defaults())
        raise ValueError(f"initializer spec {shown}: {exc}; {cls.__name__} accepts: {accepted}") from None
