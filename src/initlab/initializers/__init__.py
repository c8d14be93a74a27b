"""The catalogue of initializers (see ``initlab.available()`` and ``initlab list``)."""

from initlab.initializers.base import Initializer
from initlab.initializers.basic import Constant, Normal, Ones, TruncatedNormal, Uniform, Zeros
from initlab.initializers.registry import aliases, available, get, register
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

__all__ = [
    "Initializer", "Constant", "Zeros", "Ones", "Normal", "Uniform", "TruncatedNormal", "VarianceScaling",
    "Glorot", "GlorotNormal", "GlorotUniform", "GlorotUniformSigmoid", "He", "HeNormal", "HeUniform",
    "LeCunNormal", "LeCunUniform", "FanInUniform", "RBMNormal", "Orthogonal", "DeltaOrthogonal", "Identity",
    "Sparse", "get", "available", "aliases", "register",
]
