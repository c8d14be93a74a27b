"""One vocabulary for bad arguments, shared by every tool.

The rule: a value of the wrong *type* raises ``TypeError``, a value of the right type outside the accepted
range raises ``ValueError``; either way the message names the argument, says what is accepted and shows
what was given. Checks run before anything is traced, drawn or changed.

>>> check_seed(3)
3
>>> check_seed(-1)
Traceback (most recent call last):
...
ValueError: seed must be a non-negative int or None below 2**64; got -1
>>> check_int(1.5, "bins", 1, 100_000)
Traceback (most recent call last):
...
TypeError: bins must be an int in [1, 100000]; got 1.5 (float)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["check_seed", "check_int", "check_flag", "check_number", "check_choice", "check_batch"]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_seed(value: Any, name: str = "seed", *, optional: bool = True) -> int | None:
    """A seed: a non-negative int (or None when ``optional``)."""
    accepted = "a non-negative int" + (" or None" if optional else "")
    if value is None and optional:
        return None
    if not _is_int(value):
        raise TypeError(f"{name} must be {accepted}; got {value!r} ({type(value).__name__})")
    if value < 0 or value >= 2**64:  # torch generators take 64-bit seeds
        raise ValueError(f"{name} must be {accepted} below 2**64; got {value!r}")
    return int(value)


def check_int(value: Any, name: str, minimum: int, maximum: int | None = None) -> int:
    """An int in ``[minimum, maximum]`` (no upper bound when ``maximum`` is None)."""
    accepted = f"an int >= {minimum}" if maximum is None else f"an int in [{minimum}, {maximum}]"
    if not _is_int(value):
        raise TypeError(f"{name} must be {accepted}; got {value!r} ({type(value).__name__})")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {accepted}; got {value!r}")
    return int(value)


def check_flag(value: Any, name: str, *, optional: bool = False) -> bool | None:
    """True or False (or None when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        accepted = "True, False or None" if optional else "True or False"
        raise TypeError(f"{name} must be {accepted}; got {value!r} ({type(value).__name__})")
    return value


def check_number(value: Any, name: str, *, minimum: float | None = None, strict: bool = False) -> float:
    """A finite real number, ``>= minimum`` (``> minimum`` when ``strict``)."""
    bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
    accepted = f"a finite number{bound}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be {accepted}; got {value!r} ({type(value).__name__})")
    try:
        v = float(value)
    except OverflowError:  # an int beyond float64 (10**400)
        raise ValueError(f"{name} must be {accepted}; got an int of {int(value).bit_length()} bits") from None
    if not math.isfinite(v) or (minimum is not None and (v <= minimum if strict else v < minimum)):
        raise ValueError(f"{name} must be {accepted}; got {value!r}")
    return v


def check_choice(value: Any, name: str, choices: Any) -> Any:
    """One of ``choices`` (a TypeError when ``value`` is not even of the choices' type)."""
    options = tuple(choices)
    if value in options:
        return value
    kinds = {type(c) for c in options}
    accepted = f"one of {', '.join(repr(c) for c in options)}"
    if not isinstance(value, tuple(kinds)):
        raise TypeError(f"{name} must be {accepted}; got {value!r} ({type(value).__name__})")
    raise ValueError(f"{name} must be {accepted}; got {value!r}")


def check_batch(obj: Any, name: str = "inputs") -> None:
    """A batch to run a model on: at least one tensor, no empty tensor (an empty batch has no statistics
    to measure), no NaN or infinity in a floating tensor (it would poison every statistic, and a verdict
    would then blame the weights). ValueError naming ``name``."""
    import torch
    from torch.utils import _pytree as pytree

    tensors = [t for t in pytree.tree_leaves(obj) if isinstance(t, torch.Tensor)]
    if not tensors:
        raise ValueError(f"{name} must hold at least one tensor; got {type(obj).__name__}")
    for t in tensors:
        if t.numel() == 0:
            raise ValueError(f"{name} is empty (a tensor of shape {tuple(t.shape)}): give at least one example")
        if t.is_floating_point() or t.is_complex():
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise ValueError(f"{name} contains {bad} NaN or infinite value(s) out of {t.numel()}: clean the "
                                 "data first (every statistic, and every verdict, would be wrong)")
