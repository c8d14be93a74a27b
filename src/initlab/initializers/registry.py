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


def register(cls: type[Initializer], aliases: tuple[str, ...] = ()) -> None:
    """Add an initializer class under ``cls.name`` (and ``aliases``) to the registry; its ``formula`` and
    ``reference`` (class attributes) are the registry's text."""
    if not cls.formula:
        raise ValueError(f"{cls.__name__} states no formula")
    _ENTRIES[cls.name] = Entry(cls, cls.formula, cls.reference)
    for alias in (*aliases, cls.__name__):
        _ALIASES[alias] = cls.name


# the formula and reference of each entry are the class's own (stated once, in the class)
for _cls, _aliases in [
    (Constant, ('constant_',)),
    (Zeros, ('zero', 'zeros_')),
    (Ones, ('ones_',)),
    (Normal, ('random_normal', 'normal_')),
    (Uniform, ('random_uniform', 'uniform_')),
    (TruncatedNormal, ('trunc_normal', 'trunc_normal_')),
    (VarianceScaling, ()),
    (Glorot, ('xavier',)),
    (GlorotNormal, ('xavier_normal', 'xavier_normal_')),
    (GlorotUniform, ('xavier_uniform', 'xavier_uniform_')),
    (GlorotUniformSigmoid, ('sigmoid_uniform',)),
    (He, ('kaiming',)),
    (HeNormal, ('kaiming_normal', 'kaiming_normal_', 'msra')),
    (HeUniform, ('kaiming_uniform', 'kaiming_uniform_')),
    (LeCunNormal, ()),
    (LeCunUniform, ()),
    (FanInUniform, ('torch_default', 'standard')),
    (RBMNormal, ('rbm',)),
    (Orthogonal, ('orthogonal_',)),
    (DeltaOrthogonal, ()),
    (Identity, ('dirac', 'eye', 'dirac_', 'eye_')),
    (Sparse, ('sparse_',)),
]:
    register(_cls, _aliases)


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
        names = [k.arg for k in node.keywords]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:  # Python itself refuses f(a=1, a=2); so does a spec
            raise ValueError(f"initializer spec {spec!r}: keyword argument {repeated[0]!r} repeated")
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
    except OverflowError as exc:  # a 400-digit literal: no float holds it
        raise ValueError(f"initializer spec {shown}: a number is too large ({exc})") from None
