"""Figures for probe results and training monitors (matplotlib, imported only here, with the Agg backend
when no display is configured).

* :func:`plot_activations`: the seed figure of the initialization argument: one column per probe result
  (for example three initial std values), one row per layer, the activation histograms on a shared
  x-axis so shrinking and exploding are visible at a glance.
* :func:`plot_profile`: std per layer of the forward activations and of the backward gradients, log
  scale, one line per result.
* :func:`plot_monitor`: for each layer, the histogram of its activations over training steps as an
  image (fastai's "colorful dimension"), with the std underneath.

Every function returns the matplotlib ``Figure`` and writes it to ``path`` when one is given (the
format follows the suffix: ``.png``, ``.svg``, ``.pdf``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from initlab._format import fmt_factor, fmt_number, fmt_percent
from initlab._io import atomic_figure
from initlab.probing.health import fit_factor
from initlab.probing.result import ProbeData as ProbeResult  # the data, not the class that renders it
from initlab.probing.stats import LayerStats

__all__ = ["plot_activations", "plot_profile", "plot_monitor", "representations", "as_results", "column_factor",
           "robust_ylim", "set_log_ylim", "log_limits", "mark_clipped"]


def _plt() -> Any:
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "cairo") and not _has_display():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _has_display() -> bool:
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def as_results(results: Any) -> list[tuple[str, Any]]:
    """``[(label, ProbeResult), ...]`` from one result, a dict ``{label: result}`` or a list of pairs."""
    if isinstance(results, ProbeResult):
        return [("", results)]
    if isinstance(results, Mapping):
        items = list(results.items())
    elif isinstance(results, Sequence) and not isinstance(results, str):
        items = [(r if isinstance(r, tuple) else (str(i), r)) for i, r in enumerate(results)]
    else:
        raise TypeError(f"results must be a ProbeResult, a dict {{label: ProbeResult}} or a list of (label, "
                        f"ProbeResult); got {type(results).__name__}")
    if not items:
        raise ValueError("results is empty: give at least one ProbeResult")
    for label, r in items:
        if not isinstance(r, ProbeResult):
            raise TypeError(f"results[{label!r}] must be a ProbeResult; got {type(r).__name__}")
    return [(str(label), r) for label, r in items]


def representations(layers: Sequence[LayerStats]) -> list[LayerStats]:
    """What each layer hands on: its activation's output when one was recorded, else its own output
    (linear layers, the output layer); normalized layer outputs are skipped (their norm layer follows)."""
    covered = {s.source for s in layers if s.kind == "activation" and s.source}
    out = []
    for s in layers:
        if s.kind == "activation":
            out.append(s)
        elif s.is_layer and s.name not in covered and not s.normalized and s.kind != "norm":
            out.append(s)
        elif s.kind == "norm" and s.name not in covered:
            out.append(s)
    return out


def _pick(layers: list[LayerStats], which: Any) -> list[LayerStats]:
    if which is None or which == "outputs":
        return representations(layers)
    if which == "all":
        return list(layers)
    if which == "layers":
        return [s for s in layers if s.is_layer]
    if which == "activations":
        return [s for s in layers if s.kind == "activation"]
    if isinstance(which, Sequence) and not isinstance(which, str):
        by_name = {s.name: s for s in layers}
        missing = [n for n in which if n not in by_name]
        if missing:
            raise ValueError(f"layers: {missing} not recorded; recorded: {list(by_name)}")
        return [by_name[n] for n in which]
    raise ValueError(f"layers must be 'outputs', 'all', 'layers', 'activations' or a list of names; got {which!r}")


def _hist(s: LayerStats, hide_zeros: bool) -> tuple[np.ndarray, np.ndarray, int]:
    counts = np.asarray(s.hist_counts, dtype=np.float64)
    edges = np.asarray(s.hist_edges, dtype=np.float64)
    zeros = 0
    if hide_zeros and counts.size and s.frac_zero and s.frac_zero > 0:
        zeros = int(round(s.frac_zero * s.count))
        k = int(np.searchsorted(edges, 0.0, side="right")) - 1  # bin [e_k, e_k+1) holding 0
        if 0 <= k < counts.size:
            counts[k] = max(counts[k] - zeros, 0.0)
    return counts, edges, zeros


def plot_activations(results: Any, path: str | Path | None = None, *, layers: Any = None, sharex: str = "none",
                     hide_zeros: bool = True, title: str | None = None, figsize: tuple[float, float] | None = None,
                     color: str = "C0", factors: Mapping[str, float] | None = None) -> Any:
    """Per-layer activation histograms, one column per result, one row per layer.

    Args:
        results: a ProbeResult, ``{label: ProbeResult}`` (e.g. ``{"std 0.10": r1, "std 0.14": r2}``) or
            a list of ``(label, ProbeResult)``. Rows are matched by position.
        path: where to save the figure (optional).
        layers: "outputs" (default: what each layer hands to the next, see :func:`representations`), "all",
            "layers", "activations" or a list of recorded names.
        sharex: "none" (default: each panel on its own x-range, so a layer of std 0.01 is a histogram
            too, not a one-pixel spike next to a layer of std 10; the std printed in each panel carries the
            scale), "col" (each column on one x-axis), "all" (one axis for the whole figure) or "row".
        hide_zeros: leave the exact zeros (ReLU's half) out of the bars and print their share instead, so
            the spike at 0 does not flatten everything else.
        title: figure title.
        factors: ``{label: factor}`` printed under each column's label as ``std x0.71 per layer``
            (an experiment's own estimate); default: the least-squares fit the depth verdicts read
            (:func:`initlab.probing.health.fit_factor` over :meth:`ProbeResult.profile`), marked "(fit)".
            Both go through :func:`initlab._format.fmt_factor`, the rounding of the verdicts.

    Returns:
        the matplotlib Figure.

    >>> import torch, initlab
    >>> r = initlab.probe(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU()), torch.randn(32, 4))
    >>> fig = initlab.plot_activations({"default": r})
    """
    items = as_results(results)
    if sharex not in ("none", "col", "all", "row"):
        raise ValueError(f"sharex must be 'none', 'col', 'all' or 'row'; got {sharex!r}")
    columns = [(label, _pick(r.layers, layers)) for label, r in items]
    nrows = max(len(c) for _, c in columns)
    if nrows == 0:
        raise ValueError("nothing to plot: no recorded layer in the results")
    ncols = len(columns)
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    figsize = figsize or (3.2 * ncols + 0.8, 1.15 * nrows + 1.0)
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False,
                             sharex={"none": False, "col": "col", "all": True, "row": "row"}[sharex])
    for j, (label, stats) in enumerate(columns):
        for i in range(nrows):
            ax = axes[i][j]
            ax.tick_params(labelsize=7)
            ax.set_yticks([])
            for side in ("top", "right", "left"):
                ax.spines[side].set_visible(False)
            if i >= len(stats):
                ax.set_visible(False)
                continue
            s = stats[i]
            counts, edges, zeros = _hist(s, hide_zeros)
            total = max(s.count - zeros, 1)
            if counts.size:
                ax.stairs(counts / total, edges, fill=True, color=color, alpha=0.85)
            ax.xaxis.set_major_locator(MaxNLocator(5))
            note = f"std {fmt_number(s.act_std)}"
            if zeros:
                note += f"\n{fmt_percent(zeros / max(s.count, 1))} zeros"
            ax.text(0.98, 0.9, note, transform=ax.transAxes, ha="right", va="top", fontsize=7)
            if j == 0:
                name = s.name if len(s.name) <= 14 else "…" + s.name[-13:]
                act = s.activation or ""
                ax.set_ylabel(f"{name}\n{act}" if act else name, fontsize=7, rotation=0, ha="right", va="center")
            if i == 0:
                ax.set_title(_column_title(label, items[j][1], (factors or {}).get(label)), fontsize=9)
            if i == len(stats) - 1:
                ax.set_xlabel("activation value" + (" (x-range per panel)" if sharex == "none" else ""), fontsize=7)
    fig.suptitle(title or "activations per layer (rows: depth; bars: share of the values)", fontsize=11)
    fig.tight_layout()
    _save(fig, path)
    return fig


def column_factor(result: Any) -> float | None:
    """The forward per-layer std factor the depth verdicts read: :func:`~initlab.probing.health.fit_factor`
    over the depth chain after its first layer (None with fewer than two points)."""
    chain = [s.act_std for s in result.profile()[1:] if s.act_std and math.isfinite(s.act_std) and s.act_std > 0]
    return fit_factor(chain) if len(chain) >= 2 else None


def _column_title(label: str, result: Any, factor: float | None = None) -> str:
    """The label and the per-layer std factor: ``factor`` when given, else the verdicts' fit."""
    fitted = factor is None
    factor = column_factor(result) if fitted else factor
    text = f"std {fmt_factor(factor)} per layer" + (" (fit)" if fitted else "") if factor is not None else ""
    return "\n".join(t for t in (label, text) if t)


def plot_profile(results: Any, path: str | Path | None = None, *, layers: Any = "chain", title: str | None = None,
                 figsize: tuple[float, float] = (9.0, 3.6), theory: Any = None) -> Any:
    """Std per layer of the forward activations and of the backward gradients (log scale), one line per result.

    ``layers``: "chain" (default: the Linear/Conv outputs the depth verdicts read; all parametrized layers
    when there are fewer than two), "outputs", "all" or a list of names. ``theory``: a
    ``{label: Prediction}`` mapping (from :func:`initlab.theory.propagate`, or one Prediction when there is one
    result): each prediction is drawn dashed, in its result's colour, next to the measurement
    (matched through :func:`initlab.compare`).
    """
    items = as_results(results)
    if theory is not None and not isinstance(theory, dict):
        theory = {items[0][0]: theory} if len(items) == 1 else None
        if theory is None:
            raise ValueError("theory must be a {label: Prediction} dict when several results are drawn")
    plt = _plt()
    fig, (ax_f, ax_b) = plt.subplots(1, 2, figsize=figsize)
    names: list[str] = []
    for k, (label, r) in enumerate(items):
        if layers == "chain":
            pts = r.profile()
            if len(pts) < 2:
                pts = [s for s in r.layers if s.is_layer]
        else:
            pts = _pick(r.layers, layers)
        x = np.arange(len(pts))
        fwd = np.array([_pos(s.act_std) for s in pts])
        bwd = np.array([_pos(s.grad_std) for s in pts])
        ax_f.plot(x, fwd, "o-", color=f"C{k}", label=label or None, ms=3)
        ax_b.plot(x, bwd, "o-", color=f"C{k}", label=label or None, ms=3)
        if theory and label in theory:
            from initlab.theory.compare import compare

            rows = {(row.name, row.direction): row.predicted for row in compare(theory[label], r)}
            for ax, direction in ((ax_f, "forward"), (ax_b, "backward")):
                pred = np.array([_pos(rows.get((s.name, direction), np.nan)) for s in pts])
                ax.plot(x, pred, "--", color=f"C{k}", alpha=0.8, label=f"{label} (theory)" if label else "theory")
        if len(pts) > len(names):
            names = [s.name for s in pts]
    for ax, what in ((ax_f, "activation std (forward)"), (ax_b, "gradient std (backward)")):
        ax.set_yscale("log")
        set_log_ylim(ax, [v for line in ax.lines for v in np.asarray(line.get_ydata(), float)])
        ax.set_title(what, fontsize=10)
        ax.set_ylabel("std (log scale)", fontsize=8)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([n if len(n) <= 12 else "…" + n[-11:] for n in names], rotation=45, ha="right",
                           fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xlabel("layer (execution order)", fontsize=8)
    if any(label for label, _ in items):
        ax_f.legend(fontsize=8)
    fig.suptitle(title or "signal propagation", fontsize=11)
    fig.tight_layout()
    _save(fig, path)
    return fig


MIN_LOG_SPAN = 10.0  # a log axis spans at least one decade: a +-1 % wobble stays a flat line


def set_log_ylim(ax: Any, values: Sequence[float], min_span: float = MIN_LOG_SPAN) -> tuple[float, float] | None:
    """Limits of a log-scale axis that cover ``values`` and span at least a factor ``min_span``, centred
    (geometrically) on the data, so noise of a healthy net (std 1.00 +- 1 %) is not magnified into a V.
    Plain tick labels (``0.5``, ``1``, ``2``), never ``1.0025e0``. Returns the limits (None: no positive value).
    """
    lim = log_limits(values, min_span)
    if lim is None:
        return None
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.set_ylim(*lim)
    if lim[1] / lim[0] < 100:  # within two decades, label 1-2-5 ticks in plain numbers
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        fmt = ScalarFormatter()
        fmt.set_scientific(False)
        ax.yaxis.set_major_formatter(fmt)
        ax.yaxis.set_minor_formatter(NullFormatter())
    return lim


def log_limits(values: Sequence[float], min_span: float = MIN_LOG_SPAN) -> tuple[float, float] | None:
    """``(low, high)`` covering the positive finite ``values`` with a 10 % margin, widened to a ratio of at
    least ``min_span`` around their geometric centre.

    >>> [round(v, 3) for v in log_limits([0.99, 1.0, 1.01])]
    [0.316, 3.162]
    >>> log_limits([1e-3, 10.0]) == (1e-3 / 1.1, 10.0 * 1.1)
    True
    """
    v = np.asarray([x for x in values if x is not None and math.isfinite(x) and x > 0], dtype=np.float64)
    if v.size == 0:
        return None
    lo, hi = float(v.min()) / 1.1, float(v.max()) * 1.1
    if hi / lo < min_span:
        centre = math.sqrt(float(v.min()) * float(v.max()))
        lo, hi = centre / math.sqrt(min_span), centre * math.sqrt(min_span)
    return lo, hi


def robust_ylim(values: Any, *, fence: float = 3.0, max_share: float = 0.05, margin: float = 0.08,
                min_span: float = 0.0, around: float | None = None) -> tuple[float, float]:
    """Linear y-limits that the bulk of ``values`` sets, not one outlier.

    Values above Tukey's far fence ``Q3 + fence * IQR`` are left out when they are at most ``max_share``
    of the finite values (so one seed's initial loss of 15.6 among curves near 2 does not flatten them);
    a whole curve up there is more than a few points and keeps its place. Then a ``margin`` of the span
    on each side; at least ``min_span`` wide; containing ``around`` when given (ratio plots:
    ``around=1, min_span=0.5`` keep 1 in view and a 1 % wobble small).

    For loss curves: ``ax.set_ylim(*robust_ylim(all_losses))`` then :func:`mark_clipped` for the points
    left above.

    >>> robust_ylim([2.3, 2.2, 2.0, 1.5, 1.0] * 20 + [15.6], margin=0.0)
    (1.0, 2.3)
    >>> robust_ylim([0.99, 1.01], around=1.0, min_span=0.5, margin=0.0)
    (0.75, 1.25)
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (0.0, 1.0) if around is None else (around - 0.5, around + 0.5)
    q1, q3 = np.quantile(v, [0.25, 0.75])
    far = v > q3 + fence * (q3 - q1)
    kept = v[~far] if 0 < far.sum() <= max_share * v.size else v
    lo, hi = float(kept.min()), float(kept.max())
    if around is not None:
        lo, hi = min(lo, around), max(hi, around)
    span = hi - lo
    lo, hi = lo - margin * span, hi + margin * span
    if hi - lo < min_span:
        centre = (lo + hi) / 2 if around is None else around
        lo, hi = min(lo, centre - min_span / 2), max(hi, centre + min_span / 2)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def mark_clipped(ax: Any, x: Any, y: Any, ylim: tuple[float, float]) -> int:
    """Draw the points of ``(x, y)`` above ``ylim[1]`` as ``^`` at the top edge with their largest value
    written next to them; returns how many were clipped."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    above = np.isfinite(y) & (y > ylim[1])
    if above.any():
        ax.plot(x[above], np.full(above.sum(), ylim[1]), "^", color="0.3", ms=5, clip_on=False)
        k = int(np.argmax(np.where(above, y, -np.inf)))
        ax.annotate(f"{fmt_number(y[k])} (off scale)", (x[k], ylim[1]), xytext=(4, -10), textcoords="offset points",
                    fontsize=7, color="0.3")
    return int(above.sum())


def _pos(v: float | None) -> float:
    return v if v is not None and math.isfinite(v) and v > 0 else np.nan


def plot_monitor(monitor: Any, path: str | Path | None = None, *, layers: Any = None, bins: int = 60,
                 title: str | None = None) -> Any:
    """Histograms of each layer's activations over the recorded training steps (fastai's "colorful
    dimension"): x = step, y = activation value, colour = log(1 + count); the std under each image.

    ``monitor``: an :class:`initlab.Monitor` (or anything with ``steps`` and ``history``). ``layers``: names
    (default: the layers' outputs as in :func:`plot_activations`). Each step's histogram is re-binned onto a
    common grid spanning all steps (counts are spread uniformly inside their original bins).
    """
    steps = list(monitor.steps)
    if not steps:
        raise ValueError("the monitor has not recorded any step yet")
    last = monitor.history[-1]
    chosen = _pick(list(last.values()), layers) if not isinstance(layers, Sequence) or isinstance(layers, str) \
        else [last[n] for n in layers if n in last]
    names = [s.name for s in chosen]
    if not names:
        raise ValueError("no layer to plot")
    plt = _plt()
    fig, axes = plt.subplots(2, len(names), figsize=(2.6 * len(names) + 1.4, 4.6), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]}, sharex=True, layout="constrained")
    images = [_monitor_image(monitor, name, steps, bins) for name in names]
    vmax = max((float(np.log1p(im).max()) for im, _, _ in images), default=1.0) or 1.0
    for j, (name, (image, lo, hi)) in enumerate(zip(names, images)):
        ax = axes[0][j]
        shown = ax.imshow(np.log1p(image), origin="lower", aspect="auto", cmap="viridis", vmin=0.0, vmax=vmax,
                          extent=(steps[0] - 0.5, steps[-1] + 0.5, lo, hi) if len(steps) > 1 else (-0.5, 0.5, lo, hi))
        ax.set_title(name if len(name) <= 16 else "…" + name[-15:], fontsize=8)
        ax.tick_params(labelsize=7)
        stds = [h[name].act_std if h.get(name) else np.nan for h in monitor.history]
        axes[1][j].plot(steps, stds, "o-" if len(steps) < 30 else "-", color="C1", ms=2)
        if all(v > 0 for v in stds if np.isfinite(v)):
            axes[1][j].set_yscale("log")
            set_log_ylim(axes[1][j], stds)
        axes[1][j].tick_params(labelsize=7)
        axes[1][j].set_xlabel("step", fontsize=8)
        if j == 0:
            ax.set_ylabel("activation value", fontsize=8)
            axes[1][j].set_ylabel("std", fontsize=8)
    bar = fig.colorbar(shown, ax=list(axes[0]), fraction=0.04, pad=0.02)
    bar.set_label("log(1 + count) per bin", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle(title or "activations during training", fontsize=11)
    _save(fig, path)
    return fig


def _monitor_image(monitor: Any, name: str, steps: list[int], bins: int) -> tuple[np.ndarray, float, float]:
    """(counts on a common grid, one column per step; grid low; grid high) of one layer's histograms."""
    series = [h.get(name) for h in monitor.history]
    lo = min((s.hist_edges[0] for s in series if s and s.hist_edges), default=0.0)
    hi = max((s.hist_edges[-1] for s in series if s and s.hist_edges), default=1.0)
    grid = np.linspace(lo, hi, bins + 1)
    image = np.zeros((bins, len(steps)))
    for k, s in enumerate(series):
        if s and s.hist_counts:
            image[:, k] = rebin(np.asarray(s.hist_counts, float), np.asarray(s.hist_edges, float), grid)
    return image, lo, hi


def rebin(counts: np.ndarray, edges: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Counts of a histogram re-binned onto ``grid`` edges (uniform density inside each original bin);
    the total inside the common range is preserved."""
    cum = np.concatenate([[0.0], np.cumsum(counts)])
    at = np.interp(grid, edges, cum, left=0.0, right=cum[-1])
    return np.diff(at)


def _save(fig: Any, path: str | Path | None) -> None:
    if path is None:
        return
    atomic_figure(fig, path, "path", dpi=120, bbox_inches="tight")
