"""Predict, before running anything, the per-layer forward and backward variance of a model at init.

``propagate(model)`` walks :func:`initlab.trace`'s graph once forward and once backward. For every
tensor it carries, **per unit** (feature of a Linear output, channel of a conv output), the mean and
variance of the unit's value over inputs, and, while the tensor is an elementwise function of a Gaussian,
that function, so chains of activations are integrated exactly. Tracking units rather than one number
per tensor is what lets the prediction use the *actual* weights: the mean of a ReLU or logistic unit is
carried through ``W`` as a vector, so the offsets it gives each next unit are those of this very weight
matrix, not of an average one (with one number per tensor the prediction drifts by ~1% per layer).

Forward, for a layer with weight ``W`` (rows = output units), bias ``b`` and an input whose unit ``j``
has mean ``m_j`` and variance ``v_j`` (mean-field: units uncorrelated; Glorot & Bengio 2010, He et al.
2015, Poole et al. 2016):

    E[h_i]   = sum_j W_ij m_j + b_i
    Var[h_i] = sum_j W_ij^2 v_j

and ``h_i`` is Gaussian (central limit). Through an activation ``f``: ``E[f(h_i)]`` and ``E[f(h_i)^2]`` by
:func:`initlab.gains.expect` (quadrature), which includes the mean shift of logistic units. The reported
``forward_var`` is the variance over all elements (units and examples), as a probe measures it.

Backward, with a unit-variance cotangent at the model's output and gradients independent of the forward
signal (the usual mean-field assumption): through a layer ``E[g_j^2] = sum_i W_ij^2 E[g_i^2]``; through an
elementwise run ``r`` (``relu``, ``tanh(relu(.))``, ``x * sigmoid(x)``) ``E[g_in^2] = E[r'(h)^2] E[g_out^2]``,
the whole run differentiated at once; at a tensor read by several ops (a residual fork) the gradient
variances add.

Other operations:

* Conv / ConvTranspose: as linear maps per channel with the kernel taps summed; each input of a conv
  feeds ``out/groups * prod(kernel) / prod(stride)`` outputs. **Padding is ignored**: border outputs sum
  fewer inputs, so the prediction is for the interior (a note says so).
* BatchNorm (training mode), LayerNorm, GroupNorm, InstanceNorm: re-normalise (per channel over the
  batch, or across features per example), then the affine ``gamma, beta``; backward
  ``E[g_x^2] = gamma^2 E[g_y^2] / Var(x)``. BatchNorm in eval mode applies its running statistics. RMSNorm
  divides by the root mean square.
* Residual ``+``: means and variances add (the two paths are taken as uncorrelated); ``x * y`` of two
  tensors: product of independent moments. Elementwise ops with constants (``0.5 * x``, ``x + 1``, a
  scalar ReZero gate) are replayed on the quadrature grid; adding or multiplying a constant tensor (a
  positional embedding, a per-channel scale) spreads its entries over the units as fixed offsets/scales.
* Dropout (training mode): second moment ``/ (1 - p)``, gradient likewise; identity in eval mode.
* Average pooling over ``k`` elements: variance ``/ k`` (elements taken as uncorrelated), gradient
  ``/ (k * prod(stride))``; max pooling of a monotone function of a Gaussian: exact moments of the
  maximum of ``k`` samples; the gradient (``/ prod(stride)``) reaches only each window's winner, whose
  slope is averaged over the maximum's distribution (the winner of ``relu`` units is positive far more
  often than a random unit). Adaptive pooling needs ``example_inputs`` to
  know the input size.
* Flatten and view: unchanged (a conv's channels are repeated over the positions a Linear sees);
  permutes, indexing and concatenation pool the units into one.

Anything else (recurrent layers, attention, functional pooling whose kernel the graph does not record,
custom layers) is a **gap**: listed in ``Prediction.gaps``, passed through unchanged, and every
prediction downstream of it (forward) or upstream of it (backward) is marked ``reliable=False``.
BatchNorm and dropout follow each module's ``.training`` flag, i.e. what a forward pass would do.

Speed: units whose stds agree within 10% (coefficient of variation) share one quadrature over an
adaptively refined grid of unit means with cubic interpolation (relative error below ``1e-5``), so a
100-layer, 512-wide MLP is predicted in a few tenths of a second.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from initlab.gains import expect
from initlab.semantics import describe
from initlab.theory.meanfield import derivative

_GRID_PROBE = torch.linspace(-3.0, 3.0, 7, dtype=torch.float64)
_ADDS = ("add", "iadd", "radd", "sub", "isub", "rsub")
_MULS = ("mul", "imul", "rmul")
# reshapes that keep each unit's elements together (flatten of NCHW is channel-major)
_KEEP_UNITS = ("flatten", "view", "reshape", "contiguous", "squeeze", "unsqueeze", "to", "float", "type_as",
               "view_as", "reshape_as", "unflatten", "dropout")
_NON_TENSOR = ("size", "dim", "numel", "getattr", "len", "type", "device", "dtype")  # shape queries, not data
_DIRECT_UNITS = 32  # up to this many units: one quadrature per unit
_SLOPE_TOL = 1e-2  # the same for E[f'(h)^2] (see _moments_of)
_REL_TOL = 1e-5  # interpolation error allowed on the grid of unit means (relative to the largest value)
_S_SPREAD = 0.1  # unit stds with a coefficient of variation up to this share one quadrature


# --------------------------------------------------------------------------------------------------
# Public result types


@dataclass(frozen=True)
class LayerPrediction:
    """Predicted statistics of one parametrized layer's output (the pre-activation for Linear/Conv).

    ``forward_mean``, ``forward_var`` / ``forward_std``, ``forward_second_moment``: over the output's elements
    (units and examples);
    ``grad_var`` / ``grad_std``: second moment / RMS of the loss gradient at the output, for a
    unit-variance cotangent at the model's output; ``reliable``: False when a gap lies on the path;
    ``normalized``: the output feeds a normalization layer directly (Linear -> BatchNorm).
    """

    name: str
    kind: str
    forward_mean: float
    forward_var: float
    forward_std: float
    grad_var: float
    grad_std: float
    reliable: bool = True
    note: str = ""
    normalized: bool = False  # its output goes straight into a normalization layer

    @property
    def forward_second_moment(self) -> float:
        """``E[h^2] = var + mean^2`` of the output (the quantity the length map propagates)."""
        return self.forward_var + self.forward_mean**2


@dataclass
class Prediction:
    """The result of :func:`propagate`: ``layers`` (one :class:`LayerPrediction` each, execution order),
    ``gaps`` (operations the theory does not cover), ``notes`` (approximations made) and the inputs."""

    layers: list[LayerPrediction]
    gaps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    input_var: float = 1.0
    input_mean: float = 0.0
    method: str = ""

    def layer(self, name: str) -> LayerPrediction:
        """The prediction for the layer with qualified module name ``name``."""
        for lp in self.layers:
            if lp.name == name:
                return lp
        raise KeyError(f"no layer named {name!r} in the prediction; layers: {[lp.name for lp in self.layers]}")

    def __iter__(self) -> Iterator[LayerPrediction]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def names(self) -> list[str]:
        return [lp.name for lp in self.layers]

    @property
    def forward_std(self) -> np.ndarray:
        return np.array([lp.forward_std for lp in self.layers])

    @property
    def grad_std(self) -> np.ndarray:
        return np.array([lp.grad_std for lp in self.layers])

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [asdict(lp) for lp in self.layers], "gaps": list(self.gaps), "notes": list(self.notes),
                "input_var": self.input_var, "input_mean": self.input_mean, "method": self.method}

    def table(self, color: bool | None = None) -> str:
        """Terminal table: one row per layer, then the gaps and notes."""
        from initlab._format import Column, render

        cols = [Column(lambda lp: lp.name or "<root>", "layer"), Column("kind"), Column("forward_mean", "fwd mean"),
                Column("forward_std", "fwd std"), Column("grad_std", "grad std")]
        if not all(lp.reliable for lp in self.layers):
            cols.append(Column(lambda lp: "" if lp.reliable else "after a gap", ""))
        extra = [f"gap: {g}" for g in self.gaps] + [f"note: {n}" for n in self.notes]
        return render(self.layers, cols, color=color, footer="\n".join(extra) or None,
                      title=f"predicted propagation (input var {self.input_var:g}, mean {self.input_mean:g}; "
                            "grad for a unit-variance cotangent at the output)")

    def __str__(self) -> str:
        return self.table(color=False)

    def as_probe_result(self, grad_scale: float = 1.0) -> Any:
        """The prediction dressed as probe data (:class:`initlab.probing.result.ProbeData`: ``act_std`` /
        ``grad_std`` per layer), so
        the probe's figures draw it: ``initlab.plot_profile({"measured": r, "theory": p.as_probe_result()})``.
        ``grad_scale`` multiplies the gradient std (``1 / batch`` matches a probe's default cotangent)."""
        from initlab.probing.result import ProbeData
        from initlab.probing.stats import LayerStats

        stats = [LayerStats(name=lp.name, kind=lp.kind, index=k, act_mean=lp.forward_mean, act_std=lp.forward_std,
                            grad_std=lp.grad_std * grad_scale, is_layer=True, normalized=lp.normalized)
                 for k, lp in enumerate(self.layers)]
        return ProbeData(layers=stats, backward="theory", method=self.method, notes=list(self.gaps))


class _Gap(Exception):
    pass


# --------------------------------------------------------------------------------------------------
# Per-unit Gaussian expectations


def _unit_expect(F: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], mu: np.ndarray, var: np.ndarray,
                 k: int, tol: tuple[float, ...] | None = None) -> np.ndarray:
    """``E[F(h, z)]`` per unit, ``h = mu_i + s_i z``, ``z ~ N(0, 1)``; ``F`` returns ``k`` stacked values.

    Many units whose stds agree (coefficient of variation <= ``_S_SPREAD``, as the random row norms of a
    weight give) share one std, their RMS one: the spread enters only at second order and averages out
    over the next layer. ``E[F(mu + s z)]`` is then a smooth function of ``mu`` (a Gaussian blur of ``F``),
    computed on an adaptively refined grid of means and interpolated (see :func:`_adaptive`). Otherwise
    one quadrature per unit. ``tol``: interpolation tolerance per value (default ``_REL_TOL``).
    """
    mu = np.asarray(mu, dtype=np.float64).reshape(-1)
    var = np.maximum(np.asarray(var, dtype=np.float64).reshape(-1), 0.0)
    mu, var = (np.ascontiguousarray(a) for a in np.broadcast_arrays(mu, var))
    s = np.sqrt(var)
    s_eff = math.sqrt(float(var.mean()))
    if mu.size > _DIRECT_UNITS and float(s.std()) <= _S_SPREAD * float(s.mean()):
        return _adaptive(F, mu, s_eff, k, np.asarray(tol if tol is not None else (_REL_TOL,) * k)[:, None])
    return _direct(F, mu, s, k)


def _lagrange(xs: np.ndarray, vals: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Piecewise cubic Lagrange interpolation of ``vals`` (k, G) at ``q`` (4 nearest nodes of ``xs``)."""
    g = xs.size
    if g < 4:
        return np.stack([np.interp(q, xs, v) for v in vals])
    i = np.clip(np.searchsorted(xs, q, side="right") - 2, 0, g - 4)
    nodes = xs[i[:, None] + np.arange(4)]  # (n, 4)
    w = np.ones_like(nodes)
    for j in range(4):
        for m in range(4):
            if m != j:
                w[:, j] *= (q - nodes[:, m]) / (nodes[:, j] - nodes[:, m])
    picked = vals[:, i[:, None] + np.arange(4)]  # (k, n, 4)
    return (picked * w).sum(-1)


def _adaptive(F: Callable, mu: np.ndarray, s: float, k: int, tol: np.ndarray) -> np.ndarray:
    """``E[F(m + s z)]`` at every ``m`` in ``mu`` from an adaptively refined grid of means.

    Start with 17 equally spaced means over the units' range; then, for every interval holding units,
    evaluate the midpoint and compare with the cubic interpolant: intervals off by more than ``tol``
    (relative to the largest value) are halved again, the others are done. The midpoints
    join the grid either way. The cost follows the function's features (a kink blurred over ``s``, the
    logistic's bend), not the number of units.
    """
    lo, hi = float(mu.min()), float(mu.max())
    if hi - lo <= 1e-12 * (abs(lo) + s):  # one value for all units
        return np.repeat(_direct(F, mu[:1], np.array([s]), k), mu.size, axis=1)
    if s == 0:
        return _direct(F, mu, np.zeros(mu.size), k)
    xs = np.linspace(lo, hi, 33)
    vals = _direct(F, xs, np.full(xs.size, s), k)
    scale = np.abs(vals).max(axis=1, keepdims=True) + 1e-300
    active = np.ones(xs.size, dtype=bool)  # active[i]: interval [xs[i], xs[i+1]] still to be checked
    for _ in range(48):
        cell = np.clip(np.searchsorted(xs, mu, side="right") - 1, 0, xs.size - 2)
        holds = np.zeros(xs.size, dtype=bool)
        holds[cell] = True
        cand = np.flatnonzero(active[:-1] & holds[:-1])
        if cand.size == 0 or len(xs) > 4 * mu.size:
            break
        mids = 0.5 * (xs[cand] + xs[cand + 1])
        vm = _direct(F, mids, np.full(mids.size, s), k)
        bad = (np.abs(_lagrange(xs, vals, mids) - vm) / scale > tol).any(0)
        flags = np.zeros(xs.size, dtype=bool)
        flags[cand[bad]] = True
        xs = np.concatenate([xs, mids])
        vals = np.concatenate([vals, vm], axis=1)
        active = np.concatenate([flags, bad])
        order = np.argsort(xs, kind="stable")
        xs, vals, active = xs[order], vals[:, order], active[order]
    return _lagrange(xs, vals, mu)


def _direct(F: Callable, mu: np.ndarray, s: np.ndarray, k: int) -> np.ndarray:
    MU = torch.from_numpy(np.ascontiguousarray(mu)[:, None])
    S = torch.from_numpy(np.where(s > 0, s, 1.0)[:, None])
    out = expect(lambda t: F(t + MU, t / S), s)
    return np.asarray(out, dtype=np.float64).reshape(k, mu.size)


# --------------------------------------------------------------------------------------------------
# Tensor states


@dataclass
class _State:
    """Per-unit mean and variance of a tensor, and how it was made.

    ``src``/``fn``: unit ``i`` is ``fn(h_i)`` with ``h_i ~ N(src[0][i], src[1][i])`` (``fn`` None: ``h``
    itself; the same ``fn`` for every unit); None once an op mixes things (a moment-matched Gaussian then
    stands in). ``base``/``chain``: the op that started the current run of elementwise ops and the
    function from its output to this tensor, so the backward pass differentiates the whole run at once
    instead of multiplying per-op factors that are not independent.
    """

    mean: np.ndarray
    var: np.ndarray
    src: tuple[np.ndarray, np.ndarray] | None = None
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    tainted: bool = False
    base: int | None = None
    chain: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def units(self) -> int:
        return int(self.mean.size)

    @property
    def m2(self) -> np.ndarray:
        return self.var + self.mean**2

    def total(self) -> tuple[float, float]:
        """(mean, variance) over all elements, units weighted equally."""
        m = float(self.mean.mean())
        return m, max(float(self.m2.mean()) - m * m, 0.0)

    def gaussian(self) -> tuple[np.ndarray, np.ndarray, Callable | None, bool]:
        """(mu, var, fn, exact): the per-unit Gaussians it is a function of (moment-matched if unknown)."""
        if self.src is not None:
            return self.src[0], self.src[1], self.fn, True
        return self.mean, self.var, None, False


def _gauss(mu: Any, var: Any, tainted: bool = False) -> _State:
    mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    var = np.maximum(np.atleast_1d(np.asarray(var, dtype=np.float64)), 0.0)
    mu, var = (np.array(a) for a in np.broadcast_arrays(mu, var))
    return _State(mu, var, (mu, var), None, tainted)


def _fit(a: np.ndarray, n: int, *, second: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Re-express a per-unit array over ``n`` units: broadcast, repeat (a channel over its positions) or
    pool groups of units. With ``second`` (the variances when ``a`` holds means), pooling mixes them."""
    u = a.size
    if u == n:
        return a, second
    if u == 1:
        return np.full(n, a[0]), None if second is None else np.full(n, second[0])
    if n % u == 0:
        return np.repeat(a, n // u), None if second is None else np.repeat(second, n // u)
    groups = n if u % n == 0 else 1
    am = a.reshape(groups, -1)
    m = am.mean(1)
    if second is None:
        return (m if groups == n else np.full(n, m[0])), None
    v = (second.reshape(groups, -1) + am**2).mean(1) - m**2
    if groups != n:
        m, v = np.full(n, m[0]), np.full(n, v[0])
    return m, np.maximum(v, 0.0)


def _fit_state(x: _State, n: int) -> _State:
    if x.units == n:
        return x
    mean, var = _fit(x.mean, n, second=x.var)
    if x.src is not None and (x.units == 1 or n % x.units == 0):  # broadcast / repeat keeps the structure
        src = (_fit(x.src[0], n)[0], _fit(x.src[1], n)[0])
        return _State(mean, var, src, x.fn, x.tainted, x.base, x.chain)
    return _State(mean, var, None, None, x.tainted)


def _pooled(x: _State) -> _State:
    """All units pooled into one (a mixture), as after a permute or a concatenation."""
    m, v = x.total()
    return _State(np.array([m]), np.array([v]), None, None, x.tainted)


_Fn = Callable[[torch.Tensor], torch.Tensor]


def _moments_of(state: _State, g: _Fn, slope_of: _Fn | None = None) -> tuple[_State, np.ndarray | None, bool]:
    """State of ``g(x)`` (per unit) and, if ``slope_of`` is given, ``E[slope_of'(x)^2]`` per unit.

    The bool is False when ``x`` had to be moment-matched to a Gaussian (approximate)."""
    mu, var, fn, exact = state.gaussian()
    comp = g if fn is None else (lambda h, _g=g, _f=fn: _g(_f(h)))
    d = derivative(slope_of) if slope_of is not None else None

    def F(h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = comp(h)
        parts = [y, y * y]
        if d is not None:
            parts.append(d(h if fn is None else fn(h)) ** 2)
        return torch.stack(parts)

    k = 3 if d is not None else 2
    # E[f'(h)^2] of a kinked f has quadrature noise up to ~5e-3 once the kink leaves z = 0 (a step inside a
    # Gauss-Legendre panel), so interpolating it tighter than that buys nothing
    vals = _unit_expect(F, mu, var, k, (_REL_TOL, _REL_TOL, _SLOPE_TOL)[:k])
    mean = vals[0]
    y = _State(mean, np.maximum(vals[1] - mean**2, 0.0), (mu, var), comp, state.tainted)
    return y, (vals[2] if d is not None else None), exact


# --------------------------------------------------------------------------------------------------
# Layers


def _prod(xs: Any) -> int:
    xs = (xs,) if isinstance(xs, int) else tuple(xs)
    return int(math.prod(xs))


@dataclass
class _LinearMap:
    """A weight as per-unit linear maps: ``wsum``/``wsq`` (out, in/groups) are the sums of the weights and
    of their squares over kernel taps; ``fwd``/``back`` scale them for strided (transposed) convs."""

    wsum: np.ndarray
    wsq: np.ndarray
    bias: np.ndarray
    groups: int
    in_units: int
    fwd: float = 1.0
    back: float = 1.0
    note: str = ""
    # zero padding: (share of output positions, wsum, wsq) per class of positions (empty: none)
    positions: list[tuple[float, np.ndarray, np.ndarray]] = field(default_factory=list)

    def forward(self, mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.positions:
            return (self.fwd * _gmv(self.wsum, mean, self.groups) + self.bias,
                    self.fwd * _gmv(self.wsq, var, self.groups))
        # pooled over positions: the mean of the per-class variances plus the spread of the class means
        means = [(c, _gmv(ws, mean, self.groups) + self.bias, _gmv(wq, var, self.groups)) for c, ws, wq in
                 self.positions]
        m = sum(c * mu for c, mu, _ in means)
        return m, sum(c * (v + (mu - m) ** 2) for c, mu, v in means)

    def backward(self, g: np.ndarray) -> np.ndarray:
        if not self.positions:
            return self.back * _gmv_t(self.wsq, g, self.groups)
        return self.back * sum(c * _gmv_t(wq, g, self.groups) for c, _, wq in self.positions)


def _gmv(M: np.ndarray, x: np.ndarray, groups: int) -> np.ndarray:
    out, ipg = M.shape
    return np.einsum("goi,gi->go", M.reshape(groups, out // groups, ipg), x.reshape(groups, ipg)).reshape(out)


def _gmv_t(M: np.ndarray, y: np.ndarray, groups: int) -> np.ndarray:
    out, ipg = M.shape
    return np.einsum("goi,go->gi", M.reshape(groups, out // groups, ipg),
                     y.reshape(groups, out // groups)).reshape(groups * ipg)


def _padding_classes(module: nn.Module, in_shape: tuple[int, ...] | None
                     ) -> list[tuple[float, np.ndarray]] | None:
    """Output positions of a zero-padded conv grouped by which kernel taps land inside the input: a list of
    (share of the output positions, tap mask over the flattened kernel). ``[]`` without zero padding; None
    when padding matters but the input size is unknown. Interior positions form one class, so a big feature
    map costs no more than a small one."""
    spatial = len(module.kernel_size)
    pad = module.padding
    if getattr(module, "padding_mode", "zeros") != "zeros" or pad == "valid" or (
            not isinstance(pad, str) and not any(pad)):
        return []
    if in_shape is None or len(in_shape) < spatial:
        return None
    per_dim = []
    for dim in range(spatial):
        size, k = in_shape[len(in_shape) - spatial + dim], module.kernel_size[dim]
        s, d = module.stride[dim], module.dilation[dim]
        p = (d * (k - 1)) // 2 if pad == "same" else pad[dim]
        outs = size if pad == "same" else (size + 2 * p - d * (k - 1) - 1) // s + 1
        if outs <= 0:
            return None
        counts: dict[tuple[bool, ...], int] = {}
        for o in range(outs):
            key = tuple(0 <= o * s - p + j * d < size for j in range(k))
            counts[key] = counts.get(key, 0) + 1
        per_dim.append([(c / outs, np.array(m, dtype=np.float64)) for m, c in counts.items()])
    classes = [(1.0, np.ones(1))]
    for options in per_dim:
        classes = [(w1 * w2, np.multiply.outer(m1, m2).reshape(-1)) for w1, m1 in classes for w2, m2 in options]
    return classes


def _linear_map(module: nn.Module, in_shape: tuple[int, ...] | None = None,
                weight: Any = None) -> _LinearMap | None:
    """Read a Linear/Conv/ConvTranspose weight (None for other modules); raises _Gap if unreadable.

    ``weight``: a :class:`initlab.semantics.ParamInfo` of another module's matrix-product weight (GPT-2's
    Conv1D ``(in, out)``), read with its layout; ``in_shape``: the conv's input shape, for zero padding."""
    conv = nn.modules.conv
    if weight is not None and not isinstance(module, (nn.Linear, conv._ConvNd)) and weight.param.dim() == 2:
        wt = weight.param.detach().cpu().to(torch.float64)
        a = (wt.t() if weight.layout == "lasagne_dense" else wt).numpy()
        return _LinearMap(a, np.square(a), np.zeros(a.shape[0]), 1, a.shape[1])
    if not isinstance(module, (nn.Linear, conv._ConvNd)):
        return None
    w = module.weight
    if not isinstance(w, torch.Tensor) or w.is_meta:
        raise _Gap(f"{type(module).__name__}: weight not readable (on the meta device)")
    b = getattr(module, "bias", None)
    note = ""
    if isinstance(module, nn.Linear):
        wt = w.detach().cpu()
        a = (wt if wt.dtype in (torch.float32, torch.float64) else wt.float()).numpy().astype(np.float64)
        bias = b.detach().cpu().double().numpy() if isinstance(b, torch.Tensor) and not b.is_meta \
            else np.zeros(a.shape[0])
        return _LinearMap(a, np.square(a), bias, 1, a.shape[1])
    w = w.detach().cpu().to(torch.float64)
    if isinstance(module, conv._ConvTransposeNd):
        # weight (in, out/groups, *k): an output position is hit by prod(k)/prod(stride) taps on average
        groups = module.groups
        cin, opg = w.shape[:2]
        ws = w.reshape(groups, cin // groups, opg, -1)
        wsum = ws.sum(-1).transpose(1, 2).reshape(groups * opg, cin // groups)
        wsq = ws.pow(2).sum(-1).transpose(1, 2).reshape(groups * opg, cin // groups)
        fwd, back = 1.0 / _prod(module.stride), 1.0
        note = "transposed conv: taps per output averaged over positions (stride), padding ignored"
    else:
        groups = module.groups
        flat = w.reshape(w.shape[0], w.shape[1], -1)
        wsum, wsq = flat.sum(-1), flat.pow(2).sum(-1)
        fwd, back = 1.0, 1.0 / _prod(module.stride)
        classes = _padding_classes(module, in_shape)
        positions: list[tuple[float, np.ndarray, np.ndarray]] = []
        if classes is None:
            note = "conv: zero padding ignored (input size unknown: pass example_inputs to model it)"
        elif len(classes) > 1:
            flat_np = flat.numpy()
            positions = [(share, flat_np @ mask, np.square(flat_np) @ mask) for share, mask in classes]
            note = "conv: zero padding modelled (output positions grouped by the taps inside the input)"
    out_units = wsum.shape[0]
    bias = b.detach().cpu().to(torch.float64).numpy() if isinstance(b, torch.Tensor) and not b.is_meta \
        else np.zeros(out_units)
    lm = _LinearMap(wsum.numpy(), wsq.numpy(), bias, groups, groups * wsum.shape[1], fwd, back, note)
    lm.positions = positions if not isinstance(module, conv._ConvTransposeNd) else []
    return lm


def _vec(t: Any, n: int, default: float) -> np.ndarray:
    if isinstance(t, torch.Tensor) and not t.is_meta:
        return _fit(t.detach().cpu().to(torch.float64).reshape(-1).numpy(), n)[0]
    return np.full(n, default)


def _norm_affine(module: nn.Module | None, target: Any, x: _State, gain: Any = None, shift: Any = None
                 ) -> tuple[np.ndarray, np.ndarray, str]:
    """Per-unit ``(a, c)`` with ``y = a * x + c`` for a normalization op (its statistics taken from ``x``);
    ``gain`` / ``shift``: its affine parameters as :mod:`initlab.semantics` found them (a norm module of
    another library: LlamaRMSNorm, T5LayerNorm)."""
    bn = nn.modules.batchnorm
    inst = nn.modules.instancenorm
    eps = float(getattr(module, "eps", None) or 1e-5)
    name = _op_name(target)
    note = ""
    if module is None:
        note = "functional normalization: affine parameters not read"
        if "batch" in name or "instance" in name:
            kind = "unit"
        elif "rms" in name:
            kind = "rms"
        elif name in ("layer_norm", "group_norm"):
            kind = "all"
        else:
            raise _Gap(f"functional {name}: no variance rule")
        n = x.units
        gamma, beta, groups = np.ones(n), np.zeros(n), 1
    elif isinstance(module, nn.LocalResponseNorm):
        raise _Gap("LocalResponseNorm: no variance rule")
    else:
        if isinstance(module, (bn._BatchNorm, inst._InstanceNorm)):
            n, kind, groups = module.num_features, "unit", 1
            if isinstance(module, bn._BatchNorm) and not module.training and module.track_running_stats \
                    and module.running_mean is not None:
                kind = "running"
        elif isinstance(module, nn.GroupNorm):
            n, kind, groups = module.num_channels, "all", module.num_groups
        elif hasattr(nn, "RMSNorm") and isinstance(module, nn.RMSNorm):
            n, kind, groups = x.units, "rms", 1
        else:  # LayerNorm and friends: across the normalized features of each example
            n, kind, groups = x.units, "all", 1
        if not type(module).__module__.startswith("torch."):
            gamma, beta = _vec(gain, n, 1.0), _vec(shift, n, 0.0)
        else:
            gamma, beta = _vec(getattr(module, "weight", None), n, 1.0), _vec(getattr(module, "bias", None), n, 0.0)
    xs = _fit_state(x, n)
    if kind == "running":
        rm, rv = _vec(module.running_mean, n, 0.0), _vec(module.running_var, n, 1.0)
        a = gamma / np.sqrt(rv + eps)
        return a, beta - a * rm, note
    if kind == "unit":
        a = gamma / np.sqrt(xs.var + eps)
        return a, beta - a * xs.mean, note
    if kind == "rms":
        a = gamma / math.sqrt(float(xs.m2.mean()) + eps)
        return a, np.zeros(n), note
    mm = xs.mean.reshape(groups, -1)
    mu_g = mm.mean(1, keepdims=True)
    var_g = (xs.var.reshape(groups, -1) + (mm - mu_g) ** 2).mean(1, keepdims=True)
    a = gamma / np.repeat(np.sqrt(var_g + eps), n // groups)
    return a, beta - a * np.repeat(mu_g, n // groups), note


def _affine(x: _State, a: np.ndarray, c: np.ndarray) -> _State:
    """State of ``a * x + c`` (per unit)."""
    x = _fit_state(x, a.size)
    mean, var = a * x.mean + c, a * a * x.var
    if x.src is not None and x.fn is None:  # a Gaussian stays one
        return _gauss(mean, var, x.tainted)
    if x.src is not None and np.ptp(a) == 0 and np.ptp(c) == 0:  # one map for all units: keep the structure
        y, _, _ = _moments_of(x, lambda t, _a=float(a[0]), _c=float(c[0]): _a * t + _c)
        return y
    return _State(mean, var, None, None, x.tainted)


# --------------------------------------------------------------------------------------------------
# Pooling


def _pool_size(module: nn.Module, in_shape: tuple[int, ...] | None) -> tuple[int, int, bool]:
    """(elements per window, prod(stride), is_average) of a pooling module."""
    pooling = nn.modules.pooling
    name = type(module).__name__
    nd = 3 if "3d" in name else 2 if "2d" in name else 1
    if isinstance(module, (pooling._AdaptiveAvgPoolNd, pooling._AdaptiveMaxPoolNd)):
        if in_shape is None:
            raise _Gap(f"{name}: input size unknown (pass example_inputs)")
        size = in_shape[-nd:]
        out = module.output_size
        out = (out,) * nd if isinstance(out, int) or out is None else tuple(out)
        out = tuple(s if o is None else o for o, s in zip(out, size))
        k = max(1, _prod(size) // max(1, _prod(out)))
        return k, k, isinstance(module, pooling._AdaptiveAvgPoolNd)
    if isinstance(module, (pooling._AvgPoolNd, pooling._MaxPoolNd)):
        ks = module.kernel_size
        ks = (ks,) * nd if isinstance(ks, int) else tuple(ks)
        st = module.stride if module.stride is not None else ks
        st = (st,) * nd if isinstance(st, int) else tuple(st)
        # a max pool's dilation changes which elements are compared, not how many: it does not enter here
        return _prod(ks), _prod(st), isinstance(module, pooling._AvgPoolNd)
    raise _Gap(f"{name}: no variance rule")


def _max_of(x: _State, k: int) -> tuple[_State, bool]:
    """Per-unit moments of the maximum of ``k`` independent copies of ``x``; the bool says whether ``x`` is a
    non-decreasing function of its Gaussian (then exactly; otherwise ``x`` is moment-matched first)."""
    if k <= 1:
        return x, False
    mu, var, fn, _ = x.gaussian()
    f = fn if fn is not None else (lambda t: t)
    with torch.no_grad():
        grid = torch.linspace(-6, 6, 241, dtype=torch.float64) * max(float(np.sqrt(var).max()), 1e-12)
        monotone = bool((torch.diff(f(grid + float(mu.mean()))) >= -1e-12).all())
    if not monotone:
        f, mu, var = (lambda t: t), x.mean, x.var
    # max_i f(h_i) = f(max_i h_i) for non-decreasing f; the max of k standard normals has density k phi Phi^(k-1)

    def F(h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = f(h)
        w = k * torch.special.ndtr(z) ** (k - 1)
        return torch.stack([y * w, y * y * w])

    vals = _unit_expect(F, mu, var, 2)
    return _State(vals[0], np.maximum(vals[1] - vals[0] ** 2, 0.0), None, None, x.tainted), monotone


def _max_slope2(x: _State, base: _State, k: int) -> np.ndarray:
    """``E[chain'(t)^2]`` over the element a max-pool window selects (the largest of ``k``), per unit.

    The gradient of a max pool reaches only the winner, and the winner of ``relu(h)`` is positive far more
    often than a random element (``1 - 2^-k`` against ``1/2``): multiplying ``E[relu'^2]`` by ``1/k`` would
    miss a factor ``(1 - 2^-k) * 2`` (1.9 for 2x2 windows)."""
    mu, var = x.src
    fnb = base.fn
    d = derivative(x.chain)

    def F(h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        t = h if fnb is None else fnb(h)
        return (d(t) ** 2 * (k * torch.special.ndtr(z) ** (k - 1)))[None]

    return _unit_expect(F, mu, var, 1, (_SLOPE_TOL,))[0]


# --------------------------------------------------------------------------------------------------
# Shapes (only for adaptive pooling)


def _input_shapes(model: nn.Module, example_inputs: Any, modules: list[nn.Module]) -> dict[int, tuple[int, ...]]:
    """Input shape of each module in ``modules`` from one forward pass; the model is left as it was."""
    if example_inputs is None or not modules:
        return {}
    shapes: dict[int, tuple[int, ...]] = {}

    def hook(mod: nn.Module, args: tuple) -> None:
        if args and isinstance(args[0], torch.Tensor):
            shapes.setdefault(id(mod), tuple(args[0].shape))

    handles = [m.register_forward_pre_hook(hook) for m in modules]
    buffers = {n: t.detach().clone() for n, t in model.named_buffers()}
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            if isinstance(example_inputs, dict):
                model(**example_inputs)
            elif isinstance(example_inputs, (tuple, list)):
                model(*example_inputs)
            else:
                model(example_inputs)
    except Exception:  # noqa: BLE001 - inputs the model rejects: the pools stay unsized (reported as gaps)
        pass
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for n, t in model.named_buffers():
                if n in buffers and t.shape == buffers[n].shape:
                    t.copy_(buffers[n])
    return shapes


# --------------------------------------------------------------------------------------------------
# The walk


def _check_moment(name: str, value: Any, non_negative: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer, torch.Tensor)):
        raise TypeError(f"{name} must be a number; got {type(value).__name__}")
    if isinstance(value, torch.Tensor) and value.numel() != 1:
        raise TypeError(f"{name} must be a number; got a tensor of shape {tuple(value.shape)}")
    v = float(value)
    if not math.isfinite(v) or (non_negative and v < 0):
        raise ValueError(f"{name} must be a finite{' non-negative' if non_negative else ''} number; got {value!r}")
    return v


def _constant_operand(op: Any, ops: list[Any], model: nn.Module, graph: Any) -> torch.Tensor | None:
    """The one tensor constant (parameter or buffer) an elementwise op combines its data input with."""
    found: list[torch.Tensor] = []
    for j in op.inputs:
        src = ops[j]
        if src.constant and src.kind == "other" and isinstance(src.target, str):  # fx get_attr
            obj: Any = model
            try:
                for part in src.target.split("."):
                    obj = getattr(obj, part)
            except AttributeError:
                return None
            if isinstance(obj, torch.Tensor):
                found.append(obj)
    if not found and op.layer is not None:  # hooks mode: parameters are not ops
        try:
            names = graph.layer(op.layer).params
        except KeyError:
            names = []
        found = [model.get_parameter(n) for n in names]
    if len(found) != 1 or found[0].is_meta or not found[0].is_floating_point():
        return None
    return found[0].detach().cpu().to(torch.float64)


def _with_constant(x: _State, c: torch.Tensor, name: str) -> tuple[_State, np.ndarray]:
    """``x + c``, ``x - c`` or ``x * c`` for a constant tensor ``c`` (a positional embedding, a per-channel
    scale): its entries act as fixed offsets / scales spread over the units (per unit when its last
    dimension matches them), independent of ``x``. Returns the state and the backward factor."""
    u = x.units
    flat = c.reshape(-1, c.shape[-1]) if c.ndim and c.shape[-1] == u and u > 1 else c.reshape(-1, 1)
    cm = flat.mean(0).numpy()
    cv = flat.var(0, unbiased=False).numpy()
    cm, cv = _fit(cm, u)[0], _fit(cv, u)[0]
    if name in _MULS:
        c2 = cv + cm * cm
        mean = x.mean * cm
        return _State(mean, np.maximum(x.m2 * c2 - mean * mean, 0.0), None, None, x.tainted), c2
    sign = -1.0 if "sub" in name and name != "rsub" else 1.0
    mean = (-x.mean if name == "rsub" else x.mean) + sign * cm
    return _State(mean, x.var + cv, None, None, x.tainted), np.ones(u)


def _op_name(target: Any) -> str:
    name = target if isinstance(target, str) else getattr(target, "__name__", type(target).__name__)
    return name.strip("_")


def _chain_fn(op: Any, ins: list[int], states: list[_State | None]) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The elementwise op as a function of its inputs' common base value, or None if it cannot be replayed.

    Each data input ``j`` is ``chain_j(t)`` of the same base value ``t``; the op is replayed with its
    constants (``0.5 * x``, a scalar gate) on those.
    """
    chains = {j: states[j].chain for j in ins}
    if op.activation is not None and not op.activation.is_linear and len(ins) == 1:
        act_fn = op.activation.fn
        c = chains[ins[0]]
        fn = act_fn if c is None else (lambda t, _f=act_fn, _c=c: _f(_c(t)))
    elif op.replay is not None:

        def fn(t: torch.Tensor, _op=op, _chains=chains) -> torch.Tensor:
            return _op.replay({j: (t if c is None else c(t)) for j, c in _chains.items()})
    else:
        return None
    try:
        with torch.no_grad():
            probe = _GRID_PROBE.clone()
            y = fn(probe)
            y2 = fn(torch.stack([probe, probe + 0.25]))  # must also work on the 2-D quadrature grid
    except Exception:  # noqa: BLE001 - constants that do not broadcast against the grid
        return None
    if not (isinstance(y, torch.Tensor) and y.shape == probe.shape and y.is_floating_point()
            and isinstance(y2, torch.Tensor) and y2.shape == (2, probe.numel())):
        return None
    return fn


# --------------------------------------------------------------------------------------------------
# The rules (one per op kind) and the passes


_Back = Callable[[np.ndarray], np.ndarray]  # E[g_out^2] per unit -> E[g_in^2] per unit


def _scale(f: Any) -> _Back:
    return lambda g, _f=f: g * _f


@dataclass
class _Walk:
    """What the forward and backward walks share: the traced graph and what it says about the model, and per
    op its state, its backward rules, whether it is a gap and its note."""

    model: nn.Module
    graph: Any
    ops: list[Any]
    data_in: list[list[int]]  # per op: its non-constant inputs
    modules: dict[str, nn.Module]
    shapes: dict[int, tuple[int, ...]]  # input shapes of adaptive pools and zero-padded convs
    sem: Any  # initlab.semantics.describe(graph)
    by_layer: dict[str, Any]
    input_mean: float
    input_var: float
    gaps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    states: list[_State | None] = field(init=False)
    # backward rule per op: (input op index, function mapping E[g_out^2] per unit to E[g_in^2] per unit)
    back: list[list[tuple[int, _Back]]] = field(init=False)
    gap_op: list[bool] = field(init=False)
    op_note: list[str] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.ops)
        self.states = [None] * n
        self.back = [[] for _ in range(n)]
        self.gap_op = [False] * n
        self.op_note = [""] * n

    def note(self, text: str) -> None:
        if text and text not in self.notes:
            self.notes.append(text)


def _start_walk(model: nn.Module, example_inputs: Any, input_var: float, input_mean: float) -> _Walk:
    """Trace ``model``, size its adaptive pools and zero-padded convs, and describe its parameters."""
    from initlab.graph import trace

    graph = trace(model, example_inputs, check=True)
    ops = graph.ops
    adaptive = (nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)
    padded = [op.module for op in ops if isinstance(op.module, nn.modules.conv._ConvNd)
              and not isinstance(op.module, nn.modules.conv._ConvTransposeNd)
              and _padding_classes(op.module, None) is None]
    shapes = _input_shapes(model, example_inputs,
                           [op.module for op in ops if op.kind == "pool" and isinstance(op.module, adaptive)] + padded)
    sem = describe(graph)
    walk = _Walk(model, graph, ops, [[j for j in op.inputs if not ops[j].constant] for op in ops],
                 dict(model.named_modules()), shapes, sem, {node.name: node for node in graph.layers},
                 input_mean, input_var)
    if graph.fallback_reason:
        walk.notes.append(graph.fallback_reason)
    return walk


def _is_layer(op: Any) -> bool:
    return op.kind == "layer" or (op.layer is not None and op.kind not in ("activation", "norm"))


def _layer_map(walk: _Walk, op: Any) -> _LinearMap | None:
    """The op's weight as a :class:`_LinearMap` (None if it has none); raises _Gap if unreadable."""
    mod = op.module
    node = walk.by_layer.get(op.layer or "")
    weight = walk.sem.params.get(walk.sem.weight(node) or "") if node is not None and node.kind == "linear" else None
    lm = _linear_map(mod, walk.shapes.get(id(mod)), weight) if _is_layer(op) and mod is not None else None
    if lm is not None and weight is not None and not isinstance(mod, nn.Linear):
        bias = next((info.param for info in walk.sem.of(node) if info.role == "bias"), None)
        if bias is not None:
            lm.bias = _vec(bias, lm.wsum.shape[0], 0.0)
    return lm


# Each rule: (walk, op index, op, indices of its data inputs that have a state) -> True when it set the op's
# state and backward rule; False when it does not apply; raises _Gap for an op it recognises but cannot cover.


def _rule_linear(walk: _Walk, i: int, op: Any, ins: list[int]) -> bool:
    """Linear / Conv / ConvTranspose, or a module whose matrix-product weight semantics found (Conv1D)."""
    lm = _layer_map(walk, op)
    if lm is None:
        return False
    x = walk.states[ins[0]]
    if len(ins) != 1:
        raise _Gap(f"{type(op.module).__name__} with {len(ins)} data inputs")
    xs = _fit_state(x, lm.in_units)
    if xs.units != x.units and x.units != 1 and lm.in_units % x.units:
        walk.note(f"{op.name}: input units pooled to fit {lm.in_units} inputs")
    mean, var = lm.forward(xs.mean, xs.var)
    walk.states[i] = _gauss(mean, var, x.tainted)
    walk.back[i] = [(ins[0], lm.backward)]
    walk.op_note[i] = lm.note
    walk.note(lm.note)
    return True


def _rule_embedding(walk: _Walk, i: int, op: Any, ins: list[int]) -> bool:
    if not (_is_layer(op) and isinstance(op.module, (nn.Embedding, nn.EmbeddingBag))):
        return False
    w = op.module.weight.detach().cpu().to(torch.float64)
    walk.states[i] = _gauss(w.mean(0).numpy(), w.var(0, unbiased=False).numpy())
    walk.back[i] = []  # integer input: the gradient stops here
    return True


def _rule_elementwise(walk: _Walk, i: int, op: Any, ins: list[int]) -> bool:
    """An elementwise op whose inputs share one base; False if that does not apply."""
    if not (op.kind == "activation" or op.elementwise):
        return False
    states = walk.states
    bases = {states[j].base for j in ins}
    if len(bases) != 1 or None in bases:
        return False
    b = bases.pop()
    if any(states[j].units != states[b].units for j in ins):
        return False
    chain = _chain_fn(op, ins, states)
    if chain is None:
        return False
    y, slope2, exact = _moments_of(states[b], chain, slope_of=chain)
    y.tainted = any(states[j].tainted for j in ins)
    y.base, y.chain = b, chain
    states[i] = y
    walk.back[i] = [(b, _scale(slope2))]  # the whole run from the base, differentiated at once
    if not exact:
        walk.note(f"{op.name or '<root>'}: input moment-matched to a Gaussian (approximate)")
    return True


def _rule_constant(walk: _Walk, i: int, op: Any, ins: list[int]) -> bool:
    """``x + c``, ``x - c``, ``x * c`` with a constant tensor ``c`` (a parameter or buffer)."""
    name = _op_name(op.target)
    if not (op.elementwise and len(ins) == 1 and name in _ADDS + _MULS):
        return False
    const = _constant_operand(op, walk.ops, walk.model, walk.graph)
    if const is None:
        return False
    walk.states[i], factor = _with_constant(walk.states[ins[0]], const, name)
    walk.back[i] = [(ins[0], _scale(factor))]
    return True


def _rule_layer_gap(walk: _Walk, i: int, op: Any, ins: list[int]) -> bool:
    """A parametrized layer none of the rules above covers."""
    if _is_layer(op):
        owner = op.module if op.module is not None else walk.modules.get(op.layer or "")
        raise _Gap(f"{type(owner).__name__}: no variance rule")
    return False


def _global_gate(walk: _Walk, j: int, depth: int = 12) -> bool:
    """True when op j is computed, through at most ``depth`` single-input ops, from a global pooling (an
    adaptive pool to size 1): a value per example and channel that scales a whole feature map."""
    for _ in range(depth):
        op = walk.ops[j]
        mod = op.module
        if op.kind == "pool" and isinstance(mod, (nn.modules.pooling._AdaptiveAvgPoolNd,
                                                   nn.modules.pooling._AdaptiveMaxPoolNd)):
            size = mod.output_size if isinstance(mod.output_size, tuple) else (mod.output_size,)
            return all(s == 1 for s in size)
        if len(walk.data_in[j]) != 1:
            return False
        j = walk.data_in[j][0]
    return False


def _rule_binary(walk: _Walk, i: int, op: Any, ins: list[int]) -> bool:
    """``x + y``, ``x - y``, ``x * y`` of two tensors, taken as independent."""
    name = _op_name(op.target)
    if not (op.elementwise and len(ins) == 2 and name in _ADDS + _MULS):
        return False
    a, c = walk.states[ins[0]], walk.states[ins[1]]
    u = max(a.units, c.units)
    a, c = _fit_state(a, u), _fit_state(c, u)
    tainted = a.tainted or c.tainted
    if name in _MULS:
        if any(_global_gate(walk, j) for j in ins):
            raise _Gap("a product with a per-example gate computed from a globally pooled feature map "
                       "(squeeze-excitation): it correlates the positions of the map, which the conv and "
                       "pooling rules take as independent")
        m = a.mean * c.mean
        walk.states[i] = _State(m, np.maximum(a.m2 * c.m2 - m * m, 0.0), None, None, tainted)
        walk.back[i] = [(ins[0], _scale(c.m2)), (ins[1], _scale(a.m2))]
        walk.note(f"{op.name}: product of two tensors taken as independent")
        return True
    if name == "rsub":
        a, c = c, a
    mean = a.mean - c.mean if "sub" in name else a.mean + c.mean
    var = a.var + c.var  # the two paths taken as uncorrelated
    if a.src is not None and c.src is not None and a.fn is None and c.fn is None:
        walk.states[i] = _gauss(mean, var, tainted)
    else:
        walk.states[i] = _State(mean, var, None, None, tainted)
    walk.back[i] = [(ins[0], _scale(1.0)), (ins[1], _scale(1.0))]
    return True


def _rule_elementwise_gap(walk: _Walk, i: int, op: Any, ins: list[int]) -> bool:
    """An elementwise op none of the rules above could replay."""
    if op.kind == "activation" or op.elementwise:
        raise _Gap(f"elementwise {_op_name(op.target)} could not be replayed")
    return False


def _rule_identity(walk: _Walk, i: int, op: Any, ins: list[int]) -> bool:
    if op.kind != "identity":  # nn.Identity: shape and values unchanged
        return False
    walk.states[i] = walk.states[ins[0]]
    walk.back[i] = [(ins[0], _scale(1.0))]
    return True


def _rule_norm(walk: _Walk, i: int, op: Any, ins: list[int]) -> bool:
    if op.kind != "norm":
        return False
    x = walk.states[ins[0]]
    node = walk.by_layer.get(op.layer or "")
    affine = {info.role: info.param for info in walk.sem.of(node)} if node is not None else {}
    a, c, txt = _norm_affine(op.module, op.target, x, affine.get("norm_gain"), affine.get("norm_bias"))
    walk.states[i] = _affine(x, a, c)
    walk.back[i] = [(ins[0], _scale(a * a))]
    walk.note(txt)
    return True


def _rule_dropout(walk: _Walk, i: int, op: Any, ins: list[int]) -> bool:
    if op.kind != "dropout":
        return False
    x, mod = walk.states[ins[0]], op.module
    p = getattr(mod, "p", None)
    if mod is None or p is None:
        raise _Gap("functional dropout: p unknown (use nn.Dropout)")
    alpha = isinstance(mod, (nn.AlphaDropout, nn.FeatureAlphaDropout))
    if mod.training and not alpha and p < 1:
        walk.states[i] = _State(x.mean, x.m2 / (1 - p) - x.mean**2, None, None, x.tainted)
        walk.back[i] = [(ins[0], _scale(1.0 / (1 - p)))]
    else:  # eval mode, or alpha dropout (built to keep mean and variance)
        walk.states[i] = x
        walk.back[i] = [(ins[0], _scale(1.0))]
    return True


def _rule_pool(walk: _Walk, i: int, op: Any, ins: list[int]) -> bool:
    if op.kind != "pool":
        return False
    x, mod = walk.states[ins[0]], op.module
    if mod is None:
        raise _Gap(f"functional pooling {_op_name(op.target)}: kernel unknown (use a pooling module)")
    k, stride, avg = _pool_size(mod, walk.shapes.get(id(mod)))
    if avg:
        if x.src is not None and x.fn is None:
            walk.states[i] = _gauss(x.mean, x.var / k, x.tainted)
        else:
            walk.states[i] = _State(x.mean, x.var / k, None, None, x.tainted)
            walk.note("average pooling: elements taken as uncorrelated")
        walk.back[i] = [(ins[0], _scale(1.0 / (k * stride)))]
        return True
    walk.states[i], monotone = _max_of(x, k)
    b = x.base
    # each element sits in k/stride windows and wins each with probability 1/k
    if monotone and x.chain is not None and x.src is not None and b is not None and k > 1:
        # route past the elementwise run to its base: the winner is not a random element
        walk.back[i] = [(b, _scale(_max_slope2(x, walk.states[b], k) / stride))]
    else:
        walk.back[i] = [(ins[0], _scale(1.0 / stride))]
    return True


def _rule_reshape(walk: _Walk, i: int, op: Any, ins: list[int]) -> bool:
    x = walk.states[ins[0]]
    if op.kind in ("flatten", "reshape") and _op_name(op.target) in _KEEP_UNITS or op.kind == "flatten":
        walk.states[i] = x  # same elements: keeps its base, so elementwise runs continue through it
    elif op.kind == "reshape":
        walk.states[i] = _pooled(x)  # permute, indexing, ...: which unit is which is not tracked
    else:
        return False
    walk.back[i] = [(ins[0], _scale(1.0))]
    return True


def _rule_concat(walk: _Walk, i: int, op: Any, ins: list[int]) -> bool:
    """Concatenation, and the model's output (its tensors pooled as one)."""
    if op.kind not in ("concat", "output"):
        return False
    parts = [walk.states[j] for j in ins]
    if len(parts) == 1:
        walk.states[i] = parts[0]
    else:
        pooled = [_pooled(p) for p in parts]
        mean = float(np.mean([p.mean[0] for p in pooled]))
        m2 = float(np.mean([p.m2[0] for p in pooled]))
        walk.states[i] = _State(np.array([mean]), np.array([max(m2 - mean * mean, 0.0)]), None, None,
                                any(p.tainted for p in parts))
    walk.back[i] = [(j, _scale(1.0)) for j in ins]
    return True


# tried in this order, the first that applies wins: a layer's weight before its elementwise replay, the
# replay before the constant operand and the two-tensor arithmetic, the gap rules where they stand
_RULES: tuple[Callable[[_Walk, int, Any, list[int]], bool], ...] = (
    _rule_linear, _rule_embedding, _rule_elementwise, _rule_constant, _rule_layer_gap, _rule_binary,
    _rule_elementwise_gap, _rule_identity, _rule_norm, _rule_dropout, _rule_pool, _rule_reshape, _rule_concat,
)


def _forward(walk: _Walk) -> None:
    """Every op's state and backward rule, in execution order; a gap passes its input through unchanged."""
    states = walk.states
    for op in walk.ops:
        i = op.index
        ins = [j for j in walk.data_in[i] if states[j] is not None]
        if op.kind == "input":
            states[i] = _gauss(walk.input_mean, walk.input_var)
            states[i].base = i
            continue
        if op.constant or not ins or _op_name(op.target) in _NON_TENSOR:
            continue
        x = states[ins[0]]
        try:
            if not any(rule(walk, i, op, ins) for rule in _RULES):
                raise _Gap(f"{op.kind} op {_op_name(op.target)}: no variance rule")
        except _Gap as exc:
            walk.gaps.append(f"{op.name or '<root>'}: {exc}")
            walk.gap_op[i] = True
            states[i] = _State(x.mean, x.var, x.src, x.fn, True)  # passed through unchanged
            walk.back[i] = [(ins[0], _scale(1.0))]
        if states[i] is not x and states[i].base is None:
            states[i].base = i


def _backward(walk: _Walk) -> tuple[list[np.ndarray | None], list[bool]]:
    """Per op: ``E[g^2]`` per unit for a unit-variance cotangent at every model output, and whether a gap
    lies between the op and the outputs."""
    states, n = walk.states, len(walk.ops)
    grad: list[np.ndarray | None] = [None] * n
    gtaint = [False] * n

    def add_grad(j: int, g: np.ndarray) -> None:
        g = _fit(np.atleast_1d(g), states[j].units)[0]
        grad[j] = g if grad[j] is None else grad[j] + g

    for op in walk.ops:
        if op.kind == "output":
            for j in walk.data_in[op.index]:
                if states[j] is not None:
                    add_grad(j, np.ones(1))
    for i in range(n - 1, -1, -1):
        if walk.ops[i].kind == "output" or grad[i] is None:
            continue
        for j, rule in walk.back[i]:
            add_grad(j, rule(_fit(grad[i], states[i].units)[0]))
            gtaint[j] = gtaint[j] or gtaint[i] or walk.gap_op[i]
    return grad, gtaint


def _layer_predictions(walk: _Walk, grad: list[np.ndarray | None], gtaint: list[bool]) -> list[LayerPrediction]:
    """One :class:`LayerPrediction` per layer of the graph; a layer the walk did not reach is a gap."""
    norm_fed = {j for op in walk.ops if op.kind == "norm" for j in walk.data_in[op.index][:1]}
    layers: list[LayerPrediction] = []
    for node in walk.graph.layers:
        i = node.op
        st = walk.states[i] if i is not None else None
        if st is None:
            walk.gaps.append(f"{node.name or '<root>'}: not reached by the forward walk")
            layers.append(LayerPrediction(node.name, node.kind, math.nan, math.nan, math.nan, math.nan, math.nan,
                                          False, "not reached"))
            continue
        mean, var = st.total()
        g2 = float(grad[i].mean()) if grad[i] is not None else 0.0
        gap = walk.gap_op[i]
        layers.append(LayerPrediction(
            name=node.name, kind=node.kind, forward_mean=mean, forward_var=var, forward_std=math.sqrt(var),
            grad_var=g2, grad_std=math.sqrt(max(g2, 0.0)),
            reliable=not (st.tainted or gtaint[i] or gap), note="gap" if gap else walk.op_note[i],
            normalized=i in norm_fed and node.kind != "norm",
        ))
    return layers


def propagate(model: nn.Module, example_inputs: Any = None, *, input_var: float = 1.0,
              input_mean: float = 0.0) -> Prediction:
    """Predict per-layer forward and backward variance of ``model`` at its current weights.

    ``input_var`` / ``input_mean``: variance and mean of the input's elements (for data, pass
    ``float(x.var())`` and ``float(x.mean())``); ``example_inputs`` is only used to trace models torch.fx
    cannot, and to size adaptive pooling. Nothing is run for fx-traceable models without adaptive
    pooling; the model is not changed. See the module docstring for the rules and the gaps.

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256))
    >>> g = torch.Generator().manual_seed(0)
    >>> for lin in (net[0], net[2]):
    ...     _ = nn.init.normal_(lin.weight, std=(2 / 256) ** 0.5, generator=g)
    ...     _ = nn.init.zeros_(lin.bias)
    >>> p = propagate(net)
    >>> [lp.name for lp in p.layers], [round(lp.forward_std, 1) for lp in p.layers]  # He: std sqrt(2) kept
    (['0', '2'], [1.4, 1.4])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    input_var = _check_moment("input_var", input_var, True)
    input_mean = _check_moment("input_mean", input_mean, False)
    walk = _start_walk(model, example_inputs, input_var, input_mean)
    _forward(walk)
    grad, gtaint = _backward(walk)
    layers = _layer_predictions(walk, grad, gtaint)
    return Prediction(layers, walk.gaps, walk.notes, input_var, input_mean, walk.graph.method)
