"""Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward neural networks".

Networks with 5 hidden layers of sigmoid, tanh or softsign units, each under the "standard" init
``U(-1/sqrt(n), 1/sqrt(n))`` (``fan_in_uniform``: n Var(w) = 1/3, so signals shrink layer after layer)
and the "normalized" init ``U(+-sqrt(6 / (n_in + n_out)))`` (``glorot_uniform``: n Var(w) = 1 for square
layers, keeping forward and backward variances), trained with plain SGD, batch 10, on standardized MNIST.

What the paper shows, and what is checked here (the ordering and the profiles, not the absolute errors,
which need 1000-unit layers and many epochs):

* at init, with the standard init the activations shrink going up and the back-propagated gradients
  (dL/ds for each layer's pre-activation s) shrink going down toward the input; the normalized init keeps
  both profiles flatter (Figs. 6-7);
* with sigmoid units the top hidden layer is driven to saturation at 0 early in training (Fig. 2);
* sigmoid networks end with the highest test error (Table 1: 2.21% vs 1.6-1.8% on MNIST);
* the normalized init helps tanh (Table 1: Tanh 1.76% vs Tanh N 1.64%; on Shapeset 27.15 vs 15.60).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from initlab.experiments._common import Context, evaluate, finish, generator, init_weights, new_figure, train

ACTIVATIONS = ("sigmoid", "tanh", "softsign")
INITS = {"standard": "fan_in_uniform", "normalized": "glorot_uniform"}
DEPTH = 5


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


def run(ctx: Context) -> dict:
    from initlab import data, zoo

    width, steps, eval_every = (128, 1000, 100) if ctx.quick else (500, 3000, 150)
    lr, batch = 0.1, 10
    ds = data.load("mnist")
    probe_x, probe_y = ds.x_train[:500], ds.y_train[:500]
    runs: dict[str, list[dict]] = {}
    with ctx.bar(len(ACTIVATIONS) * len(INITS) * len(ctx.seeds)) as bar:
        for act in ACTIVATIONS:
            for init_name, spec in INITS.items():
                key = f"{act} {init_name}"
                runs[key] = []
                for seed in ctx.seeds:
                    model = zoo.mlp(DEPTH, width, act, in_features=ds.n_features, out_features=ds.n_classes, seed=seed)
                    init_weights(model, spec, "zeros", generator=generator(seed))
                    prof = profiles(model, probe_x, probe_y)
                    body = model[:-1]  # everything up to the top hidden layer's activation

                    def top_stats(m: nn.Module, step: int, body: nn.Module = body) -> dict[str, float]:
                        with torch.no_grad():
                            top = body(probe_x)
                        return {"top_mean": float(top.mean()), "top_std": float(top.std())}

                    log = train(model, ds.x_train, ds.y_train, steps=steps, lr=lr, batch_size=batch,
                                generator=generator(seed, 1), eval_every=eval_every, evaluate=top_stats)
                    test = evaluate(model, ds.x_test, ds.y_test)
                    runs[key].append({"seed": seed, **prof, "test_error": test["error"], "diverged": log.diverged,
                                      "eval_steps": [e["step"] for e in log.evals],
                                      "top_mean": [e["top_mean"] for e in log.evals],
                                      "top_std": [e["top_std"] for e in log.evals],
                                      "final_loss": log.final_loss})
                    bar.update()

    def mean_list(key: str, field: str) -> list[float]:
        return np.mean([r[field] for r in runs[key]], axis=0).tolist()

    summary, rows = {}, []
    for key in runs:
        grads = mean_list(key, "backprop_grad_std")
        acts = mean_list(key, "activation_std")
        s = {"test_error": float(np.mean([r["test_error"] for r in runs[key]])),
             "grad_ratio_input_to_top": grads[0] / grads[-1] if grads[-1] > 0 else math.nan,
             "act_ratio_top_to_first": acts[-1] / acts[0] if acts[0] > 0 else math.nan,
             "top_mean_init": float(np.mean([r["top_mean"][0] for r in runs[key]])),
             "top_mean_min": float(np.mean([min(r["top_mean"]) for r in runs[key]])),
             "activation_std": acts, "backprop_grad_std": grads, "weight_grad_std": mean_list(key, "weight_grad_std")}
        summary[key] = s
        sigmoid = key.startswith("sigmoid")  # the top layer's mean says something only for logistic units
        rows.append([key, s["act_ratio_top_to_first"], s["grad_ratio_input_to_top"],
                     s["top_mean_init"] if sigmoid else None, s["top_mean_min"] if sigmoid else None,
                     s["test_error"]])

    others = [k for k in runs if not k.startswith("sigmoid")]
    worst_other = max(summary[k]["test_error"] for k in others)
    def flatter(field: str) -> bool:
        # standard shrinks (ratio < 1) and normalized is flatter (a larger ratio), for tanh and softsign
        return all(summary[f"{a} standard"][field] < 1 and summary[f"{a} normalized"][field]
                   > summary[f"{a} standard"][field] for a in ("tanh", "softsign"))

    checks = {
        "standard init: gradients shrink toward the input, normalized flatter (tanh, softsign)":
            flatter("grad_ratio_input_to_top"),
        "standard init: activations shrink going up, normalized flatter (tanh, softsign)":
            flatter("act_ratio_top_to_first"),
        "sigmoid: top hidden layer saturates toward 0 (mean < 0.25 from 0.5)":
            summary["sigmoid standard"]["top_mean_min"] < 0.25,
        "sigmoid has the highest test error": all(summary[f"sigmoid {i}"]["test_error"] > worst_other for i in INITS),
        "normalized init helps tanh (lower test error)":
            summary["tanh normalized"]["test_error"] < summary["tanh standard"]["test_error"],
    }
    plot(ctx, summary, runs)
    t = {k: summary[k]["test_error"] for k in summary}
    sig = summary["sigmoid standard"]
    measured = (f"grad ratio input/top tanh {summary['tanh standard']['grad_ratio_input_to_top']:.2f} (standard) vs "
                f"{summary['tanh normalized']['grad_ratio_input_to_top']:.2f} (normalized); sigmoid top-layer mean "
                f"{sig['top_mean_init']:.2f} -> {sig['top_mean_min']:.2f}; "
                "test error " + ", ".join(f"{k} {v:.1%}" for k, v in t.items()))
    expected = ("standard init shrinks activations going up and gradients toward the input, normalized keeps them "
                "flatter; sigmoid's top layer saturates at 0 and sigmoid ends worst; normalized init helps tanh")
    settings = {"model": f"zoo.mlp({DEPTH}, {width}, act)", "inits": INITS, "activations": list(ACTIVATIONS),
                "biases": "zeros", "data": "mnist (4000 train / 1000 test, standardized)", "optimizer": "SGD",
                "lr": lr, "batch_size": batch, "steps": steps, "profile_batch": len(probe_x)}
    return finish(ctx, settings=settings,
                  columns=["network", "act std top/L1", "grad std L1/top", "top mean init", "top mean min",
                           "test error"],
                  rows=rows, expected=expected, measured=measured, reproduced=all(checks.values()),
                  results={"summary": summary, "runs": runs}, checks=checks)


def plot(ctx: Context, summary: dict, runs: dict) -> None:
    fig = new_figure(13, 4)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    for i, act in enumerate(ACTIVATIONS):
        for init_name, ls in (("standard", "--"), ("normalized", "-")):
            s = summary[f"{act} {init_name}"]
            layers = np.arange(1, len(s["activation_std"]) + 1)
            ax1.plot(layers, s["activation_std"], ls=ls, marker="o", color=f"C{i}", label=f"{act} {init_name}")
            ax2.semilogy(layers, s["backprop_grad_std"], ls=ls, marker="o", color=f"C{i}")
    r0 = runs["sigmoid standard"][0]
    ax3.plot(r0["eval_steps"], r0["top_mean"], color="C0", label="mean")
    ax3.fill_between(r0["eval_steps"], np.subtract(r0["top_mean"], r0["top_std"]),
                     np.add(r0["top_mean"], r0["top_std"]), color="C0", alpha=0.2, label="+- std")
    ax1.set(xlabel="hidden layer", ylabel="activation std", title="activations at init")
    ax2.set(xlabel="hidden layer", ylabel="std of dL/ds", title="back-propagated gradients at init")
    ax3.set(xlabel="step", ylabel="top hidden layer activation", title="sigmoid, standard init: top layer")
    ax1.legend(fontsize=7)
    ax3.legend(fontsize=8)
    ctx.save_figure(fig)
