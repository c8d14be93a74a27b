"""Batch normalization makes training far less sensitive to the initialization (Ioffe & Szegedy 2015).

A 10-hidden-layer ReLU MLP on standardized MNIST, every Linear weight drawn N(0, (m * He std)^2) -- He's
std sqrt(2 / fan_in) times a multiplier ``m`` from 0.1 to 10 (:data:`SCALES`) -- and zero biases, trained
with and without ``BatchNorm1d`` after each hidden Linear, with SGD (momentum 0.9, batch 64) for the same
number of steps, several seeds. The learning rate is tuned once per network, at He's scale (m = 1, the
standard init), on the final training loss over a small grid, then kept for every scale: neither network
is set up to fail. The test error is measured along the way, so every number below is known as a function
of the training budget (steps).

Theory. Without BN a ReLU layer multiplies the signal's scale by ``m``: after 10 layers it is ``m^10``
(1e-10 at m = 0.1, 1e10 at m = 10), so only scales near 1 train. With BN the forward pass does not
depend on the weights' scale at all (``BN(a W x) = BN(W x)``), but the gradient does: it scales as ``1/a``
(the paper's section 3.3), so large weights take small relative steps and train more slowly; small ones
take large steps. The claim tested is the paper's: with BN the final error varies far less across the
initial scales than without it.

Verdict (:func:`judge`, a pure function of the per-seed errors): the spread of the mean final test error
across the scales (max - min) is at most ``1/RATIO`` of the plain network's, the gap exceeds ``MARGIN``
times the seed-to-seed noise (the largest std over seeds of any single (network, scale) cell), the plain
network does train at its best scale (error < ``TRAINS``), and BN learns at every scale (error <
``LEARNS``). A diverged run counts as chance (90% error). The spreads are also reported at every
evaluated budget: the effect depends on it (BN's slow large-scale start catches up with more steps).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from initlab.experiments._common import (
    Context,
    evaluate,
    finish,
    generator,
    init_weights,
    new_figure,
    seed_std,
    train,
    trend_word,
)

SCALES = (0.1, 0.3, 1.0, 3.0, 10.0)  # multipliers of He's std sqrt(2 / fan_in)
NETWORKS = ("plain", "BN")
DEPTH = 10
CHANCE = 0.9  # error of a diverged run (10 classes)
TRAINS = 0.2  # the plain network at its best scale must get below this test error (it can train)
LEARNS = 0.5  # BN at its worst scale must get below this (well away from chance, 0.9)
RATIO = 3.0  # BN's spread across scales must be at most 1/RATIO of the plain network's
MARGIN = 3.0  # ... and smaller by more than MARGIN x the seed-to-seed noise


def spread(means: Mapping[float, float]) -> float:
    """Max minus min of the mean error over the scales.

    >>> spread({0.1: 0.9, 1.0: 0.08, 10.0: 0.9})
    0.8200000000000001
    """
    return float(max(means.values()) - min(means.values()))


def judge(errors: Mapping[str, Mapping[float, Sequence[float]]]) -> tuple[dict[str, bool], dict[str, float]]:
    """The verdict's checks from the final test errors ``errors[network][scale]`` (one per seed; a diverged
    run already counted as :data:`CHANCE`), ``network`` in :data:`NETWORKS`. Returns the checks and the
    numbers behind them (spreads, noise, best plain error, worst BN error).

    >>> present = {"plain": {0.1: [0.9, 0.9], 1.0: [0.08, 0.09], 10.0: [0.9, 0.9]},
    ...            "BN": {0.1: [0.07, 0.08], 1.0: [0.07, 0.07], 10.0: [0.10, 0.12]}}
    >>> all(judge(present)[0].values())
    True
    >>> absent = {"plain": present["plain"], "BN": {0.1: [0.9, 0.9], 1.0: [0.07, 0.07], 10.0: [0.9, 0.9]}}
    >>> all(judge(absent)[0].values())
    False
    """
    means = {net: {s: float(np.mean(v)) for s, v in errors[net].items()} for net in NETWORKS}
    noise = max(seed_std(v) for net in NETWORKS for v in errors[net].values())
    numbers = {"spread_plain": spread(means["plain"]), "spread_bn": spread(means["BN"]), "noise": noise,
               "best_plain": min(means["plain"].values()), "worst_bn": max(means["BN"].values())}
    gap = numbers["spread_plain"] - numbers["spread_bn"]
    checks = {
        f"the plain network trains at its best scale (test error < {TRAINS:.0%})": numbers["best_plain"] < TRAINS,
        f"BN learns at every scale (test error < {LEARNS:.0%})": numbers["worst_bn"] < LEARNS,
        f"BN's spread of final error across scales <= 1/{RATIO:g} of the plain network's":
            RATIO * numbers["spread_bn"] <= numbers["spread_plain"],
        f"the spreads differ by more than {MARGIN:g} x the seed-to-seed noise": gap > MARGIN * noise,
    }
    return checks, numbers


def _one(ds, bn: bool, scale: float, seed: int, *, width: int, steps: int, eval_every: int, lr: float,
         momentum: float, batch: int) -> dict:
    from initlab import zoo

    model = zoo.mlp(DEPTH, width, "relu", batchnorm=bn, in_features=ds.n_features, out_features=ds.n_classes,
                    seed=seed)
    init_weights(model, f"he_normal(gain={scale * math.sqrt(2.0)!r})", "zeros", generator=generator(seed))
    log = train(model, ds.x_train, ds.y_train, steps=steps, lr=lr, batch_size=batch, momentum=momentum,
                generator=generator(seed, 1), eval_every=eval_every,
                evaluate=lambda m, step: {"test_error": evaluate(m, ds.x_test, ds.y_test)["error"]})
    curve = [e["test_error"] for e in log.evals]
    steps_seen = [e["step"] for e in log.evals]
    if log.diverged:  # the evaluations it never reached count as chance
        full = list(range(0, steps + 1, eval_every))
        curve += [CHANCE] * (len(full) - len(curve))
        steps_seen = full
    curve = [CHANCE if not math.isfinite(e) else e for e in curve]
    return {"seed": seed, "scale": scale, "batchnorm": bn, "diverged": log.diverged,
            "test_error": CHANCE if log.diverged else curve[-1], "eval_steps": steps_seen,
            "test_error_curve": curve, "final_loss": log.final_loss}


def settings_for(quick: bool) -> dict:
    """Width, steps, evaluation period, learning-rate grid, scales and optimizer of a run."""
    if quick:
        return {"width": 64, "steps": 250, "eval_every": 50, "lrs": [0.01, 0.1], "scales": [0.1, 1.0, 10.0],
                "momentum": 0.9, "batch": 64}
    return {"width": 100, "steps": 1000, "eval_every": 200, "lrs": [0.01, 0.03, 0.1], "scales": list(SCALES),
            "momentum": 0.9, "batch": 64}


def run(ctx: Context) -> dict:
    from initlab import data

    cfg = settings_for(ctx.quick)
    opts = {k: cfg[k] for k in ("width", "steps", "eval_every", "momentum", "batch")}
    ds = data.load("mnist")
    others = [s for s in cfg["scales"] if s != 1.0]
    runs: dict[str, dict[float, list[dict]]] = {net: {} for net in NETWORKS}
    tuning: dict[str, dict[float, list[dict]]] = {net: {} for net in NETWORKS}
    chosen: dict[str, float] = {}
    with ctx.bar(len(NETWORKS) * (len(cfg["lrs"]) + len(others)) * len(ctx.seeds)) as bar:
        for net in NETWORKS:
            # the learning rate is tuned once, at He's scale (the standard init), on the training loss
            for lr in cfg["lrs"]:
                tuning[net][lr] = []
                for seed in ctx.seeds:
                    tuning[net][lr].append(_one(ds, net == "BN", 1.0, seed, lr=lr, **opts))
                    bar.update()
            chosen[net] = min(cfg["lrs"], key=lambda lr: float(np.mean([r["final_loss"] for r in tuning[net][lr]])))
            runs[net][1.0] = tuning[net][chosen[net]]
            for scale in others:
                runs[net][scale] = []
                for seed in ctx.seeds:
                    runs[net][scale].append(_one(ds, net == "BN", scale, seed, lr=chosen[net], **opts))
                    bar.update()
            runs[net] = {s: runs[net][s] for s in cfg["scales"]}
    lr_table = {net: {lr: float(np.mean([r["final_loss"] for r in rs])) for lr, rs in per.items()}
                for net, per in tuning.items()}
    return conclude(ctx, runs, {**cfg, "chosen_lr": chosen, "final_train_loss_by_lr_at_x1": lr_table})


def conclude(ctx: Context, runs: dict[str, dict[float, list[dict]]], opts: dict) -> dict:
    """Table, figure and verdict from ``runs[network][scale]`` (per-seed dicts with ``test_error``,
    ``diverged``, ``eval_steps`` and ``test_error_curve``)."""
    final = {net: {s: [r["test_error"] for r in rs] for s, rs in per.items()} for net, per in runs.items()}
    checks, numbers = judge(final)
    scales = list(runs["plain"])
    budgets = runs["plain"][scales[0]][0]["eval_steps"][1:]
    by_budget = []
    for i, step in enumerate(budgets, start=1):
        at = {net: {s: [r["test_error_curve"][i] for r in rs] for s, rs in per.items()} for net, per in runs.items()}
        _, nums = judge(at)
        by_budget.append({"steps": step, "spread_plain": nums["spread_plain"], "spread_bn": nums["spread_bn"],
                          "noise": nums["noise"]})
    rows, summary = [], {}
    for net in NETWORKS:
        for s in scales:
            errs = final[net][s]
            cell = {"mean": float(np.mean(errs)), "std": seed_std(errs),
                    "per_seed": errs, "diverged": sum(r["diverged"] for r in runs[net][s])}
            summary[f"{net} | x{s:g}"] = cell
            rows.append([net, s, opts["chosen_lr"][net], cell["mean"], cell["std"],
                         " ".join(f"{e:.3f}" for e in errs),
                         f"{cell['diverged']}/{len(errs)}"])
    plot(ctx, runs)
    trend = ", ".join(f"{b['steps']}: {b['spread_bn']:.1%} vs {b['spread_plain']:.1%}" for b in by_budget)
    trend += (" (the effect depends on the budget: BN's spread "
              f"{trend_word(by_budget[0]['spread_bn'], by_budget[-1]['spread_bn'])} with more steps)")
    lrs = opts["chosen_lr"]
    measured = (f"spread of the final test error over He std x{scales[0]:g}..x{scales[-1]:g} after "
                f"{opts['steps']} steps (lr tuned at x1: plain {lrs['plain']:g}, BN {lrs['BN']:g}): "
                f"BN {numbers['spread_bn']:.1%}, plain {numbers['spread_plain']:.1%} "
                f"(seed-to-seed noise {numbers['noise']:.1%}); plain's best {numbers['best_plain']:.1%}, BN's worst "
                f"{numbers['worst_bn']:.1%}; spread BN vs plain by budget (steps) {trend}")
    expected = ("with BatchNorm the final error hardly depends on the initial weight scale; without it only scales "
                "near He's train")
    settings = {"model": f"zoo.mlp({DEPTH}, {opts['width']}, 'relu', batchnorm)",
                "lr choice": "per network, the lowest final training loss at x1 (He) over the grid 'lrs'",
                "weights": "he_normal(gain=scale * sqrt(2)) on every Linear", "biases": "zeros",
                "data": "mnist (4000 train / 1000 test, standardized)", "optimizer": "SGD", **opts,
                "diverged counts as": CHANCE, "plain trains below": TRAINS, "BN learns below": LEARNS,
                "ratio": RATIO, "margin x noise": MARGIN}
    return finish(ctx, settings=settings,
                  columns=["network", "scale x He", "lr", "test error", "std (seeds)", "per seed", "diverged"],
                  rows=rows, expected=expected, measured=measured, reproduced=all(checks.values()),
                  results={"summary": summary, "numbers": numbers, "by_budget": by_budget, "runs": runs},
                  checks=checks)


def plot(ctx: Context, runs: dict[str, dict[float, list[dict]]]) -> None:
    """Left two panels: mean test error curves per scale, plain and BN; right: final error against scale."""
    fig = new_figure(14, 4)
    axes = fig.subplots(1, 3)
    for ax, net in zip(axes, NETWORKS):
        for i, (s, rs) in enumerate(runs[net].items()):
            curve = np.mean([r["test_error_curve"] for r in rs], axis=0)
            ax.plot(rs[0]["eval_steps"], curve, marker="o", ms=3, color=f"C{i}", label=f"x{s:g} He std")
        ax.set(title=f"{net}: test error while training", xlabel="step", ylabel="test error", ylim=(0, 1))
        ax.legend(fontsize=8)
    for net, marker in zip(NETWORKS, ("s", "o")):
        scales = list(runs[net])
        means = [np.mean([r["test_error"] for r in runs[net][s]]) for s in scales]
        axes[2].semilogx(scales, means, marker=marker, label=net)
    axes[2].set(title="final test error vs initial weight scale", xlabel="weight std / He std",
                ylabel="test error", ylim=(0, 1))
    axes[2].legend(fontsize=8)
    ctx.save_figure(fig)
