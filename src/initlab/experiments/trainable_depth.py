"""Schoenholz et al. 2017, "Deep information propagation": random tanh networks train only when their
depth is below about 6 xi_c, the correlation depth scale of mean-field theory.

In the wide limit, two inputs' pre-activations have a correlation ``c_l`` that relaxes to its fixed point
as ``exp(-l / xi_c)`` (``initlab.theory.mean_field``). Deeper than a few ``xi_c``, the network's output no
longer tells its inputs apart (ordered phase: they all collapse together; chaotic phase: they are all
equally decorrelated) and gradients vanish or explode; Schoenholz et al. (their Fig. 5 and 6: MNIST and
CIFAR-10, tanh, ``sigma_b^2 = 0.05``, ``sigma_w^2`` in [1, 4], depths up to 300) found the trainable region
bounded by the curve ``L = 6 xi_c(sigma_w^2)``, which diverges at the critical point ``chi_1 = 1``.

Setup, scaled down to a CPU: ``zoo.mlp(L, 64, "tanh")`` shapes (L hidden tanh layers) on standardized
MNIST (4000 training digits); every weight ``variance_scaling(scale=sigma_w^2, mode="fan_in",
distribution="normal")``, every bias ``normal(std=sqrt(0.05))``, both from the catalogue; SGD with
momentum 0.9, learning rate 0.01, batch 64, 400 steps (quick: width 32, 150 steps); measured: the training
accuracy on the first 1000 training digits. The networks of one depth (one per ``sigma_w^2``) train side
by side as one batched model (a stack of independent weight matrices, so each network gets exactly its
own gradient and momentum, and they all see the same minibatches). ``6 xi_c`` comes from
``initlab.theory.mean_field("tanh", sigma_w^2, 0.05)``.

The verdict (:func:`verdict`) is a pure function of the measured cells; see its docstring for the
criteria. The training budget (a few hundred SGD steps instead of the paper's thousands) caps how deep
any network can learn here, also at criticality where ``6 xi_c`` is in the thousands; so the experiment
checks the paper's bound (nothing trains far above the curve, what trains lies under it, the region is
widest at criticality), and reports the budget-limited depth reach as measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from initlab.experiments._common import Context, finish, generator, minibatches, new_figure

SIGMA_B2 = 0.05
CHANCE = 0.1
TRAINED = 0.5  # a cell "trains" when its training accuracy reaches 50% (chance: 10%)
UNDER_FRACTION = 0.9  # at least 90% of the trained cells lie under 6 xi_c
FAR_ABOVE = 2.0  # "far above the curve": depth >= 2 x 6 xi_c
MIN_FAR_CELLS = 3  # the far-above check needs at least this many cells to mean anything
WELL_UNDER = 0.25  # "well under the curve": depth <= 6 xi_c / 4
WELL_UNDER_FRACTION = 0.6  # at least 60% of the cells well under the curve (within budget) train
LR, MOMENTUM, BATCH = 0.01, 0.9, 64


class StackedMLP(nn.Module):
    """``C`` independent MLPs of the same shape evaluated together: layer ``k`` holds a ``(C, out, in)``
    weight and a ``(C, out)`` bias; ``forward(x)`` maps ``(B, in)`` to ``(C, B, out)``."""

    def __init__(self, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self.weights = nn.ParameterList([nn.Parameter(w) for w in weights])
        self.biases = nn.ParameterList([nn.Parameter(b) for b in biases])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.matmul(h, w.transpose(1, 2)) + b[:, None, :]
            if k < last:
                h = torch.tanh(h)
        return h


def build(sigma_w2: Sequence[float], depth: int, width: int, n_in: int, n_out: int, seed: int) -> StackedMLP:
    """One tanh MLP per ``sigma_w2`` (``depth`` hidden layers of ``width``), initialized through the catalogue."""
    import initlab

    sizes = [n_in] + [width] * depth + [n_out]
    bias_ini = initlab.get(f"normal(std={math.sqrt(SIGMA_B2):.9g})")
    weights: list[list[torch.Tensor]] = [[] for _ in range(len(sizes) - 1)]
    biases: list[list[torch.Tensor]] = [[] for _ in range(len(sizes) - 1)]
    for c, sw2 in enumerate(sigma_w2):
        g = generator(seed, 100 + c)
        w_ini = initlab.get(f"variance_scaling(scale={sw2:.9g}, mode='fan_in', distribution='normal')")
        for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            weights[k].append(w_ini.init_(torch.empty(fan_out, fan_in), generator=g))
            biases[k].append(bias_ini.init_(torch.empty(fan_out), generator=g))
    return StackedMLP([torch.stack(w) for w in weights], [torch.stack(b) for b in biases])


@torch.no_grad()
def accuracy(model: StackedMLP, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Per-network accuracy on ``(x, y)`` (a network whose output is not finite counts as wrong)."""
    out = model(x)
    right = (out.argmax(-1) == y[None, :]) & torch.isfinite(out).all(-1)
    return right.float().mean(1).tolist()


def train_stack(model: StackedMLP, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int) -> list[bool]:
    """SGD with momentum on the sum of the networks' losses (each network gets exactly its own gradient);
    returns, per network, whether its loss ever became non-finite (its parameters then stay NaN/inf, which
    cannot reach the other networks)."""
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    batches = minibatches(len(x), BATCH, generator(seed, 1))
    diverged = torch.zeros(model.weights[0].shape[0], dtype=torch.bool)
    for _ in range(steps):
        idx = next(batches)
        out = model(x[idx])
        losses = nn.functional.cross_entropy(out.transpose(1, 2), y[idx][None, :].expand(out.shape[0], -1),
                                             reduction="none").mean(1)
        bad = ~torch.isfinite(losses)
        diverged |= bad
        opt.zero_grad(set_to_none=True)
        torch.where(bad, torch.zeros_like(losses), losses).sum().backward()
        opt.step()
    return diverged.tolist()


def theory_limits(sigma_w2: Sequence[float]) -> list[float]:
    """``6 xi_c`` (``mean_field(...).trainable_depth``) for tanh at ``sigma_b^2 = 0.05``."""
    from initlab.theory import mean_field

    return [float(mean_field("tanh", float(w), SIGMA_B2).trainable_depth) for w in sigma_w2]


def verdict(cells: Sequence[dict[str, float]], max_depth: float) -> tuple[dict[str, bool], dict[str, Any]]:
    """The criteria, from the measured cells alone (each: ``sigma_w2``, ``depth``, ``accuracy`` = mean
    training accuracy over seeds, ``limit`` = 6 xi_c). ``max_depth`` is the deepest depth of the grid.

    * under the curve: at least 90% of the cells that train (accuracy >= 0.5) have depth <= 6 xi_c;
    * far above it nothing trains: every cell with depth >= 2 x 6 xi_c stays below 0.5, and there are at
      least 3 such cells (else the check would be empty);
    * well under it most train: of the cells with depth <= 6 xi_c / 4, at least 60% train (a negative
      control against "nothing trains at all");
    * the region is deepest at criticality: the column with the largest 6 xi_c trains at least as deep as
      every other column, and some column trains less deep (the region is not flat).

    Returns ``(checks, stats)``: the named booleans and the numbers behind them.
    """
    trained = [c for c in cells if c["accuracy"] >= TRAINED]
    under = [c for c in trained if c["depth"] <= c["limit"]]
    far = [c for c in cells if c["depth"] >= FAR_ABOVE * c["limit"]]
    far_trained = [c for c in far if c["accuracy"] >= TRAINED]
    well = [c for c in cells if c["depth"] <= WELL_UNDER * c["limit"]]
    well_trained = [c for c in well if c["accuracy"] >= TRAINED]
    columns = sorted({c["sigma_w2"] for c in cells})
    reach = {w: max([c["depth"] for c in trained if c["sigma_w2"] == w], default=0.0) for w in columns}
    limit = {w: next(c["limit"] for c in cells if c["sigma_w2"] == w) for w in columns}
    widest = max(columns, key=lambda w: limit[w]) if columns else math.nan
    under_frac = len(under) / len(trained) if trained else 0.0
    well_frac = len(well_trained) / len(well) if well else 0.0
    checks = {
        f">= {UNDER_FRACTION:.0%} of trained cells (accuracy >= {TRAINED}) lie under 6 xi_c":
            bool(trained) and under_frac >= UNDER_FRACTION,
        f"no cell at depth >= {FAR_ABOVE:g} x 6 xi_c trains (>= {MIN_FAR_CELLS} such cells)":
            len(far) >= MIN_FAR_CELLS and not far_trained,
        f">= {WELL_UNDER_FRACTION:.0%} of cells with depth <= 6 xi_c / {1 / WELL_UNDER:g} train":
            bool(well) and well_frac >= WELL_UNDER_FRACTION,
        "trainable depth is largest in the column nearest criticality (and smaller in some other)":
            bool(columns) and reach[widest] >= max(reach.values()) > min(reach.values()),
    }
    stats = {"trained": len(trained), "trained_under_curve": len(under), "under_fraction": under_frac,
             "far_above": len(far), "far_above_trained": len(far_trained), "well_under": len(well),
             "well_under_trained": len(well_trained), "well_under_fraction": well_frac,
             "reach": {f"{w:g}": reach[w] for w in columns}, "widest_column": widest, "max_depth": max_depth}
    return checks, stats


def run(ctx: Context) -> dict:
    from initlab import data

    if ctx.quick:
        sigma_w2, depths, width, steps = [0.5, 0.75, 1.75, 2.5, 4.0], [4, 8, 16, 32], 32, 150
    else:
        sigma_w2, depths, width, steps = [float(v) for v in np.linspace(0.5, 4.0, 8)], [4, 8, 16, 32, 64], 64, 400
    ds = data.load("mnist")
    x_acc, y_acc = ds.x_train[:1000], ds.y_train[:1000]
    limits = theory_limits(sigma_w2)
    acc = np.zeros((len(ctx.seeds), len(depths), len(sigma_w2)))
    diverged = np.zeros(acc.shape, dtype=bool)
    with ctx.bar(len(ctx.seeds) * len(depths)) as bar:
        for s, seed in enumerate(ctx.seeds):
            for d, depth in enumerate(depths):
                model = build(sigma_w2, depth, width, ds.n_features, ds.n_classes, seed)
                diverged[s, d] = train_stack(model, ds.x_train, ds.y_train, steps, seed)
                acc[s, d] = accuracy(model, x_acc, y_acc)
                bar.update()
    mean = acc.mean(0)
    cells = [{"sigma_w2": w, "depth": float(depth), "accuracy": float(mean[d, j]), "limit": limits[j]}
             for d, depth in enumerate(depths) for j, w in enumerate(sigma_w2)]
    checks, stats = verdict(cells, float(max(depths)))
    # the curve spans the heatmap's cells (half a column beyond the first and last sigma_w^2)
    half = (sigma_w2[1] - sigma_w2[0]) / 2, (sigma_w2[-1] - sigma_w2[-2]) / 2
    curve_w = np.linspace(sigma_w2[0] - half[0], sigma_w2[-1] + half[1], 15 if ctx.quick else 36)
    curve = theory_limits(curve_w)
    plot(ctx, sigma_w2, depths, mean, curve_w, curve)
    rows = [[depth, *[float(mean[d, j]) for j in range(len(sigma_w2))]] for d, depth in enumerate(depths)]
    rows.append(["6 xi_c", *limits])
    reach = ", ".join(f"{w}: {r:g}" for w, r in stats["reach"].items())
    measured = (f"{stats['trained_under_curve']}/{stats['trained']} trained cells under 6 xi_c; "
                f"{stats['far_above_trained']}/{stats['far_above']} cells at >= {FAR_ABOVE:g} x 6 xi_c trained; "
                f"{stats['well_under_trained']}/{stats['well_under']} cells at <= 6 xi_c / {1 / WELL_UNDER:g} "
                f"trained; deepest trained depth per sigma_w^2 ({reach})")
    expected = ("tanh nets train only under the L = 6 xi_c curve, deepest near criticality "
                f"(sigma_b^2 = {SIGMA_B2}; budget {steps} SGD steps)")
    settings = {"model": f"zoo.mlp(L, {width}, 'tanh') shapes, trained side by side", "sigma_w2": sigma_w2,
                "sigma_b2": SIGMA_B2, "depths (hidden layers)": depths,
                "weights": "variance_scaling(scale=sigma_w2, mode='fan_in', distribution='normal')",
                "biases": f"normal(std=sqrt({SIGMA_B2}))", "data": "mnist (4000 train, standardized)",
                "optimizer": "SGD", "lr": LR, "momentum": MOMENTUM, "batch_size": BATCH, "steps": steps,
                "accuracy on": "the first 1000 training examples", "trained if accuracy >=": TRAINED}
    results = {"cells": cells, "stats": stats, "accuracy_per_seed": acc, "diverged": diverged,
               "six_xi_c": dict(zip([f"{w:g}" for w in sigma_w2], limits)),
               "curve": {"sigma_w2": curve_w, "six_xi_c": curve}}
    return finish(ctx, settings=settings, columns=["depth", *[f"sw2={w:g}" for w in sigma_w2]], rows=rows,
                  expected=expected, measured=measured, reproduced=all(checks.values()), results=results,
                  checks=checks)


def plot(ctx: Context, sigma_w2: Sequence[float], depths: Sequence[int], acc: np.ndarray,
         curve_w: np.ndarray, curve: Sequence[float]) -> None:
    from initlab.theory import critical_point

    fig = new_figure(7, 4.8)
    ax = fig.subplots()
    w = np.asarray(sigma_w2, dtype=float)
    d = np.asarray(depths, dtype=float)
    w_edges = np.concatenate([[w[0] - (w[1] - w[0]) / 2], (w[1:] + w[:-1]) / 2, [w[-1] + (w[-1] - w[-2]) / 2]])
    d_edges = np.concatenate([[d[0] / math.sqrt(d[1] / d[0])], np.sqrt(d[1:] * d[:-1]),
                              [d[-1] * math.sqrt(d[-1] / d[-2])]])
    mesh = ax.pcolormesh(w_edges, d_edges, acc, cmap="viridis", vmin=0.0, vmax=1.0, shading="flat")
    cbar = fig.colorbar(mesh, ax=ax)
    cbar.set_label("training accuracy")
    for i, depth in enumerate(depths):
        for j, sw2 in enumerate(sigma_w2):
            ax.text(sw2, depth, f"{acc[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if acc[i, j] > 0.6 else "white")
    top = d_edges[-1]
    ax.plot(curve_w, np.minimum(np.asarray(curve, dtype=float), top * 10), color="white", lw=2.5)
    ax.plot(curve_w, np.minimum(np.asarray(curve, dtype=float), top * 10), color="red", lw=1.5,
            label=r"$6\,\xi_c$ (mean-field theory)")
    ax.axvline(critical_point("tanh", SIGMA_B2), color="red", ls=":", lw=1, label=r"critical $\chi_1 = 1$")
    ax.set(yscale="log", ylim=(d_edges[0], top), xlim=(w_edges[0], w_edges[-1]),
           xlabel=r"$\sigma_w^2$ (weight variance $\times$ fan_in)", ylabel="depth L (hidden tanh layers)",
           title=rf"trainable depth, tanh, $\sigma_b^2$ = {SIGMA_B2} (Schoenholz et al. 2017)")
    ax.set_yticks(list(d), [str(v) for v in depths])
    ax.set_yticks([], minor=True)
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    ctx.save_figure(fig)
