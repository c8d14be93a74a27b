"""What every layer and parameter of a traced model is: the one place initlab decides it.

``init_model``, ``lsuv``, ``probe`` (and its health rules) and ``theory.propagate`` ask this module; none of
them decides a role of its own. Everything here comes from the :class:`initlab.graph.Graph`: the dataflow
and the shapes and values seen at run time, never the name of a class or a parameter (torch's own layer
types are read for what their forward does: ``nn.Linear`` is a matrix product).

Contract
========
``describe(graph) -> Semantics``; ``Semantics.params`` maps every parameter (canonical name: the first of a
tied tensor's names) to a :class:`ParamInfo`:

* ``role`` (one of ``ROLES``), decided from its uses:

  ========================  =====================================================================
  ``weight``                a matrix product or a convolution's kernel (``layout``: its fan layout)
  ``bias``                  added to a matrix product's or a convolution's output
  ``embedding``             looked up by index (``F.embedding``)
  ``norm_gain``             multiplies a normalized tensor (LayerNorm, RMSNorm, T5LayerNorm ...)
  ``norm_bias``             added to a norm gain's output
  ``recurrent``             an RNN's hidden-to-hidden weight; ``rnn_input``: its input weight
  ``activation``            a parametrized activation (PReLU's slope)
  ``position``              a tensor of 2+ dims added to the activations (learned position embedding)
  ``token``                 concatenated into the sequence (class / distillation / register token)
  ``layer_scale``           multiplies a residual branch's output just before the residual sum
  ``scale``                 another multiplier (kept as built: never proposed zeros)
  ``unknown``               no use seen (the report says why)
  ========================  =====================================================================

* ``uses``: every (layer, role) it serves; a tied tensor (GPT-2's ``wte`` is also ``lm_head``) has several,
  and ``role``/``node`` are those of the most demanding: a matrix product feeding the model output first,
  then any matrix product, then the rest;
* ``layout``: ``"torch"`` (out, in, ...), ``"torch_transposed"`` (ConvTranspose) or ``"lasagne_dense"``
  (in, out: GPT-2's Conv1D, seen from the shapes of its product); ``out_axis``: the axis of the output units.

Layer questions: :func:`unit_axis` (the output's unit axis), :meth:`Semantics.weight` (the parameter that
carries a layer's output scale), :meth:`Semantics.output_layer` (the last weight layer before the output),
:func:`weight_blocks` (MultiheadAttention's q, k, v and out projections).

>>> import torch
>>> from torch import nn
>>> from initlab.graph import trace
>>> net = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 2))
>>> sem = describe(trace(net))
>>> [(n, p.role) for n, p in sem.params.items()]  # doctest: +NORMALIZE_WHITESPACE
[('0.weight', 'weight'), ('0.bias', 'bias'), ('1.weight', 'norm_gain'), ('1.bias', 'norm_bias'),
 ('3.weight', 'weight'), ('3.bias', 'bias')]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import torch
from torch import nn

from initlab.graph import Graph, LayerNode, Use

__all__ = ["Role", "ROLES", "WEIGHT_KINDS", "MATRIX_KINDS", "CHAIN_KINDS", "MULTIPLICATIVE_ROLES", "RoleUse",
           "ParamInfo", "Semantics", "describe", "unit_axis", "weight_blocks"]

Role = Literal["weight", "bias", "embedding", "norm_gain", "norm_bias", "recurrent", "rnn_input", "activation",
               "position", "token", "layer_scale", "scale", "unknown"]
ROLES: tuple[str, ...] = get_args(Role)
# layers whose weights init_model draws; layers LSUV rescales (matrix products); the depth chain of probe
WEIGHT_KINDS = ("linear", "conv", "conv_transpose", "attention", "embedding", "rnn")
MATRIX_KINDS = ("linear", "conv", "conv_transpose", "attention")
CHAIN_KINDS = ("linear", "conv", "conv_transpose")
# roles that multiply the signal: a hint for them never proposes zeros
MULTIPLICATIVE_ROLES = ("weight", "embedding", "norm_gain", "recurrent", "rnn_input", "layer_scale", "scale")
_PRIORITY = {"weight": 0, "recurrent": 1, "rnn_input": 1, "embedding": 2}

_CHANNEL_FIRST_NORMS: tuple[type, ...] = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LocalResponseNorm)


@dataclass(eq=False)
class RoleUse:
    """One use of a parameter: the layer it serves and its role there."""

    layer: LayerNode
    role: str
    output: bool = False  # the layer feeds the model output (an output projection)
    use: Use | None = None

    def __str__(self) -> str:
        return f"{self.role}{' (output)' if self.output else ''} in {self.layer.name or '<root>'}"


@dataclass(eq=False)
class ParamInfo:
    """What one parameter is (see the module docstring)."""

    name: str
    param: nn.Parameter
    role: str
    node: LayerNode
    uses: list[RoleUse]
    names: list[str]
    layout: str | None = None
    out_axis: int | None = None
    reason: str = ""

    @property
    def shared(self) -> bool:
        """Used by several layers (tied weights), or reachable under several names."""
        return len({u.layer.name for u in self.uses}) > 1 or len(self.names) > 1

    @property
    def roles(self) -> str:
        """Every use, for reports: ``"weight (output) in lm_head; embedding in transformer.wte"``."""
        return "; ".join(dict.fromkeys(str(u) for u in self.uses))


@dataclass(eq=False)
class Semantics:
    """Roles of every parameter of a traced model, and the layer questions (see the module docstring)."""

    graph: Graph
    params: dict[str, ParamInfo] = field(default_factory=dict)

    def of(self, layer: LayerNode) -> list[ParamInfo]:
        """The parameters a layer uses, whichever of its uses decided their role."""
        return [self.params[n] for n in layer.params if n in self.params]

    def weight(self, layer: LayerNode) -> str | None:
        """The parameter that carries a layer's output scale: its matrix / kernel (MultiheadAttention's
        ``out_proj.weight``), a norm's gain; None when it has none."""
        prefix = f"{layer.name}." if layer.name else ""
        if layer.kind == "attention":
            name = prefix + "out_proj.weight"
            return name if name in layer.params else None
        wanted = ("norm_gain",) if layer.kind == "norm" else ("weight",)
        for name in layer.params:
            info = self.params.get(name)
            if info is not None and any(u.layer is layer and u.role in wanted for u in info.uses):
                return name
        return None

    def output_layer(self) -> LayerNode | None:
        """The last Linear/Conv layer whose output reaches the model output without another weight layer."""
        feeding = _output_feeders(self.graph)
        candidates = [n for n in feeding if n.kind in CHAIN_KINDS]
        return max(candidates, key=lambda n: n.index) if candidates else None


def unit_axis(layer: LayerNode) -> int:
    """The axis of a layer's output that indexes its units (channels first for convolutions, BatchNorm)."""
    if layer.kind in ("conv", "conv_transpose"):
        return 1
    if layer.kind == "norm" and isinstance(layer.module, _CHANNEL_FIRST_NORMS):
        return 1
    return -1


def weight_blocks(layer: LayerNode) -> list[tuple[str, str, slice | None]]:
    """(block name, parameter attribute, row slice) of the weights a layer applies one after the other:
    ``q``, ``k``, ``v`` and ``out`` for ``nn.MultiheadAttention`` (packed or separate projections),
    ``[("weight", "weight", None)]`` otherwise."""
    module = layer.module
    if isinstance(module, nn.MultiheadAttention):
        e = module.embed_dim
        if module.in_proj_weight is not None:
            blocks = [(part, "in_proj_weight", slice(i * e, (i + 1) * e)) for i, part in enumerate("qkv")]
        else:
            blocks = [(part, f"{part}_proj_weight", None) for part in "qkv"]
        return [*blocks, ("out", "out_proj.weight", None)]
    return [("weight", "weight", None)]


# --------------------------------------------------------------------------------------------------


def _output_feeders(graph: Graph) -> list[LayerNode]:
    out_ops = [op for op in graph.ops if op.kind == "output"]
    if not out_ops:
        return []
    by_name = {n.name: n for n in graph.layers}
    feeding: list[LayerNode] = []
    seen: set[int] = set()
    stack = list(out_ops[-1].inputs)
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        op = graph.ops[i]
        if op.layer is not None and op.layer in by_name and by_name[op.layer].kind in WEIGHT_KINDS:
            feeding.append(by_name[op.layer])
            continue
        stack.extend(op.inputs)
    return feeding


def _feeds_residual(graph: Graph, consumers: list[list[int]], op_index: int | None) -> bool:
    """True when op ``op_index``'s output reaches a residual sum through reshapes only (``consumers[i]``:
    the ops reading op i, built once per graph)."""
    if op_index is None:
        return False
    adds = {br.add for br in graph.branches}
    frontier, seen = [op_index], set()
    while frontier:
        for c in consumers[frontier.pop()]:
            if c not in seen:
                seen.add(c)
                if c in adds:
                    return True
                if graph.ops[c].kind in ("reshape", "dropout"):
                    frontier.append(c)
    return False


def _module_role(layer: LayerNode, local: str, p: torch.Tensor) -> str | None:
    """The role of a parameter in a torch layer type whose forward initlab knows (None: read its uses)."""
    kind, module = layer.kind, layer.module
    leaf = local.rsplit(".", 1)[-1]
    if isinstance(module, nn.PReLU):
        return "activation"
    if kind == "norm" and type(module).__module__.startswith("torch."):
        return "norm_gain" if leaf == "weight" else "norm_bias"
    if kind == "rnn":
        if p.dim() < 2:
            return "bias"
        return "recurrent" if leaf.startswith("weight_hh") else "rnn_input"
    if kind == "embedding" and isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return "embedding"
    if kind in MATRIX_KINDS and type(module).__module__.startswith("torch."):
        return "weight" if p.dim() >= 2 else "bias"
    return None


def _use_role(graph: Graph, consumers: list[list[int]], use: Use, p: torch.Tensor) -> str:
    """The role a runtime (or fx) use gives a parameter."""
    if use.how in ("matmul", "conv"):
        return "weight"
    if use.how == "embedding":
        return "embedding"
    if use.how == "norm" or (use.how == "mul" and use.normalized):
        return "norm_gain"
    if use.how == "concat":
        return "token"
    if use.how == "add":
        if sum(n > 1 for n in p.shape) >= 2:  # a table added to the activations: (1, tokens, d), (1, d, h, w)
            return "position"
        if use.after == "norm":
            return "norm_bias"
        return "bias"
    if use.how == "mul":
        return "layer_scale" if _feeds_residual(graph, consumers, use.op) else "scale"
    return "unknown"


def _layout(layer: LayerNode, use: Use | None) -> tuple[str | None, int | None]:
    if layer.kind == "conv_transpose":
        return "torch_transposed", 1
    if use is not None and use.how == "matmul" and use.in_axis == 0:
        return "lasagne_dense", 1
    if layer.kind in MATRIX_KINDS or (use is not None and use.how in ("matmul", "conv")):
        return "torch", 0
    return None, None


def describe(graph: Graph) -> Semantics:
    """Decide every parameter's role (see the module docstring)."""
    model = graph.model
    params = dict(model.named_parameters())
    names = {n: graph.aliases.get(n, [n]) for n in params}
    output = {id(n) for n in _output_feeders(graph)}
    collected: dict[str, list[RoleUse]] = {n: [] for n in params}
    consumers: list[list[int]] = [[] for _ in graph.ops]
    for op in graph.ops:
        for j in op.inputs:
            consumers[j].append(op.index)
    for layer in graph.layers:
        prefix = f"{layer.name}." if layer.name else ""
        for pname in layer.params:
            if pname not in params:
                continue
            p = params[pname]
            local = next((a[len(prefix):] for a in names[pname] if a.startswith(prefix)), pname)
            role = _module_role(layer, local, p)
            if role is not None:
                collected[pname].append(RoleUse(layer, role, id(layer) in output))
                continue
            mine = [u for u in graph.uses.get(pname, []) if u.module == layer.name or u.module == ""]
            for use in mine or graph.uses.get(pname, []):
                collected[pname].append(RoleUse(layer, _use_role(graph, consumers, use, p), id(layer) in output,
                                                use))
            if not graph.uses.get(pname):
                collected[pname].append(RoleUse(layer, "unknown", id(layer) in output))
    sem = Semantics(graph)
    for pname, p in params.items():
        uses = list({(id(u.layer), u.role): u for u in collected[pname]}.values())
        if not uses:
            continue
        if any(u.role != "unknown" for u in uses):
            uses = [u for u in uses if u.role != "unknown"]
        best = min(uses, key=lambda u: (_PRIORITY.get(u.role, 3), not u.output, -u.layer.index))
        role = best.role
        if len({u.role for u in uses}) > 1 and role not in _PRIORITY:
            role = "unknown" if all(u.role in ("scale", "unknown") for u in uses) else role
        layout, out_axis = _layout(best.layer, best.use) if role == "weight" else (None, None)
        sem.params[pname] = ParamInfo(pname, p, role, best.layer, uses, names[pname], layout, out_axis)
    return sem
