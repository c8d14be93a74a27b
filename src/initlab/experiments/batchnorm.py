"""Batch normalization makes training far less sensitive to the initialization (Ioffe & Szegedy 2015).

Three bad starts for a 10-hidden-layer MLP on standardized MNIST:

* ``too small``: ReLU, weights N(0, 0.01): the signal shrinks x0.07 per layer and vanishes;
* ``too large``: ReLU, weights N(0, 0.5): it grows x3.5 per layer and the loss overflows;
* ``sigmoid``: sigmoid units under the standard U(+-1/sqrt(n)) init: saturated, vanishing gradients;

each trained with and without ``BatchNorm1d`` after every hidden Linear, with SGD (momentum 0.9) at a
normal learning rate and at 10x that rate. Expected: the plain network fails (near chance, or diverges)
in every case at the normal rate, while the BN network trains in every case at both rates. (BN with
too-large weights trains more slowly at the normal rate: BN makes the layer scale-invariant, so large
weights mean a small effective step; the 10x rate is where that is made up for.)
"""

from __future__ import annotations

import math

import numpy as np

from initlab.experiments._common import Context, evaluate, finish, generator, init_weights, new_figure, train

SETUPS = {"too small": ("relu", "normal(std=0.01)"), "too large": ("relu", "normal(std=0.5)"),
          "sigmoid": ("sigmoid", "fan_in_uniform")}
DEPTH = 10
TRAINS, FAILS = 0.5, 0.8  # test error below TRAINS = it learned; above FAILS (chance 0.9) = it did not


def run(ctx: Context) -> dict:
    from initlab import data, zoo

    width, steps, eval_every = (64, 300, 50) if ctx.quick else (100, 800, 100)
    base_lr, momentum, batch = 0.01, 0.9, 64
    lrs = {"1x": base_lr, "10x": 10 * base_lr}
    ds = data.load("mnist")
    runs: dict[str, list[dict]] = {}
    with ctx.bar(len(SETUPS) * 2 * len(lrs) * len(ctx.seeds)) as bar:
        for setup, (act, spec) in SETUPS.items():
            for bn in (False, True):
                for lr_name, lr in lrs.items():
                    key = f"{setup} | {'BN' if bn else 'plain'} | lr {lr_name}"
                    runs[key] = []
                    for seed in ctx.seeds:
                        model = zoo.mlp(DEPTH, width, act, batchnorm=bn, in_features=ds.n_features,
                                        out_features=ds.n_classes, seed=seed)
                        init_weights(model, spec, "zeros", generator=generator(seed))
                        log = train(model, ds.x_train, ds.y_train, steps=steps, lr=lr, batch_size=batch,
                                    momentum=momentum, generator=generator(seed, 1), eval_every=eval_every,
                                    evaluate=lambda m, step: {"test_error": evaluate(m, ds.x_test, ds.y_test)["error"]})
                        test = evaluate(model, ds.x_test, ds.y_test)
                        runs[key].append({"seed": seed, "setup": setup, "batchnorm": bn, "lr": lr,
                                          "test_error": test["error"] if not log.diverged else math.nan,
                                          "final_loss": log.final_loss, "diverged": log.diverged,
                                          "eval_steps": [e["step"] for e in log.evals],
                                          "test_error_curve": [e["test_error"] for e in log.evals],
                                          "minibatch_loss": log.losses})
                        bar.update()

    def error(key: str) -> float:
        # a diverged run counts as error 1.0 (worse than any network that produced predictions)
        errs = [r["test_error"] if not r["diverged"] else 1.0 for r in runs[key]]
        return float(np.mean(errs))

    rows, summary = [], {}
    for key, rs in runs.items():
        setup, norm, lr_name = (part.strip() for part in key.split("|"))
        e = error(key)
        diverged = sum(r["diverged"] for r in rs)
        final_loss = float(np.mean([r["final_loss"] for r in rs]))
        summary[key] = {"test_error": e, "diverged": diverged, "final_loss": final_loss}
        rows.append([setup, norm, lr_name.replace("lr ", ""), e, summary[key]["final_loss"], f"{diverged}/{len(rs)}"])

    bn_trains = {k: v["test_error"] < TRAINS for k, v in summary.items() if "| BN |" in k}
    plain_fails = {k: v["test_error"] > FAILS for k, v in summary.items() if "| plain | lr 1x" in k}
    bn_better = all(summary[k.replace("plain", "BN")]["test_error"] < v["test_error"]
                    for k, v in summary.items() if "plain" in k)
    checks = {f"BN trains (test error < {TRAINS}) in every setup at both rates": all(bn_trains.values()),
              f"plain network fails (test error > {FAILS} or diverges) in every setup at 1x": all(plain_fails.values()),
              "BN beats plain in every (setup, rate)": bn_better}
    plot(ctx, runs)
    bn_errs = [v["test_error"] for k, v in summary.items() if "| BN |" in k]
    plain_errs = [v["test_error"] for k, v in summary.items() if "plain" in k]
    measured = (f"BN test error {min(bn_errs):.1%}..{max(bn_errs):.1%} over the 6 (setup, rate) pairs; plain "
                f"{min(plain_errs):.1%}..{max(plain_errs):.1%} "
                f"({sum(v['diverged'] for k, v in summary.items() if 'plain' in k)} diverged runs)")
    expected = ("with a bad init (too small, too large, sigmoid) the plain network does not train; with BatchNorm "
                "it trains, at 1x and 10x learning rate")
    settings = {"model": f"zoo.mlp({DEPTH}, {width}, act, batchnorm)", "setups": SETUPS, "biases": "zeros",
                "data": "mnist (4000 train / 1000 test, standardized)", "optimizer": "SGD", "momentum": momentum,
                "lrs": lrs, "batch_size": batch, "steps": steps, "trains_below": TRAINS, "fails_above": FAILS}
    return finish(ctx, settings=settings, columns=["setup", "network", "lr", "test error", "final loss", "diverged"],
                  rows=rows, expected=expected, measured=measured, reproduced=all(checks.values()),
                  results={"summary": summary, "runs": runs}, checks=checks)


def plot(ctx: Context, runs: dict[str, list[dict]]) -> None:
    fig = new_figure(13, 4)
    axes = fig.subplots(1, len(SETUPS), sharey=True)
    styles = {("plain", "1x"): ("C3", "--"), ("plain", "10x"): ("C1", ":"), ("BN", "1x"): ("C0", "-"),
              ("BN", "10x"): ("C2", "-.")}
    for ax, setup in zip(axes, SETUPS):
        for key, rs in runs.items():
            s, norm, lr_name = (part.strip() for part in key.split("|"))
            if s != setup:
                continue
            color, ls = styles[(norm, lr_name.replace("lr ", ""))]
            r = rs[0]
            ax.plot(r["eval_steps"], r["test_error_curve"], color=color, ls=ls, label=f"{norm}, lr {lr_name[3:]}")
        ax.set(title=f"{setup} ({SETUPS[setup][0]}, {SETUPS[setup][1]})", xlabel="step", ylim=(0, 1))
    axes[0].set_ylabel("test error")
    axes[0].legend(fontsize=8)
    ctx.save_figure(fig)
