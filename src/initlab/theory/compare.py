"""Put theory next to measurement: predicted vs measured std, layer by layer, forward and backward.

``compare(prediction, probe_result)`` matches the layers of a :class:`~initlab.theory.Prediction` with the
per-layer :class:`~initlab.probing.stats.LayerStats` of a probe run by qualified module name, and returns
one row per (layer, direction) with the predicted and measured std and ``ratio = measured / predicted``
(1 means the theory is exact; 2 means the network's signal is twice what theory says).

Forward: the std of the layer's output elements (``LayerPrediction.forward_std`` vs ``LayerStats.act_std``).
Backward: the std of the loss gradient at the layer's output (``grad_std`` vs ``LayerStats.grad_std``).
The prediction assumes a unit-variance cotangent at the model's output. ``initlab.probe`` without a loss
back-propagates ``c / batch`` with ``c ~ N(0, 1)``, so ``grad_scale="auto"`` (the default) multiplies the
predicted gradient std by ``1 / batch`` for such a result: the comparison is then absolute. For a probe
driven by a real loss the cotangent's size is unknown: "auto" rescales the predicted gradients so that
they agree at the last compared layer ("output" forces this), and the ratios show how the gradient's
*profile* through depth matches. A number sets the factor.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # read by duck typing at run time: compare sits below the probe that calls it
    from initlab.theory.propagate import Prediction

DIRECTIONS = ("forward", "backward")


@dataclass(frozen=True)
class ComparisonRow:
    """One comparison: ``name`` (layer), ``direction`` ("forward"/"backward"), ``predicted`` and
    ``measured`` std, ``ratio = measured / predicted`` (NaN when either is missing or predicted is 0),
    ``reliable`` (False when the prediction crossed a gap)."""

    name: str
    direction: str
    predicted: float
    measured: float
    ratio: float
    reliable: bool = True


@dataclass
class Comparison:
    """Rows of predicted vs measured std (see the module docstring); ``table()`` renders them."""

    rows: list[ComparisonRow]
    unmatched: list[str] = field(default_factory=list)
    grad_scale: float = 1.0

    def __iter__(self) -> Iterator[ComparisonRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def direction(self, direction: str) -> list[ComparisonRow]:
        """The rows of one direction, in layer order."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}; got {direction!r}")
        return [r for r in self.rows if r.direction == direction]

    def max_error(self, direction: str | None = None) -> float:
        """Largest ``|ratio - 1|`` over the rows with a finite ratio (of one direction if given)."""
        rows = self.rows if direction is None else self.direction(direction)
        errs = [abs(r.ratio - 1.0) for r in rows if math.isfinite(r.ratio)]
        return max(errs) if errs else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [asdict(r) for r in self.rows], "unmatched": list(self.unmatched),
                "grad_scale": self.grad_scale}

    def table(self, color: bool | None = None) -> str:
        """One line per layer: predicted, measured and ratio for forward and backward side by side.

        Ratios off by more than 10% are yellow, by more than a factor 2 red (when colour is on)."""
        from initlab._format import Column, render

        by_name: dict[str, dict[str, ComparisonRow]] = {}
        for r in self.rows:
            by_name.setdefault(r.name, {})[r.direction] = r
        rows = []
        for name, d in by_name.items():
            f, b = d.get("forward"), d.get("backward")
            rows.append({"layer": name or "<root>",
                         "fp": f.predicted if f else None, "fm": f.measured if f else None,
                         "fr": f.ratio if f else None, "bp": b.predicted if b else None,
                         "bm": b.measured if b else None, "br": b.ratio if b else None,
                         "flag": "" if all(r.reliable for r in d.values()) else "after a gap"})

        def tone(v: Any, row: Any) -> str | None:
            if v is None or not math.isfinite(v):
                return None
            err = abs(math.log(v)) if v > 0 else math.inf
            return "red" if err > math.log(2) else "yellow" if err > math.log(1.1) else "green"

        def ratio_fmt(v: Any) -> str:
            return "-" if v is None or not math.isfinite(v) else f"{v:.3f}"

        cols = [Column("layer"), Column("fp", "fwd pred"), Column("fm", "fwd meas"),
                Column("fr", "fwd ratio", fmt=ratio_fmt, align=">", color=tone),
                Column("bp", "grad pred"), Column("bm", "grad meas"),
                Column("br", "grad ratio", fmt=ratio_fmt, align=">", color=tone)]
        if any(r["flag"] for r in rows):
            cols.append(Column("flag", ""))
        title = "theory vs measurement (std; ratio = measured / predicted)"
        if self.grad_scale != 1.0:
            title += f"; predicted gradients x {self.grad_scale:.4g}"
        footer = ("not compared: " + ", ".join(self.unmatched)) if self.unmatched else None
        return render(rows, cols, title=title, footer=footer, color=color)

    def __str__(self) -> str:
        return self.table(color=False)


def _layer_stats(probe_result: Any) -> list[Any]:
    """The per-layer records of a probe result (a ProbeResult, a list of LayerStats, or a dict of them)."""
    layers = getattr(probe_result, "layers", probe_result)
    if isinstance(layers, dict):
        layers = list(layers.values())
    if not isinstance(layers, (list, tuple)):
        raise TypeError(
            "probe_result must be an initlab ProbeResult, a list of LayerStats or a dict name -> LayerStats; "
            f"got {type(probe_result).__name__}"
        )
    return list(layers)


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def compare(prediction: Prediction, probe_result: Any, *, grad_scale: float | str = "auto") -> Comparison:
    """Rows of predicted vs measured std for every layer present in both.

    ``prediction``: from :func:`initlab.theory.propagate`; ``probe_result``: from :func:`initlab.probe`
    (or its list of ``LayerStats``). ``grad_scale``: "auto", "output" or a number multiplying the
    predicted gradient std (see the module docstring).

    >>> import torch
    >>> from torch import nn
    >>> from initlab.theory import propagate
    >>> from initlab.probing.stats import LayerStats
    >>> net = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64))
    >>> pred = propagate(net)
    >>> stats = [LayerStats("0", "linear", act_std=pred.layer("0").forward_std, grad_std=1.0)]
    >>> compare(pred, stats, grad_scale=1.0).direction("forward")[0].ratio
    1.0
    """
    if not all(hasattr(prediction, a) for a in ("layers", "gaps", "input_var")):
        raise TypeError(f"prediction must be an initlab.theory.Prediction; got {type(prediction).__name__}")
    if isinstance(grad_scale, str):
        if grad_scale not in ("auto", "output"):
            raise ValueError(f"grad_scale must be 'auto', 'output' or a positive number; got {grad_scale!r}")
    elif isinstance(grad_scale, bool) or not isinstance(grad_scale, (int, float)) or not grad_scale > 0 \
            or not math.isfinite(grad_scale):
        raise ValueError(f"grad_scale must be 'auto', 'output' or a positive finite number; got {grad_scale!r}")
    stats = {}
    for s in _layer_stats(probe_result):
        name = getattr(s, "name", None)
        if name is None:
            raise TypeError(f"probe_result entries must be LayerStats; got {type(s).__name__}")
        if getattr(s, "kind", "") == "activation" and not getattr(s, "is_layer", False) or ":" in name:
            continue  # activation records ("fc1:relu") measure the post-activation, not the layer output
        stats.setdefault(name, s)

    matched = [(lp, stats[lp.name]) for lp in prediction.layers if lp.name in stats]
    unmatched = [lp.name or "<root>" for lp in prediction.layers if lp.name not in stats]

    scale = 1.0
    if grad_scale == "auto" and getattr(probe_result, "backward", None) == "cotangent":
        scale = 1.0 / max(int(getattr(probe_result, "batch_size", 1) or 1), 1)  # probe's cotangent is c / batch
    elif grad_scale == "auto" and getattr(probe_result, "backward", None) not in ("loss", None):
        scale = 1.0
    elif grad_scale in ("auto", "output"):
        for lp, s in reversed(matched):
            g = _num(getattr(s, "grad_std", None))
            if math.isfinite(g) and g > 0 and lp.grad_std > 0 and math.isfinite(lp.grad_std):
                scale = g / lp.grad_std
                break
    else:
        scale = float(grad_scale)

    rows: list[ComparisonRow] = []
    for lp, s in matched:
        for direction, pred, meas in (("forward", lp.forward_std, _num(getattr(s, "act_std", None))),
                                      ("backward", lp.grad_std * scale, _num(getattr(s, "grad_std", None)))):
            ratio = meas / pred if pred > 0 and math.isfinite(pred) and math.isfinite(meas) else math.nan
            rows.append(ComparisonRow(lp.name, direction, pred, meas, ratio, lp.reliable))
    return Comparison(rows, unmatched, scale)
