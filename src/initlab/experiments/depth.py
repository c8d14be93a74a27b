"""He et al. 2015, Figs. 2-3, scaled down: steps for a 22- and a 30-layer ReLU MLP to leave chance, He vs Xavier.

Xavier/Glorot init (Var(w) = 2 / (fan_in + fan_out) = 1/n here) ignores the ReLU's halving of the
second moment, so the signal shrinks by sqrt(1/2) per layer: 2^-11 after 22 layers, 2^-15 after 30. The
output is then almost constant, the gradient reaching the first layers is as small, and training sits at
chance (loss ln 10 = 2.30) until momentum SGD slowly grows the weights. He init (Var(w) = 2 / fan_in)
keeps the scale and the network learns at once. The paper (ImageNet-scale models): at 22 layers both
converge, He's earlier (Fig. 2); at 30 layers Xavier does not learn at all (Fig. 3).

The effect is a delay, so what is measured is that delay, not the loss after an arbitrary number of steps:
the first step at which the training loss (on 500 fixed training examples, every ``eval_every`` steps) is
below ``0.9 ln 10``: "steps to leave chance". A run stops ``tail`` steps after leaving chance, or at the
step budget (then it did not leave chance within the budget).

Setup: ``zoo.mlp(D, 128, "relu")`` for D = 22 and 30 on standardized MNIST (4000 training digits), zero
biases, SGD with momentum 0.9, learning rate 0.003, batch 64, budget 2000 steps, 5 seeds. Verdict
(:func:`verdict`, a pure function of the steps): every He run leaves chance; at 22 layers every Xavier
run leaves chance too, later than every He run (the two seed ranges do not overlap); at 30 layers every
Xavier run leaves chance at least 3x later than the slowest He run, or not within the budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from initlab.experiments._common import Context, evaluate, finish, generator, init_weights, new_figure, train

SCHEMES = {"he": "he_normal", "xavier": "glorot_normal"}
DEPTHS = (22, 30)
CHANCE = math.log(10)
LEAVE = 0.9 * CHANCE  # "left chance": training loss below 90% of ln 10
MUCH_SOONER = 3.0  # at the deepest depth Xavier must take at least this many times He's slowest run


class _Stop(Exception):
    """Raised from the evaluation hook to end a run once it has left chance (plus the tail)."""


def steps_to_leave(steps: Sequence[int], losses: Sequence[float], level: float = LEAVE) -> int | None:
    """The first evaluated step after step 0 whose training loss is below ``level``; None if there is none (an
    untrained network below ``level`` at step 0 has not *left* chance by learning)."""
    return next((int(s) for s, v in zip(steps, losses) if s > 0 and v < level), None)


def _summary(values: Sequence[int | None], budget: int) -> str:
    """``median [min..max]`` of the steps; a run that never left chance counts as later than any (``>budget``)."""
    known = sorted(v for v in values if v is not None)
    missing = len(values) - len(known)
    if not known:
        return f">{budget} ({missing}/{len(values)} not within budget)"
    median = float(np.median(known + [math.inf] * missing))
    text = f">{budget}" if math.isinf(median) else f"{median:.0f}"
    text += f" [{known[0]}..{known[-1] if not missing else f'>{budget}'}]" if len(values) > 1 else ""
    return text + (f" ({missing}/{len(values)} not within {budget})" if missing else "")


def verdict(left: Mapping[int, Mapping[str, Sequence[int | None]]], budget: int,
            much_sooner: float = MUCH_SOONER) -> dict[str, Any]:
    """The verdict from the steps to leave chance alone: ``left[depth][init]`` is one entry per seed (None:
    not within ``budget``). Returns ``expected``, ``measured``, ``checks`` and ``reproduced``."""
    depths = sorted(left)
    shallow, deep = depths[0], depths[-1]
    inf = math.inf

    def worst(xs: Sequence[int | None]) -> float:
        return max((inf if x is None else x) for x in xs)

    def best(xs: Sequence[int | None]) -> float:
        return min((inf if x is None else x) for x in xs)

    he_s, xa_s, he_d, xa_d = left[shallow]["he"], left[shallow]["xavier"], left[deep]["he"], left[deep]["xavier"]
    checks = {
        f"He leaves chance within {budget} steps for every seed at {shallow} and {deep} layers":
            all(v is not None for d in depths for v in left[d]["he"]),
        f"{shallow} layers: Xavier leaves chance within {budget} steps for every seed":
            all(v is not None for v in xa_s),
        f"{shallow} layers: He sooner, beyond seed noise (slowest He < fastest Xavier)": worst(he_s) < best(xa_s),
        f"{deep} layers: Xavier >= {much_sooner:g}x later than the slowest He run, or not within {budget} steps":
            worst(he_d) < inf and best(xa_d) >= much_sooner * worst(he_d),
    }
    measured = (f"steps to leave chance (loss < 0.9 ln 10), median [min..max] over {len(he_s)} seeds, budget {budget}: "
                + "; ".join(f"{d} layers: He {_summary(left[d]['he'], budget)}, "
                            f"Xavier {_summary(left[d]['xavier'], budget)}" for d in depths))
    expected = (f"within a {budget}-step budget, at {shallow} layers both He and Xavier leave chance, He sooner; "
                f"at {deep} layers He much sooner (>= {much_sooner:g}x) or Xavier not at all")
    return {"expected": expected, "measured": measured, "checks": checks, "reproduced": all(checks.values())}


def _one_run(ds: Any, depth: int, width: int, spec: str, seed: int, *, budget: int, eval_every: int, tail: int,
             lr: float, momentum: float, batch: int) -> dict[str, Any]:
    from initlab import zoo

    # the training loss is tracked on a fixed 500-example slice of the training set (cheaper than all 4000)
    x_track, y_track = ds.x_train[:500], ds.y_train[:500]
    model = zoo.mlp(depth, width, "relu", in_features=ds.n_features, out_features=ds.n_classes, seed=seed)
    init_weights(model, spec, "zeros", generator=generator(seed))
    steps: list[int] = []
    losses: list[float] = []

    def track(m: Any, step: int) -> dict[str, float]:
        loss = evaluate(m, x_track, y_track)["loss"]
        steps.append(step)
        losses.append(loss)
        first = steps_to_leave(steps, losses)
        if first is not None and step >= first + tail:
            raise _Stop
        return {"train_loss": loss}

    grads: list[float] = []
    first_weight = model[0].weight
    diverged = False
    try:
        log = train(model, ds.x_train, ds.y_train, steps=budget, lr=lr, batch_size=batch, momentum=momentum,
                    generator=generator(seed, 1), eval_every=eval_every, evaluate=track,
                    on_step=lambda: grads.append(float(first_weight.grad.norm())))
        diverged = log.diverged
    except _Stop:
        pass
    return {"seed": seed, "steps_to_leave_chance": None if diverged else steps_to_leave(steps, losses),
            "diverged": diverged, "eval_steps": steps, "train_loss_curve": losses, "steps_run": len(grads),
            "first_layer_grad_norm_start": grads[0] if grads else math.nan,
            "first_layer_grad_norm_first100": float(np.mean(grads[:100])) if grads else math.nan}


def run(ctx: Context) -> dict:
    from initlab import data

    if ctx.quick:
        width, lr, budget, eval_every, tail = 64, 0.01, 600, 25, 50
    else:
        width, lr, budget, eval_every, tail = 128, 0.003, 2000, 25, 100
    momentum, batch = 0.9, 64
    ds = data.load("mnist")
    runs: dict[int, dict[str, list[dict]]] = {d: {name: [] for name in SCHEMES} for d in DEPTHS}
    with ctx.bar(len(DEPTHS) * len(SCHEMES) * len(ctx.seeds)) as bar:
        for depth in DEPTHS:
            for name, spec in SCHEMES.items():
                for seed in ctx.seeds:
                    runs[depth][name].append(_one_run(ds, depth, width, spec, seed, budget=budget,
                                                      eval_every=eval_every, tail=tail, lr=lr, momentum=momentum,
                                                      batch=batch))
                    bar.update()

    left = {d: {name: [r["steps_to_leave_chance"] for r in rs] for name, rs in by.items()} for d, by in runs.items()}
    v = verdict(left, budget)
    rows = [[d, name, r["seed"], r["steps_to_leave_chance"] if r["steps_to_leave_chance"] is not None
             else f">{budget}", r["train_loss_curve"][0], r["train_loss_curve"][-1], r["steps_run"],
             r["first_layer_grad_norm_first100"]]
            for d, by in runs.items() for name, rs in by.items() for r in rs]
    plot(ctx, runs, budget)
    settings = {"model": f"zoo.mlp(D, {width}, 'relu'), D in {list(DEPTHS)}", "inits": SCHEMES, "biases": "zeros",
                "data": "mnist (4000 train / 1000 test, standardized)", "optimizer": "SGD", "lr": lr,
                "momentum": momentum, "batch_size": batch, "budget_steps": budget, "eval_every": eval_every,
                "left chance": f"training loss on the first 500 training examples < 0.9 ln 10 = {LEAVE:.3f}",
                "tail": f"a run stops {tail} steps after leaving chance"}
    return finish(ctx, settings=settings,
                  columns=["depth", "init", "seed", "steps to leave chance", "loss at init", "last loss",
                           "steps run", "grad L1 first 100"],
                  rows=rows, expected=v["expected"], measured=v["measured"], reproduced=v["reproduced"],
                  results={"steps_to_leave_chance": left, "runs": runs}, checks=v["checks"])


def plot(ctx: Context, runs: dict[int, dict[str, list[dict]]], budget: int) -> None:
    from initlab.report.figures import mark_clipped, robust_ylim

    fig = new_figure(12, 4)
    ax1, *curves = fig.subplots(1, 1 + len(runs))
    names = list(SCHEMES)
    for k, by in enumerate(runs.values()):
        for i, name in enumerate(names):
            vals = [r["steps_to_leave_chance"] for r in by[name]]
            xs = k + (i - 0.5) * 0.3 + np.linspace(-0.05, 0.05, len(vals))
            ax1.scatter(xs, [np.nan if v is None else v for v in vals], color=f"C{i}", marker="o",
                        label=name if k == 0 else None)
            ax1.scatter(xs, [budget * 1.15 if v is None else np.nan for v in vals], color=f"C{i}", marker="^",
                        facecolors="none", label="not within budget" if k == i == len(runs) - 1 else None)
            ax = curves[k]
            # the bulk of the curves sets the y-range, so one diverging seed cannot squash the others; points
            # above it are drawn at the top edge, with the largest value written (report.figures)
            top = robust_ylim([v for n2 in names for r2 in by[n2] for v in r2["train_loss_curve"]], around=CHANCE)[1]
            for j, r in enumerate(by[name]):
                ax.plot(r["eval_steps"], np.minimum(r["train_loss_curve"], top), color=f"C{i}", alpha=0.7, lw=1,
                        label=name if j == 0 else None)
            ax.set_ylim(0, top)
    for ax, by in zip(curves, runs.values()):  # one mark per panel for the points above its range
        every = [r for n2 in names for r in by[n2]]
        mark_clipped(ax, np.concatenate([r["eval_steps"] for r in every]),
                     np.concatenate([r["train_loss_curve"] for r in every]), ax.get_ylim())
    ax1.axhline(budget, color="gray", ls="--", lw=1, label=f"budget ({budget} steps)")
    ax1.set(yscale="log", xticks=range(len(runs)), xticklabels=[f"{d} layers" for d in runs],
            ylabel="steps to leave chance (per seed)", title="He et al. 2015: delay before learning")
    ax1.legend(fontsize=8)
    for ax, depth in zip(curves, runs):
        ax.axhline(CHANCE, color="gray", ls="--", lw=1, label="chance (ln 10)")
        ax.axhline(LEAVE, color="gray", ls=":", lw=1, label="0.9 ln 10")
        ax.set(xlabel="step", ylabel="training loss", title=f"{depth}-layer ReLU MLP")
        ax.legend(fontsize=7)
    ctx.save_figure(fig)
