"""``initlab.probe``: one forward and one backward pass, measured layer by layer.

>>> import torch
>>> from torch import nn
>>> import initlab
>>> net = nn.Sequential(nn.Linear(20, 50), nn.Tanh(), nn.Linear(50, 50), nn.Tanh(), nn.Linear(50, 5))
>>> x = torch.randn(128, 20, generator=torch.Generator().manual_seed(0))
>>> result = initlab.probe(net, x)
>>> [s.name for s in result.layers]
['0', '1', '2', '3', '4']
>>> result.healthy
True
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import _pytree as pytree

from initlab import sampling
from initlab.graph import InputsError
from initlab.probing.health import Thresholds, batch_too_small, diagnose
from initlab.probing.hooks import Recorder, Target, select_targets
from initlab.probing.result import ProbeData
from initlab.probing.stats import LayerStats, input_stats, weight_summaries
from initlab.semantics import describe
from initlab.validate import check_batch, check_flag, check_int, check_seed

__all__ = ["probe", "ProbeResult", "model_state", "restore_state", "layer_weights"]


# --------------------------------------------------------------------------------------------------
# Result


class ProbeResult(ProbeData):
    """What :func:`probe` measured (see :class:`~initlab.probing.result.ProbeData` for the fields), with the
    methods that render it: a terminal ``table``, a self-contained HTML report, the histogram figure."""

    # -- output --------------------------------------------------------------------------------------
    def table(self, color: bool | None = None, *, verdicts: bool = True, theory: Any = None) -> str:
        """A terminal table, one row per recorded point, followed by the verdicts.

        ``theory``: a :class:`initlab.theory.Prediction` for the same model; adds the predicted forward std
        and gradient std (``std pred``, ``grad pred``, matched by :func:`initlab.compare`) next to the
        measured ones.
        """
        from initlab.report.columns import PROBE_COLUMNS, cell_text
        from initlab.report.table import Column, fmt_number, render

        flagged: dict[str, str] = {}
        for v in self.verdicts:
            for name in v.layers or ((v.layer,) if v.layer else ()):
                if flagged.get(name) != "red":
                    flagged[name] = "red" if v.severity == "error" else "yellow"

        cols = [Column(lambda s, c=c: getattr(s, c.field), c.header, fmt=lambda v, c=c: cell_text(c, v),
                       align="<" if c.kind == "text" else ">") for c in PROBE_COLUMNS]
        cols[0] = Column("name", "layer", color=lambda v, s: flagged.get(s.name))
        if theory is not None:
            from initlab.theory.compare import compare

            predicted = {(row.name, row.direction): row.predicted for row in compare(theory, self)}
            cols.insert(5, Column(lambda s: predicted.get((s.name, "forward")), "std pred"))
            cols.insert(-2, Column(lambda s: predicted.get((s.name, "backward")), "grad pred"))
        head = f"probe: batch {self.batch_size}, backward by {self.backward}"
        if self.loss is not None:
            head += f" (loss {fmt_number(self.loss, 4)})"
        head += f", graph by {self.method}"
        if self.input is not None and self.input.is_float:
            head += f"; inputs mean {fmt_number(self.input.mean)}, std {fmt_number(self.input.std)}"
        text = render(self.layers, cols, title=head, color=color)
        if verdicts:
            from initlab.report.table import style, use_color

            enabled = use_color() if color is None else bool(color)
            if not self.verdicts:
                text += "\n" + style("healthy: no problem found", "green", enabled=enabled)
            for v in self.verdicts:
                tag = style(f"{v.severity.upper()} {v.code}", "red" if v.severity == "error" else "yellow",
                            enabled=enabled)
                text += f"\n{tag}: {v.message}\n  fix: {v.suggestion}"
        for note in self.notes:
            text += f"\nnote: {note}"
        return text

    def __str__(self) -> str:
        return self.table(color=False)

    def to_html(self, path: str | Path, *, title: str | None = None) -> Path:
        """A self-contained HTML report (table, verdicts, figures embedded); see ``initlab.report.html``."""
        from initlab.report.html import to_html

        return to_html(self, path, title=title)

    def plot(self, path: str | Path | None = None, **kwargs: Any) -> Any:
        """The per-layer activation histograms (``initlab.plot_activations({'': self}, path)``)."""
        from initlab.report.figures import plot_activations

        return plot_activations(self, path, **kwargs)


# --------------------------------------------------------------------------------------------------
# State save / restore


def model_state(model: nn.Module) -> dict[str, Any]:
    """Everything a probe may touch: modes, buffers (copied), requires_grad flags and .grad references."""
    modules = list(model.modules())
    # model.parameters() order without its generators and Tensor.__hash__: shared parameters once
    params = list({id(p): p for m in modules for p in m._parameters.values() if p is not None}.values())
    return {
        "training": [(m, m.training) for m in modules],
        "buffers": [(m, name, b, None if b is None else b.detach().clone())
                    for m in modules for name, b in m._buffers.items()],
        "requires_grad": [(p, p.requires_grad) for p in params],
        "grad": [(p, p.grad) for p in params],
    }


def restore_state(state: dict[str, Any]) -> None:
    """Put back what :func:`model_state` saved (the very same buffer and .grad tensor objects)."""
    for m, flag in state["training"]:
        if m.training != flag:  # nn.Module.__setattr__ is slow: set only what changed
            m.training = flag
    with torch.no_grad():
        for m, name, obj, saved in state["buffers"]:
            m._buffers[name] = obj
            if obj is not None and saved is not None:
                obj.copy_(saved)
    for p, flag in state["requires_grad"]:
        if p.requires_grad is not flag:
            p.requires_grad_(flag)
    for p, g in state["grad"]:
        if p.grad is not g:
            p.grad = g


def _devices(state: dict[str, Any], tensors: list[torch.Tensor]) -> list[int]:
    """CUDA devices of the model's parameters and buffers and of the inputs (their RNGs are forked)."""
    devs = {t.device for t in (*(p for p, _ in state["grad"]), *(b for _, _, b, _ in state["buffers"] if b is not None),
                               *tensors)}
    return sorted(d.index or 0 for d in devs if d.type == "cuda")


# --------------------------------------------------------------------------------------------------
# The probe


def _split_inputs(inputs: Any) -> tuple[tuple, dict]:
    if isinstance(inputs, torch.Tensor):
        return (inputs,), {}
    if isinstance(inputs, dict):
        return (), dict(inputs)
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    raise TypeError(f"inputs must be a tensor, a tuple/list of positional inputs or a dict of keyword inputs; "
                    f"got {type(inputs).__name__}")


def _trace_sample(args: tuple, kwargs: dict, n: int = 2) -> Any:
    """The inputs cut to ``n`` examples along dim 0 (tracing by hooks runs one forward pass)."""
    def cut(t: Any) -> Any:
        return t[:n] if isinstance(t, torch.Tensor) and t.ndim and t.shape[0] > n else t

    a, k = pytree.tree_map(cut, (args, kwargs))
    return k if k else (a[0] if len(a) == 1 else a)


def _graph(model: nn.Module, args: tuple, kwargs: dict) -> Any:
    from initlab.graph import trace

    try:
        return trace(model, _trace_sample(args, kwargs), argument="inputs")
    except Exception:  # noqa: BLE001 - a model that needs its full batch to run (fixed shapes): retry with it
        return trace(model, kwargs if kwargs else (args[0] if len(args) == 1 else args), argument="inputs")


def layer_weights(model: nn.Module, target: Target, sem: Any = None
                  ) -> tuple[torch.Tensor | None, torch.Tensor | None, int | None]:
    """(weight, bias, out_dim) of a recorded layer, as :mod:`initlab.semantics` defines them: the weight that
    carries the layer's output scale (MultiheadAttention's ``out_proj.weight``, GPT-2 Conv1D's ``(in, out)``
    matrix), its bias, and ``out_dim``, the weight's output-unit axis for the symmetry check (None when units
    are spread over groups). ``sem``: a precomputed ``describe(graph)``."""
    if sem is None:
        from initlab.graph import trace

        sem = describe(trace(model))
    node = next((n for n in sem.graph.layers if n.name == target.layer_name), None)
    name = sem.weight(node) if node is not None else None
    params = dict(model.named_parameters())
    if name is None or name not in params:
        return None, None, None
    info = sem.params[name]
    bias = next((params[i.name] for i in sem.of(node) if i.role == "bias" and i.name in params), None)
    out_dim = info.out_axis if node.kind in ("linear", "conv", "conv_transpose") else None
    if node.kind == "conv_transpose" and getattr(node.module, "groups", 1) != 1:
        out_dim = None  # (in, out/groups, k): rows of one unit are spread over groups
    if node.kind == "norm":
        out_dim = None
    return params[name], bias, out_dim


def _check_targets(output: torch.Tensor, targets: torch.Tensor) -> None:
    """Targets that the default loss can read: one per example; class ids within the output's classes."""
    if output.ndim and targets.ndim and targets.shape[0] != output.shape[0]:
        raise ValueError(f"targets has {targets.shape[0]} example(s) but the model's output has {output.shape[0]}")
    if not targets.is_floating_point() and targets.numel() and output.ndim >= 2:
        lo, hi = int(targets.min()), int(targets.max())
        if lo < 0 or hi >= output.shape[1]:
            raise ValueError(f"targets holds class ids in [{lo}, {hi}] but the model has {output.shape[1]} "
                             f"outputs (ids 0..{output.shape[1] - 1})")


def _default_loss(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if not targets.is_floating_point():
        return F.cross_entropy(output, targets)
    return F.mse_loss(output, targets)


def probe(model: nn.Module, inputs: Any, targets: torch.Tensor | None = None, *,
          loss: Callable[..., torch.Tensor] | None = None, layers: Any = None, bins: int = 64,
          hist_range: tuple[float, float] | None = None, seed: int = 0, train: bool | None = None,
          thresholds: Thresholds | dict[str, Any] | None = None, graph: Any = None) -> ProbeResult:
    """Measure signal propagation through ``model`` on one batch, layer by layer, and judge its health.

    One forward and one backward pass. The backward pass differentiates ``loss(model(inputs), targets)``
    when ``loss`` or ``targets`` is given (cross-entropy for integer class labels, MSE for float targets),
    else it back-propagates a random Gaussian cotangent ``c / batch``, ``c ~ N(0, 1)`` drawn from
    ``torch.Generator(device).manual_seed(seed)`` (the gradient of the batch mean of a random linear
    loss ``<c_i, y_i>``, so gradient sizes read like those of a mean-reduced loss), so gradients are
    measured without labels. Gradients go through ``torch.autograd.grad``: ``.grad`` is
    never written.

    Statistics are folded in while the hooks run (float64 running moments, fixed-range histograms); no
    activation is kept. The model is left exactly as it was: training/eval modes, every buffer (BatchNorm
    running statistics ...), ``.grad`` tensors, ``requires_grad`` flags (all parameters are made to require
    grad during the pass, so frozen layers are measured too) and the global RNG state (dropout draws
    happen inside ``torch.random.fork_rng``); every hook is removed, also when the model raises.

    Args:
        model: any ``nn.Module``.
        inputs: a tensor, a tuple of positional inputs, or a dict of keyword inputs.
        targets: labels for the loss (optional).
        loss: ``loss(output, targets)`` (or ``loss(output)`` without targets) returning a scalar.
        layers: what to record: None (every parametrized layer and every activation, execution order),
            "layers", "activations", or a list of names / glob patterns / ``nn.Module`` classes.
        bins: histogram bins per recorded point.
        hist_range: a fixed ``(low, high)`` for every histogram (default: each point's first min/max).
        seed: seed of the random cotangent.
        train: run in training (True) or eval (False) mode; None keeps the model's modes.
        thresholds: :class:`~initlab.probing.health.Thresholds` or a dict of overrides for the verdicts.
        graph: a precomputed ``initlab.trace(model, ...)`` (saves tracing again on repeated probes).

    Returns:
        :class:`ProbeResult`.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``inputs`` is not a tensor/tuple/dict, ``loss`` is not
            callable.
        ValueError: bad ``bins``, ``hist_range``, ``layers``, ``seed`` or ``thresholds``.

    Example:
        >>> import torch, initlab
        >>> gen = torch.Generator().manual_seed(0)
        >>> net = torch.nn.Sequential(*[m for _ in range(10) for m in (torch.nn.Linear(64, 64), torch.nn.Tanh())])
        >>> for m in net[::2]:
        ...     _ = initlab.Normal(std=0.01).init_(m.weight, generator=gen)
        ...     _ = torch.nn.init.zeros_(m.bias)
        >>> r = initlab.probe(net, torch.randn(256, 64, generator=gen))
        >>> [v.code for v in r.verdicts]
        ['vanishing_activations', 'vanishing_gradients']
    """
    _check_probe_args(model, loss, targets, bins, seed, train, hist_range)
    args, kwargs = _split_inputs(inputs)
    check_batch((args, kwargs), "inputs")
    th = Thresholds.make(thresholds)
    tensors = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
    first_input = next((t for t in tensors), None)
    # before the pass, while the least memory is in use
    inputs_summary = None if first_input is None else input_stats(first_input)
    if graph is None:
        graph = _graph(model, args, kwargs)
    elif not all(hasattr(graph, a) for a in ("ops", "layers", "method")):
        raise TypeError(f"graph must be None or an initlab.trace(model, ...) Graph; got {type(graph).__name__}")
    targets_list = select_targets(graph, layers, train)
    recorder = Recorder(targets_list, bins=bins, hist_range=hist_range, grads=True)
    state = model_state(model)
    try:
        loss_value, backward, grads = _pass(model, args, kwargs, targets, loss, seed, train, recorder, state,
                                            tensors)
    finally:
        recorder.detach()
        restore_state(state)
    stats = recorder.results()
    small = batch_too_small(inputs_summary, th)
    if small:
        for s in stats:  # identical outputs on one or two examples say nothing: weights alone are compared
            s.symmetric_units = 0
    _fill_weights(model, stats, targets_list, grads, describe(graph))
    del grads
    notes = [f"{name}: not recorded ({why})" for name, why in recorder.failed.items()]
    if graph.method == "modules":
        notes.append("functional activations and residual branches were not visible to the tracer")
    if small:
        notes.append(small)
    result = ProbeResult(
        layers=stats, input=inputs_summary, loss=loss_value,
        backward=backward, method=graph.method, batch_size=int(first_input.shape[0]) if first_input is not None
        and first_input.ndim else 1, seed=seed, bins=bins, thresholds=th, notes=notes)
    result.verdicts = diagnose(result.layers, result.input, th)
    return result


def _check_probe_args(model: Any, loss: Any, targets: Any, bins: Any, seed: Any, train: Any, hist_range: Any) -> None:
    """Every argument checked before anything runs."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if loss is not None and not callable(loss):
        raise TypeError(f"loss must be a callable loss(output, targets); got {type(loss).__name__}")
    if targets is not None and not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a tensor or None; got {type(targets).__name__}")
    check_int(bins, "bins", 1, 100_000)
    check_seed(seed, optional=False)
    check_flag(train, "train", optional=True)
    if hist_range is not None:  # validated by the accumulator; check early so nothing runs on bad input
        from initlab.probing.stats import TensorAccumulator

        if not isinstance(hist_range, (tuple, list)) or len(hist_range) != 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in hist_range):
            raise TypeError(f"hist_range must be None or a pair of numbers (low, high); got {hist_range!r}")
        TensorAccumulator(bins=bins, hist_range=hist_range)


def _pass(model: nn.Module, args: tuple, kwargs: dict, targets: Any, loss: Any, seed: int, train: bool | None,
          recorder: Recorder, state: dict[str, Any], tensors: list[torch.Tensor]
          ) -> tuple[float | None, str, dict[int, torch.Tensor]]:
    """One forward pass with the recorder attached, then the backward pass: (loss value, how, weight grads)."""
    params = [p for p, _ in state["requires_grad"] if p.is_floating_point()]
    if train is not None:
        model.train(train)
    for p in params:
        p.requires_grad_(True)
    wrt = params
    if not wrt:  # a model without parameters: measure gradients with respect to the inputs
        args, kwargs = pytree.tree_map(
            lambda t: t.detach().requires_grad_(True) if isinstance(t, torch.Tensor) and t.is_floating_point()
            else t, (args, kwargs))
        wrt = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor) and t.requires_grad]
    recorder.attach()
    loss_value, backward, grads = None, "none", {}
    with torch.random.fork_rng(devices=_devices(state, tensors)), torch.enable_grad():
        try:
            output = model(*args, **kwargs)
        except (RuntimeError, TypeError, IndexError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise InputsError(f"the model failed on inputs ({type(exc).__name__}: {first})") from exc
        outs = [t for t in pytree.tree_leaves(output)
                if isinstance(t, torch.Tensor) and t.is_floating_point() and t.requires_grad]
        if wrt and outs:
            if loss is not None or targets is not None:
                fn = loss or _default_loss
                first = outs[0] if not isinstance(output, torch.Tensor) else output
                if targets is not None and loss is None:
                    _check_targets(first, targets)
                value = fn(first, targets) if targets is not None else fn(first)
                if not isinstance(value, torch.Tensor) or value.numel() != 1:
                    raise ValueError("loss must return a scalar tensor")
                loss_value = float(value.detach())
                roots, cots, backward = [value.reshape(())], None, "loss"
            else:
                roots, cots, backward = outs, [_cotangent(t, seed) for t in outs], "cotangent"
            found = torch.autograd.grad(roots, wrt, grad_outputs=cots, allow_unused=True)
            grads = {id(p): g for p, g in zip(wrt, found) if g is not None}
    return loss_value, backward, grads


def _cotangent(t: torch.Tensor, seed: int) -> torch.Tensor:
    """The gradient of mean_i <c_i, y_i> with c ~ N(0, 1): reduced over the batch like a mean loss, so
    weight-gradient sizes read as those of a real (mean) loss."""
    gen = torch.Generator(device=t.device).manual_seed(seed)
    c = sampling.normal(t.shape, dtype=sampling.compute_dtype(t.dtype), device=t.device, generator=gen)
    return c.div_(t.shape[0] if t.ndim else 1).to(t.dtype)


def _fill_weights(model: nn.Module, stats: list[LayerStats], targets: list[Target], grads: dict[int, torch.Tensor],
                  sem: Any) -> None:
    """Weight statistics (std, gradient, symmetric units) of every recorded layer, all layers at once."""
    by_name = {t.name: t for t in targets}
    layers_w, items = [], []
    for s in stats:
        t = by_name.get(s.name)
        if t is None or not t.is_layer or not t.recorded:
            continue
        w, b, out_dim = layer_weights(model, t, sem)
        if w is not None:
            layers_w.append(s)
            items.append((w, grads.get(id(w)), b, out_dim))
    for s, ws in zip(layers_w, weight_summaries(items)):  # a few operations in total
        s.symmetric_units = max(s.symmetric_units, ws.pop("symmetric_units", 0))
        for k, v in ws.items():
            setattr(s, k, v)
