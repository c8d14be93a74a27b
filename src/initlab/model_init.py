"""``init_model``: initialize every parameter of a PyTorch model for the activations around it.

``initlab.init_model(model, scheme="auto", ...)`` traces the model (:func:`initlab.trace`), decides an
initializer from the catalogue for every parameter, draws all the new values, and only then assigns
them; it returns an :class:`InitReport` saying exactly what happened to each parameter.

``scheme="auto"`` (variance preserving, He et al. 2015 generalised to any activation)
-------------------------------------------------------------------------------------
* Linear / Conv weights: ``Var(w) = 1 / (fan_in * E[f(z)^2])``, ``z ~ N(0, 1)``, where ``f`` is the
  activation applied to the layer's INPUT (``LayerNode.act_in``). With ``q`` the second moment of the
  previous pre-activation, the next one is ``fan_in * Var(w) * E[f(sqrt(q) z)^2]``, which this choice
  makes ``q`` again at ``q = 1``. The first layer (fed by standardized data) gets gain 1, a layer after a
  ReLU gets sqrt(2) (He), after leaky_relu(a) sqrt(2/(1+a^2)), after SELU or nothing 1 (LeCun), and after
  tanh, sigmoid, GELU or any custom function the quadrature gain ``initlab.gains.variance_gain``. It is
  built as ``He(distribution="normal", gain=<that gain>, groups=..., chunks=...)``.
  ConvTranspose weights ``(in, out/g, *k)``: ``He(mode="fan_out", layout="torch_transposed")``, whose
  ``n = in/g * prod(k)`` is the number of inputs reaching an output for stride 1, with the gain times
  ``sqrt(prod(stride))`` because a strided transposed conv reaches each output with ``1/prod(stride)`` of
  its taps on average.
* MultiheadAttention: the packed ``in_proj_weight`` ``(3E, E)`` uses ``chunks=3`` (three ``(E, E)``
  weights; it matters for fan_out / fan_avg specs), ``out_proj`` gets gain 1.
* RNN / LSTM / GRU (and cells): input weights ``GlorotUniform(chunks=<gates>)`` (each gate's block is
  its own ``(H, in)`` weight), recurrent weights an ``Orthogonal()`` matrix per gate block (Saxe et al.
  2013), biases zero except the LSTM forget gate, whose ``bias_ih`` slice is 1 (Jozefowicz et al. 2015).
* Normalization layers: weight ones, bias zeros. PReLU: its constructed slope (``module.init``).
* Embeddings (documented choice): ``Normal(std=1)``, as torch. An embedding is a lookup, not a sum, so it
  has no fan-in; its rows are the input of the next layer and get the data convention (unit variance),
  which is what "auto" assumes for the first layer. ``padding_idx`` rows are zero.
* A parameter that a model adds to its activations itself (``x + self.pos``: a learned position
  embedding) gets ``Normal(std=0.02)`` (BERT, GPT-2, ViT) if it has 2 or more dims, the bias spec otherwise.
  Any other parameter of a module initlab does not know (``x * self.gamma``) is left untouched and listed
  in ``InitReport.untouched`` with the reason: give it a rule.
* Biases: ``bias`` (default ``"zeros"``).

Any registry spec (``"he_normal"``, ``"orthogonal(gain='relu')"``, ``"glorot_uniform_sigmoid"``) may be
given instead of ``"auto"``; it is applied to every weight (norms and biases as above), with ``layout``,
``groups`` and ``chunks`` set for the layer unless the spec sets them.

Overrides, in order of precedence: ``rules`` (``[(pattern, spec), ...]``: a glob over parameter names or
an ``nn.Module`` class, first match wins) > ``output`` (the last weight layer's weight; ``"zeros"`` is allowed
there, Bengio 2012) > ``residual`` > the scheme.

``residual`` (branches come from the graph's dataflow, never from names):

* ``"zero_last"``: the last layer of each residual branch starts at zero (SkipInit, De & Smith 2020;
  timm ``zero_init_last`` zeroes the last BatchNorm's weight): the block starts as the identity.
* ``"gpt2"``: that layer's std is divided by ``sqrt(L)``, ``L`` = number of residual branches, which is
  GPT-2's ``1 / sqrt(2 * n_layer)`` (two branches per transformer block; Radford et al. 2019).
* ``"fixup"`` (Zhang et al. 2019): the last weight layer of each branch and the classifier start at zero;
  the other weight layers of a branch with ``m`` of them are scaled by ``L^(-1/(2m-2))``. Fixup's scalar
  biases and multipliers are architecture, not initialization: add them to the model if you want them.

Guarantees: hidden weights that would be identical across units (a constant) raise ``ValueError`` naming
them unless ``allow_symmetric=True``; every value is drawn before any is assigned, and the assignment
swaps values in with one parameter's worth of scratch memory, so on any failure the parameters are
exactly as before. ``seed`` or ``generator`` make the result reproducible; with neither, a fresh
generator is seeded from the OS and its seed is recorded in ``InitReport.seed`` (torch's global RNG is
never used). A model built on the meta device is materialized with ``device=``: each parameter is
allocated once, on that device, already holding its initial values (no ``to_empty`` copy first).

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
>>> report = init_model(net, seed=0)
>>> [e.initializer for e in report.entries if e.name.endswith("weight")]
['He(gain=1.0)', 'He(gain=1.4142135623730951)']
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from initlab import distributed
from initlab._format import Column, render
from initlab.gains import Activation, variance_gain
from initlab.graph import LINEAR, Graph, LayerNode, trace
from initlab.initializers import GlorotUniform, He, Initializer, Normal, Ones, Orthogonal, Zeros, get
from initlab.initializers.base import FanBased
from initlab.semantics import MATRIX_KINDS, ParamInfo, Semantics, describe
from initlab.shapes import Fans, fans
from initlab.validate import check_choice, check_flag, check_seed

__all__ = ["init_model", "InitReport", "InitEntry", "Untouched", "IncompleteInitError", "RESIDUAL_OPTIONS",
           "length_map_slope"]

RESIDUAL_OPTIONS = (None, "zero_last", "gpt2", "fixup")
# slope of the length map above which "auto" cannot hold every sample's variance (see _activation_warnings)
SLOPE_TOLERANCE = 0.01


class IncompleteInitError(AssertionError):
    """Raised by :meth:`InitReport.assert_complete` when some parameter was left untouched."""


# --------------------------------------------------------------------------------------------------
# The report


# what init_model did with a parameter (the plan's role; the parameter's own role in the model is
# initlab.semantics.Role, listed in InitEntry.uses)
PlanRole = Literal["weight", "bias", "norm", "recurrent", "input", "output", "residual_last", "embedding",
                   "additive", "layer_scale", "rule", "other"]


@dataclass
class InitEntry:
    """What init_model did to one parameter (``role``: one of :data:`PlanRole`)."""

    name: str
    shape: tuple[int, ...]
    layer: str
    layer_type: str
    kind: str
    role: str
    act_in: str | None
    act_out: str | None
    initializer: str
    fans: Fans | None
    std: float | None
    expected_std: float | None = None
    uses: str = ""  # every role the tensor serves (tied weights: several), from initlab.semantics
    checksum: str | None = None  # initlab.distributed.checksum: the same for any sharding of the same values
    sharding: str | None = None  # DTensor parameters: placements, and how the shards were made

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("name", "layer", "layer_type", "kind", "role", "act_in", "act_out",
                                           "initializer", "std", "expected_std", "uses", "checksum", "sharding")}
        d["shape"] = list(self.shape)
        d["fans"] = None if self.fans is None else {"fan_in": self.fans.fan_in, "fan_out": self.fans.fan_out,
                                                    "receptive_field": self.fans.receptive_field}
        return d


@dataclass
class Untouched:
    """A parameter init_model did not initialize, and why."""

    name: str
    shape: tuple[int, ...]
    reason: str


@dataclass
class InitReport:
    """The result of :func:`init_model`: one :class:`InitEntry` per initialized parameter.

    ``untouched`` lists the others with the reason; ``warnings`` holds plain sentences (unstable length
    maps, fallbacks); ``seed`` is the seed of the generator used when none was given; ``graph`` is the
    traced :class:`initlab.graph.Graph`.
    """

    entries: list[InitEntry]
    untouched: list[Untouched]
    warnings: list[str]
    scheme: str
    residual: str | None
    seed: int | None
    graph: Graph | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[InitEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, name: str) -> InitEntry:
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(f"no initialized parameter named {name!r}")

    def table(self, color: bool | None = None) -> str:
        """A terminal-readable table: one row per parameter, then untouched parameters and warnings (through the
        shared renderer, :func:`initlab.report.table.render`; ``color``: None = when stdout is a terminal)."""
        def fan(which: str) -> Callable[[InitEntry], str]:
            return lambda e: "" if e.fans is None else f"{getattr(e.fans, which):g}"

        cols = [Column("name", header="parameter"), Column(lambda e: "x".join(map(str, e.shape)) or "()",
                                                           header="shape"),
                Column("layer_type", header="layer type"),
                Column(lambda e: "" if e.role == "bias" else f"{e.act_in or 'data'} -> {e.act_out or '-'}",
                       header="act in -> out"),
                Column("initializer"), Column(fan("fan_in"), header="fan_in"), Column(fan("fan_out"), header="fan_out"),
                Column("std", fmt=lambda v: "" if v is None else f"{v:.4g}", align="<")]
        method = f", traced by {self.graph.method}" if self.graph is not None else ""
        head = (f"init_model: scheme={self.scheme!r}, residual={self.residual!r}, seed={self.seed}{method}; "
                f"{len(self.entries)} parameters initialized, {len(self.untouched)} untouched")
        out = []
        if self.untouched:
            out.append("untouched:")
            out.extend(f"  {u.name} {tuple(u.shape)}: {u.reason}" for u in self.untouched)
        if self.warnings:
            out.append("warnings:")
            out.extend(f"  - {w}" for w in self.warnings)
        return render(self.entries, cols, title=head, footer="\n".join(out) or None, color=color)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "scheme": self.scheme, "residual": self.residual, "seed": self.seed,
            "method": None if self.graph is None else self.graph.method,
            "entries": [e.to_dict() for e in self.entries],
            "untouched": [{"name": u.name, "shape": list(u.shape), "reason": u.reason} for u in self.untouched],
            "warnings": list(self.warnings),
        }

    def assert_complete(self) -> None:
        """Raise :class:`IncompleteInitError` if any parameter was left untouched (a CI check)."""
        if self.untouched:
            listing = "; ".join(f"{u.name}: {u.reason}" for u in self.untouched)
            raise IncompleteInitError(f"{len(self.untouched)} parameter(s) not initialized: {listing}")


# --------------------------------------------------------------------------------------------------
# Planning


@dataclass
class _Plan:
    name: str
    param: nn.Parameter
    node: LayerNode
    role: PlanRole
    ini: Initializer
    factor: float = 1.0
    blocks: int = 1
    post: Callable[[torch.Tensor], None] | None = None
    note: str = ""
    act_label: str | None = ""  # "" = the layer's act_in
    info: ParamInfo | None = None
    keep: bool = False  # reported, never drawn or assigned (layer scale: the model's own value)
    shard: Any = None  # initlab.distributed.ShardedInit when the parameter is a DTensor

    def describe(self) -> str:
        if self.keep:
            return "kept " + self.note
        s = repr(self.ini)
        if self.blocks > 1:
            s += f" per block (x{self.blocks})"
        if self.factor != 1.0:
            s += f" * {self.factor:.4g}"
        return s + (f" {self.note}" if self.note else "")

    def draw(self, device: Any, generator: torch.Generator | None, seed: int | None = None) -> torch.Tensor:
        """The new values: from torch's stream ``generator``, or (``generator=None``) from the counter-based
        stream keyed by ``(seed, the parameter's name)``: the same values whatever the order of the draws,
        the other parameters, the thread count or the device (initlab.rng)."""
        shape = tuple(self.param.shape)
        dtype = self.param.dtype

        def source(block: int) -> dict[str, Any]:
            if generator is not None:
                return {"generator": generator}
            return {"rng": "philox", "seed": seed, "key": self.name if self.blocks == 1 else f"{self.name}#{block}"}

        if self.blocks > 1:
            rows = shape[0] // self.blocks
            parts = [self.ini.sample((rows, *shape[1:]), dtype=dtype, device=device, **source(b))
                     for b in range(self.blocks)]
            values = torch.cat(parts, 0)
        else:
            values = self.ini.sample(shape, dtype=dtype, device=device, **source(0))
        if self.factor != 1.0:
            values.mul_(self.factor)  # a fresh tensor: no second copy
        if self.post is not None:
            self.post(values)
        return values


def _spec(value: Any, argname: str) -> Initializer:
    try:
        return get(value)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{argname}: {exc}") from None


def _given(ini: Initializer, key: str) -> bool:
    return key in ini.to_config()


def _adapt(ini: Initializer, node: LayerNode, pname: str, info: ParamInfo | None = None) -> Initializer:
    """Set layout / groups / chunks for this layer on a fan-based initializer, unless the spec set them.

    The layout comes from the semantics (the shapes of the matrix product seen at run time), so GPT-2's
    Conv1D ``(in, out)`` weight gets its fans right with no rule."""
    if not isinstance(ini, FanBased):
        return ini
    changes: dict[str, Any] = {}
    module = node.module
    layout = info.layout if info is not None and info.layout is not None else (
        "torch_transposed" if node.kind == "conv_transpose" else None)
    if layout not in (None, "torch") and not _given(ini, "layout"):
        changes["layout"] = layout
    if node.kind in ("conv", "conv_transpose") and getattr(module, "groups", 1) > 1 and not _given(ini, "groups"):
        changes["groups"] = module.groups
    if node.kind == "attention" and pname == "in_proj_weight" and not _given(ini, "chunks"):
        changes["chunks"] = 3
    return ini.replace(**changes) if changes else ini


def _gain_in(node: LayerNode) -> float:
    act = node.act_in
    if act is None:
        return 1.0
    try:
        return variance_gain(act)
    except ValueError as exc:
        raise ValueError(f"layer {node.name!r}: {exc}") from None


def _rnn_gates(module: nn.Module) -> int:
    mode = getattr(module, "mode", None)
    if isinstance(module, (nn.LSTM, nn.LSTMCell)) or mode == "LSTM":
        return 4
    if isinstance(module, (nn.GRU, nn.GRUCell)) or mode == "GRU":
        return 3
    return 1


def _kept(info: ParamInfo) -> str:
    return (f"as built (layer scale: a multiplier of the residual branch in {info.node.name or '<root>'}; "
            "its value is the architecture's choice)")


def _untouched_reason(info: ParamInfo, module: nn.Module) -> str:
    """Why a parameter is left alone, with a hint that never proposes zeros for a multiplier."""
    name = info.name
    if info.role == "scale":
        return (f"multiplies the signal in {type(module).__name__} (not a normalized tensor, not the end of a "
                f"residual branch), so its value is kept; give it a rule if it needs one, e.g. "
                f"rules=[({name!r}, 'ones')]")
    return (f"{type(module).__name__} is not a layer type initlab knows and no use of {name.rsplit('.', 1)[-1]!r} "
            f"was seen at run time (pass example_inputs so it can be), so its role is unknown; give it a rule, "
            f"e.g. rules=[({name!r}, 'ones')] for a multiplier or 'zeros' for an additive term")


def _weight_plan(info: ParamInfo, scheme: Initializer | None) -> _Plan:
    """A matrix / kernel: "auto" gives Var(w) = 1 / (fan_in E[f(z)^2]) for the input activation f."""
    node, p = info.node, info.param
    local = _local(info)
    out_proj = node.kind == "attention" and local.startswith("out_proj")
    # MultiheadAttention's out_proj reads a convex mix of values: no activation in between
    label = "linear" if out_proj else ""
    if scheme is not None:
        return _Plan(info.name, p, node, "weight", _adapt(scheme, node, local, info), act_label=label, info=info)
    gain = 1.0 if out_proj else _gain_in(node)
    if node.kind == "conv_transpose":
        stride = math.prod(getattr(node.module, "stride", (1,)))
        ini = He(distribution="normal", gain=gain * math.sqrt(stride), mode="fan_out")
    else:
        ini = He(distribution="normal", gain=gain)
    return _Plan(info.name, p, node, "weight", _adapt(ini, node, local, info), act_label=label, info=info)


def _local(info: ParamInfo) -> str:
    prefix = f"{info.node.name}." if info.node.name else ""
    return next((n[len(prefix):] for n in info.names if n.startswith(prefix)), info.name.rsplit(".", 1)[-1])


def _role_plan(info: ParamInfo, scheme: Initializer | None, bias: Initializer) -> _Plan | str:
    """The plan for one parameter from its role (scheme None = "auto"), or the reason it is left alone."""
    node, p, role = info.node, info.param, info.role
    module = node.module
    leaf = _local(info).rsplit(".", 1)[-1]

    def plan(plan_role: str, ini: Initializer, **kw: Any) -> _Plan:
        return _Plan(info.name, p, node, plan_role, ini, info=info, **kw)

    if role == "weight":
        return _weight_plan(info, scheme)
    if role == "norm_gain":
        return plan("norm", Ones())
    if role == "norm_bias":
        return plan("norm", Zeros())
    if role == "activation":
        return plan("other", get(f"constant({float(getattr(module, 'init', 0.25))!r})"))
    if role in ("position", "token"):
        what = "learned embedding" if role == "position" else "token concatenated into the sequence"
        return plan("additive", Normal(std=0.02), note=f"(added to the activations: {what})")
    if role == "bias":
        if node.kind == "rnn" and _rnn_gates(module) == 4 and leaf.startswith("bias_ih") and scheme is None:
            def forget_one(v: torch.Tensor, _h=p.shape[0] // 4) -> None:
                v[_h:2 * _h] = 1.0  # gate order i, f, g, o: bias_ih + bias_hh = 1 on the forget gate

            return plan("bias", bias, post=forget_one, note="+ forget-gate slice = 1")
        return plan("bias", bias)
    if role == "recurrent":
        return plan("weight", scheme) if scheme is not None else plan("recurrent", Orthogonal(),
                                                                        blocks=_rnn_gates(module))
    if role == "rnn_input":
        if scheme is not None:
            return plan("weight", scheme)
        return plan("input", GlorotUniform(chunks=_rnn_gates(module)) if leaf.startswith("weight_ih")
                    else GlorotUniform())
    if role == "embedding":
        pad = getattr(module, "padding_idx", None) if isinstance(module, nn.Embedding) else None
        post = None
        if pad is not None:
            def post(v: torch.Tensor, _i=pad) -> None:
                v[_i] = 0.0
        return plan("embedding", Normal(std=1.0) if scheme is None else scheme, post=post,
                    note="(padding row zero)" if pad is not None else "")
    if role == "layer_scale":
        return plan("layer_scale", Zeros(), keep=True, note=_kept(info))
    return _untouched_reason(info, module)


def _match_rule(rules: list[tuple[Any, Initializer]], name: str, owner: nn.Module, layer: nn.Module | None
                ) -> Initializer | None:
    for pattern, ini in rules:
        if isinstance(pattern, str):
            if fnmatch.fnmatchcase(name, pattern):
                return ini
        elif isinstance(owner, pattern) or (layer is not None and isinstance(layer, pattern)):
            return ini
    return None


def _check_rules(rules: Any) -> list[tuple[Any, Initializer]]:
    if rules is None:
        return []
    if isinstance(rules, dict):
        rules = list(rules.items())
    if not isinstance(rules, (list, tuple)):
        raise TypeError(f"rules must be a list of (pattern, spec) pairs; got {type(rules).__name__}")
    out = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, (tuple, list)) or len(rule) != 2:
            raise ValueError(f"rules[{i}] must be a (pattern, spec) pair; got {rule!r}")
        pattern, spec = rule
        if not (isinstance(pattern, str) or (isinstance(pattern, type) and issubclass(pattern, nn.Module))):
            raise TypeError(f"rules[{i}]: the pattern must be a glob over parameter names (str) or an nn.Module "
                            f"class; got {pattern!r}")
        out.append((pattern, _spec(spec, f"rules[{i}]")))
    return out


def _scaled(plan: _Plan, factor: float) -> None:
    """Multiply a plan's std by factor, through the initializer's gain when it has one."""
    if factor == 0.0:
        plan.ini, plan.factor = Zeros(), 1.0
    elif "gain" in plan.ini._defaults() and isinstance(getattr(plan.ini, "gain", None), float):
        plan.ini = plan.ini.replace(gain=plan.ini.gain * factor)
    elif "std" in plan.ini._defaults() and isinstance(getattr(plan.ini, "std", None), float):
        plan.ini = plan.ini.replace(std=plan.ini.std * factor)
    else:
        plan.factor *= factor


# --------------------------------------------------------------------------------------------------
# Warnings about the length map


def length_map_slope(act: Activation, h: float = 1e-3) -> float:
    """Slope at ``q = 1`` of the length map ``q -> E[f(sqrt(q) z)^2] / E[f(z)^2]``, ``z ~ N(0, 1)``.

    Under "auto" each layer maps the second moment ``q`` of its input pre-activation to that of its own
    through this map, and ``q = 1`` is a fixed point. A slope ``s < 1`` pulls deviating samples back
    (tanh 0.46, sigmoid 0.11, SELU 0.78), ``s = 1`` is neutral (the ReLU family and linear: positively
    homogeneous), ``s > 1`` pushes them apart by ``s`` per layer (GELU 1.14, SiLU 1.17, Mish 1.08).

    >>> from initlab.gains import resolve_activation
    >>> round(length_map_slope(resolve_activation("relu")), 6), round(length_map_slope(resolve_activation("gelu")), 3)
    (1.0, 1.144)
    """
    qs = np.array([1.0 - h, 1.0, 1.0 + h])
    m = act.second_moment(np.sqrt(qs))
    return float((m[2] - m[0]) / (2 * h * m[1]))


def _nonlinear_in(node: LayerNode | None) -> bool:
    return node is not None and node.kind in MATRIX_KINDS and node.act_in is not None and not node.act_in.is_linear


def _activation_warnings(graph: Graph) -> list[str]:
    """The unstable-length-map warning, only where the drift compounds: some layer after the activation is fed
    by a layer that itself read a nonlinearity, with no normalization between (not a pre-LN transformer or
    ConvNeXt block, whose every block input is normalized)."""
    groups: dict[str, tuple[Activation, list[str], list[bool]]] = {}
    by_name = {n.name: n for n in graph.layers}
    for node in graph.layers:
        # an activation applied to a normalization's output acts on re-standardized samples: no drift builds up
        after_norm = bool(node.inputs) and all(by_name[i].kind == "norm" for i in node.inputs if i in by_name)
        if _nonlinear_in(node) and not after_norm:
            key = str(node.act_in)
            group = groups.setdefault(key, (node.act_in, [], []))
            group[1].append(node.name)
            group[2].append(any(_nonlinear_in(by_name.get(i)) for i in node.inputs))
    out = []
    for key, (act, names, compounds) in groups.items():
        if not any(compounds):
            continue
        try:
            slope = length_map_slope(act)
        except Exception as exc:  # noqa: BLE001 - a user function that fails on the quadrature grid
            out.append(f"{key}: could not evaluate E[f(sqrt(q) z)^2] ({type(exc).__name__}: {exc}); "
                       "check the activation or use initlab.lsuv(model, batch).")
            continue
        if not math.isfinite(slope) or slope <= 1 + SLOPE_TOLERANCE:
            continue
        doubling = math.log(2) / math.log(slope)
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        out.append(
            f"{key}: the length map q -> E[f(sqrt(q) z)^2] / E[f(z)^2] has slope {slope:.3f} > 1 at q = 1, so no "
            f"scalar init keeps every sample's variance fixed with depth: per-sample norms drift apart by "
            f"x{slope:.3f} per layer and their spread doubles every {doubling:.1f} layers ({len(names)} layer(s) "
            f"after this activation: {shown}); the batch std creeps up with depth. Add normalization layers "
            f"(LayerNorm/BatchNorm) or rescale on data with initlab.lsuv(model, batch).")
    return out


# --------------------------------------------------------------------------------------------------
# Assignment (swap in, roll back)


def _assign_one(param: nn.Parameter, new: torch.Tensor) -> None:
    """Swap ``new``'s values into ``param`` in place; afterwards ``new`` holds the old values."""
    with torch.no_grad():
        scratch = param.detach().clone()
        param.copy_(new)
        new.copy_(scratch)


def _param_places(model: nn.Module) -> dict[int, list[tuple[nn.Module, str]]]:
    """``id(parameter) -> [(module, key), ...]``: every slot holding each parameter (tied ones: several), from
    one pass over the modules."""
    places: dict[int, list[tuple[nn.Module, str]]] = {}
    for mod in model.modules():
        for key, value in mod._parameters.items():
            if value is not None:
                places.setdefault(id(value), []).append((mod, key))
    return places


def _put(places: dict[int, list[tuple[nn.Module, str]]], old: nn.Parameter, value: nn.Parameter) -> None:
    """Every slot that held ``old`` when ``places`` was taken now holds ``value``."""
    for mod, key in places.get(id(old), ()):
        mod._parameters[key] = value


# --------------------------------------------------------------------------------------------------


def init_model(
    model: nn.Module,
    scheme: Any = "auto",
    *,
    example_inputs: Any = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    rules: Sequence[tuple[Any, Any]] | None = None,
    bias: Any = "zeros",
    output: Any = None,
    residual: str | None = None,
    allow_symmetric: bool = False,
    device: Any = None,
    rng: str | None = None,
    checksum: bool | None = None,
) -> InitReport:
    """Initialize every parameter of ``model`` in place and report what was done (see the module docstring).

    Args:
        model: the ``nn.Module`` to initialize (possibly on the meta device, then give ``device``).
        scheme: ``"auto"`` or any initializer spec, applied to every weight.
        example_inputs: inputs for one forward pass, used only when torch.fx cannot trace the model
            (a tensor, a tuple of positional inputs or a dict of keyword inputs; one sample is enough).
        seed, generator: reproducibility (give at most one).
        rules: ``[(pattern, spec), ...]``, pattern a glob over parameter names or an ``nn.Module`` class.
        bias: spec for biases (default zeros).
        output: spec for the last weight layer's weight (``"zeros"`` allowed).
        residual: None, ``"zero_last"``, ``"gpt2"`` or ``"fixup"``.
        allow_symmetric: allow constant hidden weights.
        device: where to materialize parameters that are on the meta device.
        rng: ``"philox"`` (the default unless ``generator`` is given): counter-based values, a pure function of
            (seed, the parameter's name, the element's index), so they do not depend on the order of the draws,
            the other parameters, the thread count, the sharding or the device (initlab.rng, docs/rng.md); with
            no seed a fresh one is drawn from the OS and reported. ``"torch"`` (the default when ``generator``
            is given): torch's sequential stream (``generator``, or one seeded with ``seed``).
        checksum: put :func:`initlab.distributed.checksum` of every parameter in the report (``InitEntry.checksum``,
            the same for any sharding of the same values). None (default): for sharded (DTensor) models, where
            every rank's report must agree, and not otherwise (it costs about one more pass over the weights);
            True: always (e.g. the one-process reference of a sharded run). A sharded model's report always
            carries them.

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    >>> print(init_model(net, seed=0)["2.weight"].initializer)
    He(gain=1.5925374197228312)
    """
    opts = _validate(model, scheme, bias, output, residual, rules, allow_symmetric, seed, generator, device, rng)
    if checksum is not None:
        check_flag(checksum, "checksum")
    shard = None
    if distributed.is_sharded(model):  # DTensor parameters: each rank fills its shard (initlab.distributed)
        opts.rng = distributed.check_rng(rng, generator)
        shard = distributed.ShardedInit(model)
    with distributed.global_view(model) if shard else contextlib.nullcontext():
        graph = trace(model, example_inputs, check=True)
        sem = describe(graph)
        warnings = _trace_warnings(graph, residual)
        plans, untouched, out_weight = _plan(model, sem, opts, warnings)
    generator, seed = _generator(seed, generator, opts.rng)
    if shard:
        shard.adopt(plans, model)
        seed = shard.agree_seed(seed)
    ordered = [plans[n] for n in dict(model.named_parameters()) if n in plans]
    for pl in ordered:
        pl.shard = shard if distributed.is_dtensor(pl.param) else None
    new_values = _draw(ordered, opts.device, generator, seed)
    _assign(model, ordered, new_values, untouched, opts.device, warnings)
    sums = shard is not None if checksum is None else checksum  # a sharded model's plain parameters too
    return _report(model, ordered, untouched, warnings, opts, seed, graph, shard, sums)


@dataclass
class _Options:
    scheme: Initializer | None  # None = "auto"
    bias: Initializer
    output: Initializer | None
    residual: str | None
    rules: list[tuple[Any, Initializer]]
    allow_symmetric: bool
    device: torch.device | None
    rng: str  # "philox" (counter-based) or "torch" (the generator's sequential stream)


def _validate(model: Any, scheme: Any, bias: Any, output: Any, residual: Any, rules: Any, allow_symmetric: Any,
              seed: Any, generator: Any, device: Any, rng: Any = None) -> _Options:
    """Check every argument before anything is traced or changed."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    scheme_ini = None if isinstance(scheme, str) and scheme == "auto" else _spec(scheme, "scheme")
    bias_ini = _spec(bias, "bias")
    output_ini = None if output is None else _spec(output, "output")
    if residual is not None:
        check_choice(residual, "residual", RESIDUAL_OPTIONS[1:])
    rule_list = _check_rules(rules)
    check_flag(allow_symmetric, "allow_symmetric")
    if seed is not None and generator is not None:
        raise ValueError("give seed or generator, not both")
    check_seed(seed)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")
    target_device = None
    if device is not None:
        if not isinstance(device, (str, int, torch.device)) or isinstance(device, bool):
            raise TypeError(f"device must be a torch device such as 'cpu' or 'cuda:0'; got {device!r} "
                            f"({type(device).__name__})")
        try:
            target_device = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0'; got {device!r} ({exc})") \
                from None
        if target_device.type == "meta":
            raise ValueError("device='meta' cannot hold initial values; give a real device such as 'cpu'")
    on_meta = [n for n, p in model.named_parameters() if p.is_meta]
    if on_meta and target_device is None:
        raise ValueError(f"{len(on_meta)} parameter(s) are on the meta device (e.g. {on_meta[0]!r}): pass device="
                         "'cpu' (or 'cuda') to materialize and initialize them")
    if rng is not None:
        check_choice(rng, "rng", ("philox", "torch"))
    if rng == "philox" and generator is not None:
        raise ValueError("rng='philox' is keyed by seed= and the parameter names; generator= is torch's stream")
    kind = rng or ("torch" if generator is not None else "philox")
    return _Options(scheme_ini, bias_ini, output_ini, residual, rule_list, allow_symmetric, target_device, kind)


def _trace_warnings(graph: Graph, residual: str | None) -> list[str]:
    warnings: list[str] = []
    if graph.method == "modules" and any(True for _ in graph.model.children()):
        warnings.append(f"{graph.fallback_reason}. Pass example_inputs to see them.")
        if residual is not None:
            raise ValueError(f"residual={residual!r} needs the residual branches, which could not be found: "
                             f"{graph.fallback_reason}. Pass example_inputs=<a batch> so the model can be traced.")
    return warnings


def _plan(model: nn.Module, sem: Semantics, opts: _Options, warnings: list[str]
          ) -> tuple[dict[str, _Plan], dict[str, str], str | None]:
    """One plan per parameter (scheme, then output, residual and rules on top), and the untouched ones."""
    graph = sem.graph
    all_params = dict(model.named_parameters())
    plans: dict[str, _Plan] = {}
    untouched: dict[str, str] = {}
    for name, info in sem.params.items():
        planned = _role_plan(info, opts.scheme, opts.bias)
        if isinstance(planned, str):
            untouched[name] = planned
        else:
            plans[name] = planned

    out_node = sem.output_layer()
    out_weight = sem.weight(out_node) if out_node is not None else None
    if opts.output is not None:
        if out_weight is None or out_weight not in plans:
            warnings.append("output=... was not applied: no Linear/Conv layer feeds the model's output directly.")
        else:
            pl = plans[out_weight]
            pl.ini, pl.role, pl.factor = _adapt(opts.output, pl.node, "weight", pl.info), "output", 1.0

    if opts.residual is not None:
        _apply_residual(sem, plans, opts.residual, out_weight if opts.output is None else None, warnings)

    owners: dict[str, nn.Module] = {}
    layer_of: dict[str, LayerNode] = {}  # the first layer holding each parameter
    if opts.rules:
        for mname, mod in model.named_modules():
            for pname, _ in mod.named_parameters(recurse=False):
                owners.setdefault(f"{mname}.{pname}" if mname else pname, mod)
        for layer in graph.layers:
            for pname in layer.params:
                layer_of.setdefault(pname, layer)
    for name, p in all_params.items() if opts.rules else ():
        node = layer_of.get(name)
        ini = _match_rule(opts.rules, name, owners.get(name, model), node)
        if ini is None:
            continue
        if node is None:
            node = LayerNode(name.rpartition(".")[0], owners.get(name, model), "other", -1, None, LINEAR, [], None,
                             False, None, [name])
        info = sem.params.get(name)
        plans[name] = _Plan(name, p, node, "rule", _adapt(ini, node, name.rsplit(".", 1)[-1], info), info=info)
        untouched.pop(name, None)

    for name in all_params:
        if name not in plans and name not in untouched:
            untouched[name] = ("not used in the forward pass that was traced" if graph.method != "modules"
                               else "not inside a module that initlab recognises")
    _check_symmetry(plans, out_weight, opts.allow_symmetric)
    if opts.scheme is None:
        warnings.extend(_activation_warnings(graph))
    if opts.residual is not None and not graph.branches:
        warnings.append(f"residual={opts.residual!r}: no residual branches (x + f(x)) were found in the model.")
    return plans, untouched, out_weight


def _check_symmetry(plans: dict[str, _Plan], out_weight: str | None, allow: bool) -> None:
    """The output layer may start symmetric (zeros: Bengio 2012); only hidden units need their symmetry broken."""
    bad = [pl.name for pl in plans.values() if pl.role in ("weight", "input", "recurrent", "embedding", "rule")
           and pl.name != out_weight and pl.node.index >= 0 and pl.param.dim() >= 2
           and (pl.ini.symmetric or pl.factor == 0.0)]
    if bad and not allow:
        raise ValueError(f"these hidden weights would be identical across units, so gradient descent could never "
                         f"tell the units apart (symmetry): {', '.join(bad)}. Use a random initializer, or pass "
                         f"allow_symmetric=True if this is intended")


def _generator(seed: int | None, generator: torch.Generator | None, rng: str
                ) -> tuple[torch.Generator | None, int | None]:
    """torch's stream (``generator``, or one seeded with ``seed``) for ``rng="torch"``; None, with the seed,
    for the counter-based stream (a fresh seed from the OS when none is given)."""
    if generator is not None:
        return generator, seed
    if rng == "philox":
        return None, torch.Generator().seed() if seed is None else seed
    generator = torch.Generator()
    if seed is None:
        seed = generator.seed()
    else:
        generator.manual_seed(seed)
    return generator, seed


def _draw(ordered: list[_Plan], device: torch.device | None, generator: torch.Generator | None,
          seed: int | None) -> dict[str, torch.Tensor]:
    """Every new value, drawn before anything is assigned."""
    new_values: dict[str, torch.Tensor] = {}
    for pl in ordered:
        if pl.keep:
            continue
        dev = device if pl.param.is_meta else pl.param.device
        try:
            new_values[pl.name] = pl.draw(dev, generator, seed) if pl.shard is None else pl.shard.draw(pl, dev, seed)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"parameter {pl.name} {tuple(pl.param.shape)} with {pl.describe()}: {exc}") from None
    return new_values


def _assign(model: nn.Module, ordered: list[_Plan], new_values: dict[str, torch.Tensor], untouched: dict[str, str],
            device: torch.device | None, warnings: list[str]) -> None:
    """Swap the new values in; on any failure undo everything, so the model is exactly as before."""
    done: list[tuple[nn.Parameter, torch.Tensor]] = []
    replaced: list[tuple[nn.Parameter, nn.Parameter]] = []
    meta_buffers: list[tuple[nn.Module, str, torch.Tensor]] = []
    all_params = dict(model.named_parameters())
    places = _param_places(model)  # once: a walk over the modules per replaced parameter is quadratic
    try:
        for pl in ordered:
            if pl.name not in new_values:
                continue
            new = new_values[pl.name]
            if pl.param.is_meta:
                fresh = nn.Parameter(new, requires_grad=pl.param.requires_grad)
                _put(places, pl.param, fresh)
                replaced.append((pl.param, fresh))
            else:
                _assign_one(pl.param, new)
                done.append((pl.param, new))
        kept_on_meta: list[str] = []
        if device is not None:
            for name in list(untouched) + [pl.name for pl in ordered if pl.keep]:
                p = all_params[name]
                if p.is_meta:
                    fresh = nn.Parameter(distributed.zeros_like_param(p, device), requires_grad=p.requires_grad)
                    _put(places, p, fresh)
                    replaced.append((p, fresh))
                    if name in untouched:
                        untouched[name] += " (materialized as zeros)"
                    else:
                        kept_on_meta.append(name)
            meta_buffers = _materialize_buffers(model, device, warnings)
        if kept_on_meta:
            shown = ", ".join(kept_on_meta[:4]) + (", ..." if len(kept_on_meta) > 4 else "")
            warnings.append(f"{len(kept_on_meta)} parameter(s) whose built value is kept (a layer scale: {shown}) "
                            "were on the meta device, where that value does not exist: they were materialized as "
                            "zeros, so those branches start switched off (as ReZero); give them a rule for the "
                            f"value the model intends, e.g. rules=[({kept_on_meta[0]!r}, 'constant(1e-6)')]")
    except BaseException:
        for param, old_values in reversed(done):
            with torch.no_grad():
                param.copy_(old_values)
        for old, _ in reversed(replaced):
            _put(places, old, old)
        for mod, key, old_buf in meta_buffers:
            mod._buffers[key] = old_buf
        raise


def _report(model: nn.Module, ordered: list[_Plan], untouched: dict[str, str], warnings: list[str], opts: _Options,
            seed: int | None, graph: Graph, shard: distributed.ShardedInit | None = None,
            checksum: bool = False) -> InitReport:
    entries = [_entry(model, pl, checksum) for pl in ordered]
    if shard is not None:
        shard.complete(entries, model, warnings)
    left = [Untouched(n, tuple(_current(model, n).shape), why) for n, why in untouched.items()]
    return InitReport(entries, left, warnings, "auto" if opts.scheme is None else repr(opts.scheme), opts.residual,
                      seed, graph)


def _entry(model: nn.Module, pl: _Plan, checksum: bool = False) -> InitEntry:
    p = _current(model, pl.name)
    shape = tuple(p.shape)
    fan = None
    if p.dim() >= 2 and pl.role not in ("embedding", "layer_scale", "additive"):
        try:
            fan = pl.ini.fans_of(shape) if isinstance(pl.ini, FanBased) else fans(shape)
        except ValueError:
            fan = None
    sharded = distributed.is_dtensor(p)  # its std and checksum come from all ranks (ShardedInit.complete)
    std = None if sharded else _std(p.detach())
    check = distributed.checksum(p.detach()) if checksum and not sharded else None
    try:
        expected = pl.ini.expected_std(shape) if pl.blocks == 1 else pl.ini.expected_std((shape[0] // pl.blocks,
                                                                                           *shape[1:]))
        expected = None if expected is None or pl.post is not None or pl.keep else expected * abs(pl.factor)
    except (ValueError, TypeError):
        expected = None
    node = pl.node
    is_weight = pl.role not in ("bias",)
    act_in = None if node.act_in is None or not is_weight else str(node.act_in)
    if pl.act_label:
        act_in = pl.act_label
    roles = pl.info.roles if pl.info is not None else ""
    return InitEntry(name=pl.name, shape=shape, layer=node.name, layer_type=type(node.module).__name__,
                     kind=node.kind, role=pl.role, act_in=act_in, act_out=str(node.act_out) if is_weight else None,
                     initializer=pl.describe(), fans=fan, std=std, expected_std=expected, uses=roles, checksum=check)


def _std(x: torch.Tensor) -> float | None:
    """The sample std of ``x``: from the sum and the dot product with itself (BLAS), two vectorized reads
    a few times faster than ``Tensor.std``'s Welford pass, where that is exact enough; when the mean is not
    small against the spread (a constant, a norm gain) that formula cancels, so ``Tensor.std`` decides."""
    n = x.numel()
    if n < 2:
        return None
    with torch.no_grad():
        flat = x.reshape(-1)
        if flat.dtype != torch.float32 or not flat.is_contiguous():
            return float(flat.float().std())
        mean = float(flat.sum()) / n  # torch's cascade sum: float32 error ~1e-7 of sum(|x|)
        mean_sq = float(torch.dot(flat, flat)) / n
        if not mean_sq > 100.0 * mean * mean:  # |mean| > rms / 10: cancellation would cost digits
            return float(flat.std())
        return math.sqrt(max(mean_sq - mean * mean, 0.0) * n / (n - 1))


def _current(model: nn.Module, name: str) -> nn.Parameter:
    mod_name, _, pname = name.rpartition(".")
    mod = model.get_submodule(mod_name) if mod_name else model
    return getattr(mod, pname)


def _materialize_buffers(model: nn.Module, device: torch.device, warnings: list[str]
                         ) -> list[tuple[nn.Module, str, torch.Tensor]]:
    """Allocate meta buffers on ``device``: norm running stats get their reset values, others are reported."""
    swapped = []
    unknown = []
    for mname, mod in model.named_modules():
        for key, buf in list(mod._buffers.items()):
            if buf is None or not buf.is_meta:
                continue
            fresh = torch.zeros(buf.shape, dtype=buf.dtype, device=device)
            swapped.append((mod, key, buf))
            mod._buffers[key] = fresh
            if isinstance(mod, nn.modules.batchnorm._NormBase):
                continue
            unknown.append(f"{mname}.{key}" if mname else key)
        if isinstance(mod, nn.modules.batchnorm._NormBase) and mod.track_running_stats and \
                any(m is mod for m, _, _ in swapped):
            mod.reset_running_stats()
    if unknown:
        warnings.append(f"buffers {', '.join(unknown)} were on the meta device and were materialized as zeros: "
                        "fill them yourself (initlab only knows how to reset normalization statistics).")
    return swapped


def _apply_residual(sem: Semantics, plans: dict[str, _Plan], residual: str, classifier: str | None,
                    warnings: list[str]) -> None:
    graph = sem.graph
    _weight_name = sem.weight
    by_name = {n.name: n for n in graph.layers}
    n_branches = len(graph.branches)
    if n_branches == 0:
        return
    for br in graph.branches:
        last = by_name[br.last]
        if residual == "zero_last":
            name = _weight_name(last)
            if name is None or name not in plans:
                warnings.append(f"residual='zero_last': the last layer of branch {br.id} ({br.last}, "
                                f"{type(last.module).__name__}) has no weight initlab can zero.")
                continue
            plans[name].ini, plans[name].factor, plans[name].role = Zeros(), 1.0, "residual_last"
            plans[name].note = f"(last of residual branch {br.id}: {residual})"
        elif residual == "gpt2":
            name = _weight_name(last) if last.kind != "norm" else None
            if name is None or name not in plans:
                weights = [by_name[n] for n in br.layers if by_name[n].kind != "norm" and _weight_name(by_name[n])]
                if not weights:
                    continue
                name = _weight_name(weights[-1])
            factor = 1.0 / math.sqrt(n_branches)
            _scaled(plans[name], factor)
            plans[name].note = f"(residual branch {br.id}: std / sqrt({n_branches}))"
        elif residual == "fixup":
            weights = [by_name[n] for n in br.layers if by_name[n].kind in MATRIX_KINDS]
            if any(by_name[n].kind == "norm" for n in br.layers):
                warnings.append(f"residual='fixup' is meant for networks without normalization; branch {br.id} "
                                f"contains normalization layers.")
            if not weights:
                continue
            m = len(weights)
            for node in weights[:-1]:
                name = _weight_name(node)
                if name in plans and m > 1:
                    _scaled(plans[name], n_branches ** (-1.0 / (2 * m - 2)))
                    plans[name].note = f"(fixup: L^(-1/(2m-2)), L={n_branches}, m={m})"
            name = _weight_name(weights[-1])
            if name in plans:
                plans[name].ini, plans[name].factor, plans[name].role = Zeros(), 1.0, "residual_last"
                plans[name].note = f"(last of residual branch {br.id}: fixup)"
    if residual == "fixup" and classifier is not None and classifier in plans:
        pl = plans[classifier]
        pl.ini, pl.factor, pl.role, pl.note = Zeros(), 1.0, "output", "(fixup: classifier starts at zero)"
        bias_name = classifier[: -len("weight")] + "bias"
        if bias_name in plans:
            plans[bias_name].ini = Zeros()
