"""Where to measure, and the hooks that measure there.

The recorded points come from the model's :class:`initlab.graph.Graph` (one tracer for all of initlab):

* every parametrized layer that is called as a module (its output: the pre-activation of what follows);
* every activation module (``nn.ReLU``, ``nn.Tanh``, a custom elementwise module ...);
* for a layer whose activation is a function call (``F.relu(self.fc(x))``, ``x * torch.sigmoid(x)``),
  a *derived* record ``"fc:relu"``: the hook applies the graph's activation to the layer's output.
  Derived records have no gradient statistics (no module output carries that tensor). A functional
  activation that is not applied to a module's output (``relu(x + f(x))``) is not recorded.

The rules that decide which statistics make sense come from the activation that follows a layer:
saturation (``|x| > 4``) only before logistic / tanh units, dead units (never positive over the batch)
only for the ReLU family; a layer whose output is normalized first (Linear -> BatchNorm -> ReLU) gets
neither, its BatchNorm does.

:class:`Recorder` installs one forward hook per module; each hook folds the output into a
:class:`~initlab.probing.stats.TensorAccumulator` and registers a tensor hook on it for the gradient.
No activation is kept, and :meth:`Recorder.detach` removes every hook (also the tensor hooks of a pass
that never reached its backward).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.utils import _pytree as pytree

from initlab.gains import Activation
from initlab.probing.stats import (
    RELU_FAMILY,
    SATURATING,
    GradAccumulator,
    LayerStats,
    TensorAccumulator,
    grad_summaries,
    summaries,
)
from initlab.semantics import unit_axis

__all__ = ["Target", "select_targets", "Recorder", "first_tensor", "normalizes"]

_LOOK_THROUGH = ("dropout", "reshape", "flatten")


# a layer's own output, an activation module's output, an activation computed from a layer's output by the
# hook, or a module recorded only to carry such derived records
PointKind = Literal["layer", "activation", "derived", "carrier"]


@dataclass(eq=False)
class Target:
    """One recorded point (see the module docstring)."""

    name: str
    module: nn.Module
    kind: str
    activation: Activation | None
    point: PointKind  # what the record measures (not a parameter role: those are initlab.semantics')
    unit_dim: int | None = None  # None: decided at the first call
    dead_rule: str = "zero"
    saturation: str | None = None
    is_output: bool = False
    layer_name: str | None = None  # the graph layer (for weights)
    derived: list[Target] = field(default_factory=list)
    recorded: bool = True  # False for a carrier module that only feeds derived records
    normalized: bool = False

    @property
    def is_layer(self) -> bool:
        return self.layer_name is not None


def normalizes(module: nn.Module | None, train: bool | None = None) -> bool:
    """Whether a norm module re-standardizes the batch it sees: a BatchNorm in eval mode with running
    statistics does not (it applies fixed ones, e.g. the fresh 0 / 1 of a new model), so the depth verdicts
    must read the signal through it. ``train`` is the mode the pass will run in (None: the module's own)."""
    if isinstance(module, nn.modules.batchnorm._NormBase):
        training = module.training if train is None else train
        return training or module.running_var is None
    return True


def _rules(act: Activation | None, pre: bool) -> tuple[str, str | None]:
    """(dead_rule, saturation) for a point followed by (pre=True) or computed by ``act``."""
    if act is None or act.is_linear:
        return "zero", None
    if act.name in RELU_FAMILY:
        return "nonpositive", None
    if act.name in SATURATING:
        return "zero", "pre" if pre else act.name
    return "zero", None


def select_targets(graph: Any, layers: Any = None, train: bool | None = None) -> list[Target]:
    """The recorded points of ``graph`` in forward execution order, filtered by ``layers``.

    ``layers``: None (every parametrized layer and every activation), "layers", "activations", or a
    sequence of names / glob patterns (``"encoder.*.linear1"``) and ``nn.Module`` classes.
    """
    ops = graph.ops
    consumers: list[list[int]] = [[] for _ in ops]
    for op in ops:
        for j in op.inputs:
            consumers[j].append(op.index)
    feeds = {name for node in graph.layers for name in node.inputs}
    by_module: dict[int, Target] = {}
    order: list[Target] = []

    def reaches(i: int, pred, depth: int = 0) -> bool:
        """True when a consumer of op i (looking through dropout/reshape) satisfies pred."""
        for c in consumers[i]:
            if pred(ops[c]):
                return True
            if depth < 4 and ops[c].kind in _LOOK_THROUGH and reaches(c, pred, depth + 1):
                return True
        return False

    def is_act_module(op: Any) -> bool:
        return op.kind == "activation" and op.module is not None

    entries: list[tuple[int, Target]] = []
    for node in graph.layers:
        op = ops[node.op] if node.op is not None else None
        if op is None or op.module is not node.module:
            continue  # its parameters are used by a function call inside a container: no module output
        normalized = reaches(node.op, lambda o: o.kind == "norm" and normalizes(o.module, train))
        act = None if normalized else node.act_out
        if op.kind == "activation" and op.activation is not None:  # PReLU: a layer that is an activation
            dead, sat = _rules(op.activation, pre=False)
            t = Target(node.name or "<root>", node.module, "activation", op.activation, "activation",
                       None, dead, sat, node.name not in feeds, node.name)
        else:
            dead, sat = _rules(act, pre=True)
            t = Target(node.name or "<root>", node.module, node.kind, node.act_out, "layer",
                       unit_axis(node), dead, sat, node.name not in feeds, node.name,
                       normalized=normalized)
            if act is not None and not act.is_linear and not reaches(node.op, is_act_module):
                dead2, sat2 = _rules(act, pre=False)
                t.derived.append(Target(f"{t.name}:{act}", node.module, "activation", act, "derived",
                                        t.unit_dim, dead2, sat2, t.is_output))
        entries.append((node.op, t))
    layer_modules = {id(t.module) for _, t in entries}
    for op in ops:
        if is_act_module(op) and id(op.module) not in layer_modules:
            if any(t.module is op.module for _, t in entries):
                continue
            dead, sat = _rules(op.activation, pre=False)
            entries.append((op.index, Target(op.name, op.module, "activation", op.activation, "activation",
                                              None, dead, sat)))
    # functional activations on the output of a parameter-free norm module (LayerNorm without affine)
    for op in ops:
        if op.kind != "activation" or op.module is not None or not op.inputs:
            continue
        src = ops[op.inputs[0]]
        if src.module is not None and src.kind == "norm" and src.layer is None:
            dead, sat = _rules(op.activation, pre=False)
            carrier = Target(src.name, src.module, src.kind, None, "carrier", None, recorded=False)
            carrier.derived.append(Target(f"{src.name}:{op.activation}", src.module, "activation", op.activation,
                                          "derived", None, dead, sat))
            entries.append((src.index, carrier))
    entries.sort(key=lambda e: e[0])
    for _, t in entries:
        if id(t.module) in by_module:  # one module, several calls: one record
            by_module[id(t.module)].derived.extend(d for d in t.derived
                                                   if all(d.name != e.name for e in by_module[id(t.module)].derived))
            continue
        by_module[id(t.module)] = t
        order.append(t)
    return _filter(order, layers)


def _filter(targets: list[Target], layers: Any) -> list[Target]:
    if layers is None:
        return targets
    if isinstance(layers, str) and layers in ("layers", "activations"):
        keep_layers = layers == "layers"
        out = []
        for t in targets:
            derived = [d for d in t.derived if not keep_layers]
            own = t.recorded and ((t.point == "layer") == keep_layers)
            if own or derived:
                out.append(_copy(t, own, derived))
        return out
    if isinstance(layers, (str, type)) or not isinstance(layers, Sequence):
        exc = ValueError if isinstance(layers, str) else TypeError  # an unknown word, or not a list at all
        raise exc("layers must be None, 'layers', 'activations', or a list of layer names / glob patterns / "
                  f"nn.Module classes; got {layers!r}")
    patterns = list(layers)
    for p in patterns:
        if not (isinstance(p, str) or (isinstance(p, type) and issubclass(p, nn.Module))):
            raise ValueError(f"layers entries must be names, glob patterns or nn.Module classes; got {p!r}")
    used = [False] * len(patterns)

    def match(t: Target) -> bool:
        hit = False
        for i, p in enumerate(patterns):
            ok = isinstance(t.module, p) if isinstance(p, type) else fnmatch.fnmatchcase(t.name, p)
            if ok:
                used[i] = True
                hit = True
        return hit

    out = []
    for t in targets:
        own = t.recorded and match(t)
        derived = [d for d in t.derived if match(d)]
        if own or derived:
            out.append(_copy(t, own, derived))
    missing = [p for p, u in zip(patterns, used) if not u]
    if missing:
        names = [t.name for t in targets if t.recorded] + [d.name for t in targets for d in t.derived]
        raise ValueError(f"layers: {missing!r} matched no recorded point; available: {names}")
    return out


def _copy(t: Target, own: bool, derived: list[Target]) -> Target:
    c = Target(**{k: getattr(t, k) for k in t.__dataclass_fields__})
    c.recorded = own
    c.derived = derived
    return c


def first_tensor(output: Any) -> torch.Tensor | None:
    """The first tensor of a module output (a tensor, a tuple such as MultiheadAttention's, a dict ...)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, nn.utils.rnn.PackedSequence):
        return output.data
    for leaf in pytree.tree_leaves(output):
        if isinstance(leaf, torch.Tensor):
            return leaf
    return None


class Recorder:
    """Forward hooks on the targets' modules; statistics while they run, never the activations."""

    def __init__(self, targets: Sequence[Target], *, bins: int = 64, hist_range: tuple[float, float] | None = None,
                 grads: bool = True) -> None:
        self.targets = list(targets)
        self.bins = bins
        self.hist_range = hist_range
        self.grads = grads
        self.accs: dict[str, TensorAccumulator] = {}
        self.grad_accs: dict[str, GradAccumulator] = {}
        self.meta: dict[str, Target] = {}
        self.order: list[str] = []  # first-call order
        self.sources: dict[str, str | None] = {}
        self._handles: list[Any] = []
        self._tensor_handles: list[Any] = []
        self._last: tuple[tuple[int, ...], int | None, bool, str] | None = None
        self.failed: dict[str, str] = {}

    # -- hooks ---------------------------------------------------------------------------------------
    def attach(self) -> None:
        for t in self.targets:
            self._handles.append(t.module.register_forward_hook(self._hook_for(t)))

    def detach(self) -> None:
        for h in self._handles + self._tensor_handles:
            h.remove()
        self._handles, self._tensor_handles = [], []
        self._last = None

    def _acc(self, t: Target, y: torch.Tensor) -> TensorAccumulator:
        acc = self.accs.get(t.name)
        if acc is None:
            unit_dim, is_output, source = t.unit_dim, t.is_output, None
            if unit_dim is None or t.point != "layer":
                last = self._last
                if last is not None and last[0] == tuple(y.shape):
                    unit_dim = last[1] if unit_dim is None else unit_dim
                    is_output = is_output or last[2]
                    source = last[3]
                elif unit_dim is None:
                    unit_dim = 1 if y.ndim >= 4 else -1
            acc = TensorAccumulator(bins=self.bins, hist_range=self.hist_range, unit_dim=unit_dim,
                                    dead_rule=t.dead_rule, saturation=t.saturation)
            self.accs[t.name] = acc
            self.meta[t.name] = t
            self.order.append(t.name)
            self.sources[t.name] = source
            t.is_output = is_output
        return acc

    def _hook_for(self, target: Target):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            y = first_tensor(output)
            if y is None or not (y.is_floating_point() or y.dtype == torch.bool):
                return
            if target.recorded:
                name = target.name
                acc = self.accs.get(name) or self._acc(target, y)
                acc.update(y)
                if self.grads and y.requires_grad:
                    g = self.grad_accs.get(name)
                    if g is None:
                        g = self.grad_accs[name] = GradAccumulator()
                    self._tensor_handles.append(y.register_hook(g.update))
                self._last = (tuple(y.shape), acc.unit_dim, target.is_output, name)
            for d in target.derived:
                if d.name in self.failed:
                    continue
                if d.name not in self.accs:  # check once, on one example, that the activation runs here
                    try:
                        with torch.no_grad():
                            probe_out = d.activation.fn(y.detach()[:1])
                        if not isinstance(probe_out, torch.Tensor) or probe_out.shape != y[:1].shape:
                            raise ValueError("not an elementwise function of the layer output")
                    except Exception as exc:  # noqa: BLE001 - a replayed custom activation may not run here
                        self.failed[d.name] = f"{type(exc).__name__}: {exc}"
                        continue
                if d.unit_dim is None:
                    d.unit_dim = self.accs[target.name].unit_dim if target.name in self.accs else -1
                # the activation is applied slice by slice inside the accumulator: no full-size copy
                self._acc(d, y).update(y, fn=d.activation.fn)
                self.sources[d.name] = target.name if target.recorded else self.sources.get(d.name)

        return hook

    # -- results -------------------------------------------------------------------------------------
    def results(self) -> list[LayerStats]:
        """One :class:`LayerStats` per recorded point, in first-call order (weights not filled)."""
        sums = summaries([self.accs[name] for name in self.order])
        grads = grad_summaries([self.grad_accs.get(name) for name in self.order])
        out = []
        for i, (name, s, (g_mean, g_std)) in enumerate(zip(self.order, sums, grads)):
            t = self.meta[name]
            unit_dim = self.accs[name].unit_dim
            act = None if t.activation is None else str(t.activation)
            out.append(LayerStats(name=name, kind=t.kind, activation=act, index=i, module_type=type(t.module).__name__,
                                  unit_dim=unit_dim if unit_dim is not None else -1, is_layer=t.is_layer,
                                  is_output=t.is_output, normalized=t.normalized, source=self.sources.get(name),
                                  grad_mean=g_mean, grad_std=g_std, **s))
        return out
