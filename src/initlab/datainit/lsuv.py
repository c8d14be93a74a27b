"""Layer-sequential unit-variance initialization (LSUV; Mishkin & Matas, "All you need is a good init", 2016).

Algorithm: pre-initialize every Linear/Conv weight with an orthogonal matrix; then, for each such layer in
FORWARD EXECUTION order, feed a batch, measure the standard deviation of the layer's output and divide the
weight by it, until ``|std - target_std| <= tol * target_std`` or ``max_iter`` rescalings.

What this implementation does differently from the usual ones (Mishkin & Matas 2016 and the `lsuv` package;
docs/references.md):

* execution order, not registration order: the layers are taken from :func:`initlab.trace` and each is
  rescaled at the moment the forward pass reaches it;
* linear cost in depth: ONE forward pass of the model. A forward pre-hook on each layer puts in the
  orthogonal weights just before it runs; a forward hook measures the output the layer has just produced
  in the pass, rescales the weight and returns the rescaled output to the pass, so the next layer sees
  the final values of the layers below it. A torch Linear/Conv output is ``y = W x + b``, linear in ``W``:
  the output after ``W <- s W`` is ``s (y - b) + b``, computed without running the layer again (a layer
  with a forward of its own is re-run on its recorded input instead). Existing implementations re-run
  the whole model for every layer and every iteration (quadratic in depth). This needs no torch.fx graph,
  so models that fx cannot trace (the graph falls back to hooks) are handled the same way, and the report
  says how the graph was obtained;
* attention: ``nn.MultiheadAttention`` is three input projections and an output projection. The Q, K and
  V slices of the packed ``in_proj_weight`` (or the separate ``q/k/v_proj_weight``) are rescaled one by
  one so that each projection's output has the target std, then ``out_proj`` so that the attention
  output has it. The ``lsuv`` package only rescales ``out_proj``;
* zero-initialized weights (Fixup, ReZero-style "zero the last layer of the branch" rules, or a zeroed
  classifier) are left at zero and reported, never orthogonalised;
* a dead layer (output std zero or non-finite, or an output that is the bias alone because the input is
  all zero) raises ``ValueError`` naming it, and the model is put back
  exactly as it was; ``max_iter`` without convergence is a warning naming the layer and its final std;
* ``center=True`` also removes the mean of each output channel through the bias.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from initlab.datainit._common import Snapshot, call_args, quiet
from initlab.graph import InputsError
from initlab.progress import progress_bar
from initlab.semantics import MATRIX_KINDS, describe
from initlab.validate import check_batch, check_flag, check_int, check_number, check_seed

RESCALED_KINDS = MATRIX_KINDS  # the layers LSUV measures and rescales: matrix products (initlab.semantics)


@dataclass
class LSUVLayer:
    """What LSUV did to one weight: a Linear/Conv layer, or one projection of an attention block."""

    name: str  # "fc1", "blocks.0.attn.in_proj[q]", "blocks.0.attn.out_proj"
    module: str  # qualified name of the module that owns the weight
    kind: str  # graph kind of the module: linear, conv, conv_transpose, attention
    status: str  # "converged", "max_iter", "zero-init" / "shared" (left alone) or "not called"
    iterations: int  # rescalings applied
    std_before: float  # output std when LSUV reached the layer (after the orthogonal pre-init)
    std_after: float  # output std after the last rescaling
    mean_after: float  # output mean after the last rescaling
    scale: float  # total factor applied to the weight (after the pre-init)


@dataclass
class LSUVReport:
    """Result of :func:`lsuv`: one :class:`LSUVLayer` per weight, in the order they were visited."""

    layers: list[LSUVLayer]
    target_std: float
    tol: float
    max_iter: int
    orthogonal: bool
    center: bool
    trace_method: str  # how initlab.trace got the layers: "fx", "hooks" or "modules"
    fallback_reason: str | None
    forward_passes: int  # full forward passes of the model (tracing included)
    layer_evaluations: int  # extra single-layer evaluations while rescaling
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def visited(self) -> list[str]:
        """Names of the weights that were measured and rescaled (zero-init ones excluded), in order."""
        return [r.name for r in self.layers if r.status in ("converged", "max_iter")]

    @property
    def skipped(self) -> list[str]:
        return [r.name for r in self.layers if r.status not in ("converged", "max_iter")]

    def layer(self, name: str) -> LSUVLayer:
        for r in self.layers:
            if r.name == name:
                return r
        raise KeyError(f"no layer {name!r} in this report; layers: {[r.name for r in self.layers]}")

    def table(self, color: bool | None = None) -> str:
        """A text table (the shared renderer): per weight the status, iterations, std before/after, scale.

        ``color``: ANSI colour for the status column; None = only on a terminal that wants it."""
        from initlab.report.table import Column, fmt_number, render

        def num(v: Any) -> str:
            return fmt_number(v, 4)

        columns = [Column("name", "layer"), Column("kind"), Column("status", color=lambda v, _r: _STATUS_STYLE.get(v)),
                   Column("iterations", "iters"), Column("std_before", "std before", fmt=num),
                   Column("std_after", "std after", fmt=num), Column("mean_after", "mean after", fmt=num),
                   Column("scale", fmt=num)]
        how = f"graph by {self.trace_method}" + (f" ({self.fallback_reason})" if self.fallback_reason else "")
        title = (f"LSUV target_std={self.target_std:g} tol={self.tol:g} max_iter={self.max_iter} "
                 f"orthogonal={self.orthogonal} center={self.center}: {len(self.visited)} rescaled, "
                 f"{len(self.skipped)} left alone")
        footer = (f"{self.forward_passes} forward pass(es) + {self.layer_evaluations} single-layer evaluations, "
                  f"{self.seconds:.3f} s; {how}" + "".join(f"\nnote: {n}" for n in self.notes))
        return render(self.layers, columns, title=title, footer=footer, color=color)

    def __str__(self) -> str:
        return self.table(color=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_STATUS_STYLE = {"converged": "green", "max_iter": "yellow", "zero-init": "cyan", "shared": "cyan", "not called": "red"}


# --------------------------------------------------------------------------------------------------
# Units: one weight that LSUV measures and rescales, with the function giving its output.


@dataclass
class _Unit:
    name: str
    module_name: str
    kind: str
    weight: Callable[[], torch.Tensor]  # the tensor to scale in place (maybe a slice of a parameter)
    bias: Callable[[], torch.Tensor | None]
    output: Callable[[tuple, dict], torch.Tensor]  # layer output for the layer's (args, kwargs)
    channel_dim: Callable[[torch.Tensor], int]  # axis of the output channels
    # True when the output is exactly W x + b for the layer's input x (torch's own forward): a rescaled
    # output is then computed from the measured one instead of re-running the layer
    exact: bool
    # True when the output is what the module returns in the forward pass (False for Q/K/V projections,
    # which happen inside nn.MultiheadAttention and are measured on their own before it runs)
    in_pass: bool


_TORCH_FORWARDS = {cls.forward for cls in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
                                           nn.ConvTranspose2d, nn.ConvTranspose3d, nn.MultiheadAttention)}


def _last(y: torch.Tensor) -> int:
    return y.ndim - 1


def _conv_channel(module: nn.Module) -> Callable[[torch.Tensor], int]:
    spatial = len(module.kernel_size)
    return lambda y: 1 if y.ndim == spatial + 2 else 0  # batched (N, C, ...) or unbatched (C, ...)


def _plain_unit(name: str, module: nn.Module, kind: str) -> _Unit:
    channel = _conv_channel(module) if kind in ("conv", "conv_transpose") else _last
    return _Unit(name, name, kind, weight=lambda: module.weight, bias=lambda: getattr(module, "bias", None),
                 output=lambda a, kw: module.forward(*a, **kw), channel_dim=channel,
                 exact=type(module).forward in _TORCH_FORWARDS, in_pass=True)


def _attention_units(name: str, mha: nn.MultiheadAttention) -> list[_Unit]:
    """Q, K, V input projections and the output projection of ``nn.MultiheadAttention``."""
    sig = inspect.signature(type(mha).forward)
    e = mha.embed_dim

    def bound(a: tuple, kw: dict) -> dict[str, Any]:
        b = sig.bind(mha, *a, **kw)
        return b.arguments

    units = []
    for i, (part, source) in enumerate((("q", "query"), ("k", "key"), ("v", "value"))):
        if mha.in_proj_weight is not None:
            def weight(i=i):
                return mha.in_proj_weight[i * e:(i + 1) * e]
        else:
            def weight(part=part):
                return getattr(mha, f"{part}_proj_weight")

        def bias(i=i):
            return None if mha.in_proj_bias is None else mha.in_proj_bias[i * e:(i + 1) * e]

        def output(a, kw, source=source, weight=weight, bias=bias):
            return F.linear(bound(a, kw)[source], weight(), bias())

        units.append(_Unit(f"{name}.in_proj[{part}]", name, "attention", weight, bias, output, _last,
                           exact=True, in_pass=False))
    units.append(_Unit(f"{name}.out_proj", name, "attention", weight=lambda: mha.out_proj.weight,
                       bias=lambda: mha.out_proj.bias, output=lambda a, kw: mha.forward(*a, **kw)[0],
                       channel_dim=_last, exact=type(mha).forward in _TORCH_FORWARDS, in_pass=True))
    return units


def _shared(graph: Any, candidates: list[tuple[Any, list[_Unit]]]) -> set[str]:
    """Units whose weight is one tensor with several uses (a tied embedding / output head): rescaling it for
    one use would rescale the others behind the user's back, so LSUV leaves it alone."""
    sem = describe(graph)
    out = set()
    for node, units in candidates:
        if any(info.shared and info.role == "weight" for info in sem.of(node)):
            out.update(u.name for u in units)
    return out


def _units(graph: Any, layers: Sequence[str] | None) -> tuple[list[tuple[Any, list[_Unit]]], list[str]]:
    notes = []
    candidates = []
    for node in graph.layers:
        if node.kind not in RESCALED_KINDS:
            continue
        module = node.module
        if node.kind == "attention":
            if not isinstance(module, nn.MultiheadAttention):
                notes.append(f"{node.name!r} ({type(module).__name__}): attention module of unknown structure, skipped")
                continue
            candidates.append((node, _attention_units(node.name, module)))
            continue
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.ndim < 2:
            notes.append(f"{node.name!r} ({type(module).__name__}): no 2-D+ weight, skipped")
            continue
        if nn.utils.parametrize.is_parametrized(module, "weight"):
            notes.append(f"{node.name!r}: its weight is parametrized (e.g. weight_norm), skipped")
            continue
        candidates.append((node, [_plain_unit(node.name, module, node.kind)]))
    if layers is not None:
        if isinstance(layers, str) or not all(isinstance(n, str) for n in layers):
            raise TypeError("layers must be None or a list of module names")
        known = [node.name for node, _ in candidates]
        unknown = [n for n in layers if n not in known]
        if unknown:
            raise ValueError(f"layers: unknown or non-rescalable layer(s) {unknown}; rescalable layers: {known}")
        wanted = set(layers)
        candidates = [(node, units) for node, units in candidates if node.name in wanted]
    return candidates, notes


# --------------------------------------------------------------------------------------------------


def _stats(y: torch.Tensor) -> tuple[float, float]:
    y = y.detach().to(torch.float64) if y.dtype == torch.float64 else y.detach().float()
    return float(y.std()), float(y.mean())


def _dead(name: str, reason: str) -> None:
    raise ValueError(f"lsuv: layer {name!r} is dead on this batch: {reason}; the model was restored to its "
                     "state before lsuv")


def _check_lsuv_args(model: Any, target_std: Any, tol: Any, max_iter: Any, orthogonal: Any, center: Any,
                     progress: Any, seed: Any) -> tuple[float, float]:
    """Every argument checked before anything runs; returns (target_std, tol) as floats."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    target = check_number(target_std, "target_std", minimum=0, strict=True)
    tol = check_number(tol, "tol", minimum=0, strict=True)
    check_int(max_iter, "max_iter", 1)
    for flag, flag_name in ((orthogonal, "orthogonal"), (center, "center"), (progress, "progress")):
        check_flag(flag, flag_name)
    check_seed(seed)
    return target, tol


def _left_alone_notes(records: list[LSUVLayer]) -> list[str]:
    notes = []
    zeros = [r.name for r in records if r.status == "zero-init"]
    if zeros:
        notes.append(f"all-zero weights left alone (deliberate zero init): {', '.join(zeros)}")
    tied = [r.name for r in records if r.status == "shared"]
    if tied:
        notes.append(f"weights shared with another layer left alone (rescaling one use would change the others): "
                     f"{', '.join(tied)}")
    return notes


def lsuv(model: nn.Module, inputs: Any, *, target_std: float = 1.0, tol: float = 0.02, max_iter: int = 20,
         orthogonal: bool = True, center: bool = False, layers: Sequence[str] | None = None,
         progress: bool = False, seed: int | None = None) -> LSUVReport:
    """Layer-sequential unit-variance initialization of ``model``, in place, in one forward pass.

    For every Linear, Conv, ConvTranspose and MultiheadAttention (Q, K, V and output projections) weight,
    in forward execution order: optionally replace it by an orthogonal matrix (and its bias by zeros),
    then repeat ``W <- W * target_std / std(y)``, ``y`` the layer's output on ``inputs``, until
    ``|std(y) - target_std| <= tol * target_std`` (``std`` over all output elements, as in the paper, where
    ``tol`` bounds the variance instead). Each layer's input is computed once and its rescaled output is
    derived from the measured one (see the module docstring). The model runs in eval mode without grad;
    its modes are restored.

    Args:
        model: the model; its weights are changed in place.
        inputs: a batch: a tensor, a tuple of positional tensors, a dict of keyword tensors, or a
            DataLoader (its first batch; ``x`` of an ``(x, y)`` batch). Use a few hundred examples.
        target_std: the output std to reach.
        tol: relative tolerance on the std.
        max_iter: rescalings allowed per layer; past it a warning names the layer and its std.
        orthogonal: orthogonal pre-initialization (``initlab.Orthogonal()``) with zero biases, as in the
            paper. Weights that are all zero are left alone either way (a deliberate zero init).
        center: also subtract each output channel's mean through the bias (layers with a bias).
        layers: qualified module names to rescale (default: every eligible layer).
        progress: a tqdm bar over the layers.
        seed: seed of the orthogonal draws (None: a fresh seed). Torch's global RNG is never used.

    Returns:
        :class:`LSUVReport`: per weight the iterations, std before and after, mean after and scale; ``table()``.

    Raises:
        ValueError: a dead layer (output std zero or non-finite, or an output that is its bias alone) --
        the model is restored exactly --, NaN/inf in ``inputs``, inputs the model cannot run on, unknown
        ``layers``, bad arguments (before anything is changed).

    >>> import torch, initlab
    >>> net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.Tanh(), torch.nn.Linear(64, 10))
    >>> x = torch.randn(256, 32, generator=torch.Generator().manual_seed(0))
    >>> report = initlab.lsuv(net, x, seed=0)
    >>> report.visited, [round(r.std_after, 2) for r in report.layers]
    (['0', '2'], [1.0, 1.0])
    """
    start = time.perf_counter()
    target, tol = _check_lsuv_args(model, target_std, tol, max_iter, orthogonal, center, progress, seed)
    args, kwargs = call_args(inputs)
    check_batch((args, kwargs), "inputs")

    from initlab.graph import trace
    from initlab.initializers import Orthogonal

    graph = trace(model, kwargs if not args else args, argument="inputs")  # InputsError names `inputs`
    candidates, notes = _units(graph, layers)
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    pre_init = Orthogonal()

    records: list[LSUVLayer] = []
    late_warnings: list[str] = []
    counters = {"evals": 0}
    bar = progress_bar(sum(len(u) for _, u in candidates), "lsuv", progress)

    zero: set[str] = set()  # units whose weight was all zero on arrival
    shared = _shared(graph, candidates)

    def prepare(unit: _Unit) -> None:
        w = unit.weight()
        if unit.name in shared:
            return
        if not bool(w.any()):  # a deliberate zero init: never orthogonalise or rescale it
            zero.add(unit.name)
        elif orthogonal:
            pre_init.init_(w, generator=generator)
            b = unit.bias()
            if b is not None:
                b.zero_()

    def fit(unit: _Unit, y: torch.Tensor, a: tuple, kw: dict) -> torch.Tensor:
        """Rescale ``unit`` given its measured output ``y``; record it; return its final output."""
        std, mean = _stats(y)
        if unit.name in zero or unit.name in shared:
            status = "zero-init" if unit.name in zero else "shared"
            records.append(LSUVLayer(unit.name, unit.module_name, unit.kind, status, 0, std, std, mean, 1.0))
            return y
        w, b = unit.weight(), unit.bias()
        dim = unit.channel_dim(y)
        shape = [1] * y.ndim
        shape[dim] = -1
        if unit.exact and not bool((y if b is None else y - b.reshape(shape)).any()):
            _dead(unit.name, f"its output (std {std:.4g}, from the bias alone) does not depend on its weight: its "
                  "input is all zero")
        std_before, scale, iterations = std, 1.0, 0
        centre = center and b is not None  # without a bias the mean cannot be corrected
        while True:
            if not math.isfinite(std) or std == 0.0:
                _dead(unit.name, f"its output std is {std}")
            done = abs(std - target) <= tol * target and (not centre or abs(mean) <= tol * target)
            if done or iterations == max_iter:
                break
            factor = target / std
            w.mul_(factor)
            if centre:
                # remove each channel's mean, then scale the bias with the weight, so the whole (centred)
                # output is multiplied by the factor: exact in one step
                channel_mean = y.mean(dim=[d for d in range(y.ndim) if d != dim])
                b.sub_(channel_mean.to(b.dtype)).mul_(factor)
            scale *= factor
            iterations += 1
            if unit.exact:
                # W x + b is linear in W: the output of the rescaled layer, without running it again
                if centre:
                    y = (y - channel_mean.reshape(shape)) * factor
                elif b is None:
                    y = y * factor
                else:
                    y = (y - b.reshape(shape)) * factor + b.reshape(shape)
            else:
                previous, y = y, unit.output(a, kw)
                counters["evals"] += 1
                if not centre and torch.equal(y, previous):
                    _dead(unit.name, f"its output (std {std:.4g}) does not change with its weight: its input is "
                          "all zero")
            std, mean = _stats(y)
        status = "converged" if done else "max_iter"
        if not done:  # warned after the pass, from lsuv itself, so the warning points at the caller
            late_warnings.append(
                f"lsuv: layer {unit.name!r} did not reach std {target:g} (tol {tol:g}) in max_iter={max_iter} "
                f"iterations; final std {std:.4g}" + (f", mean {mean:.4g}" if centre else ""))
        records.append(LSUVLayer(unit.name, unit.module_name, unit.kind, status, iterations, std_before, std, mean,
                                 scale))
        return y

    pending = {id(node.module): units for node, units in candidates}
    started: set[int] = set()
    finished: set[int] = set()

    def before(module: nn.Module, a: tuple, kw: dict) -> None:
        key = id(module)
        if key in started or key not in pending:
            return  # a module called again (weight sharing) keeps the scale of its first call
        started.add(key)
        for unit in pending[key]:
            prepare(unit)
            if not unit.in_pass:  # Q/K/V: measured and rescaled before the attention runs
                counters["evals"] += 1
                fit(unit, unit.output(a, kw), a, kw)
                bar.update(1)

    def after(module: nn.Module, a: tuple, kw: dict, out: Any) -> Any:
        key = id(module)
        if key not in started or key in finished:
            return None
        finished.add(key)
        unit = next(u for u in pending[key] if u.in_pass)
        y = out[0] if isinstance(out, tuple) else out
        new = fit(unit, y, a, kw)
        bar.update(1)
        if new is y:
            return None
        return (new, *out[1:]) if isinstance(out, tuple) else new

    snapshot = Snapshot(node.module for node, _ in candidates)
    handles = []
    try:
        with quiet(model):
            for node, _ in candidates:
                handles.append(node.module.register_forward_pre_hook(before, with_kwargs=True, prepend=True))
                # prepend: the user's own output hooks then see the rescaled output
                handles.append(node.module.register_forward_hook(after, with_kwargs=True, prepend=True))
            try:
                model(*args, **kwargs)
            except (RuntimeError, TypeError) as exc:
                first = (str(exc).strip().splitlines() or [""])[0]
                raise InputsError(f"the model failed on inputs ({type(exc).__name__}: {first}); the model was "
                                  "restored to its state before lsuv") from exc
    except BaseException:
        snapshot.restore()
        raise
    finally:
        for h in handles:
            h.remove()
        bar.close()

    for message in late_warnings:
        warnings.warn(message, stacklevel=2)
    for node, units in candidates:
        if id(node.module) not in finished:
            for unit in units:
                records.append(LSUVLayer(unit.name, unit.module_name, unit.kind, "not called", 0, math.nan,
                                         math.nan, math.nan, 1.0))
            warnings.warn(f"lsuv: layer {node.name!r} was not called by the forward pass on these inputs; "
                          "left as it was", stacklevel=2)
    notes += _left_alone_notes(records)
    passes = 1 + graph.passes
    return LSUVReport(layers=records, target_std=target, tol=tol, max_iter=max_iter, orthogonal=orthogonal,
                      center=center, trace_method=graph.method, fallback_reason=graph.fallback_reason,
                      forward_passes=passes, layer_evaluations=counters["evals"],
                      seconds=time.perf_counter() - start, notes=notes)
