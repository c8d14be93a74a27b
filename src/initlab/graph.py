"""Tracing a PyTorch model into its parametrized layers, the activations around them and its residual branches.

This module is the one place initlab answers "which layer comes next and what activation follows it";
``init_model``, ``lsuv``, ``theory`` and ``probe`` all read the same :class:`Graph`.

Contract
========
``initlab.trace(model, example_inputs=None) -> Graph``

How it traces (``Graph.method``; ``Graph.fallback_reason`` says why the first choice was not used):

1. ``"fx"``: ``torch.fx`` symbolic tracing. Modules with direct parameters (Linear, Conv*, norms,
   Embedding, RNN/LSTM/GRU, MultiheadAttention, any custom module with its own parameters and no
   children), activation modules and childless modules are leaves; everything else is traced through,
   so functional activations (``F.relu``, ``torch.tanh``, ``x.sigmoid()``, ``F.gelu`` ...) and ``+`` are
   seen. Needs no inputs.
2. ``"hooks"``: when fx fails (data-dependent control flow, e.g. ``nn.TransformerEncoder``) and
   ``example_inputs`` are given, one forward pass on them with forward hooks on the leaf modules and a
   ``TorchFunctionMode`` that records every torch function called between them, so the dataflow
   (functional activations, additions, residuals) is recovered as in fx mode. The pass runs in eval mode
   with grad enabled (which disables torch's fused fast paths that would hide the sub-layers), under a
   forked RNG, and restores the model's modes and buffers afterwards. A model on the meta device is
   traced with the inputs moved to meta, so nothing is allocated.
3. ``"modules"``: when fx fails and no ``example_inputs`` are given: the leaf modules in registration
   order as a chain. Functional activations and residual branches are invisible in this mode
   (``branches`` is empty); pass ``example_inputs`` to get them.

Interface
---------
``Graph.layers: list[LayerNode]``: parametrized layers in FORWARD EXECUTION order (the first call of
each; a module called twice appears once). ``graph.layer(name)`` looks one up by qualified module name.

``LayerNode`` fields:

* ``name``: qualified module name (``""`` for the root module itself); ``module``;
* ``kind``: one of ``LAYER_KINDS`` = "linear", "conv", "conv_transpose", "norm", "embedding", "rnn",
  "attention", "other";
* ``index``: position in ``Graph.layers``;
* ``act_in``: ``initlab.gains.Activation`` applied to this layer's input, or ``None`` when the layer is fed
  directly by the graph input (the data). A layer fed by a normalization or by a residual sum gets the
  linear activation. Pooling, dropout, reshapes and indexing are looked through;
* ``act_out``: the Activation applied to its output (linear if none). Normalization layers are looked
  through: for Linear -> BatchNorm -> ReLU, the Linear's ``act_out`` is ReLU and the next layer's
  ``act_in`` is ReLU;
* ``inputs``: names of the parametrized layers feeding it (nearest ones, through any non-layer ops);
* ``branch``: id of the innermost residual branch it sits on, or ``None``; ``last_in_branch``: True when it
  is the last layer of some branch;
* ``op``: index into ``Graph.ops`` of its (first) call;
* ``params``: qualified names of the parameters it owns (its direct parameters plus those of its
  descendants that are not layers themselves, e.g. MultiheadAttention's ``out_proj``).

Activations are recognised from modules (``nn.ReLU``, ``nn.LeakyReLU(0.2)``, ``nn.GELU`` ...), functions
and tensor methods via :func:`initlab.gains.resolve_activation` / ``METHOD_NAMES``. A parameter-free
module of unknown type that acts elementwise (checked on a small tensor) is a custom activation. When
the path between two layers holds several elementwise operations (``x * torch.sigmoid(x)``, ``tanh(relu
(x))``), the activation is their composition, named ``"custom:mul(x,sigmoid)"``-style, whose ``fn``
replays those operations.

``Graph.branches: list[Branch]`` with ``id``, ``layers`` (names, execution order), ``last`` (the layer
closest to the addition), ``add`` (index of the ``add`` op) and ``shortcut`` (layers on the skip path: empty
for an identity skip, e.g. ``[conv, bn]`` for a projection shortcut). Found from the dataflow, never from
names: an ``add`` whose one input is an ancestor of the other makes the other path a branch; when
neither is (projection shortcut), the path with more layers from their latest common ancestor is the
branch and the other the shortcut.

``Graph.ops: list[Op]``: every executed operation in order, with ``index``, ``name``, ``kind`` (one of
``OP_KINDS`` = "input", "layer", "activation", "add", "mul", "norm", "pool", "dropout", "flatten", "reshape",
"concat", "identity" (``nn.Identity``), "output", "other"), ``module`` (or None), ``target`` (module name,
function or method name), ``inputs`` (indices of feeding ops), ``activation`` (an Activation for activation
ops), ``layer`` (name of the layer it calls, or None), ``params`` (qualified names of the parameters a
function call uses directly, e.g. ``x + self.pos``; empty for module calls). Parametrized normalization calls
have kind "norm" and PReLU calls kind "activation"; both also have ``layer`` set. In fx mode, parameter and
buffer fetches are "other" ops without inputs; in hooks mode parameters are not ops. In modules mode ``ops``
is a chain of the leaf modules.

Example
-------
>>> from torch import nn
>>> g = trace(nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)))
>>> [(l.name, l.kind, str(l.act_in), str(l.act_out)) for l in g.layers]
[('0', 'linear', 'None', 'relu'), ('1', 'norm', 'linear', 'relu'), ('3', 'linear', 'relu', 'linear')]
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
from torch import nn
from torch.utils import _pytree as pytree

from initlab.gains import METHOD_NAMES, Activation, gate, is_activation, pooled, resolve_activation

__all__ = ["trace", "Graph", "LayerNode", "Branch", "Op", "Use", "USE_KINDS", "InputsError", "LAYER_KINDS", "OP_KINDS",
           "layer_kind",
           "canon_name"]

LAYER_KINDS = ("linear", "conv", "conv_transpose", "norm", "embedding", "rnn", "attention", "other")
OP_KINDS = ("input", "layer", "activation", "add", "mul", "norm", "pool", "dropout", "flatten", "reshape",
            "concat", "identity", "output", "other")

LINEAR = resolve_activation(None)

_NORM_TYPES: tuple[type, ...] = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
if hasattr(nn, "RMSNorm"):
    _NORM_TYPES += (nn.RMSNorm,)
_POOL_TYPES = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
               nn.modules.pooling._AdaptiveMaxPoolNd, nn.modules.pooling._LPPoolNd)
_DROPOUT_TYPES = (nn.modules.dropout._DropoutNd,)
_FLATTEN_TYPES = (nn.Flatten, nn.Unflatten)

# canonical function/method names -> op kind (names are normalised by canon_name)
_NAME_KINDS = {
    "add": "add", "mul": "mul", "cat": "concat", "concat": "concat", "concatenate": "concat", "stack": "concat",
    "flatten": "flatten", "unflatten": "flatten",
    **{n: "reshape" for n in ("view", "reshape", "permute", "transpose", "contiguous", "squeeze", "unsqueeze", "t",
                              "expand", "getitem", "movedim", "swapaxes", "chunk", "split", "narrow", "select",
                              "view_as", "reshape_as", "expand_as", "repeat", "to", "float", "type_as")},
    **{n: "dropout" for n in ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
                              "feature_alpha_dropout", "feature_dropout")},
    **{n: "norm" for n in ("layer_norm", "batch_norm", "group_norm", "instance_norm", "rms_norm", "normalize",
                           "local_response_norm")},
}
# elementwise arithmetic and maths that may form part of an activation (e.g. x * sigmoid(x))
_ELEMENTWISE = {"add", "sub", "mul", "truediv", "div", "neg", "pow", "exp", "log", "erf", "erfc", "sqrt", "rsqrt",
                "clamp", "clip", "square", "reciprocal", "sign", "log1p", "expm1", "cos", "tanh", "sigmoid", "relu",
                "softplus", "maximum", "minimum"}
_RENAMES = {"radd": "add", "iadd": "add", "rmul": "mul", "imul": "mul", "rsub": "sub", "isub": "sub",
            "rtruediv": "truediv", "itruediv": "truediv", "div": "truediv", "rpow": "pow", "ipow": "pow",
            "clamp_min": "clamp", "clamp_max": "clamp"}


def _average_pool_size(op: Op) -> float | None:
    """How many positions an average-pool module averages: ``AvgPoolNd(k)`` prod(k), ``AdaptiveAvgPoolNd(1)``
    a global pool (``math.inf``: its input size is not known here); None for others (max, LP, adaptive to a
    size other than 1, functional pools)."""
    m = op.module
    if isinstance(m, nn.modules.pooling._AdaptiveAvgPoolNd):
        size = m.output_size if isinstance(m.output_size, (tuple, list)) else (m.output_size,)
        return math.inf if all(s == 1 for s in size) else None
    if isinstance(m, nn.modules.pooling._AvgPoolNd):
        dims = {nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3}.get(type(m), 0)
        k = m.kernel_size if isinstance(m.kernel_size, (tuple, list)) else (m.kernel_size,) * dims
        return float(math.prod(k)) if k else None
    return None


def layer_kind(module: nn.Module) -> str:
    """The ``LayerNode.kind`` of a module (one of ``LAYER_KINDS``)."""
    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    if isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
        return "rnn"
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return "embedding"
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return "conv_transpose"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, (nn.Linear, nn.Bilinear)):
        return "linear"
    if isinstance(module, _NORM_TYPES):
        return "norm"
    return "other"


# --------------------------------------------------------------------------------------------------
# Public data structures


@dataclass(eq=False)
class Op:
    """One executed operation (see the module docstring)."""

    index: int
    name: str
    kind: str
    module: nn.Module | None
    target: Any
    inputs: list[int]
    activation: Activation | None = None
    layer: str | None = None
    # re-executes this op given {op index: value} for its data inputs (used to compose activations)
    replay: Callable[[dict[int, Any]], Any] | None = field(default=None, repr=False)
    constant: bool = field(default=False, repr=False)  # parameter/buffer fetch or tensor built from nothing
    elementwise: bool = field(default=False, repr=False)
    params: list[str] = field(default_factory=list)  # parameters used directly by a function call


UseKind = Literal["matmul", "conv", "embedding", "norm", "mul", "add", "concat", "other"]
USE_KINDS: tuple[str, ...] = get_args(UseKind)


@dataclass(eq=False)
class Use:
    """One use of a parameter by a function call seen at run time (hooks pass; see :func:`trace`).

    ``how`` is what the call does with it (``USE_KINDS``); for a matrix product ``in_axis`` / ``out_axis``
    are the weight's axes that meet the input's features and that make the output's; ``normalized``: the
    other operand of a product was normalized (per-row or per-channel mean square 1): the parameter is a
    norm gain; ``after`` is what produced the other operand of an addition (a ``"norm"`` gain, a
    ``"matmul"``/``"conv"``: a bias); ``module`` is the innermost module running the call; ``op`` the
    graph op the call belongs to (a module call or a function call at the top level), when known.
    """

    param: str
    how: str
    module: str = ""
    in_axis: int | None = None
    out_axis: int | None = None
    normalized: bool = False
    after: str | None = None
    op: int | None = None
    func: str = ""


@dataclass(eq=False)
class LayerNode:
    """A parametrized layer (see the module docstring)."""

    name: str
    module: nn.Module
    kind: str
    index: int
    act_in: Activation | None
    act_out: Activation
    inputs: list[str]
    branch: int | None
    last_in_branch: bool
    op: int | None
    params: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return (f"LayerNode({self.name!r}, {type(self.module).__name__}, kind={self.kind!r}, act_in={self.act_in}, "
                f"act_out={self.act_out}, branch={self.branch}{', last' if self.last_in_branch else ''})")


@dataclass(eq=False)
class Branch:
    """A residual branch ``x + f(x)``: the parametrized layers of ``f``."""

    id: int
    layers: list[str]
    last: str
    add: int | None = None
    shortcut: list[str] = field(default_factory=list)


@dataclass(eq=False)
class Graph:
    """The traced model: ``layers``, ``ops``, ``branches``, ``method`` ("fx", "hooks" or "modules")."""

    model: nn.Module
    layers: list[LayerNode]
    ops: list[Op]
    branches: list[Branch]
    method: str
    fallback_reason: str | None = None
    # runtime uses of every parameter (canonical name -> uses), when a forward pass was run (hooks)
    uses: dict[str, list[Use]] = field(default_factory=dict)
    # every name of a parameter reachable under several names (tied weights): canonical -> all names
    aliases: dict[str, list[str]] = field(default_factory=dict)
    passes: int = 0  # forward passes run while tracing

    def layer(self, name: str) -> LayerNode:
        """The layer with qualified module name ``name``."""
        for node in self.layers:
            if node.name == name:
                return node
        raise KeyError(f"no parametrized layer named {name!r}; layers: {[n.name for n in self.layers]}")

    def __iter__(self) -> Iterator[LayerNode]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def table(self) -> str:
        """A plain-text table of the layers (one row each)."""
        rows = [("#", "layer", "type", "kind", "act_in", "act_out", "branch")]
        for n in self.layers:
            br = "" if n.branch is None else f"{n.branch}{' (last)' if n.last_in_branch else ''}"
            rows.append((str(n.index), n.name or "<root>", type(n.module).__name__, n.kind,
                         "data" if n.act_in is None else str(n.act_in), str(n.act_out), br))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        head = f"Graph traced by {self.method}: {len(self.layers)} layers, {len(self.branches)} residual branches"
        if self.fallback_reason:
            head += f"\n({self.fallback_reason})"
        return head + "\n" + "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


# --------------------------------------------------------------------------------------------------
# Classification helpers


def canon_name(obj: Any) -> str:
    """A function, method or name as a plain op name: ``operator.add``, ``Tensor.__radd__``, ``"add_"`` -> "add"."""
    name = obj if isinstance(obj, str) else getattr(obj, "__name__", type(obj).__name__)
    name = name.strip("_") if name.startswith("__") else name
    if name.endswith("_") and not name.startswith("_"):
        name = name[:-1]
    return _RENAMES.get(name, name)


def _is_tensor_method(func: Any) -> bool:
    name = getattr(func, "__name__", None)
    return isinstance(name, str) and getattr(torch.Tensor, name, None) is func


def _act_param(args: tuple, kwargs: dict) -> Any:
    for key in ("negative_slope", "alpha", "beta", "lambd", "approximate"):
        if key in kwargs:
            return kwargs[key]
    if len(args) > 1 and isinstance(args[1], (int, float, str)) and not isinstance(args[1], bool):
        return args[1]
    return None


def _function_activation(func: Any, args: tuple, kwargs: dict) -> Activation | None:
    """The Activation of a functional call, or None if ``func`` is not an activation."""
    if isinstance(func, str) or _is_tensor_method(func):
        name = func if isinstance(func, str) else func.__name__
        return resolve_activation(METHOD_NAMES[name]) if name in METHOD_NAMES else None
    if not is_activation(func):
        return None
    try:
        return resolve_activation(func, _act_param(args, kwargs))
    except (ValueError, TypeError):
        return resolve_activation(func)


def _is_elementwise_module(module: nn.Module) -> bool:
    """True when a parameter-free module maps each element on its own (a custom activation)."""
    t = torch.linspace(-3.0, 3.0, 12).reshape(2, 6)
    t2 = t.clone()
    t2.view(-1)[1:] += 0.37
    try:  # forward, not __call__: no hook (the tracer's or the user's) may see this probe
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            y, y2 = module.forward(t.clone()), module.forward(t2.clone())
    except Exception:  # noqa: BLE001 - any failure means "not an elementwise map on plain tensors"
        return False
    if not (isinstance(y, torch.Tensor) and isinstance(y2, torch.Tensor)) or y.shape != t.shape:
        return False
    # element 0 is the same in both inputs: an elementwise map gives the same output there
    return bool(torch.allclose(y.view(-1)[0], y2.view(-1)[0])) and not torch.allclose(y, y2)


def _module_op_kind(module: nn.Module) -> tuple[str, Activation | None]:
    if is_activation(module):
        act = resolve_activation(module)
        return ("identity", None) if act.is_linear else ("activation", act)
    if isinstance(module, _NORM_TYPES):
        return "norm", None
    if isinstance(module, _DROPOUT_TYPES):
        return "dropout", None
    if isinstance(module, _POOL_TYPES):
        return "pool", None
    if isinstance(module, _FLATTEN_TYPES):
        return "flatten", None
    if _direct_params(module) or any(True for _ in module.children()):
        return "layer", None
    if _is_elementwise_module(module):
        return "activation", resolve_activation(module)
    return "other", None


def _function_op_kind(func: Any, args: tuple, kwargs: dict) -> tuple[str, Activation | None, bool]:
    """(kind, activation, elementwise) of a function / method call."""
    act = _function_activation(func, args, kwargs)
    if act is not None:
        return "activation", act, True
    if func is operator.getitem:
        return "reshape", None, False
    name = canon_name(func)
    if "pool" in name:
        return "pool", None, False
    kind = _NAME_KINDS.get(name, "other")
    return kind, None, name in _ELEMENTWISE


def _direct_params(module: nn.Module) -> list[str]:
    return [n for n, _ in module.named_parameters(recurse=False)]


def _leaf_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Top-level leaves: modules that are not traced into (no ancestor of theirs is a leaf).

    A leaf is a childless module, an activation module, or a torch layer that owns parameters and
    children which it does not call as modules (MultiheadAttention, RNNs). A custom module with its own
    parameters AND children is traced through; its parameters are seen where they are used.
    """
    leaves: dict[str, nn.Module] = {}
    for name, mod in model.named_modules():
        parts = name.split(".")
        if "" in leaves or any(".".join(parts[:k]) in leaves for k in range(1, len(parts))):
            continue  # an ancestor is a leaf (checked by its prefixes: linear in depth, not in the leaves)
        childless = not any(True for _ in mod.children())
        if childless or is_activation(mod) or isinstance(mod, (nn.RNNBase, nn.MultiheadAttention)):
            leaves[name] = mod
    return leaves


# --------------------------------------------------------------------------------------------------
# Building ops (shared by the three methods)


class _Builder:
    def __init__(self, model: nn.Module):
        self.model = model
        self.ops: list[Op] = []
        self.modules = dict(model.named_modules())
        self.param_owner: dict[int, str] = {}
        self.param_name: dict[int, str] = {}
        for mname, mod in self.modules.items():
            for _, p in mod.named_parameters(recurse=False):
                self.param_owner.setdefault(id(p), mname)
        for pname, p in model.named_parameters():
            self.param_name[id(p)] = pname
        self.param_owner_name = {self.param_name[k]: v for k, v in self.param_owner.items() if k in self.param_name}
        self.layer_modules: dict[str, nn.Module] = {}  # name -> module, first-call order
        self.uses: list[Use] = []

    def add(self, name: str, kind: str, module: nn.Module | None, target: Any, inputs: list[int], *,
            activation: Activation | None = None, layer: str | None = None, replay: Any = None,
            constant: bool = False, elementwise: bool = False, params: list[Any] = ()) -> int:
        op = Op(len(self.ops), name, kind, module, target, list(dict.fromkeys(inputs)), activation, layer, replay,
                constant, elementwise or kind == "activation",
                [self.param_name[id(p)] for p in params if id(p) in self.param_name])
        if layer is not None and layer not in self.layer_modules:
            self.layer_modules[layer] = self.modules[layer]
        self.ops.append(op)
        return op.index

    def module_op(self, name: str, module: nn.Module, inputs: list[int]) -> int:
        kind, act = _module_op_kind(module)
        has_params = any(True for _ in module.parameters())
        if kind == "layer" and not has_params:
            kind = "other"

        def replay(env: dict[int, Any], _m=module, _ins=tuple(inputs)) -> Any:
            return _m(env[_ins[0]].clone())

        return self.add(name, kind, module, name, inputs, activation=act, layer=name if has_params else None,
                        replay=replay if kind == "activation" and inputs else None)

    def param_layer(self, params: list[Any]) -> str | None:
        for p in params:
            owner = self.param_owner.get(id(p))
            if owner is not None:
                return owner
        return None


# ---- fx


class _LeafTracer(torch.fx.Tracer):
    def __init__(self, leaves: set[int]):
        super().__init__()
        self._leaves = leaves

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return id(m) in self._leaves


def _fetch_attr(model: nn.Module, target: str) -> Any:
    obj: Any = model
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _build_fx(model: nn.Module) -> _Builder:
    leaves = _leaf_modules(model)
    tracer = _LeafTracer({id(m) for n, m in leaves.items() if n})
    fx_graph = tracer.trace(model)
    b = _Builder(model)
    index: dict[torch.fx.Node, int] = {}
    consts: dict[torch.fx.Node, Any] = {}
    views: dict[torch.fx.Node, nn.Parameter] = {}
    for node in fx_graph.nodes:
        ins = [index[n] for n in node.all_input_nodes if n in index]
        if node.op == "placeholder":
            index[node] = b.add(node.name, "input", None, node.target, [])
        elif node.op == "output":
            index[node] = b.add("output", "output", None, "output", ins)
        elif node.op == "get_attr":
            value = _fetch_attr(model, node.target)
            consts[node] = value
            index[node] = b.add(node.name, "other", None, node.target, [], constant=True)
        elif node.op == "call_module":
            index[node] = b.module_op(node.target, b.modules[node.target], ins)
        else:  # call_function / call_method
            target = node.target
            args = tuple(a for a in node.args)
            kind, act, elementwise = _function_op_kind(target, args, dict(node.kwargs))
            params = [views[n] if n in views else consts[n] for n in node.all_input_nodes
                      if n in views or isinstance(consts.get(n), nn.Parameter)]
            if params and kind == "reshape":  # cls_token.expand(n, -1, -1): the parameter, reshaped
                views[node] = params[0]
            layer = b.param_layer(params)
            if layer is not None and kind not in ("activation", "norm"):
                kind = "layer"
            replay = _fx_replay(node, index, consts) if elementwise else None
            name = target if isinstance(target, str) else canon_name(target)
            for k, p in enumerate(params if node not in views else []):  # no values in fx: by the function
                use = _classify_use(canon_name(target), p, k, params, [], None, {})
                use.param, use.module, use.func = b.param_name.get(id(p), ""), b.param_owner.get(id(p), ""), name
                b.uses.append(use)
            index[node] = b.add(node.name, kind, None, name if node.op == "call_method" else target, ins,
                                activation=act, layer=layer, replay=replay, elementwise=elementwise, params=params)
            for use in b.uses:
                if use.op is None and use.func == name:
                    use.op = index[node]
    return b


def _opaque_leaves(b: _Builder) -> list[str]:
    """Leaf modules called in the fx graph that own parameters and are not torch's own layer types: fx does not
    see inside them, so how they use their parameters needs a forward pass."""
    return [op.target for op in b.ops if op.module is not None and op.layer is not None
            and not type(op.module).__module__.startswith("torch.")]


def _add_leaf_uses(b: _Builder, run: _Builder) -> None:
    """Take the runtime uses inside the fx graph's leaf modules from a hooks pass ``run``."""
    module_ops = {op.target: op.index for op in b.ops if op.module is not None}
    for use in run.uses:
        if use.module in module_ops and b.param_owner_name.get(use.param) == use.module:
            use.op = module_ops[use.module]
            b.uses.append(use)


def _fx_replay(node: torch.fx.Node, index: dict, consts: dict) -> Callable[[dict[int, Any]], Any]:
    def run(env: dict[int, Any]) -> Any:
        def value(n: torch.fx.Node) -> Any:
            if n in consts:
                return consts[n]
            v = env[index[n]]
            return v.clone() if isinstance(v, torch.Tensor) else v

        args = torch.fx.node.map_arg(node.args, value)
        kwargs = torch.fx.node.map_arg(node.kwargs, value)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        return node.target(*args, **kwargs)

    return run


# ---- hooks (runtime dataflow)


_MATMUL_NAMES = {"linear", "addmm", "mm", "matmul", "bmm", "baddbmm", "addmv", "mv", "einsum", "bilinear"}


def _normalized(x: torch.Tensor, p: torch.Tensor, normed: set[int] | None = None) -> bool:
    """True when ``x`` (multiplied by ``p``) is normalized over the axes ``p`` spans: every row's mean square
    over them is 1 (LayerNorm / RMSNorm), or every channel's over the others (BatchNorm in training). A meta
    tensor has no values: it is normalized when the tracer saw a normalizer make it (``normed``, ids)."""
    if x.is_meta:
        return normed is not None and id(x) in normed and p.dim() >= 1 and x.dim() >= p.dim()
    if not x.is_floating_point() or x.numel() < 2 or p.dim() == 0 or p.dim() > x.dim():
        return False
    feat = [x.dim() - p.dim() + i for i, n in enumerate(p.shape) if n > 1]
    if not feat or any(x.shape[d] != p.shape[d - x.dim() + p.dim()] for d in feat):
        return False
    xd = x.detach().double()
    rows = xd.pow(2).mean(dim=feat).sqrt()
    if bool(((rows - 1).abs() < 0.05).all()):
        return True
    rest = [d for d in range(x.dim()) if d not in feat]
    if not rest or math.prod(x.shape[d] for d in rest) < 2:
        return False
    chans = xd.var(dim=rest, unbiased=False).sqrt()
    return bool(((chans - 1).abs() < 0.05).all())


def _matmul_axes(name: str, p: torch.Tensor, data: list[torch.Tensor], out: torch.Tensor | None
                 ) -> tuple[int | None, int | None]:
    """(in_axis, out_axis) of a 2-D weight in a matrix product, from the shapes seen at run time."""
    if p.dim() != 2:
        return None, None
    fit = []
    for x in data:
        if x.dim() == 0 or out is None or out.dim() == 0:
            continue
        for i_ax, o_ax in ((1, 0), (0, 1)):
            if x.shape[-1] == p.shape[i_ax] and out.shape[-1] == p.shape[o_ax]:
                fit.append((i_ax, o_ax))
    fit = list(dict.fromkeys(fit))
    if len(fit) == 1:
        return fit[0]
    if name in ("linear", "bilinear"):  # square weights: the function's own convention
        return 1, 0
    return (0, 1) if fit else (None, None)


def _classify_use(name: str, p: torch.Tensor, k: int, params: list[torch.Tensor], data: list[torch.Tensor],
                  out: torch.Tensor | None, tags: dict[int, str], normed: set[int] | None = None) -> Use:
    """What a call named ``name`` does with its ``k``-th parameter ``p`` (``Use.param`` etc. set by the caller)."""
    kind = _NAME_KINDS.get(name)
    if kind == "norm":  # F.layer_norm(x, shape, weight, bias): the first parameter scales, the second shifts
        return Use("", "norm") if k == 0 else Use("", "add", after="norm")
    if name.startswith("conv"):
        return Use("", "conv") if p.dim() >= 3 else Use("", "add", after="conv")
    if name in ("embedding", "embedding_bag"):
        return Use("", "embedding")
    if name in _MATMUL_NAMES:
        if p.dim() >= 2:
            i_ax, o_ax = _matmul_axes(name, p, data, out)
            return Use("", "matmul", in_axis=i_ax, out_axis=o_ax)
        return Use("", "add", after="matmul")
    if kind == "concat":
        return Use("", "concat")
    others = [t for t in data if t.dim() > 0] + [t for t in params if t is not p]
    if name in ("mul", "truediv"):
        return Use("", "mul", normalized=any(_normalized(x, p, normed) for x in others
                                             if x.shape != p.shape or x.dim() > 1))
    if name in ("add", "sub"):
        return Use("", "add", after=next((tags[id(x)] for x in others if id(x) in tags), None))
    return Use("", "other")



_CASTS = {"to", "float", "half", "bfloat16", "double", "type", "type_as", "contiguous", "clone", "detach"}


class _MetaNorms:
    """Which meta tensors are normalized, from how they were made (values are not there to check):
    the output of a normalization function (layer_norm, rms_norm, batch_norm, group_norm, instance_norm),
    or ``x * rsqrt(mean(x^2) + eps)`` / ``x / sqrt(mean(x^2) + eps)`` (RMSNorm and T5's norm written out),
    through dtype casts. Ids are kept valid by the runtime's ``alive`` list, which it shares."""

    def __init__(self, alive: list[torch.Tensor]) -> None:
        self.root: dict[int, int] = {}  # id(cast of x) -> id(x)
        self.sym: dict[int, tuple[str, int]] = {}  # id -> ("sq" | "ms" | "inv" | "rms", id(root x))
        self.normed: set[int] = set()
        self.alive = alive

    def _id(self, t: Any) -> int | None:
        return self.root.get(id(t), id(t)) if isinstance(t, torch.Tensor) else None

    def _keep(self, t: torch.Tensor) -> None:
        self.alive.append(t)

    def record(self, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
        tensors = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if not tensors:
            return
        x = tensors[0]
        if _NAME_KINDS.get(name) == "norm" and name != "normalize":
            self.normed.add(id(out))
        elif name in _CASTS:
            self.root[id(out)] = self._id(x)
            if id(x) in self.normed:
                self.normed.add(id(out))
            if id(x) in self.sym:
                self.sym[id(out)] = self.sym[id(x)]
        elif name in ("pow", "square") and (name == "square" or (len(args) > 1 and args[1] == 2)):
            self.sym[id(out)] = ("sq", self._id(x))
        elif name == "mean" and self.sym.get(id(x), ("",))[0] == "sq":
            self.sym[id(out)] = ("ms", self.sym[id(x)][1])
        elif name == "add" and len(tensors) == 1 and self.sym.get(id(x), ("",))[0] == "ms":
            self.sym[id(out)] = self.sym[id(x)]  # + eps
        elif name in ("rsqrt", "sqrt") and self.sym.get(id(x), ("",))[0] == "ms":
            self.sym[id(out)] = ("inv" if name == "rsqrt" else "rms", self.sym[id(x)][1])
        elif name == "reciprocal" and self.sym.get(id(x), ("",))[0] == "rms":
            self.sym[id(out)] = ("inv", self.sym[id(x)][1])
        elif name in ("mul", "truediv") and len(tensors) == 2:
            if tensors[0] is tensors[1] and name == "mul":
                self.sym[id(out)] = ("sq", self._id(x))
            else:
                self.combine(name, tensors, out)
                return
        else:
            return
        self._keep(out)

    def combine(self, name: str, pair: list[torch.Tensor], out: torch.Tensor) -> None:
        """``x * inv_rms(x)`` or ``x / rms(x)`` (either order for the product) is normalized."""
        if not out.is_meta:
            return
        want = "inv" if name == "mul" else "rms"
        orders = [(pair[0], pair[1]), (pair[1], pair[0])] if name == "mul" else [(pair[0], pair[1])]
        for x, r in orders:
            kind, root = self.sym.get(id(r), ("", None))
            if kind == want and root == self._id(x):
                self.normed.add(id(out))
                self._keep(out)
                return


class _Ref:
    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index


# A meta tensor has no values, so ``if mask.all():`` cannot be decided. A model built on the meta device
# (a transformers model checking "no packed sequences" or "no padding") takes the branch where the condition
# holds: the common case, and the branch taken on ordinary inputs. Only boolean conditions are answered;
# an integer ``.item()`` on meta still fails (and is reported as a problem with the inputs).
_META_CONDITIONS = (torch.Tensor.__bool__, torch.Tensor.item)


def _meta_condition(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.is_meta and t.dtype == torch.bool and t.numel() == 1


class _Recorder(torch.overrides.TorchFunctionMode):
    def __init__(self, rt: _Runtime):
        super().__init__()
        self.rt = rt

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _META_CONDITIONS and args and _meta_condition(args[0]):
            return True  # a data-dependent condition on the meta device: the usual branch (see _META_CONDITIONS)
        out = func(*args, **kwargs)
        op = self.rt.record_function(func, args, kwargs, out) if not self.rt.stack else None
        self.rt.record_uses(func, args, kwargs, out, op)
        return out


class _Runtime:
    def __init__(self, b: _Builder):
        self.b = b
        self.stack: list[str] = []  # the leaf modules running now (hooks)
        self.producer: dict[int, int] = {}
        self.alive: list[torch.Tensor] = []  # keeps ids unique while tracing
        self.counts: dict[str, int] = {}
        self.uses: list[Use] = []
        self.open_uses: list[Use] = []  # uses inside the running leaf module: their op comes with its post hook
        self.tags: dict[int, str] = {}  # id(tensor) -> "norm" / "matmul" / "conv": what produced it
        self.views: dict[int, nn.Parameter] = {}  # id(tensor) -> the parameter it is a reshaped view of
        self.scaled: dict[int, tuple[Use, nn.Parameter, torch.Tensor]] = {}  # id(p * x) -> (use, p, x)
        self.meta = _MetaNorms(self.alive)  # on the meta device, where values cannot say what is normalized

    def _normalized_later(self, leaves: list[Any], name: str, result: torch.Tensor) -> None:
        """``self.weight * x * rsqrt(mean(x^2))``: the gain multiplies x first and the normalizer after, so
        the product's other factor (x times the normalizer) is what must be normalized."""
        tensors = [t for t in leaves if isinstance(t, torch.Tensor)]
        for t in tensors:
            if id(t) not in self.scaled:
                continue
            use, p, x = self.scaled[id(t)]
            others = [o for o in tensors if o is not t]
            if len(others) != 1:
                continue
            with torch.no_grad():
                factor = x * others[0] if name == "mul" else x / others[0]
            self.meta.combine(name, [x, others[0]], factor)
            if _normalized(factor, p, self.meta.normed):
                use.normalized = True
            else:
                self.scaled[id(result)] = (use, p, factor)  # the normalizer may still come
                self.alive.append(result)

    def record_uses(self, func: Any, args: tuple, kwargs: dict, out: Any, op: int | None) -> None:
        """Record how each parameter among the call's arguments is used (any depth: inside leaf modules too)."""
        leaves = pytree.tree_leaves((args, kwargs))
        name = canon_name(func)
        params = [self.views.get(id(t), t) for t in leaves if isinstance(t, nn.Parameter) or id(t) in self.views]
        result = out if isinstance(out, torch.Tensor) else None
        if result is not None and result.is_meta:
            self.meta.record(name, args, kwargs, result)
        if result is None and not any(isinstance(t, torch.Tensor) for t in pytree.tree_leaves(out)):
            return  # self.weight.dtype, .shape, .numel(): reading the parameter, not using its values
        if params and result is not None and (_NAME_KINDS.get(name) == "reshape" or func is operator.getitem):
            self.views[id(result)] = params[0]  # cls_token.expand(n, -1, -1): still the parameter, reshaped
            self.alive.append(result)
            return
        if not params:
            if result is not None and _NAME_KINDS.get(name) == "norm":
                self._tag(result, "norm")
            if result is not None and name in ("mul", "truediv"):
                self._normalized_later(leaves, name, result)
            return
        data = [t for t in leaves if isinstance(t, torch.Tensor) and not isinstance(t, nn.Parameter)
                and id(t) not in self.views]
        module = self.stack[-1] if self.stack else self.b.param_owner.get(id(params[0]), "")
        tag = None
        for k, p in enumerate(params):
            pname = self.b.param_name.get(id(p))
            if pname is None:
                continue
            use = _classify_use(name, p, k, params, data, result, self.tags, self.meta.normed)
            use.param, use.module, use.op, use.func = pname, module, op, name
            if use.how == "mul" and not use.normalized and result is not None and len(data) == 1:
                self.scaled[id(result)] = (use, p, data[0])  # weight * x, normalized later perhaps
                self.alive.append(result)
            if use.how in ("matmul", "conv", "norm") or (use.how == "mul" and use.normalized):
                tag = "norm" if use.how in ("norm", "mul") else use.how
            self.uses.append(use)
            if op is None:
                self.open_uses.append(use)
        if tag is not None and result is not None:
            self._tag(result, tag)

    def _tag(self, t: torch.Tensor, tag: str) -> None:
        self.tags[id(t)] = tag
        self.alive.append(t)

    def refs(self, tree: Any) -> list[int]:
        return [self.producer[id(t)] for t in pytree.tree_leaves(tree)
                if isinstance(t, torch.Tensor) and id(t) in self.producer]

    def produce(self, out: Any, op: int) -> None:
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.producer[id(t)] = op
                self.alive.append(t)

    def record_function(self, func: Any, args: tuple, kwargs: dict, out: Any) -> int | None:
        if not any(isinstance(t, torch.Tensor) for t in pytree.tree_leaves(out)):
            return None
        ins = self.refs((args, kwargs))
        params = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, nn.Parameter)]
        kind, act, elementwise = _function_op_kind(func, args, kwargs)
        layer = self.b.param_layer(params)
        if layer is not None and kind not in ("activation", "norm"):
            kind = "layer"
        base = canon_name(func)
        n = self.counts.get(base, 0)
        self.counts[base] = n + 1
        replay = None
        if elementwise:
            tmpl = pytree.tree_map(lambda t: _Ref(self.producer[id(t)]) if isinstance(t, torch.Tensor)
                                   and id(t) in self.producer else t, (args, kwargs))

            def replay(env: dict[int, Any], _f=func, _tmpl=tmpl) -> Any:
                a, k = pytree.tree_map(lambda x: env[x.index].clone() if isinstance(x, _Ref) else x, _tmpl,
                                       is_leaf=lambda x: isinstance(x, _Ref))
                return _f(*a, **k)

        op = self.b.add(f"{base}_{n}" if n else base, kind, None, func, ins, activation=act, layer=layer,
                        replay=replay, constant=not ins and layer is None, elementwise=elementwise, params=params)
        self.produce(out, op)
        return op


class InputsError(ValueError):
    """The model failed on the inputs it was given to trace (a wrong shape, token ids for a float model);
    the message names the argument that carried them."""


def _build_hooks(model: nn.Module, example_inputs: Any, argument: str = "example_inputs") -> _Builder:
    b = _Builder(model)
    rt = _Runtime(b)
    leaves = _leaf_modules(model)
    params = list(model.parameters())
    on_meta = bool(params) and all(p.is_meta for p in params)
    if isinstance(example_inputs, dict):
        args, kwargs = (), dict(example_inputs)
    elif isinstance(example_inputs, (tuple, list)):
        args, kwargs = tuple(example_inputs), {}
    else:
        args, kwargs = (example_inputs,), {}
    if on_meta:
        args, kwargs = pytree.tree_map(lambda t: t.to("meta") if isinstance(t, torch.Tensor) else t, (args, kwargs))
    for i, t in enumerate(pytree.tree_leaves((args, kwargs))):
        if isinstance(t, torch.Tensor):
            rt.produce(t, b.add(f"input_{i}" if i else "input", "input", None, "input", []))

    def pre(mod, a, k):
        rt.stack.append(names[id(mod)])

    def post(mod, a, k, out=None):
        if len(rt.stack) == 1 and out is not None:  # classify while still "inside": probes are not recorded
            op = b.module_op(names[id(mod)], mod, rt.refs((a, k)))
            rt.produce(out, op)
            for use in rt.open_uses:
                use.op = op
        if len(rt.stack) == 1:
            rt.open_uses = []
        rt.stack.pop()

    names = {id(m): n for n, m in leaves.items()}
    handles = []
    for m in leaves.values():
        handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        # always_call: a module whose forward raises (and is caught by the model) must still close its call
        handles.append(m.register_forward_hook(post, with_kwargs=True, always_call=True))
    training = {m: m.training for m in model.modules()}
    buffers = {n: t.detach().clone() for n, t in model.named_buffers()}
    try:
        model.eval()
        try:
            with torch.random.fork_rng(devices=[]), torch.enable_grad(), _Recorder(rt):
                out = model(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - report it as a problem with the inputs we were given
            first = (str(exc).strip().splitlines() or [""])[0]
            raise InputsError(f"the model failed on {argument} ({type(exc).__name__}: {first})") from exc
        b.add("output", "output", None, "output", rt.refs(out))
        b.uses = rt.uses
    finally:
        for h in handles:
            h.remove()
        for m, flag in training.items():
            m.training = flag
        with torch.no_grad():
            for n, t in model.named_buffers():
                if n in buffers and t.shape == buffers[n].shape:
                    t.copy_(buffers[n])
    return b


# ---- modules (registration order)


def _build_modules(model: nn.Module) -> _Builder:
    b = _Builder(model)
    prev = b.add("input", "input", None, "input", [])
    for name, mod in _leaf_modules(model).items():
        prev = b.module_op(name, mod, [prev])
    b.add("output", "output", None, "output", [prev])
    return b


# --------------------------------------------------------------------------------------------------
# Analysis: activations, feeders, residual branches


def _kinds_from_uses(b: _Builder) -> dict[str, str]:
    """Layer kinds of modules initlab does not know, from how they use their own parameters at run time:
    a weight in a matrix product makes a "linear" layer (GPT-2's Conv1D), a gain on a normalized tensor a
    "norm" (LlamaRMSNorm, T5LayerNorm)."""
    seen: dict[str, set[str]] = {}
    for use in b.uses:
        if b.param_owner_name.get(use.param) == use.module:
            how = "norm" if use.how == "mul" and use.normalized else use.how
            seen.setdefault(use.module, set()).add(how)
    out = {}
    for name, hows in seen.items():
        module = b.modules.get(name)
        if module is None or layer_kind(module) != "other":
            continue
        for how, kind in (("matmul", "linear"), ("conv", "conv"), ("embedding", "embedding"), ("norm", "norm")):
            if how in hows:
                out[name] = kind
                break
    return out


class _Flow:
    """The activations around each op: ops grouped into elementwise runs from a *root* (a layer, a norm, the
    input, a merge of two sources), so ``composed(i)`` is the function from op i's root to op i."""

    def __init__(self, ops: list[Op]) -> None:
        self.ops = ops
        n = len(ops)
        self.data_in = [[j for j in op.inputs if not ops[j].constant] for op in ops]
        # a parametrized activation (PReLU) stays elementwise: the next layer's act_in is the PReLU
        self.boundary = [op.kind in ("input", "output", "norm", "concat")
                         or (op.layer is not None and op.kind != "activation") for op in ops]
        self.root = list(range(n))
        for op in ops:
            i = op.index
            if self.boundary[i] or op.constant:
                continue
            roots = {self.root[j] for j in self.data_in[i]}
            if len(roots) == 1:
                self.root[i] = roots.pop()
            elif not roots:
                op.constant = True
            else:
                self.boundary[i] = True  # a merge: a sum/product of two different sources
        self.consumers: list[list[int]] = [[] for _ in range(n)]
        for op in ops:
            for j in self.data_in[op.index]:
                self.consumers[j].append(op.index)
        self.rooted: dict[int, list[int]] = {}  # root -> the non-boundary ops computed from it, in order
        for op in ops:
            if not self.boundary[op.index] and not op.constant and self.root[op.index] != op.index:
                self.rooted.setdefault(self.root[op.index], []).append(op.index)
        self._cache: dict[int, Activation] = {}
        self._members_cache: dict[int, list[int]] = {}  # read by composed() and _pool_size() alike

    def composed(self, i: int) -> Activation:
        """The activation mapping root[i]'s output to op i's output (LINEAR at a boundary: a unit-variance
        source such as a layer, a norm or the data)."""
        if self.boundary[i]:
            return LINEAR
        if i not in self._cache:
            ops, data_in, r = self.ops, self.data_in, self.root[i]
            members = self._members(i)
            acts = [ops[k] for k in members if ops[k].elementwise]
            if not acts:
                result = LINEAR
            elif len(acts) == 1 and acts[0].activation is not None and len(data_in[acts[0].index]) == 1:
                result = acts[0].activation
            else:
                result = _compose(ops, members, r, i, data_in)
            self._cache[i] = result
        return self._cache[i]

    def _members(self, i: int) -> list[int]:
        """The ops between root[i] (excluded) and op i (included), in execution order."""
        if i not in self._members_cache:
            r, members, stack = self.root[i], set(), [i]
            while stack:
                k = stack.pop()
                if k in members or k == r or self.ops[k].constant:
                    continue
                members.add(k)
                stack.extend(self.data_in[k])
            self._members_cache[i] = sorted(members)
        return self._members_cache[i]

    def _pool_size(self, i: int) -> float | None:
        """The number of positions averaged between the last elementwise op and op i (a classifier head's
        global average pool: ``math.inf``), or None when no average pool follows the activation (or its
        size is unknown)."""
        n, pooled_yet = 1.0, False
        for k in self._members(i):
            op = self.ops[k]
            if op.elementwise:
                if pooled_yet:
                    return None  # act(pool(...)): the pool acts on pre-activations; not modelled
                continue
            size = _average_pool_size(op) if op.kind == "pool" else 1.0
            if size is None:
                return None
            n *= size
            pooled_yet = pooled_yet or size > 1
        return n if pooled_yet else None

    def act_in(self, i: int) -> Activation | None:
        ins = self.data_in[i]
        if not ins:
            return None
        src, ops = ins[0], self.ops
        if ops[src].kind == "mul" and self.boundary[src] and len(self.data_in[src]) == 2:
            return gate([self.composed(j) for j in self.data_in[src]])  # a(x) * sigmoid(g(x)), SwiGLU, GeGLU
        if self.boundary[src]:
            return None if ops[src].kind == "input" else LINEAR
        if ops[self.root[src]].kind == "input" and self.composed(src).is_linear:
            return None
        act, n = self.composed(src), self._pool_size(src)
        return act if n is None else pooled(act, n)

    def act_out(self, i: int, depth: int = 0) -> Activation:
        chain = self.rooted.get(i, [])
        for k in chain:
            if any(self.boundary[c] for c in self.consumers[k]) or not self.consumers[k]:
                act = self.composed(k)
                if not act.is_linear:
                    return act
        if depth < 4:  # look through normalization layers fed directly (or through reshapes) by this op
            for k in [i, *chain]:
                if k != i and not self.composed(k).is_linear:
                    continue
                for c in self.consumers[k]:
                    if self.ops[c].kind == "norm" and self.data_in[c] and self.data_in[c][0] == k:
                        return self.act_out(c, depth + 1)
        return LINEAR


def _branches(flow: _Flow, layer_ops: dict[str, int]) -> list[Branch]:
    """Residual branches from the dataflow: an ``add`` of two paths, one of which holds layers the other
    does not pass through (see the module docstring)."""
    ops, data_in = flow.ops, flow.data_in
    anc = [0] * len(ops)  # ancestors as bitsets over data edges
    for op in ops:
        a = 0
        for j in data_in[op.index]:
            a |= anc[j] | (1 << j)
        anc[op.index] = a

    def layers_between(start: int | None, end: int) -> list[int]:
        """Layer ops L (first calls) with start an ancestor of L and L an ancestor of (or equal to) end."""
        return sorted(li for li in layer_ops.values()
                      if (start is None or (anc[li] >> start) & 1) and (li == end or (anc[end] >> li) & 1))

    branches: list[Branch] = []
    for op in ops:
        ins = data_in[op.index]
        if op.kind != "add" or not flow.boundary[op.index] or len(ins) != 2:
            continue
        a, c = ins
        shortcut: list[int] = []
        if (anc[c] >> a) & 1:
            body = layers_between(a, c)
        elif (anc[a] >> c) & 1:
            body = layers_between(c, a)
        else:
            common = anc[a] & anc[c]
            if not common:
                continue
            start = common.bit_length() - 1
            side_a, side_c = layers_between(start, a), layers_between(start, c)
            if len(side_a) == len(side_c):
                continue
            body, shortcut = (side_a, side_c) if len(side_a) > len(side_c) else (side_c, side_a)
        if body:
            branches.append(Branch(len(branches), [ops[i].layer for i in body], ops[body[-1]].layer, op.index,
                                   [ops[i].layer for i in shortcut]))
    return branches


def _nodes(b: _Builder, flow: _Flow, layer_ops: dict[str, int], branches: list[Branch],
           kinds: dict[str, str]) -> list[LayerNode]:
    feeders: list[list[str]] = []  # the nearest layers feeding each op
    for op in flow.ops:
        if op.layer is not None:
            feeders.append([op.layer])
        else:
            feeders.append(list(dict.fromkeys(x for j in flow.data_in[op.index] for x in feeders[j])))
    nodes: list[LayerNode] = []
    for idx, (name, i) in enumerate(layer_ops.items()):
        module = b.layer_modules[name]
        containing = [br for br in branches if name in br.layers]
        inner = min(containing, key=lambda br: len(br.layers)).id if containing else None
        nodes.append(LayerNode(
            name=name, module=module, kind=kinds.get(name) or layer_kind(module), index=idx, act_in=flow.act_in(i),
            act_out=flow.act_out(i), inputs=list(dict.fromkeys(x for j in flow.data_in[i] for x in feeders[j])),
            branch=inner, last_in_branch=any(br.last == name for br in branches), op=i,
        ))
    return nodes


def _analyse(b: _Builder, method: str, reason: str | None) -> Graph:
    """The Graph of the recorded ops: kinds from runtime uses, activations, residual branches, layer nodes."""
    ops = b.ops
    kinds = _kinds_from_uses(b)
    for op in ops:
        if op.module is not None and kinds.get(op.layer or "") == "norm":
            op.kind = "norm"
    flow = _Flow(ops)
    layer_ops: dict[str, int] = {}
    for op in ops:
        if op.layer is not None and op.layer not in layer_ops:
            layer_ops[op.layer] = op.index
    branches = _branches(flow, layer_ops)
    nodes = _nodes(b, flow, layer_ops, branches, kinds)
    _assign_params(nodes, ops, b)
    uses: dict[str, list[Use]] = {}
    for use in b.uses:
        uses.setdefault(use.param, []).append(use)
    aliases: dict[str, list[str]] = {}
    for pname, p in b.model.named_parameters(remove_duplicate=False):
        aliases.setdefault(b.param_name[id(p)], []).append(pname)
    return Graph(b.model, nodes, ops, branches, method, reason, uses,
                 {k: v for k, v in aliases.items() if len(v) > 1})


def _compose(ops: list[Op], members: list[int], r: int, end: int, data_in: list[list[int]]) -> Activation:
    """Replay the elementwise ops between root r and op end as one function; fall back to the activations."""
    names = []
    for k in members:
        if ops[k].elementwise:
            op = ops[k]
            if op.activation is not None:
                names.append(str(op.activation))
            else:
                args = ",".join("x" if j in members or j == r else "c" for j in data_in[k]) or "x"
                names.append(f"{canon_name(op.target)}({args})")

    def fn(x: torch.Tensor) -> torch.Tensor:
        env: dict[int, Any] = {r: x}
        for k in members:
            op = ops[k]
            if op.elementwise:
                if op.replay is None:
                    raise RuntimeError(f"cannot replay {op.name}")
                env[k] = op.replay(env)
            else:  # shape-only or reduction ops are looked through
                env[k] = env[data_in[k][0]]
        return env[end]

    try:
        probe = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64)
        y = fn(probe)
        if not isinstance(y, torch.Tensor) or y.shape != probe.shape:
            raise RuntimeError("not elementwise")
    except Exception:  # noqa: BLE001 - constants that do not broadcast, non-replayable ops
        acts = [ops[k].activation for k in members if ops[k].activation is not None]
        return acts[-1] if acts else LINEAR
    if torch.allclose(y.abs(), probe.abs(), atol=1e-12) and torch.allclose(y, -y.flip(0), atol=1e-12):
        return LINEAR  # x, -x (rotate_half in rotary embeddings): the second moment is unchanged
    return Activation("custom:" + "∘".join(reversed(names)), None, fn)


def _assign_params(nodes: list[LayerNode], ops: list[Op], b: _Builder) -> None:
    """A layer called as a module owns its whole subtree's parameters (minus those of layers inside it,
    e.g. none for MultiheadAttention, whose out_proj is never called); a module traced through owns only
    its direct parameters."""
    layer_names = {nd.name for nd in nodes}
    for nd in nodes:
        prefix = f"{nd.name}." if nd.name else ""
        # canonical names: a tied weight (lm_head.weight is wte.weight) is listed under its first name
        if nd.op is None or ops[nd.op].module is None:
            nd.params = [b.param_name[id(p)] for _, p in nd.module.named_parameters(recurse=False)]
            continue
        owned = []
        for pname, p in nd.module.named_parameters(remove_duplicate=False):
            parts = pname.split(".")[:-1]
            sub = [prefix + ".".join(parts[:k]) for k in range(1, len(parts) + 1)]
            if any(s in layer_names for s in sub):
                continue
            owned.append(b.param_name[id(p)])
        nd.params = list(dict.fromkeys(owned))


# --------------------------------------------------------------------------------------------------


def trace(model: nn.Module, example_inputs: Any = None, *, check: bool = False,
          argument: str = "example_inputs") -> Graph:
    """Trace ``model`` into a :class:`Graph` (see the module docstring for the contract).

    ``example_inputs``: a tensor, a tuple of positional inputs or a dict of keyword inputs; run once when
    torch.fx cannot trace the model, or when it holds modules whose use of their parameters fx cannot see
    (one sample is enough). ``check=True`` runs them even when fx needs nothing, so inputs the model cannot
    run on raise :class:`InputsError` (named ``argument``) here rather than later. ``Graph.passes`` counts
    the forward passes run. The model is left exactly as it was.

    >>> from torch import nn
    >>> g = trace(nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)))
    >>> g.method, [str(l.act_in) for l in g.layers]
    ('fx', ['None', 'tanh'])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    try:
        b = _build_fx(model)
    except Exception as exc:  # noqa: BLE001 - any fx failure sends us to the fallback
        first = (str(exc).strip().splitlines() or [""])[0]
        reason = f"torch.fx could not trace the model ({type(exc).__name__}: {first[:200]})"
    else:
        passes, opaque = 0, bool(_opaque_leaves(b))
        if example_inputs is not None and (check or opaque):
            run = _build_hooks(model, example_inputs, argument)  # inputs the model cannot run on: InputsError
            passes = 1
            if opaque:
                _add_leaf_uses(b, run)
        graph = _analyse(b, "fx", None)
        graph.passes = passes
        return graph
    if example_inputs is not None:
        b = _build_hooks(model, example_inputs, argument)
        graph = _analyse(b, "hooks", reason)
        graph.passes = 1
        return graph
    b = _build_modules(model)
    return _analyse(b, "modules", reason + "; no example_inputs were given, so the leaf modules are taken in "
                    "registration order: functional activations and residual branches are not visible")
