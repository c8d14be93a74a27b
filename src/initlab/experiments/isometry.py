"""Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep learning through dynamical
isometry": at the edge of chaos, orthogonal weights make a deep tanh network's input-output Jacobian
well conditioned, Gaussian weights do not, and the well-conditioned network trains faster.

At criticality (``chi_1 = 1``) the MEAN squared singular value of the Jacobian ``J = d x^L / d x^0`` stays
1 at any depth, for any weight distribution. Its SPREAD does not: with Gaussian weights each layer's
``W`` has singular values from 0 to 2 (Marchenko-Pastur), and their product spreads exponentially with
depth, so some directions of the input are amplified and others annihilated. With orthogonal weights
every ``W`` is an isometry and only the tanh slopes ``f'(h)`` (close to 1 when ``q*`` is small) spread the
spectrum: "dynamical isometry". Pennington et al. show, for deep tanh networks at small ``q*`` (down to
``1/64``), the orthogonal spectrum concentrated around 1, the Gaussian one spread over orders of
magnitude, and the orthogonal networks training markedly faster (on CIFAR-10, depths up to 200).

Setup, scaled down to a CPU: ``zoo.mlp(L, N, "tanh")`` (L = 64 hidden layers of width 64; quick: 48 of 32)
on standardized MNIST scaled so that the first pre-activation has second moment ``q*``; every weight either
``orthogonal(gain=sqrt(sigma_w^2))`` or ``variance_scaling(scale=sigma_w^2, mode="fan_in",
distribution="normal")``, every bias ``normal(std=sqrt(sigma_b^2))``, with ``sigma_b^2 = 1e-5`` and
``sigma_w^2 = initlab.theory.critical_point("tanh", 1e-5)`` (``q* ~ 0.02``). Measured per seed:

* the singular values of the Jacobian of the hidden stack (``model[2:-1]``: L - 1 Linear + tanh layers,
  N x N) at 8 training images' first-layer activations, exactly, by ``initlab.theory.jacobian_spectrum``
  in float64. The Gaussian network's smallest singular values lie below float64's resolution too (its
  condition numbers, ~1e18 as computed, are rounding: shown as ">1e+15", a lower bound; float32 would
  have stopped at ~1e8); the share of singular values within a factor 3 of 1 is reported alongside;
* the training speed: SGD with momentum 0.9, lr 0.01, batch 64; the number of steps until the minibatch
  loss, averaged over a 10-step window, first falls below 1.0 (capped at the step budget).

The verdict (:func:`verdict`) is a pure function of these numbers; see its docstring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from initlab.experiments._common import Context, finish, generator, geomean, init_weights, new_figure, train

SIGMA_B2 = 1e-5
LR, MOMENTUM, BATCH = 0.01, 0.9, 64
LOSS_TARGET = 1.0  # "trained": the 10-step mean minibatch loss below 1.0 (chance: ln 10 = 2.30)
WINDOW = 10
JACOBIAN_EXAMPLES = 8
CONDITION_RATIO = 1e3  # Gaussian's condition numbers at least 1000x orthogonal's (geometric means) ...
CONDITION_SEPARATION = 100.0  # ... and every Gaussian seed's at least 100x every orthogonal seed's
FLOAT64_FLOOR = 1e15  # a condition number beyond ~1/eps(float64) is rounding: shown as ">1e+15" (a lower bound)
NEAR_ONE = 3.0  # "near 1": a singular value within a factor 3 of 1
SPEED_MARGIN = 2.0  # every orthogonal seed reaches the target in at most half the steps of every Gaussian seed


def steps_to_target(losses: Sequence[float], target: float = LOSS_TARGET, window: int = WINDOW) -> int | None:
    """The first step (1-based) at which the mean of the last ``window`` losses is below ``target``."""
    values = np.asarray(losses, dtype=float)
    if len(values) < window:
        return None
    means = np.convolve(values, np.ones(window) / window, mode="valid")
    below = np.flatnonzero(means < target)
    return int(below[0]) + window if below.size else None


def verdict(orthogonal: Sequence[dict[str, Any]], gaussian: Sequence[dict[str, Any]],
            budget: int) -> tuple[dict[str, bool], dict[str, float]]:
    """The criteria, from the per-seed numbers alone (each run: ``condition``, the Jacobian's mean
    ``s_max / s_min``; ``steps``, the steps to the loss target or None if not reached within ``budget``).

    * conditioning (condition numbers capped at ``FLOAT64_FLOOR``, so ratios are lower bounds): the
      geometric mean of Gaussian's condition numbers is at least 1000x orthogonal's, and the worst
      orthogonal seed is at least 100x better conditioned than the best Gaussian seed;
    * speed: every orthogonal seed reaches the loss target, in at most half the steps of the fastest
      Gaussian seed (a Gaussian seed that never reaches it counts as ``budget`` steps): a margin over
      the seed-to-seed spread, not a difference of means.

    Returns ``(checks, stats)``.
    """
    # a condition number beyond float64's resolution counts as FLOAT64_FLOOR: the ratios are lower bounds
    oc = [min(float(r["condition"]), FLOAT64_FLOOR) for r in orthogonal]
    gc = [min(float(r["condition"]), FLOAT64_FLOOR) for r in gaussian]
    os_ = [budget if r["steps"] is None else int(r["steps"]) for r in orthogonal]
    gs = [budget if r["steps"] is None else int(r["steps"]) for r in gaussian]
    ok = bool(oc) and bool(gc) and all(math.isfinite(v) and v > 0 for v in oc + gc)
    ratio = geomean(gc) / geomean(oc) if ok else math.nan
    checks = {
        f"Gaussian's condition number >= {CONDITION_RATIO:g}x orthogonal's (geometric means)":
            ok and ratio >= CONDITION_RATIO,
        f"every Gaussian seed >= {CONDITION_SEPARATION:g}x worse conditioned than every orthogonal seed":
            ok and min(gc) >= CONDITION_SEPARATION * max(oc),
        f"every orthogonal seed reaches loss {LOSS_TARGET:g}": bool(orthogonal)
            and all(r["steps"] is not None for r in orthogonal),
        f"orthogonal's slowest seed needs <= 1/{SPEED_MARGIN:g} of the steps of Gaussian's fastest":
            bool(os_) and bool(gs) and SPEED_MARGIN * max(os_) <= min(gs),
    }
    stats = {"condition_ratio": ratio, "orthogonal_condition_max": max(oc, default=math.nan),
             "gaussian_condition_min": min(gc, default=math.nan), "orthogonal_steps_max": max(os_, default=0),
             "gaussian_steps_min": min(gs, default=0),
             "gaussian_reached": sum(r["steps"] is not None for r in gaussian)}
    return checks, stats


def one_run(model: torch.nn.Module, spec: str, x: torch.Tensor, y: torch.Tensor, seed: int,
            steps: int) -> dict[str, Any]:
    """Initialize ``model`` with ``spec``, measure its Jacobian spectrum, train it; return the numbers."""
    from initlab.theory import jacobian_spectrum

    init_weights(model, spec, f"normal(std={math.sqrt(SIGMA_B2):.9g})", generator=generator(seed))
    with torch.no_grad():
        h = model[:2](x[:JACOBIAN_EXAMPLES])  # first-layer activations of real images: the stack's inputs
    spec_ = jacobian_spectrum(model[2:-1], h)
    log = train(model, x, y, steps=steps, lr=LR, momentum=MOMENTUM, batch_size=BATCH, generator=generator(seed, 1))
    reached = steps_to_target(log.losses)
    k = max(1, len(log.losses) // 100)
    return {"seed": seed, "condition": spec_.condition, "sv_mean": spec_.mean, "sv_std": spec_.std,
            "sv_min": spec_.min, "sv_max": spec_.max, "sv_mean_sq": spec_.mean_sq,
            "near_one": float(np.mean(np.abs(np.log(spec_.singular_values)) <= math.log(NEAR_ONE))),
            "condition_beyond_float64": spec_.condition > FLOAT64_FLOOR,
            "singular_values": spec_.singular_values.ravel(), "steps": reached, "diverged": log.diverged,
            "final_loss": log.final_loss, "loss_curve_every": k,
            "loss_curve": [float(np.mean(log.losses[i:i + k])) for i in range(0, len(log.losses), k)]}


def run(ctx: Context) -> dict:
    from initlab import data, zoo
    from initlab.theory import critical_point, mean_field

    depth, width, steps = (48, 32, 180) if ctx.quick else (64, 64, 300)
    sw2 = critical_point("tanh", SIGMA_B2)
    q_star = mean_field("tanh", sw2, SIGMA_B2).q_star
    inits = {"orthogonal": f"orthogonal(gain={math.sqrt(sw2):.9g})",
             "gaussian": f"variance_scaling(scale={sw2:.9g}, mode='fan_in', distribution='normal')"}
    ds = data.load("mnist")
    # scale the images so that the first pre-activation has second moment q*: sw2 E[x^2] + sb2 = q*
    scale = math.sqrt((q_star - SIGMA_B2) / (sw2 * float(ds.x_train.pow(2).mean())))
    x, y = ds.x_train * scale, ds.y_train
    runs: dict[str, list[dict]] = {name: [] for name in inits}
    with ctx.bar(len(inits) * len(ctx.seeds)) as bar:
        for seed in ctx.seeds:
            for name, spec in inits.items():
                model = zoo.mlp(depth, width, "tanh", in_features=ds.n_features, out_features=ds.n_classes,
                                seed=seed)
                runs[name].append(one_run(model, spec, x, y, seed, steps))
                bar.update()
    checks, stats = verdict(runs["orthogonal"], runs["gaussian"], steps)
    plot(ctx, runs, depth, width, steps)
    rows = [[name, r["seed"], _cond(r["condition"]), r["sv_mean"], r["sv_std"], r["near_one"], r["sv_mean_sq"],
             r["steps"] if r["steps"] is not None else f">{steps}", r["final_loss"]]
            for name, rs in runs.items() for r in rs]

    def cond(name: str) -> str:
        return " / ".join(_fmt_cond(r["condition"]) for r in runs[name])

    def speed(name: str) -> str:
        return " / ".join(str(r["steps"]) if r["steps"] is not None else f">{steps}" for r in runs[name])

    measured = (f"Jacobian condition number orthogonal {cond('orthogonal')}, Gaussian {cond('gaussian')} "
                f"(ratio of geometric means >= {stats['condition_ratio']:.3g}); steps to loss {LOSS_TARGET:g} "
                f"orthogonal {speed('orthogonal')}, Gaussian {speed('gaussian')}")
    expected = (f"at criticality (chi_1 = 1, q* = {q_star:.3g}) orthogonal weights keep a {depth}-layer tanh net's "
                "Jacobian well conditioned, Gaussian weights do not, and orthogonal trains faster "
                f"(budget {steps} SGD steps)")
    settings = {"model": f"zoo.mlp({depth}, {width}, 'tanh')", "sigma_w2": sw2, "sigma_b2": SIGMA_B2,
                "q_star": q_star, "inits": inits, "biases": f"normal(std=sqrt({SIGMA_B2:g}))",
                "data": f"mnist (4000 train, standardized, scaled by {scale:.4g} so the first pre-activation has "
                        "second moment q*)",
                "jacobian": f"exact, float64, of model[2:-1] ({depth - 1} Linear+tanh layers) at "
                            f"{JACOBIAN_EXAMPLES} images' first-layer activations",
                "optimizer": "SGD", "lr": LR, "momentum": MOMENTUM, "batch_size": BATCH, "steps": steps,
                "loss target": f"{WINDOW}-step mean minibatch loss < {LOSS_TARGET:g}"}
    return finish(ctx, settings=settings,
                  columns=["init", "seed", "condition", "sv mean", "sv std", f"share in [1/{NEAR_ONE:g}, {NEAR_ONE:g}]",
                           "sv mean sq", "steps to target", "final loss"],
                  rows=rows, expected=expected, measured=measured, reproduced=all(checks.values()),
                  results={"runs": runs, "stats": stats}, checks=checks)


def _cond(value: float) -> str | float:
    """A condition number, or ``">1e+15"`` where float64 rounding hides the smallest singular values."""
    return f">{FLOAT64_FLOOR:.0e}" if value > FLOAT64_FLOOR else float(value)


def _fmt_cond(value: float) -> str:
    shown = _cond(value)
    return shown if isinstance(shown, str) else f"{shown:.3g}"


def plot(ctx: Context, runs: dict[str, list[dict]], depth: int, width: int, steps: int) -> None:
    fig = new_figure(11, 4.2)
    ax1, ax2 = fig.subplots(1, 2)
    values = np.concatenate([np.asarray(r["singular_values"]) for rs in runs.values() for r in rs])
    hi = float(values.max())
    floor = max(hi / FLOAT64_FLOOR, float(values.min()))  # below ~eps x s_max, float64 shows only rounding
    bins = np.logspace(math.log10(floor) - 0.1, math.log10(hi) + 0.1, 60)
    if floor > float(values.min()):  # some values were clipped to the floor: say so
        ax1.axvspan(bins[0], floor * 10, color="gray", alpha=0.15, lw=0, label="float64 rounding floor")
    for i, (name, rs) in enumerate(runs.items()):
        sv = np.clip(np.concatenate([np.asarray(r["singular_values"]) for r in rs]), floor, None)
        cond = _fmt_cond(geomean(r["condition"] for r in rs))
        ax1.hist(sv, bins=bins, color=f"C{i}", alpha=0.6, label=f"{name} (condition number ~{cond})")
    ax1.axvline(1.0, color="gray", ls="--", lw=1)
    ax1.set(xscale="log", xlabel="singular value of the input-output Jacobian", ylabel="count (all seeds)",
            title=f"Jacobian spectrum at init, {depth - 1} tanh layers x {width}, critical")
    ax1.legend(fontsize=8)
    for i, (name, rs) in enumerate(runs.items()):
        for j, r in enumerate(rs):
            k = r["loss_curve_every"]
            xs = np.arange(len(r["loss_curve"])) * k + k
            ax2.plot(xs, r["loss_curve"], color=f"C{i}", alpha=0.8, lw=1, label=name if j == 0 else None)
    ax2.axhline(LOSS_TARGET, color="gray", ls="--", lw=1, label=f"target {LOSS_TARGET:g}")
    ax2.set(xlabel="SGD step", ylabel="minibatch loss", xlim=(0, steps),
            title="training speed (Pennington et al. 2017)")
    ax2.legend(fontsize=8)
    ctx.save_figure(fig)
