"""Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward neural networks".

Networks with 5 hidden layers of sigmoid, tanh or softsign units, under the "standard" init
``U(-1/sqrt(n), 1/sqrt(n))`` (``fan_in_uniform``: n Var(w) = 1/3, so signals shrink layer after layer)
and, for tanh and softsign, the "normalized" init ``U(+-sqrt(6 / (n_in + n_out)))`` (``glorot_uniform``:
n Var(w) = 1 for square layers, keeping forward and backward variances), trained with plain SGD, batch 10,
on standardized MNIST (4000 training digits), 5 seeds.

What the paper shows, and what is checked here (:func:`verdict`, a pure function of the measurements):

* at init, with the standard init the activations shrink going up and the back-propagated gradients
  (dL/ds for each layer's pre-activation s) shrink going down toward the input; the normalized init keeps
  both profiles flatter (Figs. 6-7);
* with sigmoid units the top hidden layer is driven toward saturation at 0 early in training (its mean
  activation below 0.25, half its initial 0.5, within the first half of the budget, and still falling at
  the end) while the lower layers stay away from 0 (Fig. 2: the mean activation of each layer against
  training time);
* the normalized init helps tanh (Table 1: Tanh 1.76% vs Tanh N 1.64% on MNIST; 27.15% vs 15.60% on
  Shapeset; the paper's learning curves show it learning faster). The gain depends on the budget: it is
  measured after 750, 1500 and 3000 steps (400 and 800 with ``--quick``) and checked as a per-seed paired
  gain larger than twice its standard error over the seeds (the seed noise) after the first, and a mean
  gain >= 0 after the later ones (at CPU scale the gain shrinks as training goes on, as the paper's tiny
  final MNIST difference suggests; the verdict text gives it at every budget).

What is reported but not checked: the escape from saturation (Fig. 2: "around epoch 100", far beyond a
CPU budget) and the sigmoid network's final error (Table 1: 2.21%, reached after that escape). Within
this budget the sigmoid network is still on its plateau (test error near chance), so "sigmoid ends worst"
would pass on a total failure; the verdict text says so instead of claiming it. Softsign's gain from the
normalized init (the paper: none on MNIST, 1.64% vs 1.72%) is reported as measured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from initlab.experiments._common import Context, evaluate, finish, generator, init_weights, new_figure, train

NETWORKS = {"sigmoid standard": ("sigmoid", "fan_in_uniform"), "tanh standard": ("tanh", "fan_in_uniform"),
            "tanh normalized": ("tanh", "glorot_uniform"), "softsign standard": ("softsign", "fan_in_uniform"),
            "softsign normalized": ("softsign", "glorot_uniform")}
DEPTH = 5
SATURATED = 0.25  # the top sigmoid layer is driven toward 0 once its mean is below this (half its initial 0.5)
LOWER_FLOOR = 0.4  # ... while every lower layer's mean stays above this
T_MARGIN = 2.0  # the normalized init's mean paired gain must exceed this many standard errors


def profiles(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, list[float]]:
    """Per hidden layer (input side first), measured by ``initlab.probe`` on one labelled batch (model left
    as it was): activation std, back-propagated gradient std (dL/ds of each pre-activation s) and
    weight-gradient std."""
    import initlab

    result = initlab.probe(model, x, y)
    layers = [s for s in result.layers if s.is_layer][:-1]  # hidden Linear layers; the classifier excluded
    acts = [s for s in result.layers if s.kind == "activation"]
    return {"activation_std": [s.act_std for s in acts], "activation_mean": [s.act_mean for s in acts],
            "backprop_grad_std": [s.grad_std for s in layers], "weight_grad_std": [s.weight_grad_std for s in layers]}


def paired_gain(worse: Sequence[float], better: Sequence[float]) -> dict[str, float]:
    """Per-seed paired differences ``worse - better``: their mean, standard error and the number of seeds
    where ``better`` is lower (wins)."""
    d = np.subtract(worse, better, dtype=float)
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.inf
    return {"mean": float(d.mean()), "se": se, "wins": int((d > 0).sum()), "n": len(d)}


def saturation(steps: Sequence[int], layer_means: Sequence[Sequence[float]]) -> dict[str, Any]:
    """From one sigmoid run's mean activation per layer (``layer_means[i]`` at ``steps[i]``, input side
    first): the first step the top layer is below :data:`SATURATED`, the lowest mean of the lower layers,
    the top layer's minimum, its value half-way and at the end, and whether it rose again by 0.1 above
    that minimum (the escape)."""
    top = [m[-1] for m in layer_means]
    k = int(np.argmin(top))
    half = next(i for i, s in enumerate(steps) if s >= steps[-1] / 2)
    return {"saturated_at": next((int(s) for s, v in zip(steps, top) if v < SATURATED), None),
            "top_min": float(top[k]), "top_min_step": int(steps[k]), "top_half": float(top[half]),
            "top_last": float(top[-1]),
            "lower_min": float(min(min(m[:-1]) for m in layer_means)),
            "escaped": bool(max(top[k:]) > top[k] + 0.1)}


def verdict(summary: Mapping[str, Any], budget: int) -> dict[str, Any]:
    """The verdict from the measurements alone. ``summary`` holds, per network name, ``grad_ratio`` (std of
    dL/ds, first hidden layer / top) and ``act_ratio`` (activation std, top / first) at init and
    ``errors`` (``{budget_steps: [test error per seed]}``), plus ``saturation`` (one :func:`saturation`
    dict per sigmoid seed). Returns ``expected``, ``measured``, ``checks``, ``reproduced`` and ``gains``."""
    def flatter(field: str) -> bool:
        # standard shrinks (ratio < 1) and normalized is flatter (a larger ratio), for tanh and softsign
        return all(summary[f"{a} standard"][field] < 1 and summary[f"{a} normalized"][field]
                   > summary[f"{a} standard"][field] for a in ("tanh", "softsign"))

    sat = summary["saturation"]
    checkpoints = sorted(int(b) for b in summary["tanh standard"]["errors"])
    gains = {a: {b: paired_gain(summary[f"{a} standard"]["errors"][b], summary[f"{a} normalized"]["errors"][b])
                 for b in checkpoints} for a in ("tanh", "softsign")}
    checks = {
        "standard init: gradients shrink toward the input, normalized flatter (tanh, softsign)": flatter("grad_ratio"),
        "standard init: activations shrink going up, normalized flatter (tanh, softsign)": flatter("act_ratio"),
        f"sigmoid: top hidden layer mean < {SATURATED} within the first half of the budget and still falling "
        "at the end, every seed":
            all(s["saturated_at"] is not None and s["saturated_at"] <= budget // 2 and s["top_last"] < s["top_half"]
                for s in sat),
        f"sigmoid: the lower hidden layers stay away from 0 (mean > {LOWER_FLOOR}), every seed":
            all(s["lower_min"] > LOWER_FLOOR for s in sat),
        f"normalized init lowers tanh's test error by > {T_MARGIN:g} standard errors after {checkpoints[0]} steps":
            gains["tanh"][checkpoints[0]]["mean"] > max(0.0, T_MARGIN * gains["tanh"][checkpoints[0]]["se"]),
        "... and tanh normalized is not worse on average after " + "/".join(map(str, checkpoints[1:])) + " steps":
            all(gains["tanh"][b]["mean"] >= 0 for b in checkpoints[1:]),
    }

    def gain_text(a: str) -> str:
        return ", ".join(f"{b} steps {100 * np.mean(summary[f'{a} standard']['errors'][b]):.1f}% -> "
                         f"{100 * np.mean(summary[f'{a} normalized']['errors'][b]):.1f}% (gain "
                         f"{100 * g['mean']:.1f} +- {100 * g['se']:.1f} pt, {g['wins']}/{g['n']} seeds)"
                         for b, g in gains[a].items())

    sig_err = 100 * np.mean(summary["sigmoid standard"]["errors"][checkpoints[-1]])
    escaped = sum(s["escaped"] for s in sat)
    measured = (f"grad std input/top at init, tanh {summary['tanh standard']['grad_ratio']:.2f} (standard) vs "
                f"{summary['tanh normalized']['grad_ratio']:.2f} (normalized); sigmoid top layer mean 0.5 -> < "
                f"{SATURATED} in {sum(s['saturated_at'] is not None for s in sat)}/{len(sat)} seeds (latest at step "
                f"{max((s['saturated_at'] or budget) for s in sat)}), {np.mean([s['top_half'] for s in sat]):.3f} at "
                f"mid-budget, {np.mean([s['top_last'] for s in sat]):.3f} at the end, lower layers >= "
                f"{min(s['lower_min'] for s in sat):.2f}; escape within {budget} steps in {escaped}/{len(sat)} "
                f"seeds, sigmoid test error {sig_err:.1f}% (not tested: the paper's escape and 2.21% come after "
                f"~100 epochs); tanh {gain_text('tanh')}; softsign (reported) {gain_text('softsign')}")
    expected = ("standard init shrinks activations going up and gradients toward the input, normalized keeps them "
                "flatter; sigmoid's top hidden layer saturates at 0 early while lower layers do not; normalized "
                f"init lowers tanh's test error beyond the seed noise early ({checkpoints[0]} steps) and is not "
                f"worse later (up to {budget} steps)")
    return {"expected": expected, "measured": measured, "checks": checks, "reproduced": all(checks.values()),
            "gains": gains}


def _one_run(ds: Any, act: str, spec: str, seed: int, *, width: int, budget: int, error_steps: tuple[int, ...],
             every: int, lr: float,
             batch: int, probe_x: torch.Tensor, probe_y: torch.Tensor, trajectory: bool) -> dict[str, Any]:
    from initlab import zoo

    model = zoo.mlp(DEPTH, width, act, in_features=ds.n_features, out_features=ds.n_classes, seed=seed)
    init_weights(model, spec, "zeros", generator=generator(seed))
    prof = profiles(model, probe_x, probe_y)
    checkpoints = set(error_steps)
    errors: dict[int, float] = {}
    traj_steps: list[int] = []
    traj: list[list[float]] = []

    def track(m: nn.Module, step: int) -> dict[str, float]:
        if trajectory:
            with torch.no_grad():
                h, means = probe_x, []
                for layer in m[:-1]:
                    h = layer(h)
                    if not isinstance(layer, nn.Linear):
                        means.append(float(h.mean()))
            traj_steps.append(step)
            traj.append(means)
        if step in checkpoints:
            errors[step] = evaluate(m, ds.x_test, ds.y_test)["error"]
        return {}

    log = train(model, ds.x_train, ds.y_train, steps=budget, lr=lr, batch_size=batch, generator=generator(seed, 1),
                eval_every=every if trajectory else math.gcd(*error_steps), evaluate=track)
    for b in checkpoints:
        errors.setdefault(b, 1.0)  # a diverged run counts as all wrong
    return {"seed": seed, **prof, "errors": errors, "diverged": log.diverged, "final_loss": log.final_loss,
            "trajectory_steps": traj_steps, "layer_means": traj}


def run(ctx: Context) -> dict:
    from initlab import data

    # the test error is taken after each of ``error_steps`` (the budget-dependence of the tanh gain)
    width, budget, every, error_steps = (256, 800, 25, (400, 800)) if ctx.quick else (256, 3000, 50,
                                                                                       (750, 1500, 3000))
    lr, batch = 0.1, 10
    ds = data.load("mnist")
    probe_x, probe_y = ds.x_train[:500], ds.y_train[:500]
    runs: dict[str, list[dict]] = {key: [] for key in NETWORKS}
    with ctx.bar(len(NETWORKS) * len(ctx.seeds)) as bar:
        for key, (act, spec) in NETWORKS.items():
            for seed in ctx.seeds:
                runs[key].append(_one_run(ds, act, spec, seed, width=width, budget=budget, error_steps=error_steps,
                                          every=every, lr=lr,
                                          batch=batch, probe_x=probe_x, probe_y=probe_y,
                                          trajectory=act == "sigmoid"))
                bar.update()

    summary: dict[str, Any] = {}
    for key, rs in runs.items():
        grads = np.mean([r["backprop_grad_std"] for r in rs], axis=0)
        acts = np.mean([r["activation_std"] for r in rs], axis=0)
        summary[key] = {"grad_ratio": float(grads[0] / grads[-1]) if grads[-1] > 0 else math.nan,
                        "act_ratio": float(acts[-1] / acts[0]) if acts[0] > 0 else math.nan,
                        "activation_std": acts.tolist(), "backprop_grad_std": grads.tolist(),
                        "errors": {b: [r["errors"][b] for r in rs] for b in sorted(rs[0]["errors"])}}
    summary["saturation"] = [saturation(r["trajectory_steps"], r["layer_means"]) for r in runs["sigmoid standard"]]
    v = verdict(summary, budget)
    rows = []
    for key in NETWORKS:
        s = summary[key]
        errs = [float(np.mean(e)) for e in s["errors"].values()]
        rows.append([key, s["act_ratio"], s["grad_ratio"], *errs, float(np.std(s["errors"][budget], ddof=1))
                     if len(ctx.seeds) > 1 else None])
    plot(ctx, summary, runs)
    settings = {"model": f"zoo.mlp({DEPTH}, {width}, act)", "networks": NETWORKS, "biases": "zeros",
                "data": "mnist (4000 train / 1000 test, standardized)", "optimizer": "SGD", "lr": lr,
                "batch_size": batch, "budget_steps": budget, "error_checkpoints": list(error_steps),
                "sigmoid trajectory": f"mean activation per hidden layer on 500 training images every {every} steps",
                "profile_batch": len(probe_x)}
    return finish(ctx, settings=settings,
                  columns=["network", "act std top/L1", "grad std L1/top",
                           *[f"test error @{b}" for b in error_steps], "seed std @end"],
                  rows=rows, expected=v["expected"], measured=v["measured"], reproduced=v["reproduced"],
                  results={"summary": summary, "gains": v["gains"], "runs": runs}, checks=v["checks"])


def plot(ctx: Context, summary: dict, runs: dict) -> None:
    fig = new_figure(17, 4)
    ax1, ax2, ax3, ax4 = fig.subplots(1, 4)
    for i, key in enumerate(NETWORKS):
        s = summary[key]
        layers = np.arange(1, len(s["activation_std"]) + 1)
        ls = "-" if key.endswith("normalized") else "--"
        ax1.plot(layers, s["activation_std"], ls=ls, marker="o", color=f"C{i}", label=key)
        ax2.semilogy(layers, s["backprop_grad_std"], ls=ls, marker="o", color=f"C{i}")
    sig = runs["sigmoid standard"]
    steps = sig[0]["trajectory_steps"]
    means = np.array([r["layer_means"] for r in sig])  # seeds x evaluations x layers
    for layer in range(means.shape[2]):
        m, sd = means[:, :, layer].mean(0), means[:, :, layer].std(0)
        ax3.plot(steps, m, color=f"C{layer}", label=f"layer {layer + 1}" + (" (top)" if layer == means.shape[2] - 1
                                                                          else ""))
        ax3.fill_between(steps, m - sd, m + sd, color=f"C{layer}", alpha=0.2)
    for i, key in enumerate(NETWORKS):
        if key.startswith("sigmoid"):
            continue  # at chance throughout (see the verdict); it would squash the others' scale
        errs = summary[key]["errors"]
        steps_ = list(errs)
        mean = [100 * np.mean(errs[b]) for b in steps_]
        se = [100 * np.std(errs[b], ddof=1) / math.sqrt(len(errs[b])) if len(errs[b]) > 1 else 0 for b in steps_]
        ax4.errorbar(steps_, mean, yerr=se, marker="o", capsize=3, color=f"C{i}",
                     ls="-" if key.endswith("normalized") else "--", label=key)
    ax4.set(xlabel="training steps (budget)", ylabel="test error % (mean +- SE over seeds)",
            title="test error against the budget")
    ax4.legend(fontsize=7)
    ax1.set(xlabel="hidden layer", ylabel="activation std", title="activations at init")
    ax2.set(xlabel="hidden layer", ylabel="std of dL/ds", title="back-propagated gradients at init")
    ax3.set(xlabel="step", ylabel="mean activation (+- std over seeds)", ylim=(0, 1),
            title="sigmoid, standard init (paper's Fig. 2)")
    ax1.legend(fontsize=7)
    ax3.legend(fontsize=7)
    ctx.save_figure(fig)
