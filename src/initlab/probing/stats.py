"""Streaming statistics of the tensors a hook sees: running moments, fixed-range histograms, unit counts.

Nothing here keeps an activation. Each call folds one tensor into a few small per-unit buffers, so
the memory of a probe is ``O(units + bins)`` per recorded layer whatever the batch size or the number of
calls:

* **Moments**: per unit, ``sum(x)`` and ``sum(x^2)`` of every call go into float64 running sums. The
  per-call sums over the batch are cascaded sums in the tensor's own precision (relative error
  ~eps log n), because ``sum(dtype=float64)`` would first copy the activation to float64. When a unit's
  mean dwarfs its std (``mean^2 > 1e3 var``, e.g. inputs of mean 100), the values are shifted by the
  unit's first value before summing (shifted-data algorithm, Chan et al. 1979), so nothing cancels.
  Groups of calls with a different unit layout are combined with Chan's pairwise formula.
* **Histograms** with a fixed range: ``[min, max]`` of the first call (or ``hist_range``), ``bins``
  equal bins, right edge nudged up by ``1e-5`` of the span so the maximum falls in the last bin.
  Values of later calls outside the range go to ``hist_under`` / ``hist_over``: the counts always
  add up, ``sum(hist_counts) + hist_under + hist_over == count``. The bin index is computed with a
  handful of vectorised ops and ``torch.bincount`` on ``int8`` (``bins <= 126``), several times faster
  than ``torch.histc`` on CPU.
* **Units**: the unit axis is the feature axis (the last one for Linear / attention / LayerNorm
  outputs, the channel axis 1 for convolutions and BatchNorm). Per unit the running min and max give
  ``dead_units`` (all zero over the batch; for the ReLU family, never positive) and the per-unit mean
  and std and a fixed pseudo-random weighted sum over the batch give ``symmetric_units`` (units whose
  output is identical over the batch).
* **Slices**: a tensor of more than ``CHUNK`` (2^20) elements is processed in slices along the batch
  axis, so the temporaries of one update stay near ``CHUNK`` floats (~5 MB) whatever the layer's size.
* **Saturation** of logistic and tanh units (the seed argument of LeCun et al. 1998 and Glorot &
  Bengio 2010): on a pre-activation, the fraction of values outside ``[-4, 4]``; on the output of
  tanh / sigmoid, the fraction within ``1e-2`` of the bounds.

>>> acc = TensorAccumulator(bins=8)
>>> acc.update(torch.arange(12.0).reshape(3, 4))
>>> s = acc.summary()
>>> s["count"], s["act_mean"], sum(s["hist_counts"])
(12, 5.5, 12)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

__all__ = ["LayerStats", "InputStats", "TensorAccumulator", "GradAccumulator", "input_stats", "weight_summary",
           "symmetric_groups", "RELU_FAMILY", "SATURATING", "SATURATION_BOUND", "SATURATION_MARGIN"]

F64 = torch.float64
# activations whose unit is "dead" when its pre-activation is never positive over the batch
RELU_FAMILY = frozenset({"relu", "relu6", "leaky_relu", "prelu", "rrelu", "elu", "celu", "selu", "gelu", "gelu_tanh",
                         "silu", "mish", "hardswish"})
SATURATING = frozenset({"tanh", "sigmoid"})
SATURATION_BOUND = 4.0  # |pre-activation| beyond this: f'(4) = 0.018 for the logistic, 0.0013 for tanh
SATURATION_MARGIN = 1e-2  # output within this of the activation's bounds
_I8_BINS = 126  # bin index + under/overflow must fit in int8 (the fast path)
_I16_BINS = 32766
CHUNK = 1 << 20  # elements per slice of a large tensor (bounds the temporaries of one update to ~5 MB)


@dataclass
class LayerStats:
    """What the probe measured at one recorded point (a layer's output or an activation's output).

    Forward statistics are over every element the point produced (all calls, all examples, all units);
    ``grad_*`` are those of the loss gradient with respect to that output; ``weight_*`` are filled for
    parametrized layers. Fractions are in [0, 1]; ``None`` means "not measured" (no gradient reached the
    point, a layer without weights, ...).

    Attributes:
        name: qualified module name; ``"fc1:relu"`` for a functional activation applied to ``fc1``'s output.
        kind: the graph's layer kind ("linear", "conv", "norm", "attention", ...) or "activation".
        activation: the activation applied to this output (layers) or computed here (activation records).
        index: position in execution order among the recorded points.
        act_mean, act_std, act_min, act_max: moments and range of the output (population std).
        hist_counts, hist_edges, hist_under, hist_over: fixed-range histogram (``len(edges) = bins + 1``).
        frac_zero: fraction of elements exactly 0.
        units, dead_units, frac_dead_units: units (features / channels), those zero for the whole batch
            (for the ReLU family: never positive), and their fraction.
        frac_saturated: logistic/tanh only: fraction of pre-activations outside [-4, 4] (layer records) or of
            outputs within 1e-2 of the bounds (activation records); ``None`` for other activations.
        symmetric_units: units identical to another unit (same incoming weights and bias, or same output
            over the whole batch): the symmetry a constant or zero init never breaks.
        grad_mean, grad_std: of dLoss/d(output).
        weight_mean, weight_std, weight_grad_std, grad_weight_ratio: of the layer's weight, its gradient,
            and ``weight_grad_std / weight_std`` (the relative size of one SGD step at learning rate 1).
        is_layer, is_output: a parametrized layer; a point after which no parametrized layer follows.
        normalized: the output goes straight into a normalization layer (Linear -> BatchNorm).
        source: for an activation record, the recorded point whose output it was computed from.
    """

    name: str
    kind: str
    activation: str | None = None
    index: int = 0
    module_type: str = ""
    shape: tuple[int, ...] = ()
    calls: int = 0
    count: int = 0
    units: int = 0
    unit_dim: int = -1
    act_mean: float = math.nan
    act_std: float = math.nan
    act_min: float = math.nan
    act_max: float = math.nan
    hist_counts: list[int] = field(default_factory=list)
    hist_edges: list[float] = field(default_factory=list)
    hist_under: int = 0
    hist_over: int = 0
    frac_zero: float = math.nan
    dead_units: int = 0
    frac_dead_units: float = 0.0
    frac_saturated: float | None = None
    symmetric_units: int = 0
    n_nonfinite: int = 0
    grad_mean: float | None = None
    grad_std: float | None = None
    weight_mean: float | None = None
    weight_std: float | None = None
    weight_grad_std: float | None = None
    grad_weight_ratio: float | None = None
    is_layer: bool = False
    is_output: bool = False
    normalized: bool = False
    source: str | None = None

    @property
    def act_rms(self) -> float:
        """Root mean square ``sqrt(mean^2 + std^2)`` of the output."""
        return math.sqrt(self.act_mean**2 + self.act_std**2)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (JSON-ready; non-finite floats are kept and written as JSON NaN/Infinity)."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerStats:
        """Inverse of :meth:`to_dict` (unknown keys are ignored, so older files still load)."""
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        if "shape" in kwargs:
            kwargs["shape"] = tuple(kwargs["shape"])
        return cls(**kwargs)


@dataclass
class InputStats:
    """Summary of the inputs: overall moments and the spread of per-feature moments.

    A feature is one position of ``inputs[i]`` (a pixel, a token slot): per-feature means and stds are
    taken over the batch (dim 0). ``dtype`` is kept so integer inputs (token ids) can be told apart: the
    normalization verdict ignores them.
    """

    shape: tuple[int, ...] = ()
    dtype: str = ""
    mean: float = math.nan
    std: float = math.nan
    min: float = math.nan
    max: float = math.nan
    features: int = 0
    feature_mean_min: float = math.nan
    feature_mean_max: float = math.nan
    feature_std_min: float = math.nan
    feature_std_median: float = math.nan
    feature_std_max: float = math.nan
    constant_features: int = 0

    @property
    def is_float(self) -> bool:
        return "float" in self.dtype

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputStats:
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        if "shape" in kwargs:
            kwargs["shape"] = tuple(kwargs["shape"])
        return cls(**kwargs)


# --------------------------------------------------------------------------------------------------
# Accumulators


def _unit_layout(x: torch.Tensor, unit_dim: int | None) -> tuple[torch.Tensor, int]:
    """``x`` viewed with at least 2 dims and the positive index of its unit axis."""
    if x.ndim <= 1 or unit_dim is None:
        return x.reshape(-1, 1), 1
    ud = unit_dim % x.ndim
    if ud == 0:  # the batch axis cannot be the unit axis: fall back to the last one
        ud = x.ndim - 1
    return x, ud


class _Group:
    """Per-unit running sums of calls that share one unit layout (units, unit axis)."""

    __slots__ = ("units", "n_u", "shift", "s1", "s2", "mx", "mn", "proj")

    def __init__(self, units: int) -> None:
        self.units = units
        self.n_u = 0
        self.shift: torch.Tensor | None = None
        self.s1 = self.s2 = self.mx = self.mn = self.proj = None

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-unit ``mean``, ``m2`` (sum of squared deviations), ``max``, ``min``, ``proj`` as float64 numpy
        (one device-to-host transfer)."""
        shift = torch.zeros_like(self.s1) if self.shift is None else self.shift
        block = torch.stack([t.to(F64) for t in (shift, self.s1, self.s2, self.mx, self.mn, self.proj)])
        shift, s1, s2, mx, mn, proj = block.cpu().numpy()
        n = self.n_u
        return {"mean": shift + s1 / n, "m2": np.maximum(s2 - s1 * s1 / n, 0.0), "max": mx, "min": mn, "proj": proj}


class TensorAccumulator:
    """Running statistics of every tensor passed to :meth:`update` (see the module docstring).

    Args:
        bins: histogram bins (``1 <= bins``; up to 126 use the fast int8 path).
        hist_range: fixed ``(low, high)``; default: ``[min, max]`` of the first call.
        unit_dim: the unit (feature/channel) axis; ``None`` treats every element as one unit.
        dead_rule: "zero" (unit zero for the whole batch) or "nonpositive" (never positive: ReLU family).
        saturation: None, "pre" (|x| > 4), "tanh" (|y| > 1 - 1e-2) or "sigmoid" (y within 1e-2 of 0 or 1).
    """

    def __init__(self, *, bins: int = 64, hist_range: tuple[float, float] | None = None,
                 unit_dim: int | None = -1, dead_rule: str = "zero", saturation: str | None = None) -> None:
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins must be a positive integer; got {bins!r}")
        if hist_range is not None:
            lo, hi = (float(v) for v in hist_range)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError("hist_range must be two finite numbers (low, high) with low < high; "
                                 f"got {hist_range!r}")
            hist_range = (lo, hi)
        if dead_rule not in ("zero", "nonpositive"):
            raise ValueError(f"dead_rule must be 'zero' or 'nonpositive'; got {dead_rule!r}")
        if saturation not in (None, "pre", "tanh", "sigmoid"):
            raise ValueError(f"saturation must be None, 'pre', 'tanh' or 'sigmoid'; got {saturation!r}")
        self.bins = bins
        self.hist_range = hist_range
        self.unit_dim = unit_dim
        self.dead_rule = dead_rule
        self.saturation = saturation
        self.calls = 0
        self.count = 0
        self.shape: tuple[int, ...] = ()
        self.groups: dict[tuple[int, int], _Group] = {}
        self.zeros: list[torch.Tensor] = []
        self.saturated: list[torch.Tensor] = []
        self.hist: torch.Tensor | None = None
        self.n_nonfinite = 0
        self._flat: list[tuple[int, float, float, float, float]] = []  # (n, mean, M2, min, max) of non-finite calls
        self._edges: tuple[float, float] | None = None

    # -- hot path ------------------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Fold ``x`` (or ``fn(x)`` for an elementwise ``fn``) into the statistics; no reference is kept.

        ``count`` and every statistic cover the finite values; ``n_nonfinite`` counts the others. Large
        tensors are processed in slices of about ``CHUNK`` elements along the batch axis (``fn`` is applied
        slice by slice), so the temporaries of a call stay near ``CHUNK`` floats whatever the tensor's size.
        """
        x = x.detach()
        if self.calls == 0:
            self.shape = tuple(x.shape)
        self.calls += 1
        n = x.numel()
        if n == 0:
            return
        self.count += n
        xv, ud = _unit_layout(x, self.unit_dim)
        dims = tuple(i for i in range(xv.ndim) if i != ud)
        rest = tuple(i for i in range(1, xv.ndim) if i != ud)
        units = xv.shape[ud]
        n_u = n // units
        shape = [1] * xv.ndim
        shape[ud] = units
        rows = max(1, CHUNK // max(n // xv.shape[0], 1))
        chunks = xv.split(rows, 0) if xv.shape[0] > rows else (xv,)

        def values(c: torch.Tensor) -> torch.Tensor:
            z = c if fn is None else fn(c)
            # half precision sums are too coarse; integer outputs become floats
            return z if z.dtype in (torch.float32, torch.float64) else z.float()

        key = (units, ud)
        group = self.groups.get(key)
        first = group is None
        shift = None if first else group.shift
        # Partial sums over the batch in the tensor's precision (torch's CPU sums are cascaded: error
        # ~eps * log n), then float64 for everything after; sum(dtype=float64) would first copy the data to
        # float64. Raw sums are exact enough unless a unit's mean dwarfs its std (mean^2 > 1e3 var: inputs
        # of mean 100); then the values are shifted by the unit's first value (Chan et al.), one more pass.
        acc: dict[str, Any] = {}
        per_example = []
        for c in chunks:
            z = values(c)
            d = z if shift is None else z - shift.view(shape)
            _add(acc, "s1", d.sum(dims), torch.add)
            _add(acc, "s2", torch.mul(d, d).sum(dims), torch.add)
            del d
            _add(acc, "mx", z.amax(dims), torch.maximum)
            _add(acc, "mn", z.amin(dims), torch.minimum)
            per_example.append(z.sum(rest) if rest else z)
            _add(acc, "zeros", z.numel() - _count_nonzero(z), torch.add)
            if self.saturation is not None:
                _add(acc, "sat", _count_saturated(z, self.saturation), torch.add)
            del z
        s1, s2 = acc["s1"], acc["s2"]
        if first and shift is None:
            mean = s1 / n_u
            ok = torch.isfinite(s2).all() & (mean * mean <= 1e3 * (s2 / n_u - mean * mean)).all()
            if not bool(ok) and bool(torch.isfinite(s1).all() & torch.isfinite(s2).all()):
                index: list[Any] = [0] * xv.ndim
                index[ud] = slice(None)
                shift = values(xv[tuple(index)].unsqueeze(0)).squeeze(0).clone()
                s1 = s2 = None
                for c in chunks:
                    d = values(c) - shift.view(shape)
                    s1 = d.sum(dims) if s1 is None else s1.add_(d.sum(dims))
                    s2 = d.square_().sum(dims) if s2 is None else s2.add_(d.square_().sum(dims))
        if not bool(torch.isfinite(s2).all()):
            self._update_nonfinite(values(x))
            return
        if first:
            group = self.groups[key] = _Group(units)
            group.shift = shift
        s1, s2, mx, mn = s1.to(F64), s2.to(F64), acc["mx"], acc["mn"]
        per = torch.cat(per_example) if len(per_example) > 1 else per_example[0]  # (batch, units)
        proj = _golden(per.shape[0], per.dtype, per.device) @ per
        if first:
            group.s1, group.s2, group.mx, group.mn, group.proj = s1, s2, mx, mn, proj
        else:
            group.s1.add_(s1)
            group.s2.add_(s2)
            group.proj.add_(proj)
            torch.maximum(group.mx, mx, out=group.mx)
            torch.minimum(group.mn, mn, out=group.mn)
        group.n_u += n_u
        self.zeros.append(acc["zeros"])
        if self.saturation is not None:
            self.saturated.append(acc["sat"])
        inside = self._edges is None and self.hist_range is None  # this call sets the range: all inside it
        if self._edges is None:
            lo, hi = self.hist_range if self.hist_range is not None else (float(mn.min()), float(mx.max()))
            self._edges = _range(lo, hi, exact=self.hist_range is not None)
        for c in chunks:
            self._histogram(values(c), inside=inside)

    def _histogram(self, x: torch.Tensor, inside: bool = False) -> None:
        """Bin ``x``; ``inside``: every value lies in the range (the call that set it), so no clamping."""
        lo, hi = self._edges
        scale = self.bins / (hi - lo)
        # bin index + 1: 0 = underflow, bins + 1 = overflow; float -> int truncation is the floor once the
        # values are non-negative. One fused pass: offset + scale * x.
        idx = torch.add(torch.tensor(1.0 - lo * scale, dtype=x.dtype, device=x.device), x, alpha=scale)
        if not inside:
            idx.clamp_(0.0, self.bins + 1.0)
        # int8 when it fits: float -> int8 conversion is vectorised on CPU, uint8/int64 are not (~20x slower)
        idx = idx.to(torch.int8 if self.bins <= _I8_BINS else torch.int16 if self.bins <= _I16_BINS else torch.int32)
        counts = torch.bincount(idx.reshape(-1), minlength=self.bins + 2)
        if inside:  # rounding at the edges of the data's own range: those values belong to the end bins
            counts[1] += counts[0]
            counts[self.bins] += counts[self.bins + 1]
            counts[0] = counts[self.bins + 1] = 0
        if self.hist is None:
            self.hist = counts
        else:
            self.hist.add_(counts)

    def _update_nonfinite(self, x: torch.Tensor) -> None:
        # rare slow path (an exploding network): statistics of the finite values, and how many were not
        finite = torch.isfinite(x)
        bad = int((~finite).sum())
        self.n_nonfinite += bad
        self.count -= bad
        vals = x[finite].to(F64)
        if vals.numel():
            self._flat.append((vals.numel(), float(vals.mean()), float(((vals - vals.mean()) ** 2).sum()),
                               float(vals.min()), float(vals.max())))
            self.zeros.append(vals.numel() - _count_nonzero(vals))
            if self.saturation is not None:
                self.saturated.append(_count_saturated(vals, self.saturation))
            if self._edges is None:
                self._edges = _range(*(self.hist_range or (float(vals.min()), float(vals.max()))),
                                     exact=self.hist_range is not None)
            self._histogram(vals)

    # -- results -------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The statistics as plain Python values (keys are :class:`LayerStats` fields)."""
        out: dict[str, Any] = {"calls": self.calls, "count": self.count, "shape": self.shape,
                               "n_nonfinite": self.n_nonfinite}
        parts: list[tuple[float, float, float]] = []  # (n, mean, M2)
        mins, maxs = [], []
        main: _Group | None = max(self.groups.values(), key=lambda g: g.n_u * g.units, default=None)
        main_arrays: dict[str, np.ndarray] | None = None
        for g in self.groups.values():
            a = g.arrays()
            if g is main:
                main_arrays = a
            parts.append(_pool(g.n_u, a["mean"], a["m2"]))
            mins.append(float(a["min"].min()))
            maxs.append(float(a["max"].max()))
        for n, mean, m2, lo, hi in self._flat:
            parts.append((n, mean, m2))
            mins.append(lo)
            maxs.append(hi)
        n, mean, m2 = _chan(parts)
        out["act_mean"] = mean
        out["act_std"] = math.sqrt(m2 / n) if n else math.nan
        out["act_min"] = min(mins) if mins else math.nan
        out["act_max"] = max(maxs) if maxs else math.nan
        total = self.count
        counts = [torch.stack(self.zeros).sum() if self.zeros else torch.zeros(())]
        if self.saturation is not None:
            counts.append(torch.stack(self.saturated).sum() if self.saturated else torch.zeros(()))
        counts_np = torch.stack([c.to(F64) for c in counts]).cpu().numpy()
        out["frac_zero"] = float(counts_np[0]) / total if total else math.nan
        if self.saturation is not None:
            out["frac_saturated"] = float(counts_np[1]) / total if total else 0.0
        if main is not None and main_arrays is not None:
            a = main_arrays
            dead = (a["max"] <= 0) if self.dead_rule == "nonpositive" else ((a["max"] == 0) & (a["min"] == 0))
            std_u = np.sqrt(a["m2"] / main.n_u)
            # units that vary over the batch: a constant unit (bias-dominated, all zero) says nothing here
            live = (std_u > 1e-4 * np.abs(a["mean"])) & (std_u > 0) & ~dead
            out["units"] = main.units
            out["dead_units"] = int(dead.sum())
            out["frac_dead_units"] = float(dead.mean())
            out["symmetric_units"] = symmetric_groups(np.stack([a["mean"], std_u, a["proj"]], 1), mask=live)
        if self.hist is not None:
            h = self.hist.cpu().numpy().astype(np.int64)
            lo, hi = self._edges
            out["hist_counts"] = h[1:-1].tolist()
            out["hist_under"], out["hist_over"] = int(h[0]), int(h[-1])
            out["hist_edges"] = np.linspace(lo, hi, self.bins + 1).tolist()
        return out


def _add(acc: dict[str, Any], key: str, value: Any, op: Any) -> None:
    acc[key] = value if key not in acc else op(acc[key], value)


@functools.lru_cache(maxsize=16)
def _golden(m: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``cos(0.5 + k * golden angle)``, k < m: fixed weights that never repeat (no RNG involved)."""
    k = torch.arange(m, dtype=F64, device=device)
    return torch.cos(k * 2.399963229728653 + 0.5).to(dtype)


def _range(lo: float, hi: float, *, exact: bool) -> tuple[float, float]:
    if exact:
        return lo, hi
    span = hi - lo
    if not span > 0:  # a constant tensor: centre it in a unit-width range
        half = 0.5 * max(abs(lo), 1.0)
        return lo - half, hi + half
    return lo, hi + 1e-5 * span + 1e-30


def _count_nonzero(x: torch.Tensor) -> torch.Tensor:
    # |sign(x)| summed: branch-free and several times faster on CPU than torch.count_nonzero on ReLU
    # outputs (half zeros defeat its branch prediction); a bool sum would first copy the mask to int64
    return torch.sign(x).abs_().sum(dtype=F64 if x.numel() > 2**24 else None)


def _count_saturated(x: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "pre":
        return (torch.abs(x) > SATURATION_BOUND).sum()
    if mode == "tanh":
        return (torch.abs(x) > 1.0 - SATURATION_MARGIN).sum()
    return (torch.abs(x - 0.5) > 0.5 - SATURATION_MARGIN).sum()


def _pool(n_u: int, mean_u: np.ndarray, m2_u: np.ndarray) -> tuple[float, float, float]:
    """(n, mean, M2) of all units together, each unit holding ``n_u`` values."""
    units = mean_u.size
    mean = float(mean_u.mean())
    m2 = float(m2_u.sum() + n_u * ((mean_u - mean) ** 2).sum())
    return n_u * units, mean, m2


def _chan(parts: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """Combine (n, mean, M2) triples (Chan, Golub & LeVeque 1979)."""
    n, mean, m2 = 0.0, 0.0, 0.0
    for nb, mb, m2b in parts:
        if nb == 0:
            continue
        tot = n + nb
        delta = mb - mean
        mean += delta * nb / tot
        m2 += m2b + delta * delta * n * nb / tot
        n = tot
    return n, (mean if n else math.nan), m2


def symmetric_groups(signatures: np.ndarray, *, mask: np.ndarray | None = None, rtol: float = 1e-6) -> int:
    """Number of rows of ``signatures`` (one row per unit) equal to another row within ``rtol``.

    Column ``c`` of two rows must agree within ``rtol * max|column c|`` (units computed from identical
    weights can differ in the last bits). Rows where ``mask`` is False, or with non-finite values, are ignored.

    >>> symmetric_groups(np.array([[1.0, 2.0], [1.0, 2.0], [3.0, 1.0]]))
    2
    """
    sig = np.asarray(signatures, dtype=np.float64)
    keep = np.isfinite(sig).all(1)  # an overflowed unit has no usable signature
    if mask is not None:
        keep &= np.asarray(mask, dtype=bool)
    sig = sig[keep]
    if len(sig) < 2:
        return 0
    tol = rtol * np.maximum(np.abs(sig).max(0), 1e-30)
    if np.diff(np.sort(sig[:, 0])).min() > tol[0]:  # the usual case: no two units even share a mean
        return 0
    order = np.lexsort(sig.T[::-1])
    s = sig[order]
    close = np.all(np.abs(np.diff(s, axis=0)) <= tol, axis=1)
    member = np.zeros(len(s), dtype=bool)
    member[:-1] |= close
    member[1:] |= close
    return int(member.sum())


class GradAccumulator:
    """Running mean and std (float64) of the gradients flowing into one recorded output."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[tuple[int, torch.Tensor, torch.Tensor]] = []

    @torch.no_grad()
    def update(self, g: torch.Tensor) -> None:
        g = g.detach()
        if not g.is_floating_point() or g.dtype in (torch.float16, torch.bfloat16):
            g = g.float()
        # no float64 copy of the gradient (see TensorAccumulator.update): cascaded float32 sums
        self.parts.append((g.numel(), g.sum().to(F64), torch.linalg.vector_norm(g).to(F64)))

    def summary(self) -> tuple[float | None, float | None]:
        """(mean, std) of every gradient element seen, or (None, None) when no gradient arrived."""
        n = sum(p[0] for p in self.parts)
        if not n:
            return None, None
        s = sum(float(p[1]) for p in self.parts)
        ss = sum(float(p[2]) ** 2 for p in self.parts)
        mean = s / n
        var = max(ss / n - mean * mean, 0.0)  # gradients are centred near 0: no cancellation to fear
        return mean, math.sqrt(var)


# --------------------------------------------------------------------------------------------------
# One-shot summaries


@torch.no_grad()
def input_stats(x: torch.Tensor) -> InputStats:
    """Overall and per-feature (over dim 0) summary of an input batch (shifted sums, no float64 copy)."""
    stats = InputStats(shape=tuple(x.shape), dtype=str(x.dtype).replace("torch.", ""))
    if x.numel() == 0:
        return stats
    xf = x.detach()
    if not xf.is_floating_point() or xf.dtype in (torch.float16, torch.bfloat16):
        xf = xf.float()
    feats = xf.reshape(xf.shape[0], -1) if xf.ndim > 1 else xf.reshape(-1, 1)
    n = feats.shape[0]
    d = feats - feats[:1]  # shifted by the first example: no cancellation for features of mean 100
    block = torch.stack([feats[0], d.sum(0), d.square_().sum(0), feats.amin(0), feats.amax(0)]).to(F64)
    shift, s1, s2, fmin, fmax = block.cpu().numpy()
    fmean = shift + s1 / n
    fm2 = np.maximum(s2 - s1 * s1 / n, 0.0)
    fstd = np.sqrt(fm2 / n)
    _, stats.mean, m2 = _pool(n, fmean, fm2)
    stats.std = math.sqrt(m2 / (n * fmean.size))
    stats.min, stats.max = float(fmin.min()), float(fmax.max())
    stats.features = int(fmean.size)
    stats.feature_mean_min, stats.feature_mean_max = float(fmean.min()), float(fmean.max())
    stats.feature_std_min, stats.feature_std_max = float(fstd.min()), float(fstd.max())
    stats.feature_std_median = float(np.median(fstd))
    stats.constant_features = int((fmax == fmin).sum())
    return stats


def _mean_std(t: torch.Tensor) -> tuple[float, float]:
    """Population mean and std of a tensor (cascaded sums in its precision, combined in float64; no
    float64 copy of a large weight)."""
    n = t.numel()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    mean = float(t.sum()) / n
    sq = float(torch.linalg.vector_norm(t)) ** 2 / n
    return mean, math.sqrt(max(sq - mean * mean, 0.0))


@torch.no_grad()
def weight_summary(weight: torch.Tensor, grad: torch.Tensor | None = None, *, bias: torch.Tensor | None = None,
                   out_dim: int | None = 0, rtol: float = 1e-6) -> dict[str, Any]:
    """Mean/std of a weight and its gradient, and the units whose incoming weights (and bias) are identical.

    ``out_dim`` is the axis of the output units (0 for Linear/Conv, 1 for ConvTranspose); ``None`` skips
    the symmetry check (norm scales, embeddings). Rows are compared by (sum, norm, a fixed pseudo-random
    projection, bias), so two different rows coincide only by an accident of measure zero.
    """
    w = weight.detach()
    out: dict[str, Any] = {}
    out["weight_mean"], out["weight_std"] = _mean_std(w)
    if grad is not None:
        gstd = _mean_std(grad.detach())[1]
        out["weight_grad_std"] = gstd
        # a constant weight (a norm layer's ones) has no scale to compare with
        out["grad_weight_ratio"] = gstd / out["weight_std"] if out["weight_std"] > 0 else None
    if out_dim is not None and w.ndim >= 2 and w.shape[out_dim] > 1:
        rows = w.movedim(out_dim, 0).reshape(w.shape[out_dim], -1)
        if not rows.is_floating_point():
            return out
        k = torch.arange(rows.shape[1], dtype=F64, device=rows.device)
        proj = rows @ torch.cos(k * 2.399963229728653 + 0.5).to(rows.dtype)
        cols = [rows.sum(1), torch.linalg.vector_norm(rows, dim=1), proj]
        if bias is not None and bias.numel() == rows.shape[0]:
            cols.append(bias.detach().reshape(-1).to(rows.dtype))
        sig = torch.stack(cols, 1).to(F64).cpu().numpy()
        out["symmetric_units"] = symmetric_groups(sig, rtol=rtol)
    return out
