"""Plumbing shared by :func:`~initlab.datainit.lsuv.lsuv` and :func:`~initlab.datainit.pretrain.pretrain`.

Both run the user's model on data to set its weights, so both need the same four things: turn the
caller's ``inputs`` into ``model(*args, **kwargs)``, read the input a given layer receives (stopping the
forward pass right there), run the model in a quiet state (eval mode, no grad, no fused attention fast
path, which bypasses submodule hooks) and put it back exactly as it was, and undo every parameter change
when something fails halfway.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

CallArgs = tuple[tuple[Any, ...], dict[str, Any]]


class _StopForward(Exception):
    """Raised by a pre-hook to end a forward pass once the layer we need has received its input."""


def call_args(inputs: Any, name: str = "inputs") -> CallArgs:
    """``(args, kwargs)`` for ``model(*args, **kwargs)``.

    A tensor is one positional argument; a tuple or list is the positional arguments; a dict is keyword
    arguments; a ``DataLoader`` (or any other iterable that is none of these) contributes its first batch,
    of which a tuple/list batch ``(x, y, ...)`` gives ``x`` (the convention of the ``lsuv`` package).
    """
    if isinstance(inputs, torch.Tensor):
        return (inputs,), {}
    if isinstance(inputs, (tuple, list)):
        if not inputs:
            raise ValueError(f"{name} is an empty {type(inputs).__name__}: pass a tensor or a batch of tensors")
        return tuple(inputs), {}
    if isinstance(inputs, Mapping):
        return (), dict(inputs)
    if isinstance(inputs, Iterable) and not isinstance(inputs, (str, bytes)):
        # a DataLoader's iterator draws its base seed (and a shuffling sampler its order) from the global
        # RNG: fork it, so taking one batch never moves the caller's random state
        with torch.random.fork_rng(devices=[]):
            batch = next(iter(inputs), None)
        if batch is None:
            raise ValueError(f"{name} yielded no batch")
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        return call_args(batch, name)
    raise TypeError(
        f"{name} must be a tensor, a tuple/list of tensors, a dict of keyword tensors or a DataLoader; "
        f"got {type(inputs).__name__}"
    )


def tensors_in(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a nest of tuples, lists and dicts."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from tensors_in(item)
    elif isinstance(obj, Mapping):
        for item in obj.values():
            yield from tensors_in(item)


@contextlib.contextmanager
def quiet(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout, no BatchNorm statistics updates), no autograd, no fused attention fast path.

    The fast path of ``nn.MultiheadAttention`` / ``TransformerEncoderLayer`` in eval + no-grad calls a fused
    kernel that never calls ``in_proj``/``out_proj``/``linear1``... as modules, so their hooks would not
    fire. Every module's own ``training`` flag and the global fast-path switch are put back afterwards.
    """
    modes = [(m, m.training) for m in model.modules()]
    mha = getattr(torch.backends, "mha", None)
    fast = mha.get_fastpath_enabled() if mha is not None else None
    try:
        if mha is not None:
            mha.set_fastpath_enabled(False)
        model.eval()
        with torch.no_grad():
            yield
    finally:
        if mha is not None:
            mha.set_fastpath_enabled(fast)
        for m, training in modes:
            m.training = training


def layer_input(model: nn.Module, module: nn.Module, args: tuple, kwargs: dict, name: str) -> CallArgs:
    """The ``(args, kwargs)`` that ``module`` receives when ``model(*args, **kwargs)`` runs.

    A forward pre-hook records them and raises a private exception, so nothing after the layer runs.
    Call inside :func:`quiet`. ValueError when the forward pass ends without calling the layer.
    """
    seen: list[CallArgs] = []

    def grab(_mod: nn.Module, a: tuple, kw: dict) -> None:
        seen.append((a, kw))
        raise _StopForward

    handle = module.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        model(*args, **kwargs)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not seen:
        raise ValueError(f"layer {name!r} was not called by the model's forward pass")
    return seen[0]


class Snapshot:
    """Copies of some parameters, to put back in place (same tensors, same ``Parameter`` objects)."""

    def __init__(self, modules: Iterable[nn.Module]) -> None:
        self._saved: list[tuple[torch.Tensor, torch.Tensor]] = []
        seen: set[int] = set()
        for module in modules:
            for p in module.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    self._saved.append((p, p.detach().clone()))

    def restore(self) -> None:
        with torch.no_grad():
            for p, value in self._saved:
                p.copy_(value)


