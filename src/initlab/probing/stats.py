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
  add up, ``sum(hist_counts) + hist_under + hist_over == count``. The bin index is one fused
  ``offset + scale * x`` truncated to ``int8``; up to 126 bins two indices are counted at once (the int8
  array read as int16 by ``torch.bincount``), several times faster than ``torch.histc`` on CPU.
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

**Cost.** On a small model a probe's time goes to the number of operations it launches, each a few
microseconds of Python and dispatch (more right after the layers' matrix products have evicted the
caches), rather than to arithmetic. So a call launches about fifteen tensor operations and moves its
per-unit results to the host in one transfer; :func:`summaries`, :func:`grad_summaries` and
:func:`weight_summaries` then summarise all recorded points at once with a fixed number of vectorised
numpy operations; and the full symmetry comparison runs only where two units share a mean.

>>> acc = TensorAccumulator(bins=8)
>>> acc.update(torch.arange(12.0).reshape(3, 4))
>>> s = acc.summary()
>>> s["count"], s["act_mean"], sum(s["hist_counts"])
(12, 5.5, 12)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

__all__ = ["LayerStats", "InputStats", "TensorAccumulator", "GradAccumulator", "input_stats", "weight_summary",
           "weight_summaries", "summaries", "grad_summaries", "symmetric_groups", "RELU_FAMILY", "SATURATING",
           "SATURATION_BOUND", "SATURATION_MARGIN"]

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
        return _from_dict(cls, data)


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
        return _from_dict(cls, data)


def _from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """A dataclass from its ``to_dict`` (unknown keys ignored; ``shape`` back to a tuple)."""
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
    """Per-unit running sums of calls that share one unit layout (units, unit axis), on the host in float64.

    ``s1``, ``s2``, ``proj``: sums of ``x - shift``, of its square and its golden-weighted sum over the
    batch (``shift`` is None, i.e. 0, unless a unit's mean dwarfs its std); ``gw`` is the total golden
    weight, so the weighted sum of the raw values is ``proj + gw * shift``.
    """

    __slots__ = ("units", "n_u", "shift", "shift_np", "s1", "s2", "proj", "mx", "mn", "gw")

    def __init__(self, units: int, shift: torch.Tensor | None) -> None:
        self.units = units
        self.n_u = 0
        self.shift = shift
        self.shift_np = 0.0 if shift is None else shift.reshape(-1).to(F64).cpu().numpy()
        self.gw = 0.0
        self.s1 = self.s2 = self.proj = self.mx = self.mn = None

    def add(self, s1: np.ndarray, s2: np.ndarray, proj: np.ndarray, mx: np.ndarray, mn: np.ndarray) -> None:
        if self.s1 is None:
            self.s1, self.s2, self.proj, self.mx, self.mn = s1, s2, proj, mx, mn
        else:
            self.s1 = self.s1 + s1
            self.s2 = self.s2 + s2
            self.proj = self.proj + proj
            self.mx = np.maximum(self.mx, mx)
            self.mn = np.minimum(self.mn, mn)


class TensorAccumulator:
    """Running statistics of every tensor passed to :meth:`update` (see the module docstring).

    Args:
        bins: histogram bins (``1 <= bins``; up to 126 use the fast paired int8 path).
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
        self.n_zero = 0
        self.n_saturated = 0
        self.n_nonfinite = 0
        self.hist: np.ndarray | None = None  # counts of bins 0 .. bins + 1 (underflow, the bins, overflow)
        self._flat: list[tuple[int, float, float, float, float]] = []  # (n, mean, M2, min, max) of non-finite calls
        self._edges: tuple[float, float] | None = None

    # -- hot path ------------------------------------------------------------------------------------
    # A probe's cost on a small model is mostly the number of operations launched per recorded point, so
    # the hot path launches a dozen tensor operations, moves the per-unit results to the host in one
    # transfer and does everything else there in float64 numpy.

    def update(self, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Fold ``x`` (or ``fn(x)`` for an elementwise ``fn``) into the statistics; no reference is kept.

        ``count`` and every statistic cover the finite values; ``n_nonfinite`` counts the others. Large
        tensors are processed in slices of about ``CHUNK`` elements along the batch axis (``fn`` is applied
        slice by slice), so the temporaries of a call stay near ``CHUNK`` floats whatever the tensor's size.
        """
        x = x.detach()  # every operation below then runs without autograd (no no_grad context needed)
        if not self.calls:
            self.shape = tuple(x.shape)
        self.calls += 1
        n = x.numel()
        if n == 0:
            return
        self.count += n
        xv, ud = _unit_layout(x, self.unit_dim)
        units = xv.shape[ud]
        group = self.groups.get((units, ud))
        sums = self._unit_sums(xv, ud, fn, None if group is None else group.shift)
        if sums is None:
            self._update_nonfinite(_values(x, fn))
            return
        block, totals, kept = sums
        n_u = n // units
        if group is None:
            shift = None
            # a unit whose mean dwarfs its std (inputs of mean 100): shift every unit by its first value and
            # sum again. A copy: x may change in place later
            if _cancels(block[0], block[4], n_u):
                index = tuple(slice(None) if i == ud else slice(0, 1) for i in range(xv.ndim))
                shift = _values(xv[index], fn).clone()
                again = self._unit_sums(xv, ud, fn, shift)
                if again is None:  # overflows only once shifted: keep the raw sums
                    shift = None
                else:
                    block[[0, 1, 4]] = again[0][[0, 1, 4]]
            group = self.groups[(units, ud)] = _Group(units, shift)
        group.add(block[0], block[4], block[1], block[2], block[3])
        group.n_u += n_u
        group.gw += _golden_total(xv.shape[0]) * (n_u // xv.shape[0])
        self.n_zero += n - round(totals[1])
        if self.saturation is not None:
            self.n_saturated += round(totals[2])
        inside = self._edges is None and self.hist_range is None  # this call sets the range: all inside it
        if self._edges is None:
            lo, hi = self.hist_range if self.hist_range is not None else (float(block[3].min()), float(block[2].max()))
            self._edges = _range(lo, hi, exact=self.hist_range is not None)
        if kept is not None:  # one slice: its values (fn applied) are still at hand
            self._histogram(kept, inside=inside)
        else:
            for c in _chunks(xv):
                self._histogram(_values(c, fn), inside=inside)

    def _unit_sums(self, xv: torch.Tensor, ud: int, fn: Callable[[torch.Tensor], torch.Tensor] | None,
                   shift: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray, torch.Tensor | None] | None:
        """Per unit, over all slices, a float64 ``(k, units)`` block: ``sum(x - shift)``, the golden-weighted sum
        of ``x - shift`` over the batch, max, min, ``sum((x - shift)^2)``, the non-zero count (and the saturated
        count); the totals of its rows from the 5th; the values of the only slice (else None). None when a
        value is not finite (a NaN/inf anywhere makes the sum of squares non-finite)."""
        dims = tuple(i for i in range(xv.ndim) if i != ud)
        rest = dims[1:]
        batch = xv.shape[0]
        chunks = _chunks(xv)
        block = totals = kept = None
        start = 0
        for c in chunks:
            z = _values(c, fn)
            d = z if shift is None else z - shift
            # partial sums in the tensor's precision (torch's CPU sums are cascaded: error ~eps log n), float64
            # after that; sum(dtype=float64) would first copy the data to float64
            per = d.sum(rest) if rest else d  # (rows, units)
            gold = _golden(batch, per.dtype, per.device)
            if len(chunks) > 1:
                gold = gold[start:start + c.shape[0]]
                start += c.shape[0]
            # counts per unit: float32 is exact up to 2^24 values of one unit in one slice
            wide = F64 if z.numel() > 2**24 * per.shape[1] else None
            vecs = [per.sum(0), gold @ per, z.amax(dims), z.amin(dims), torch.mul(d, d).sum(dims),
                    torch.sign(z).abs_().sum(dims, dtype=wide)]
            if self.saturation is not None:
                vecs.append(_saturated(z, self.saturation).sum(dims))
            if len(chunks) == 1:
                kept = z
            del z, d, per
            part = torch.stack(vecs).cpu().numpy().astype(np.float64)  # one device-to-host transfer per slice
            part_totals = part[4:].sum(1)
            if not math.isfinite(part_totals[0]):
                return None
            if block is None:
                block, totals = part, part_totals
            else:
                block[:2] += part[:2]
                np.maximum(block[2], part[2], out=block[2])
                np.minimum(block[3], part[3], out=block[3])
                block[4:] += part[4:]
                totals += part_totals
        return block, totals, kept

    def _histogram(self, x: torch.Tensor, inside: bool = False) -> None:
        """Bin ``x``; ``inside``: every value lies in the range (the call that set it), so no clamping.

        The bin index + 1 (0 = underflow, ``bins + 1`` = overflow) is computed in one fused pass
        ``offset + scale * x`` and truncated to int8 (vectorised on CPU; int64 is not). ``bincount``
        increments one counter per element, so up to 126 bins the int8 indices are read two at a time as
        one int16 ``i + 256 j`` (a free reinterpretation of the same bytes): half as many increments, and
        fewer stalls on repeated indices (the zeros of a ReLU). The pair counts are folded back on the host
        right away, so an accumulator keeps ``bins + 2`` counters.
        """
        lo, hi = self._edges
        m = self.bins + 2
        scale = self.bins / (hi - lo)
        if max(abs(lo), abs(hi)) * scale > 1e4 and x.dtype != F64:
            # offset and scale * x both large: their float32 sum would lose most of a bin; subtract first
            idx = torch.sub(x, lo).mul_(scale).add_(1.0)
        else:
            idx = torch.add(torch.tensor(1.0 - lo * scale, dtype=x.dtype, device=x.device), x, alpha=scale)
        if not inside:
            idx.clamp_(0.0, m - 1.0)
        if m <= 128:
            i8 = idx.to(torch.int8).reshape(-1)
            size = i8.numel()
            even = i8 if size % 2 == 0 else i8[:size - 1]
            pairs = torch.bincount(even.view(torch.int16), minlength=256 * m).cpu().numpy().reshape(m, 256)
            counts = pairs.sum(1)  # by the second index of a pair (its columns beyond m are empty) ...
            counts += pairs.sum(0)[:m]  # ... and by the first
            if size % 2:
                counts[int(i8[-1])] += 1
        else:
            counts = torch.bincount(idx.to(torch.int16 if m <= 32767 else torch.int32).reshape(-1),
                                    minlength=m).cpu().numpy()
        if inside:  # rounding at the edges of the data's own range: those values belong to the end bins
            counts[1] += counts[0]
            counts[m - 2] += counts[m - 1]
            counts[0] = counts[m - 1] = 0
        if self.hist is None:
            self.hist = counts
        else:
            self.hist += counts

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
            self.n_zero += vals.numel() - round(float(_count_nonzero(vals)))
            if self.saturation is not None:
                self.n_saturated += int(_count_saturated(vals, self.saturation))
            if self._edges is None:
                self._edges = _range(*(self.hist_range or (float(vals.min()), float(vals.max()))),
                                     exact=self.hist_range is not None)
            self._histogram(vals)

    # -- results -------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The statistics as plain Python values (keys are :class:`LayerStats` fields); see :func:`summaries`."""
        return summaries([self])[0]


def summaries(accs: Sequence[TensorAccumulator], rtol: float = 1e-6) -> list[dict[str, Any]]:
    """:meth:`TensorAccumulator.summary` of several accumulators at once.

    The per-unit arithmetic of every accumulator (means, deviations, dead and symmetric units) runs as a
    few vectorised numpy operations over all units of all of them, so summarising a probe costs a fixed
    number of operations rather than a few dozen per recorded point. Groups of calls with different unit
    layouts, and the statistics of non-finite calls, are pooled with Chan's formula.
    """
    outs: list[dict[str, Any]] = []
    groups: list[_Group] = []
    owner: list[int] = []  # accumulator of each group
    for i, acc in enumerate(accs):
        outs.append({"calls": acc.calls, "count": acc.count, "shape": acc.shape, "n_nonfinite": acc.n_nonfinite})
        for g in acc.groups.values():
            groups.append(g)
            owner.append(i)
    main = [-1] * len(accs)  # the group with the most values gives the per-unit statistics
    for k, g in enumerate(groups):
        m = main[owner[k]]
        if m < 0 or g.n_u * g.units > groups[m].n_u * groups[m].units:
            main[owner[k]] = k
    pooled: list[list[tuple[float, float, float, float, float]]] = [[] for _ in accs]  # (n, mean, M2, min, max)
    if groups:
        units = np.array([g.units for g in groups])
        n_u = np.array([float(g.n_u) for g in groups])
        starts = np.concatenate([[0], np.cumsum(units)[:-1]])
        s1, s2, mx, mn, proj = (np.concatenate([getattr(g, k) for g in groups])
                                for k in ("s1", "s2", "mx", "mn", "proj"))
        nu = np.repeat(n_u, units)
        mean = s1 / nu
        m2 = np.maximum(s2 - s1 * mean, 0.0)
        if any(g.shift is not None for g in groups):
            shift = np.concatenate([np.zeros(g.units) if g.shift is None else g.shift_np for g in groups])
            mean += shift
            proj += np.repeat([g.gw for g in groups], units) * shift
        g_mean = np.add.reduceat(mean, starts) / units
        dev = mean - np.repeat(g_mean, units)
        g_m2 = np.add.reduceat(m2, starts) + n_u * np.add.reduceat(dev * dev, starts)
        g_min, g_max = np.minimum.reduceat(mn, starts), np.maximum.reduceat(mx, starts)
        nonpos = np.repeat([accs[o].dead_rule == "nonpositive" for o in owner], units)
        dead = np.where(nonpos, mx <= 0, (mx == 0) & (mn == 0))
        g_dead = np.add.reduceat(dead, starts)
        # symmetric units: two units that vary over the batch (a constant unit, bias-dominated or all zero,
        # says nothing here) with the same output; they share their mean, which rules out most groups at once
        std_u = np.sqrt(m2 / nu)
        live = (std_u > 1e-4 * np.abs(mean)) & (std_u > 0) & ~dead & np.isfinite(mean)
        g_close = _close_pairs(mean, units, live, rtol)
        g_n = n_u * units
        rows = zip(g_n.tolist(), g_mean.tolist(), g_m2.tolist(), g_min.tolist(), g_max.tolist())
        for o, row in zip(owner, rows):
            pooled[o].append(row)
        g_dead, g_close = g_dead.tolist(), g_close.tolist()
    hists = _histograms(accs)
    for i, acc in enumerate(accs):
        out = outs[i]
        parts = pooled[i] + acc._flat
        if len(parts) == 1:
            n, mu, m2_all, lo, hi = parts[0]
        elif parts:
            n, mu, m2_all = _chan([p[:3] for p in parts])
            lo, hi = min(p[3] for p in parts), max(p[4] for p in parts)
        else:
            n, mu, m2_all, lo, hi = 0, math.nan, 0.0, math.nan, math.nan
        out["act_mean"] = mu
        out["act_std"] = math.sqrt(m2_all / n) if n else math.nan
        out["act_min"], out["act_max"] = lo, hi
        total = acc.count
        out["frac_zero"] = acc.n_zero / total if total else math.nan
        if acc.saturation is not None:
            out["frac_saturated"] = acc.n_saturated / total if total else 0.0
        k = main[i]
        if k >= 0:
            g = groups[k]
            out["units"] = g.units
            out["dead_units"] = g_dead[k]
            out["frac_dead_units"] = g_dead[k] / g.units
            out["symmetric_units"] = 0
            if g_close[k]:  # two units share a mean: compare them in full
                sl = slice(starts[k], starts[k] + g.units)
                out["symmetric_units"] = symmetric_groups(np.stack([mean[sl], std_u[sl], proj[sl]], 1),
                                                          mask=live[sl], rtol=rtol)
        if hists[i] is not None:
            out["hist_counts"], out["hist_under"], out["hist_over"], out["hist_edges"] = hists[i]
    return outs


@functools.lru_cache(maxsize=16)
def _golden(m: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``cos(0.5 + k * golden angle)``, k < m: fixed weights that never repeat (no RNG involved)."""
    k = torch.arange(m, dtype=F64, device=device)
    return torch.cos(k * 2.399963229728653 + 0.5).to(dtype)


@functools.lru_cache(maxsize=16)
def _golden_total(m: int) -> float:
    """Sum of the first ``m`` golden weights."""
    return float(np.cos(np.arange(m) * 2.399963229728653 + 0.5).sum())


def _range(lo: float, hi: float, *, exact: bool) -> tuple[float, float]:
    if exact:
        return lo, hi
    span = hi - lo
    if not span > 0:  # a constant tensor: centre it in a unit-width range
        half = 0.5 * max(abs(lo), 1.0)
        return lo - half, hi + half
    return lo, hi + 1e-5 * span + 1e-30


def _histograms(accs: Sequence[TensorAccumulator]) -> list[tuple[list[int], int, int, list[float]] | None]:
    """(counts, under, over, edges) of each accumulator's histogram (None before any value), as Python lists:
    the accumulators with the same number of bins are converted together."""
    out: list[tuple[list[int], int, int, list[float]] | None] = [None] * len(accs)
    by_bins: dict[int, list[int]] = {}
    for i, acc in enumerate(accs):
        if acc.hist is not None:
            by_bins.setdefault(acc.bins, []).append(i)
    for bins, idx in by_bins.items():
        counts = np.stack([accs[i].hist for i in idx])
        lo, hi = np.array([accs[i]._edges for i in idx]).T
        edges = lo[:, None] + ((hi - lo) / bins)[:, None] * np.arange(bins + 1)
        edges[:, -1] = hi
        for i, c, u, o, e in zip(idx, counts[:, 1:-1].tolist(), counts[:, 0].tolist(), counts[:, -1].tolist(),
                                 edges.tolist()):
            out[i] = (c, u, o, e)
    return out


def _cancels(s1: np.ndarray, s2: np.ndarray, n: int) -> bool:
    """True when ``var = s2 / n - (s1 / n)^2`` of some unit would cancel: ``mean^2 > 1e3 var`` (float32 sums
    then lose most of the variance's digits). Such units are summed again, shifted by their first value
    (the shifted-data algorithm, Chan, Golub & LeVeque 1983)."""
    return bool((1001.0 * s1 * s1 - (1000.0 * n) * s2).max() > 0)


def _close_pairs(values: np.ndarray, sizes: np.ndarray, valid: np.ndarray, rtol: float) -> np.ndarray:
    """Per segment of ``values`` (consecutive runs of ``sizes``): do two of its valid values lie within
    ``rtol * max|value of the segment|`` of each other? One sort for all segments: each segment's valid
    values are mapped (order kept) into ``[2k, 2k + 1]``, the others to ``2k + 1.5``.

    Two units with identical outputs (or identical incoming weights) share these values, so a False
    rules them out without comparing full signatures (:func:`symmetric_groups`)."""
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    v = np.where(valid, values, 0.0)  # invalid values (non-finite, masked) take no part
    lo = np.minimum.reduceat(np.where(valid, values, np.inf), starts)
    span = np.maximum.reduceat(np.where(valid, values, -np.inf), starts) - lo
    lo, span = np.where(np.isfinite(lo), lo, 0.0), np.where(np.isfinite(span) & (span > 0), span, 1.0)
    key = np.where(valid, (v - np.repeat(lo, sizes)) / np.repeat(span, sizes), 1.5)
    key += 2.0 * np.repeat(np.arange(len(sizes)), sizes)
    order = np.argsort(key)
    ok = valid[order]
    gaps = np.full(values.size, np.inf)
    gaps[:-1] = np.where(ok[:-1] & ok[1:], np.abs(np.diff(v[order])), np.inf)
    gaps[starts[1:] - 1] = np.inf  # between two segments
    scale = np.maximum(np.maximum.reduceat(np.abs(v), starts), 1e-30)
    return np.minimum.reduceat(gaps, starts) <= rtol * scale


def _values(c: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
    """``fn(c)`` (or ``c``) as float32/float64: half precision sums are too coarse; integer outputs become floats."""
    z = c if fn is None else fn(c)
    return z if z.dtype in (torch.float32, torch.float64) else z.float()


def _chunks(xv: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``xv`` in slices along the batch axis of about ``CHUNK`` elements (at least one row each)."""
    batch = xv.shape[0]
    rows = max(1, CHUNK // max(xv.numel() // batch, 1))
    return tuple(xv.split(rows, 0)) if batch > rows else (xv,)


def _count_nonzero(x: torch.Tensor) -> torch.Tensor:
    # |sign(x)| summed: branch-free and several times faster on CPU than torch.count_nonzero on ReLU
    # outputs (half zeros defeat its branch prediction); a bool sum would first copy the mask to int64.
    # float32 counts are exact up to 2^24
    return torch.sign(x).abs_().sum(dtype=F64 if x.numel() > 2**24 else None)


def _saturated(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Boolean mask of the saturated values (see the module docstring)."""
    if mode == "pre":
        return torch.abs(x) > SATURATION_BOUND
    if mode == "tanh":
        return torch.abs(x) > 1.0 - SATURATION_MARGIN
    return torch.abs(x - 0.5) > 0.5 - SATURATION_MARGIN


def _count_saturated(x: torch.Tensor, mode: str) -> torch.Tensor:
    return _saturated(x, mode).sum()


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
    Equal rows share their first column, so only the rows with a close neighbour in that column are compared
    in full (rows sorted lexicographically, neighbours compared).

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
    first = np.argsort(sig[:, 0], kind="stable")
    close = np.diff(sig[first, 0]) <= tol[0]
    if not close.any():  # the usual case: no two units even share a mean
        return 0
    near = np.zeros(len(sig), dtype=bool)
    near[:-1] |= close
    near[1:] |= close
    s = sig[first[near]]
    s = s[np.lexsort(s.T[::-1])]
    close = np.all(np.abs(np.diff(s, axis=0)) <= tol, axis=1)
    member = np.zeros(len(s), dtype=bool)
    member[:-1] |= close
    member[1:] |= close
    return int(member.sum())


class GradAccumulator:
    """Running mean and std (float64) of the gradients flowing into one recorded output."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (elements, sum, norm), on the device

    def update(self, g: torch.Tensor) -> None:
        """Fold one gradient in: two reductions, no host synchronisation (it runs inside the backward pass)."""
        g = g.detach()  # so no autograd bookkeeping either (a hook may run under create_graph)
        if g.dtype not in (torch.float32, torch.float64):
            g = g.float()
        # cascaded float32 sums, no float64 copy of the gradient (see TensorAccumulator.update)
        self.parts.append((g.numel(), g.sum(), torch.linalg.vector_norm(g)))

    def summary(self) -> tuple[float | None, float | None]:
        """(mean, std) of every gradient element seen, or (None, None) when no gradient arrived."""
        return grad_summaries([self])[0]


def grad_summaries(accs: Sequence[GradAccumulator | None]) -> list[tuple[float | None, float | None]]:
    """:meth:`GradAccumulator.summary` of several accumulators (None: nothing recorded), one transfer for all."""
    scalars = [t for acc in accs if acc is not None for _, total, norm in acc.parts for t in (total, norm)]
    values = iter(torch.stack(scalars).tolist() if scalars else [])  # Python floats: float64 from here
    out: list[tuple[float | None, float | None]] = []
    for acc in accs:
        n = s = ss = 0.0
        for count, _, _ in acc.parts if acc is not None else ():
            n += count
            s += next(values)
            ss += next(values) ** 2
        if not n:
            out.append((None, None))
            continue
        mean = s / n
        var = max(ss / n - mean * mean, 0.0)  # gradients are centred near 0: no cancellation to fear
        out.append((mean, math.sqrt(var)))
    return out


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
    s1, s2, fmin, fmax = torch.stack([feats.sum(0), torch.mul(feats, feats).sum(0), feats.amin(0),
                                      feats.amax(0)]).cpu().numpy().astype(np.float64)
    shift = 0.0
    if _cancels(s1, s2, n):  # features of mean 100: sum again, shifted by the first example
        d = feats - feats[:1]
        shift, s1, s2 = torch.stack([feats[0], d.sum(0), d.square_().sum(0)]).cpu().numpy().astype(np.float64)
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


def _mean_std(n: int, s: float, norm: float) -> tuple[float, float]:
    """Population mean and std of ``n`` values from their sum and 2-norm."""
    mean = s / n
    return mean, math.sqrt(max(norm * norm / n - mean * mean, 0.0))


def weight_summary(weight: torch.Tensor, grad: torch.Tensor | None = None, *, bias: torch.Tensor | None = None,
                   out_dim: int | None = 0, rtol: float = 1e-6) -> dict[str, Any]:
    """Mean/std of a weight and its gradient, and the units whose incoming weights (and bias) are identical.

    ``out_dim`` is the axis of the output units (0 for Linear/Conv, 1 for ConvTranspose); ``None`` skips
    the symmetry check (norm scales, embeddings). Rows are compared by (sum, norm, a fixed pseudo-random
    projection, bias), so two different rows coincide only by an accident of measure zero. See
    :func:`weight_summaries` (several weights at once).

    >>> w = torch.ones(3, 4)
    >>> weight_summary(w, bias=torch.zeros(3))["symmetric_units"]
    3
    """
    return weight_summaries([(weight, grad, bias, out_dim)], rtol=rtol)[0]


@torch.no_grad()
def weight_summaries(items: Sequence[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, int | None]], *,
                     rtol: float = 1e-6) -> list[dict[str, Any]]:
    """:func:`weight_summary` of several ``(weight, grad, bias, out_dim)`` at once.

    Sums and norms are cascaded sums in the weight's precision, combined in float64 (no float64 copy of a
    large weight): per weight its row sums (the first column of the symmetry signature; their total gives
    the mean) and the gradient's sum, the norms of all weights and of all gradients in one call each, and
    one device-to-host transfer. The other signature columns (row norms, projection, bias) are computed only
    for a weight where two row sums coincide.
    """
    ws, gs, row_sums, g_sums = [], [], [], []
    for weight, grad, _, out_dim in items:
        w = weight.detach()
        w = w if w.dtype in (torch.float32, torch.float64) else w.float()
        ws.append(w)
        if out_dim is not None and w.ndim >= 2 and w.shape[out_dim] > 1:
            row_sums.append((w if out_dim == 0 else w.movedim(out_dim, 0)).reshape(w.shape[out_dim], -1).sum(1))
        else:
            row_sums.append(w.sum().reshape(1))
        if grad is not None:
            g = grad.detach()
            g = g if g.dtype in (torch.float32, torch.float64) else g.float()
            gs.append(g)
            g_sums.append(g.sum())
    if not items:
        return []
    flat = torch.cat([*row_sums, torch.stack(_norms(ws) + _norms(gs) + g_sums)]).cpu().numpy().astype(np.float64)
    sizes = np.array([r.numel() for r in row_sums])
    total = int(sizes.sum())
    row, w_norms = flat[:total], flat[total:total + len(ws)]
    g_norms, g_totals = flat[total + len(ws):total + len(ws) + len(gs)], flat[total + len(ws) + len(gs):]
    w_sums = np.add.reduceat(row, np.concatenate([[0], np.cumsum(sizes)[:-1]]))
    checked = np.array([out_dim is not None and w.ndim >= 2 and w.shape[out_dim] > 1
                        for w, (_, _, _, out_dim) in zip(ws, items)])
    # the usual case: no two rows of a weight share a sum (within rtol), so no two rows are equal
    close = _close_pairs(row, sizes, np.isfinite(row), rtol) & checked
    outs: list[dict[str, Any]] = []
    j = 0
    for i, (_, grad, bias, out_dim) in enumerate(items):
        w = ws[i]
        out: dict[str, Any] = {}
        out["weight_mean"], out["weight_std"] = _mean_std(w.numel(), float(w_sums[i]), float(w_norms[i]))
        if out["weight_std"] < 1e-3 * abs(out["weight_mean"]):
            # sum and norm in float32 leave ~1e-4 relative noise in norm^2/n - mean^2: a constant tensor
            # (norm gains at ones) would read std 3e-4; compute these few directly
            std = float(w.to(F64).std(unbiased=False)) if w.numel() > 1 else 0.0
            out["weight_std"] = std
        if checked[i]:
            out["symmetric_units"] = 0
            if close[i]:
                rows = (w if out_dim == 0 else w.movedim(out_dim, 0)).reshape(w.shape[out_dim], -1)
                cols = [rows.sum(1), torch.linalg.vector_norm(rows, dim=1),
                        rows @ _golden(rows.shape[1], rows.dtype, rows.device)]
                if bias is not None and bias.numel() == rows.shape[0]:
                    cols.append(bias.detach().reshape(-1).to(rows.dtype))
                out["symmetric_units"] = symmetric_groups(torch.stack(cols, 1).to(F64).cpu().numpy(), rtol=rtol)
        if grad is not None:
            gstd = _mean_std(gs[j].numel(), float(g_totals[j]), float(g_norms[j]))[1]
            j += 1
            out["weight_grad_std"] = gstd
            # a constant weight (a norm layer's ones) has no scale to compare with
            out["grad_weight_ratio"] = gstd / out["weight_std"] if out["weight_std"] > 0 else None
        outs.append(out)
    return outs


def _norms(ts: list[torch.Tensor]) -> list[torch.Tensor]:
    """2-norms of several tensors (one call when they share a device and dtype)."""
    if len(ts) > 1 and len({(t.device, t.dtype) for t in ts}) == 1:
        return list(torch._foreach_norm(ts))
    return [torch.linalg.vector_norm(t) for t in ts]
