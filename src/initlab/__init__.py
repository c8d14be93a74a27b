"""initlab: neural-network weight initialization, made visible.

The catalogue (``initlab.get``, the initializer classes, ``fans``, ``gain``) is imported eagerly; the
heavier tools (``init_model``, ``probe``, ``lsuv``, ``pretrain``, ``theory``, figures) load on first use,
so ``import initlab`` costs little more than ``import torch``.
"""

from __future__ import annotations

import importlib
from typing import Any

from initlab.gains import gain
from initlab.initializers import *  # noqa: F403
from initlab.initializers import __all__ as _initializer_names
from initlab.shapes import Fans, fans

__version__ = "0.1.0"

# public name -> module that defines it (loaded lazily by __getattr__)
_LAZY: dict[str, str] = {
    "trace": "initlab.graph",
    "Graph": "initlab.graph",
    "init_model": "initlab.model_init",
    "InitReport": "initlab.model_init",
    "probe": "initlab.probing.probe",
    "ProbeResult": "initlab.probing.probe",
    "LayerStats": "initlab.probing.stats",
    "Monitor": "initlab.probing.monitor",
    "plot_activations": "initlab.report.figures",
    "plot_profile": "initlab.report.figures",
    "compare": "initlab.theory.compare",
    "lsuv": "initlab.datainit.lsuv",
    "LSUVReport": "initlab.datainit.lsuv",
    "pretrain": "initlab.datainit.pretrain",
    "PretrainReport": "initlab.datainit.pretrain",
    "mup": "initlab.mup", "coord_check": "initlab.mup",
}
_SUBMODULES = {"theory", "data", "zoo", "experiments", "compat", "report", "sampling"}

__all__ = ["fans", "Fans", "gain", *_initializer_names, *_LAZY, *sorted(_SUBMODULES)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"initlab.{name}")
    raise AttributeError(f"module 'initlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
