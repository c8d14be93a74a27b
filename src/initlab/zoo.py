"""Small reference models: plain ``nn.Module`` s used by the tests, the experiments and the examples.

Every builder takes ``seed`` (default 0): the layers are constructed, with torch's own default
initialization, inside ``torch.random.fork_rng`` seeded with it, so a model is reproducible and building
one never moves the caller's global RNG. ``seed=None`` draws from (and advances) the global RNG as plain
torch code would. Re-initialize with ``initlab.init_model`` or any initializer from the catalogue.

>>> net = mlp(depth=3, width=64, activation="tanh", in_features=40)
>>> net(torch.zeros(2, 40)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from initlab.gains import ACTIVATION_MODULES, resolve_activation
from initlab.validate import check_int, check_seed

__all__ = ["mlp", "cnn", "resnet", "transformer", "activation_module", "Lambda", "BasicBlock"]

# canonical activation name -> (module class, constructor keyword of its parameter)
_MODULE_FOR: dict[str, tuple[type[nn.Module], str | None]] = {}
for _cls, (_name, _attr) in ACTIVATION_MODULES.items():
    if _name not in _MODULE_FOR and _name != "linear":
        _MODULE_FOR[_name] = (_cls, _attr if _attr not in ("weight",) else "init")


class Lambda(nn.Module):
    """Wraps an elementwise callable (``torch.sin``, a lambda) so it can sit in an ``nn.Sequential``."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], name: str | None = None) -> None:
        super().__init__()
        self.fn = fn
        self.label = name or getattr(fn, "__name__", type(fn).__name__)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.label


def activation_module(activation: Any) -> nn.Module | None:
    """A fresh module computing ``activation`` (a name, module, module class or callable); None if linear.

    Known names become the matching torch module (``"leaky_relu"`` -> ``nn.LeakyReLU(0.01)``), so tracers
    and readers see the usual class; module instances are deep-copied (a PReLU must not be shared between
    layers); other callables are wrapped in :class:`Lambda`.
    """
    if isinstance(activation, nn.Module):
        if isinstance(activation, nn.Identity):
            return None
        return copy.deepcopy(activation)
    act = resolve_activation(activation, argname="activation")
    if act.is_linear:
        return None
    if act.name == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    if act.name in _MODULE_FOR:
        cls, kw = _MODULE_FOR[act.name]
        return cls(**({kw: act.param} if kw and act.param is not None else {}))
    if isinstance(activation, str):  # a known name with no torch module class (sin, abs)
        return Lambda(act.fn, act.name)
    return Lambda(activation if callable(activation) else act.fn, act.name)


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    if seed is None:
        yield
        return
    check_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _check_int(name: str, value: Any, minimum: int) -> int:
    return check_int(value, name, minimum)


def _per_layer(activation: Any, depth: int) -> list[Any]:
    if isinstance(activation, (list, tuple)):
        if len(activation) != depth:
            raise ValueError(f"activation: a sequence needs one entry per hidden layer ({depth}); "
                             f"got {len(activation)}")
        return list(activation)
    return [activation] * depth


def mlp(depth: int, width: int, activation: Any = "relu", batchnorm: bool = False, *, in_features: int = 784,
        out_features: int = 10, bias: bool = True, seed: int | None = 0) -> nn.Sequential:
    """Multilayer perceptron with ``depth`` hidden layers of ``width`` units.

    Layout: ``[Linear(in, width), (BatchNorm1d), act] * depth + [Linear(width, out_features)]``:
    ``depth`` counts HIDDEN layers, so the network has ``depth + 1`` Linear layers (``depth=0`` is a
    linear classifier). BatchNorm, when asked, sits between each hidden Linear and its activation
    (Ioffe & Szegedy 2015).

    Args:
        depth: number of hidden layers (>= 0).
        width: units per hidden layer.
        activation: a name (``"relu"``, ``"tanh"``, ``"leaky_relu"``...), an ``nn.Module`` (instance or
            class), a function, or a list with one of those per hidden layer (``"linear"``/None = none).
        batchnorm: add ``nn.BatchNorm1d`` after each hidden Linear.
        in_features, out_features, bias: as ``nn.Linear``.
        seed: seed of torch's default initialization (global RNG untouched); None uses the global RNG.

    >>> mlp(2, 8, "tanh", in_features=4, out_features=3)
    Sequential(
      (0): Linear(in_features=4, out_features=8, bias=True)
      (1): Tanh()
      (2): Linear(in_features=8, out_features=8, bias=True)
      (3): Tanh()
      (4): Linear(in_features=8, out_features=3, bias=True)
    )
    """
    _check_int("depth", depth, 0)
    _check_int("width", width, 1)
    _check_int("in_features", in_features, 1)
    _check_int("out_features", out_features, 1)
    acts = [activation_module(a) for a in _per_layer(activation, depth)]
    layers: list[nn.Module] = []
    with _seeded(seed):
        n_in = in_features
        for act in acts:
            layers.append(nn.Linear(n_in, width, bias=bias))
            if batchnorm:
                layers.append(nn.BatchNorm1d(width))
            if act is not None:
                layers.append(act)
            n_in = width
        layers.append(nn.Linear(n_in, out_features, bias=bias))
    return nn.Sequential(*layers)


def _head(input_shape: Sequence[int] | None) -> list[nn.Module]:
    if input_shape is None:
        return []
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise TypeError(f"input_shape must be a sequence of ints (channels, height, width...); got {input_shape!r}")
    shape = tuple(check_int(s, "input_shape", 1) for s in input_shape)
    if len(shape) < 2:
        raise ValueError(
            f"input_shape must be (channels, height, width...) with positive sizes; got {input_shape!r}"
        )
    return [nn.Unflatten(1, shape)]


def cnn(channels: Sequence[int] = (16, 32), activation: Any = "relu", batchnorm: bool = False, *,
        in_channels: int = 1, out_features: int = 10, input_shape: Sequence[int] | None = None,
        seed: int | None = 0) -> nn.Sequential:
    """Small 2-D CNN: per stage ``Conv2d(3x3, padding 1), (BatchNorm2d), act, MaxPool2d(2)``, then global
    average pooling and a Linear classifier.

    Args:
        channels: output channels of each stage.
        activation, batchnorm: as :func:`mlp`.
        in_channels, out_features: input channels and number of classes.
        input_shape: e.g. ``(1, 28, 28)``: accept flat ``(n, 784)`` rows (as ``initlab.data`` returns) and
            unflatten them first. ``in_channels`` is then taken from it.
        seed: as :func:`mlp`.

    >>> cnn(input_shape=(1, 8, 8))(torch.zeros(2, 64)).shape
    torch.Size([2, 10])
    """
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence):
        raise TypeError(f"channels must be a sequence of ints, one per stage; got {channels!r}")
    if not channels:
        raise ValueError("channels must name at least one stage")
    for c in channels:
        _check_int("channels", c, 1)
    head = _head(input_shape)
    if input_shape is not None:
        in_channels = int(input_shape[0])
    _check_int("in_channels", in_channels, 1)
    _check_int("out_features", out_features, 1)
    layers: list[nn.Module] = list(head)
    with _seeded(seed):
        c_in = in_channels
        for c in channels:
            layers.append(nn.Conv2d(c_in, c, 3, padding=1))
            if batchnorm:
                layers.append(nn.BatchNorm2d(c))
            act = activation_module(activation)
            if act is not None:
                layers.append(act)
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
            c_in = c
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, out_features)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): ``relu(x + bn2(conv2(relu(bn1(conv1(x))))))``, same width."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(x + out)


class ResNet(nn.Sequential):
    """Stem conv + BN + ReLU, ``blocks`` :class:`BasicBlock` s, global average pool, Linear."""


def resnet(blocks: int = 3, width: int = 16, *, in_channels: int = 1, out_features: int = 10,
           input_shape: Sequence[int] | None = None, seed: int | None = 0) -> ResNet:
    """Small residual network: a 3x3 stem, ``blocks`` basic blocks at constant ``width`` (each adds its
    input back: ``x + f(x)``), global average pooling and a Linear classifier.

    >>> resnet(2, 8, input_shape=(1, 8, 8))(torch.zeros(2, 64)).shape
    torch.Size([2, 10])
    """
    _check_int("blocks", blocks, 0)
    _check_int("width", width, 1)
    head = _head(input_shape)
    if input_shape is not None:
        in_channels = int(input_shape[0])
    _check_int("in_channels", in_channels, 1)
    _check_int("out_features", out_features, 1)
    with _seeded(seed):
        layers: list[nn.Module] = [*head, nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(width), nn.ReLU()]
        layers += [BasicBlock(width) for _ in range(blocks)]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, out_features)]
    return ResNet(*layers)


class TransformerClassifier(nn.Module):
    """Sequence classifier: Linear embedding + learned positions, ``nn.TransformerEncoder``, mean pool,
    LayerNorm, Linear. Flat ``(n, seq_len * in_features)`` inputs are reshaped to
    ``(n, seq_len, in_features)``.
    """

    def __init__(self, in_features: int, seq_len: int, d_model: int, nhead: int, num_layers: int,
                 dim_feedforward: int, out_features: int) -> None:
        super().__init__()
        self.seq_len, self.in_features = seq_len, in_features
        self.embed = nn.Linear(in_features, d_model)
        # small normal positions as in BERT/ViT (std 0.02); drawn from the seeded RNG of the builder
        self.pos = nn.Parameter(torch.randn(1, seq_len, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], self.seq_len, self.in_features)
        h = self.encoder(self.embed(x) + self.pos)
        return self.head(self.norm(h.mean(dim=1)))


def transformer(in_features: int = 28, seq_len: int = 28, *, d_model: int = 32, nhead: int = 4,
                num_layers: int = 2, dim_feedforward: int = 64, out_features: int = 10,
                seed: int | None = 0) -> TransformerClassifier:
    """Small Transformer-encoder classifier (post-norm ``nn.TransformerEncoderLayer``, no dropout).

    The defaults read an MNIST image as 28 rows of 28 pixels: it accepts ``(n, 784)`` or ``(n, 28, 28)``.

    >>> transformer(in_features=8, seq_len=8)(torch.zeros(2, 64)).shape
    torch.Size([2, 10])
    """
    for key, value in (("in_features", in_features), ("seq_len", seq_len), ("d_model", d_model),
                       ("nhead", nhead), ("num_layers", num_layers), ("dim_feedforward", dim_feedforward),
                       ("out_features", out_features)):
        _check_int(key, value, 1)
    if d_model % nhead:
        raise ValueError(f"d_model ({d_model}) must be divisible by nhead ({nhead})")
    with _seeded(seed):
        return TransformerClassifier(in_features, seq_len, d_model, nhead, num_layers, dim_feedforward,
                                     out_features)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

