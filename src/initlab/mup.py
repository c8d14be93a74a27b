"""Width transfer: the maximal update parametrization (muP) from a base model, and the coordinate check.

``initlab.mup(model, base=base_model, delta=None)`` makes ``model`` a muP version of ``base_model`` (the same
architecture at another width): hyperparameters tuned on the base then carry over to the wide model
(Yang et al. 2021, "Tensor Programs V", arXiv 2203.03466). It re-initializes every parameter, returns a
:class:`MuPReport` whose :meth:`MuPReport.param_groups` are ready for ``torch.optim.Adam``/``AdamW``/``SGD``,
and makes the forward-pass changes muP needs where the model exposes them.

Width. Corresponding parameters (same canonical name) are compared dimension by dimension: a dimension
is a *width* dimension when its size differs between ``base`` and ``model`` (between ``base`` and ``delta``
when a delta model is given, as in ``mup.set_base_shapes``), and its *width multiplier* is
``m = size in model / size in base``. At the base width every multiplier is 1 and muP is exactly the
standard parametrization (SP): the base model's tuned hyperparameters mean the same thing in both.

Classes (from the dataflow, never from names: ``initlab.semantics`` gives each weight's fan layout,
GPT-2's Conv1D ``(in, out)`` included): a weight is ``input`` when only its fan-out scales (embeddings,
the first layer after the data), ``hidden`` when both fans scale, ``output`` when only its fan-in scales
(the readout, a tied LM head included), ``fixed`` when neither does. Biases, norm gains and every other
vector are ``other`` and follow the input row. ``m_in``, ``m_out``: the fan-in and fan-out multipliers.

The table (Tensor Programs V, Table 8, the form of the ``mup`` package; ``readout="init"`` gives Table 3):

=======================  ======================  ===========  ===============  ==================
class                    init variance           Adam LR      SGD LR           forward multiplier
=======================  ======================  ===========  ===============  ==================
input, other, fixed      g^2 / fan_in            eta          eta * m_out      1
hidden                   g^2 / fan_in            eta / m_in   eta * m_out/m_in 1
output (``multiplier``)  g^2 * m_in / fan_in     eta          eta * m_in       1 / m_in
output (``init``)        g^2 / (fan_in * m_in)   eta / m_in   eta / m_in       1
SP, every class          g^2 / fan_in            eta          eta              1
=======================  ======================  ===========  ===============  ==================

``g`` is the variance-preserving gain of the activation before the layer (1 after the data or a norm,
sqrt(2) after a ReLU; ``initlab.gains.variance_gain``); weights are drawn ``Normal(0, g / sqrt(fan_in) ...)``.
Up to the base width's constants these are Table 3's ``1/fan_in``, ``1/fan_in^2`` and ``eta * fan_out``,
``eta / fan_in``. An embedding (a lookup: its one-hot input has fan-in 1) is drawn ``Normal(0,
embedding_std)``; biases and norm biases start at 0, norm gains at 1, any other parameter keeps its value.

Output layer. By default (``readout="multiplier"``) the readout keeps a width-independent init and a forward
pre-hook divides its INPUT by ``m_in``, exactly ``mup.MuReadout`` (``W (x / m_in) + b``: the bias is not
scaled). This form is the one compatible with weight tying: a tied embedding / LM head gets Adam ``eta`` and
SGD ``eta * m`` from both of its roles, and one width-independent init (the readout's, ``g^2 / base fan_in``:
what ``mup.MuSharedReadout`` leaves open, see microsoft/mup#55). ``readout="init"`` folds the multiplier into
the init and the learning rates instead (no hook); it refuses a tied head, whose two roles would then ask
for different learning rates. A readout that is not a Linear/Conv module falls back to ``"init"``.

Attention. muP scales the attention logits by ``1/d`` instead of ``1/sqrt(d)`` (``d`` the head dim). Where an
attention module exposes ``head_dim`` and a float ``scaling`` or ``scale`` (Hugging Face Llama and GPT-2:
``self.scaling``), it is set to ``base scale * base head_dim / head_dim``: the base's value at the base
width, ``1/d`` scaling beyond. A module with a ``head_dim`` that changes but no such attribute
(``nn.MultiheadAttention``) is listed in ``MuPReport.warnings``.

Guarantees: every check runs and every value is drawn before anything changes (on an error the model is
as it was); ``seed`` or ``generator`` make the init reproducible (torch's global RNG is never used);
``MuPReport.remove()`` takes the forward changes back; a model that already carries them is refused.
``init=False`` applies only the forward changes and computes the groups (a muP checkpoint just loaded).

``initlab.coord_check(factory, widths, data)`` trains ``factory(width)`` for a few steps at each width and
records every layer's mean ``|activation|``: flat in width under muP, growing under SP (the paper's
diagnostic; :class:`CoordCheck` has the figure and the verdict).

>>> import torch
>>> from torch import nn
>>> def net(w): return nn.Sequential(nn.Linear(8, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 3))
>>> report = mup(net(256), base=net(64), seed=0)
>>> [(e.name, e.cls, e.lr_mult["adam"]) for e in report if e.name.endswith("weight")]
[('0.weight', 'input', 1.0), ('2.weight', 'hidden', 0.25), ('4.weight', 'output', 1.0)]
>>> report.changes
['4: input x 1/4 (readout multiplier, as mup.MuReadout)']
>>> opt = torch.optim.AdamW(report.param_groups(lr=1e-3))
"""

from __future__ import annotations

import math
import sys
import types
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import nn

from initlab.gains import variance_gain
from initlab.graph import Graph, LayerNode, trace
from initlab.initializers import Normal
from initlab.semantics import ParamInfo, Semantics, describe
from initlab.validate import check_choice, check_flag, check_int, check_number, check_seed

__all__ = ["mup", "MuPReport", "MuPEntry", "coord_check", "CoordCheck", "Parametrization", "PARAMETRIZATIONS",
           "Readout", "READOUTS", "OptimizerKind", "OPTIMIZERS", "WidthClass", "WIDTH_CLASSES", "SLOPE_BOUND",
           "loglog_slope"]

Parametrization = Literal["mup", "sp"]
PARAMETRIZATIONS: tuple[str, ...] = get_args(Parametrization)
Readout = Literal["multiplier", "init"]
READOUTS: tuple[str, ...] = get_args(Readout)
OptimizerKind = Literal["adam", "sgd"]
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerKind)
WidthClass = Literal["input", "hidden", "output", "fixed", "other"]
WIDTH_CLASSES: tuple[str, ...] = get_args(WidthClass)
# |log-log slope of mean |activation| against width| at or below which a layer counts as flat (coord_check):
# halfway between muP's 0 and the slope 1 of SP's hidden updates under Adam (Delta W x grows as the width)
SLOPE_BOUND = 0.5

_SCALE_ATTRS = ("scaling", "scale")
# models that carry muP's forward changes (hook, attention scale), and the report that can take them back
_APPLIED: weakref.WeakKeyDictionary[nn.Module, MuPReport] = weakref.WeakKeyDictionary()


# --------------------------------------------------------------------------------------------------
# The report


@dataclass
class MuPEntry:
    """What muP does with one parameter (see the module docstring for the table)."""

    name: str
    shape: tuple[int, ...]
    base_shape: tuple[int, ...]
    role: str  # initlab.semantics role ("weight", "bias", "embedding", "norm_gain", ...)
    cls: str  # one of WIDTH_CLASSES
    m_in: float  # fan-in width multiplier (1 when it does not scale or the parameter has no fans)
    m_out: float  # fan-out width multiplier (for a vector: its width dimension's)
    init: str  # what was drawn: "Normal(std=...)", "zeros", "ones", "kept"
    std: float | None
    lr_mult: dict[str, float]  # {"adam": ..., "sgd": ...}: multiply the base learning rate by this
    multiplier: float = 1.0  # forward multiplier (the readout's 1/m_in)
    uses: str = ""
    param: nn.Parameter | None = field(default=None, repr=False)

    @property
    def width_mult(self) -> float:
        """mup's ``infshape.width_mult()``: the fan-in multiplier when the fan-in scales, else the fan-out's."""
        return self.m_in if self.m_in != 1.0 else self.m_out

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("name", "role", "cls", "m_in", "m_out", "width_mult", "init", "std",
                                           "multiplier", "uses")}
        return {**d, "shape": list(self.shape), "base_shape": list(self.base_shape), "lr_mult": dict(self.lr_mult)}


@dataclass
class MuPReport:
    """The outcome of :func:`mup`: one :class:`MuPEntry` per parameter, the forward changes, the groups."""

    entries: list[MuPEntry]
    parametrization: str
    readout: str
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seed: int | None = None
    layers: list[str] = field(default_factory=list)  # traced layers in execution order (coord_check's hooks)
    _undo: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _model: Any = field(default=None, repr=False)

    def __iter__(self) -> Iterator[MuPEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, name: str) -> MuPEntry:
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(f"no parameter named {name!r} in this report")

    def lr_multipliers(self, optimizer: OptimizerKind = "adam") -> dict[str, float]:
        """Parameter name -> learning-rate multiplier for ``optimizer`` (``"adam"`` or ``"sgd"``)."""
        check_choice(optimizer, "optimizer", OPTIMIZERS)
        return {e.name: e.lr_mult[optimizer] for e in self.entries}

    def param_groups(self, lr: float, optimizer: OptimizerKind = "adam", *,
                     weight_decay: float = 0.0) -> list[dict[str, Any]]:
        """Parameter groups for ``torch.optim``: one per learning-rate multiplier, ``lr * multiplier`` each.

        ``optimizer``: ``"adam"`` for Adam, AdamW and other entrywise-normalized optimizers, ``"sgd"`` for SGD
        (with or without momentum). ``weight_decay`` is divided by the multiplier, so that ``lr * weight_decay``
        is the same in every group (the ``mup`` package's default, ``decoupled_wd=False``). Each group carries
        ``param_names`` (torch's own key) and ``lr_mult``. Frozen parameters are left out.

        >>> from torch import nn
        >>> r = mup(nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 2)),
        ...         base=nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), seed=0)
        >>> [(g["lr"], g["param_names"]) for g in r.param_groups(0.1, "sgd")]
        [(0.4, ['0.weight', '0.bias', '2.weight']), (0.1, ['2.bias'])]
        """
        lr = check_number(lr, "lr", minimum=0.0, strict=True)
        check_choice(optimizer, "optimizer", OPTIMIZERS)
        weight_decay = check_number(weight_decay, "weight_decay", minimum=0.0)
        groups: dict[float, dict[str, Any]] = {}
        for e in self.entries:
            if e.param is None or not e.param.requires_grad:
                continue
            mult = e.lr_mult[optimizer]
            g = groups.setdefault(mult, {"params": [], "param_names": [], "lr": lr * mult,
                                         "weight_decay": weight_decay / mult, "lr_mult": mult})
            g["params"].append(e.param)
            g["param_names"].append(e.name)
        return list(groups.values())

    def table(self) -> str:
        """A terminal table: every parameter's class, multipliers, init and learning-rate multipliers."""
        from initlab.report.table import Column, fmt_number, render

        num = lambda v: fmt_number(v, 4)  # noqa: E731
        cols = [Column("name"), Column("shape", fmt=lambda s: "x".join(map(str, s))), Column("role"),
                Column("cls", header="class"), Column("m_in", fmt=num), Column("m_out", fmt=num),
                Column("init"), Column(lambda e: e.lr_mult["adam"], header="adam lr x", fmt=num),
                Column(lambda e: e.lr_mult["sgd"], header="sgd lr x", fmt=num),
                Column("multiplier", header="fwd x", fmt=num)]
        title = f"initlab.mup: {self.parametrization}" + (f", readout={self.readout}" if self.parametrization ==
                                                          "mup" else "")
        text = render(self.entries, cols, title=title)
        notes = [f"change: {c}" for c in self.changes] + [f"warning: {w}" for w in self.warnings]
        return "\n".join([text, *notes])

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        return {"parametrization": self.parametrization, "readout": self.readout, "seed": self.seed,
                "changes": list(self.changes), "warnings": list(self.warnings),
                "entries": [e.to_dict() for e in self.entries]}

    def remove(self) -> None:
        """Take back the forward changes (readout hooks, attention scales); the weights stay as drawn."""
        while self._undo:
            self._undo.pop()()
        if self._model is not None and _APPLIED.get(self._model) is self:
            del _APPLIED[self._model]


# --------------------------------------------------------------------------------------------------
# Small helpers


class _ReadoutMultiplier:
    """Forward pre-hook: divides a readout's input by its fan-in multiplier (``mup.MuReadout``'s forward)."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args and isinstance(args[0], torch.Tensor):
            return (args[0] * self.factor, *args[1:]), kwargs
        if isinstance(kwargs.get("input"), torch.Tensor):
            return args, {**kwargs, "input": kwargs["input"] * self.factor}
        raise TypeError(f"the muP readout multiplier found no input tensor in {type(module).__name__}'s call")


def _params(module: Any, argname: str) -> dict[str, nn.Parameter]:
    if not isinstance(module, nn.Module):
        raise TypeError(f"{argname} must be a torch.nn.Module; got {type(module).__name__}")
    return dict(module.named_parameters())


# --------------------------------------------------------------------------------------------------
# Width dimensions: model vs base (vs delta)


def _width_dims(model: nn.Module, base: nn.Module, delta: nn.Module | None) -> dict[str, tuple[float | None, ...]]:
    """Per parameter, per dimension: its width multiplier (model size / base size), None if not a width dim."""
    mine, theirs = _params(model, "model"), _params(base, "base")
    other = None if delta is None else _params(delta, "delta")
    for argname, shapes in (("base", theirs), ("delta", other)):
        if shapes is not None and set(shapes) != set(mine):
            only_m, only_o = sorted(set(mine) - set(shapes)), sorted(set(shapes) - set(mine))
            raise ValueError(f"{argname} must have the same parameters as model (the same architecture at another "
                             f"width, tied the same way); only in model: {only_m[:5]}, only in {argname}: "
                             f"{only_o[:5]}")
    dims: dict[str, tuple[float | None, ...]] = {}
    for name, p in mine.items():
        b = tuple(theirs[name].shape)
        d = b if other is None else tuple(other[name].shape)
        s = tuple(p.shape)
        if not len(s) == len(b) == len(d):
            raise ValueError(f"parameter {name} has shape {s} in model but {b} in base" +
                             ("" if other is None else f" and {d} in delta") + ": not the same architecture")
        per_dim: list[float | None] = []
        for i, (n, nb, nd) in enumerate(zip(s, b, d)):
            width = (nb != nd) if other is not None else (n != nb)
            if not width and n != nb:
                raise ValueError(f"parameter {name}: dimension {i} is {n} in model but {nb} in base, and base and "
                                 f"delta agree on it ({nd}), so it is not a width dimension; give a delta model that "
                                 "differs from base in every dimension that scales")
            per_dim.append(n / nb if width else None)
        dims[name] = tuple(per_dim)
    return dims


# --------------------------------------------------------------------------------------------------
# Classification and the table


def _axes(info: ParamInfo | None) -> tuple[int, int] | None:
    """(fan-in axis, fan-out axis) of a matrix-like parameter in dataflow terms; None for a vector-like one."""
    if info is None or info.param.dim() < 2:
        return None
    if info.role == "weight":
        return (0, 1) if info.layout in ("lasagne_dense", "torch_transposed") else (1, 0)
    if info.role == "embedding":
        return 0, 1  # (num_embeddings, dim): the index is the input, the rows are the output
    if info.role in ("recurrent", "rnn_input"):
        return 1, 0
    return None


def _classify(name: str, info: ParamInfo | None, dims: tuple[float | None, ...]) -> tuple[str, float, float]:
    """(class, m_in, m_out) from which dimensions scale."""
    axes = _axes(info)
    widths = [i for i, m in enumerate(dims) if m is not None]
    if info is None:  # not used in the traced forward pass: no role, no fans; left as it is
        return ("other" if len(dims) < 2 else "fixed"), 1.0, 1.0
    if axes is None:
        if info.role == "unknown" and info.param.dim() >= 2 and widths:
            raise ValueError(f"parameter {name}: no use of it was seen, so its fan-in and fan-out are unknown; pass "
                             "example_inputs so the model can be traced with a forward pass")
        if len(widths) > 1:
            raise ValueError(f"parameter {name} (role {info.role}) has {len(widths)} width dimensions but is not a "
                             "matrix initlab can read fans from; muP defines at most one for vectors (mup raises too)")
        m = dims[widths[0]] if widths else 1.0
        return "other", 1.0, float(m)
    i, o = axes
    stray = [w for w in widths if w not in axes]
    if stray:
        raise ValueError(f"parameter {name}: dimension {stray[0]} scales with width but is neither its fan-in nor "
                         "its fan-out axis (a kernel size?); muP scales only the fans")
    m_in, m_out = float(dims[i] or 1.0), float(dims[o] or 1.0)
    cls = {(False, False): "fixed", (False, True): "input", (True, True): "hidden", (True, False): "output"}[
        (dims[i] is not None, dims[o] is not None)]
    return cls, m_in, m_out


def _lr_mults(cls: str, m_in: float, m_out: float, mu: bool, fold: bool) -> tuple[float, float, float]:
    """(Adam, SGD, forward multiplier) of a class; ``fold``: the readout's multiplier is folded (Table 3)."""
    if not mu:
        return 1.0, 1.0, 1.0
    if cls == "hidden":
        return 1.0 / m_in, m_out / m_in, 1.0
    if cls == "output":
        return (1.0 / m_in, 1.0 / m_in, 1.0) if fold else (1.0, m_in, 1.0 / m_in)
    return 1.0, m_out, 1.0  # input, other (biases, gains, vectors), fixed (m_out = 1)


def _gain(node: LayerNode, warnings: list[str]) -> float:
    if node.act_in is None:
        return 1.0
    try:
        return variance_gain(node.act_in)
    except ValueError as exc:
        warnings.append(f"layer {node.name or '<root>'}: no variance gain for its input activation ({exc}); used 1")
        return 1.0


def _std(info: ParamInfo, cls: str, m_in: float, fold: bool, mu: bool, embedding_std: float,
         warnings: list[str]) -> float:
    """The init std of a matrix-like parameter: g / sqrt(fan_in), the readout's rescaled by m_in."""
    p, axes = info.param, _axes(info)
    assert axes is not None
    if info.role == "embedding":
        std = embedding_std
    else:
        rf = math.prod(n for k, n in enumerate(p.shape) if k not in axes)
        std = _gain(info.node, warnings) / math.sqrt(p.shape[axes[0]] * rf)
    if mu and cls == "output":
        std = std / math.sqrt(m_in) if fold else std * math.sqrt(m_in)
    return std


def _init_of(info: ParamInfo | None) -> str:
    """What a vector-like parameter starts at."""
    if info is None:
        return "kept"
    if info.role == "norm_gain":
        return "ones"
    if info.role in ("bias", "norm_bias"):
        return "zeros"
    return "kept"


# --------------------------------------------------------------------------------------------------
# Planning


@dataclass
class _Options:
    mu: bool
    readout: str
    embedding_std: float
    init: bool


def _readout_form(sem: Semantics, info: ParamInfo, opts: _Options, warnings: list[str]) -> bool:
    """True when the readout's multiplier is folded into init and LR (Table 3) rather than a hook (Table 8)."""
    tied = len({u.layer.name for u in info.uses}) > 1
    if opts.readout == "init":
        if tied:
            raise ValueError(f"readout='init' cannot serve {info.name}, which is tied ({info.roles}): as an input "
                             "weight it needs Adam LR eta, as an output weight eta/m. Use readout='multiplier' "
                             "(Tensor Programs V, Table 8, compatible with weight sharing)")
        return True
    node = info.node
    if node.kind in ("linear", "conv") and node.name and node.module is not sem.graph.model:
        return False
    if tied:
        raise ValueError(f"the readout {info.name} is tied ({info.roles}) but its layer {node.name or '<root>'} is not "
                         "a Linear/Conv module a multiplier hook can be put on; muP cannot serve both roles")
    warnings.append(f"{info.name}: its layer {node.name or '<root>'} is not a Linear/Conv module, so the readout "
                    "multiplier is folded into its init and learning rates (readout='init' for this weight)")
    return True


def _plan(model: nn.Module, sem: Semantics, dims: dict[str, tuple[float | None, ...]], opts: _Options,
          warnings: list[str]) -> tuple[list[MuPEntry], dict[str, float]]:
    """One entry per parameter; the readout hooks to add (layer name -> factor)."""
    hooks: dict[str, float] = {}
    entries: list[MuPEntry] = []
    base_shapes = {n: tuple(round(s / m) if m else s for s, m in zip(p.shape, dims[n]))
                   for n, p in model.named_parameters()}
    unused = [n for n in dims if n not in sem.params]
    if unused:
        warnings.append(f"not used in the traced forward pass, so kept as they are with learning-rate multiplier 1 "
                        f"(wrong if training uses them: pass example_inputs that do): {', '.join(unused[:8])}")
    for name, p in model.named_parameters():
        info = sem.params.get(name)
        cls, m_in, m_out = _classify(name, info, dims[name])
        fold = False
        if cls == "output" and opts.mu and info is not None:
            fold = _readout_form(sem, info, opts, warnings)
            if not fold:
                hooks[info.node.name] = 1.0 / m_in
            if not any(u.output for u in info.uses):
                warnings.append(f"{name} maps width to a fixed size inside the network (not the readout): treated "
                                "as an output weight, per muP's table (mup's assert_hidden_size_inf rejects it)")
        adam, sgd, fwd = _lr_mults(cls, m_in, m_out, opts.mu, fold)
        if _axes(info) is not None:
            std = _std(info, cls, m_in, fold, opts.mu, opts.embedding_std, warnings)
            init = f"Normal(std={std:.4g})"
        else:
            init, std = _init_of(info), None
            std = {"zeros": 0.0, "ones": 0.0}.get(init)
        if not opts.init:
            init, std = "kept", None
        entries.append(MuPEntry(name, tuple(p.shape), base_shapes[name], info.role if info else "unused", cls, m_in,
                                m_out, init, std, {"adam": adam, "sgd": sgd}, fwd, info.roles if info else "", p))
    return entries, hooks


def _attention_plan(model: nn.Module, base: nn.Module, warnings: list[str]) -> list[tuple[nn.Module, str, float,
                                                                                           float, str]]:
    """(module, attribute, old, new, module name) for every attention scale to change to 1/d."""
    base_modules = dict(base.named_modules())
    plan = []
    for name, module in model.named_modules():
        hd = getattr(module, "head_dim", None)
        twin = base_modules.get(name)
        base_hd = getattr(twin, "head_dim", None)
        if not isinstance(hd, int) or not isinstance(base_hd, int) or isinstance(hd, bool) or hd == base_hd:
            continue
        attr = next((a for a in _SCALE_ATTRS if _is_float(getattr(module, a, None))
                     and _is_float(getattr(twin, a, None))), None)
        if attr is None:
            warnings.append(f"{name or '<root>'} ({type(module).__name__}): head_dim {base_hd} -> {hd} but it exposes "
                            "no float 'scaling'/'scale' attribute, so its logits keep 1/sqrt(d) (muP wants 1/d)")
            continue
        new = float(getattr(twin, attr)) * base_hd / hd
        plan.append((module, attr, float(getattr(module, attr)), new, name))
    return plan


def _is_float(v: Any) -> bool:
    return isinstance(v, float) and math.isfinite(v)


# --------------------------------------------------------------------------------------------------
# The orchestrator


def mup(model: nn.Module, base: nn.Module, delta: nn.Module | None = None, *,
        parametrization: Parametrization = "mup", readout: Readout = "multiplier", example_inputs: Any = None,
        seed: int | None = None, generator: torch.Generator | None = None, init: bool = True,
        embedding_std: float = 1.0) -> MuPReport:
    """Parametrize ``model`` in muP relative to ``base`` (see the module docstring): re-initialize it, make
    the forward changes, and return the :class:`MuPReport` with the per-parameter learning-rate multipliers.

    Args:
        model: the ``nn.Module`` to train (changed in place).
        base: the same architecture at the base width (only shapes and attention attributes are read: it may
            live on the meta device).
        delta: optional, the same architecture differing from ``base`` in every dimension that scales (mup's
            convention); without it, the dimensions that differ between ``model`` and ``base`` scale.
        parametrization: ``"mup"``, or ``"sp"`` (the same classes and init, SP's output init and learning rates:
            the control of a coordinate check or a transfer experiment).
        readout: ``"multiplier"`` (forward hook, Table 8; default) or ``"init"`` (folded into init and LR).
        example_inputs: inputs for one forward pass, needed when torch.fx cannot trace the model (Hugging Face
            models): a tensor, a tuple of positional inputs or a dict of keyword inputs.
        seed, generator: reproducibility of the init (give at most one).
        init: False keeps the weights (a muP checkpoint) and only makes the forward changes.
        embedding_std: std of (untied) embedding tables.

    >>> from torch import nn
    >>> r = mup(nn.Linear(64, 64), base=nn.Linear(16, 16), seed=0)
    >>> r["weight"].cls, r["weight"].lr_mult
    ('hidden', {'adam': 0.25, 'sgd': 1.0})
    """
    opts = _validate(model, base, delta, parametrization, readout, seed, generator, init, embedding_std)
    dims = _width_dims(model, base, delta)
    graph = trace(model, example_inputs)
    sem = describe(graph)
    warnings = _trace_warnings(graph)
    entries, hooks = _plan(model, sem, dims, opts, warnings)
    attention = _attention_plan(model, base, warnings) if opts.mu else []
    gen, seed = _generator(seed, generator)
    values = _draw(entries, gen) if opts.init else {}
    report = MuPReport(entries, parametrization, readout, warnings=warnings, seed=seed if opts.init else None,
                       layers=[n.name for n in graph.layers if n.name])
    _assign(entries, values)
    _apply_forward(model, sem, hooks, attention, report)
    return report


def _validate(model: Any, base: Any, delta: Any, parametrization: Any, readout: Any, seed: Any, generator: Any,
              init: Any, embedding_std: Any) -> _Options:
    """Every argument, before anything is traced, drawn or changed."""
    _params(model, "model")
    _params(base, "base")
    if delta is not None:
        _params(delta, "delta")
    if base is model:
        raise ValueError("base must be a separate model at the base width (it is model itself)")
    check_choice(parametrization, "parametrization", PARAMETRIZATIONS)
    check_choice(readout, "readout", READOUTS)
    if seed is not None and generator is not None:
        raise ValueError("give seed or generator, not both")
    check_seed(seed)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")
    check_flag(init, "init")
    std = check_number(embedding_std, "embedding_std", minimum=0.0, strict=True)
    on_meta = [n for n, p in model.named_parameters() if p.is_meta]
    if on_meta and init:
        raise ValueError(f"model has {len(on_meta)} parameter(s) on the meta device (e.g. {on_meta[0]!r}): "
                         "materialize it first (model.to_empty(device='cpu')); only base and delta may be on meta")
    if parametrization == "mup" and model in _APPLIED:
        raise ValueError("model already carries muP's forward changes from an earlier initlab.mup call; call "
                         "that report's remove() first (or build a fresh model)")
    return _Options(parametrization == "mup", readout, std, init)


def _trace_warnings(graph: Graph) -> list[str]:
    if graph.method == "modules" and any(True for _ in graph.model.children()):
        return [f"{graph.fallback_reason}. Roles come from the module types alone; pass example_inputs."]
    return []


def _generator(seed: int | None, generator: torch.Generator | None) -> tuple[torch.Generator, int | None]:
    if generator is not None:
        return generator, None
    generator = torch.Generator()
    if seed is None:
        return generator, generator.seed()
    return generator.manual_seed(seed), seed


def _draw(entries: list[MuPEntry], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Every new value, drawn before anything is assigned (parameter order: reproducible from the seed)."""
    values: dict[str, torch.Tensor] = {}
    for e in entries:
        p = e.param
        assert p is not None
        if e.init.startswith("Normal"):
            values[e.name] = Normal(std=e.std).sample(p.shape, dtype=p.dtype, device=p.device, generator=generator)
        elif e.init in ("zeros", "ones"):
            values[e.name] = (torch.zeros_like if e.init == "zeros" else torch.ones_like)(p, device=p.device)
    return values


def _assign(entries: list[MuPEntry], values: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for e in entries:
            if e.name in values and e.param is not None:
                e.param.copy_(values[e.name])


def _apply_forward(model: nn.Module, sem: Semantics, hooks: dict[str, float], attention: list, report: MuPReport
                   ) -> None:
    """The readout hooks and the attention scales; each registered for :meth:`MuPReport.remove`."""
    modules = dict(model.named_modules())
    for layer, factor in hooks.items():
        handle = modules[layer].register_forward_pre_hook(_ReadoutMultiplier(factor), with_kwargs=True)
        report._undo.append(handle.remove)
        report.changes.append(f"{layer}: input x 1/{1 / factor:.4g} (readout multiplier, as mup.MuReadout)")
    for module, attr, old, new, name in attention:
        setattr(module, attr, new)
        report._undo.append(lambda m=module, a=attr, v=old: setattr(m, a, v))
        report.changes.append(f"{name}.{attr}: {old:.4g} -> {new:.4g} (attention logits 1/d instead of 1/sqrt(d))")
    if report._undo:
        report._model = model
        _APPLIED[model] = report


# --------------------------------------------------------------------------------------------------
# The coordinate check


def loglog_slope(widths: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of ``log(value)`` against ``log(width)`` (0 for a constant; nan if any value <= 0).

    >>> round(loglog_slope([1, 2, 4], [3, 6, 12]), 6), round(loglog_slope([1, 2, 4], [5, 5, 5]), 6)
    (1.0, 0.0)
    """
    if any(not (v > 0) or not math.isfinite(v) for v in values):
        return math.nan
    xs = [math.log(w) for w in widths]
    ys = [math.log(v) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


@dataclass
class CoordCheck:
    """Mean ``|activation|`` of every layer at every width after each of ``steps`` training steps.

    ``values[t][layer]`` lists one number per width (mean over seeds) after ``t`` updates (``t = 0``: at init);
    ``"<output>"`` is the model's output. :meth:`slopes` fits log-log slopes against width; :meth:`verdict`
    reads those of the last step.
    """

    widths: list[int]
    steps: int
    layers: list[str]
    values: dict[int, dict[str, list[float]]]
    parametrization: str
    optimizer: str
    lr: float
    seeds: int

    def slopes(self, step: int | None = None) -> dict[str, float]:
        """Layer -> log-log slope of mean |activation| against width after ``step`` updates (default: the last)."""
        t = self.steps if step is None else step
        return {layer: loglog_slope(self.widths, vals) for layer, vals in self.values[t].items()}

    def max_slope(self, step: int | None = None) -> tuple[str, float]:
        """The layer whose activations grow fastest with width, and its slope (nan slopes count as growth)."""
        s = self.slopes(step)
        name = max(s, key=lambda k: math.inf if math.isnan(s[k]) else s[k])
        return name, s[name]

    def verdict(self, bound: float = SLOPE_BOUND) -> str:
        """``"flat"``, ``"growing"`` or ``"shrinking"`` (with the numbers), from the last step's slopes.

        Flat: every layer's ``|slope| <= bound``; growing: some layer's slope ``> bound`` (or a blow-up: non-finite).
        """
        s = self.slopes()
        top, top_slope = self.max_slope()
        low = min(s, key=lambda k: s[k] if not math.isnan(s[k]) else math.inf)
        if math.isnan(top_slope) or top_slope > bound:
            word = "growing"
        elif s[low] < -bound:
            word = "shrinking"
        else:
            word = "flat"
        return (f"{word}: log-log slope of mean |activation| vs width after {self.steps} steps "
                f"({self.parametrization}, {self.optimizer}, lr {self.lr:g}) from {s[low]:.2f} ({low}) to "
                f"{top_slope:.2f} ({top}); flat means |slope| <= {bound:g}")

    @property
    def flat(self) -> bool:
        return self.verdict().startswith("flat")

    @property
    def growing(self) -> bool:
        return self.verdict().startswith("growing")

    def table(self) -> str:
        """Layer x width table of the last step, with the slopes."""
        from initlab.report.table import Column, fmt_number, render

        s = self.slopes()
        rows = [[layer, *self.values[self.steps][layer], s[layer]] for layer in self.layers]
        headers = ["layer", *[f"w={w}" for w in self.widths], "slope"]
        cols = [Column(i, header=h, fmt=lambda v: fmt_number(v, 3)) for i, h in enumerate(headers)]
        return "\n".join([render(rows, cols, title=f"coord check ({self.parametrization}, mean |x| after "
                                                   f"{self.steps} steps)"), self.verdict()])

    def to_dict(self) -> dict[str, Any]:
        return {"widths": list(self.widths), "steps": self.steps, "layers": list(self.layers),
                "parametrization": self.parametrization, "optimizer": self.optimizer, "lr": self.lr,
                "seeds": self.seeds, "values": {str(t): v for t, v in self.values.items()},
                "slopes": {str(t): self.slopes(t) for t in self.values}, "verdict": self.verdict()}

    def plot(self, path: str | Path | None = None, *, title: str | None = None) -> Any:
        """One panel per step (t = 0 is the init), a line per layer: mean |x| against width, log-log."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(3.2 * (self.steps + 1), 3.4), layout="constrained")
        axes = fig.subplots(1, self.steps + 1, sharey=True, squeeze=False)[0]
        colors = _layer_colors(len(self.layers))
        for t, ax in enumerate(axes):
            for color, layer in zip(colors, self.layers):
                ax.loglog(self.widths, self.values[t][layer], marker="o", ms=3, lw=1, color=color,
                          label=layer if t == 0 else None)
            ax.set_xscale("log", base=2)
            ax.set_title(f"t = {t}" + (" (init)" if t == 0 else ""), fontsize=9)
            ax.set_xlabel("width")
        axes[0].set_ylabel("mean |activation|")
        fig.suptitle(title or f"coord check: {self.parametrization}, {self.optimizer} lr {self.lr:g}", fontsize=10)
        fig.legend(loc="outside right upper", fontsize=6)
        if path is not None:
            from initlab._io import atomic_figure

            atomic_figure(fig, path, "path", dpi=110)
        return fig


def _layer_colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(i / max(1, n - 1)) for i in range(n)]


def _main_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    for key in ("logits", "last_hidden_state"):
        value = out.get(key) if isinstance(out, dict) else getattr(out, key, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"no output tensor in a {type(out).__name__}; give loss_fn")


def _default_loss(out: Any, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the last axis for integer targets, mean squared error for float ones."""
    y = _main_tensor(out)
    if targets.is_floating_point():
        return nn.functional.mse_loss(y, targets)
    return nn.functional.cross_entropy(y.reshape(-1, y.shape[-1]), targets.reshape(-1))


def _call(model: nn.Module, inputs: Any) -> Any:
    from initlab.datainit._common import call_args

    args, kwargs = call_args(inputs)  # the one reading of "a tensor, a tuple or a dict of inputs"
    return model(*args, **kwargs)


class _Recorder:
    """Forward hooks that accumulate mean |output| per layer (removed by :meth:`close`)."""

    def __init__(self, model: nn.Module, layers: list[str]) -> None:
        modules = dict(model.named_modules())
        self.sums: dict[str, list[float]] = {}
        self.handles = [modules[name].register_forward_hook(self._hook(name)) for name in layers]

    def _hook(self, name: str) -> Callable:
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            try:
                y = _main_tensor(out)
            except TypeError:
                return
            if y.is_floating_point():
                self.sums.setdefault(name, []).append(float(y.detach().abs().mean()))
        return hook

    def take(self) -> dict[str, float]:
        out = {k: sum(v) / len(v) for k, v in self.sums.items()}
        self.sums = {}
        return out

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _check_coord_args(factory: Any, widths: Any, data: Any, steps: Any, optimizer: Any, lr: Any,
                      parametrization: Any, base_width: Any, seeds: Any, loss_fn: Any) -> tuple[list[int], float]:
    if not callable(factory):
        raise TypeError(f"factory must be a callable width -> nn.Module; got {type(factory).__name__}")
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise TypeError(f"widths must be a sequence of ints; got {type(widths).__name__}")
    ws = [check_int(w, "widths", 1) for w in widths]
    if len(set(ws)) < 2:
        raise ValueError(f"widths must hold at least two different widths; got {list(widths)!r}")
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"data must be a pair (inputs, targets); got {type(data).__name__}")
    check_int(steps, "steps", 1, 10_000)
    check_choice(optimizer, "optimizer", OPTIMIZERS)
    check_choice(parametrization, "parametrization", PARAMETRIZATIONS)
    rate = check_number({"adam": 1e-2, "sgd": 0.1}[optimizer] if lr is None else lr, "lr", minimum=0.0, strict=True)
    if base_width is not None:
        check_int(base_width, "base_width", 1)
    check_int(seeds, "seeds", 1, 1000)
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (output, targets) -> loss; got {type(loss_fn).__name__}")
    return sorted(set(ws)), rate


def coord_check(factory: Callable[[int], nn.Module], widths: Sequence[int], data: tuple[Any, torch.Tensor], *,
                steps: int = 3, optimizer: OptimizerKind = "adam", lr: float | None = None,
                parametrization: Parametrization = "mup",
                base_width: int | None = None, seeds: int = 1, seed: int = 0,
                loss_fn: Callable[[Any, torch.Tensor], torch.Tensor] | None = None) -> CoordCheck:
    """The coordinate check of Tensor Programs V: train ``factory(width)`` for ``steps`` steps at each width
    and record every traced layer's mean ``|output|`` after each step.

    Each model is passed through :func:`mup` with ``base=factory(base_width)`` (default: the smallest width)
    and ``parametrization``, then trained full-batch on ``data = (inputs, targets)`` with ``torch.optim.Adam``
    or ``SGD`` on :meth:`MuPReport.param_groups` (``lr`` default 1e-2 for Adam, 0.1 for SGD). ``loss_fn``
    (default: cross-entropy for integer targets, MSE for float ones) receives the model output and targets.
    Inits come from ``seed, seed + 1, ...`` (one per seed); torch's global RNG is not used by initlab.

    >>> import torch
    >>> from torch import nn
    >>> x, y = torch.randn(32, 8, generator=torch.Generator().manual_seed(0)), torch.arange(32) % 3
    >>> def net(w): return nn.Sequential(nn.Linear(8, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 3))
    >>> cc = coord_check(net, [16, 64], (x, y), steps=2)
    >>> sorted(cc.values), cc.layers
    ([0, 1, 2], ['0', '2', '4', '<output>'])
    """
    ws, rate = _check_coord_args(factory, widths, data, steps, optimizer, lr, parametrization, base_width, seeds,
                                 loss_fn)
    check_seed(seed, optional=False)
    inputs, targets = data
    loss_fn = loss_fn or _default_loss
    base = factory(base_width or ws[0])
    runs: dict[int, list[dict[int, dict[str, float]]]] = {w: [] for w in ws}
    layers: list[str] = []
    for s in range(seeds):
        for w in ws:
            model = factory(w)
            report = mup(model, base=base, parametrization=parametrization, example_inputs=inputs, seed=seed + s)
            layers = report.layers
            runs[w].append(_train_recording(model, report, inputs, targets, loss_fn, optimizer, rate, steps))
            report.remove()
    names = [*layers, "<output>"]
    values = {t: {layer: [sum(r[t].get(layer, math.nan) for r in runs[w]) / seeds for w in ws] for layer in names}
              for t in range(steps + 1)}
    return CoordCheck(ws, steps, names, values, parametrization, optimizer, rate, seeds)


def _train_recording(model: nn.Module, report: MuPReport, inputs: Any, targets: torch.Tensor, loss_fn: Callable,
                     optimizer: str, lr: float, steps: int) -> dict[int, dict[str, float]]:
    """Full-batch training; mean |x| of every layer at each forward pass (t = number of updates so far)."""
    opt_cls = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    opt = opt_cls(report.param_groups(lr, optimizer))
    rec = _Recorder(model, report.layers)
    out: dict[int, dict[str, float]] = {}
    model.train()
    try:
        for t in range(steps + 1):
            y = _call(model, inputs)
            out[t] = {**rec.take(), "<output>": float(_main_tensor(y).detach().abs().mean())}
            if t == steps:
                break
            loss = loss_fn(y, targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        rec.close()
    return out


class _CallableModule(types.ModuleType):
    """``initlab.mup`` is this module once ``import initlab.mup`` has run: calling it calls :func:`mup`."""

    def __call__(self, *args: Any, **kwargs: Any) -> MuPReport:
        return mup(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
