"""He et al. 2015, Fig. 3, scaled down: a 30-layer ReLU network trains with He init and stalls with Xavier.

Xavier/Glorot init (Var(w) = 2 / (fan_in + fan_out) = 1/n here) ignores the ReLU's halving of the
second moment, so the signal shrinks by sqrt(1/2) per layer: 2^-15 after 30 layers. The output is then
almost constant, the gradient reaching the first layers is as small, and training sits at chance
(loss ln 10 = 2.30). He init (Var(w) = 2 / fan_in) keeps the scale and the same network learns.
torch's default (U(+-1/sqrt(fan_in)), variance 1/(3n)) shrinks even faster.

Setup: ``zoo.mlp(30, 128, "relu")`` on standardized MNIST (4000 training digits), zero biases, SGD with
momentum 0.9, learning rate 0.003, batch 64, several seeds. Recorded: the minibatch loss at every step,
the training loss (on 1000 fixed training examples) every ``eval_every`` steps, the gradient norm of the
first layer's weight at every step, and the test error at the end. Expected: He's final training loss
below Xavier's for every seed, and Xavier at chance.
"""

from __future__ import annotations

import math

import numpy as np

from initlab.experiments._common import Context, evaluate, finish, generator, init_weights, new_figure, train

SCHEMES = {"he": "he_normal", "xavier": "glorot_normal", "torch default": "fan_in_uniform"}
DEPTH = 30
CHANCE = math.log(10)


def run(ctx: Context) -> dict:
    from initlab import data, zoo

    width, steps, eval_every = (64, 250, 25) if ctx.quick else (128, 800, 50)
    lr, momentum, batch = 0.003, 0.9, 64
    ds = data.load("mnist")
    # the training loss is tracked on a fixed 1000-example slice of the training set (cheaper than all 4000)
    x_track, y_track = ds.x_train[:1000], ds.y_train[:1000]
    runs: dict[str, list[dict]] = {name: [] for name in SCHEMES}
    with ctx.bar(len(SCHEMES) * len(ctx.seeds)) as bar:
        for seed in ctx.seeds:
            for name, spec in SCHEMES.items():
                model = zoo.mlp(DEPTH, width, "relu", in_features=ds.n_features, out_features=ds.n_classes,
                                seed=seed)
                init_weights(model, spec, "zeros", generator=generator(seed))
                first = model[0].weight
                grad_norms: list[float] = []
                log = train(model, ds.x_train, ds.y_train, steps=steps, lr=lr, batch_size=batch, momentum=momentum,
                            generator=generator(seed, 1), eval_every=eval_every,
                            evaluate=lambda m, step: {"train_loss": evaluate(m, x_track, y_track)["loss"]},
                            on_step=lambda g=grad_norms, w=first: g.append(float(w.grad.norm())))
                test = evaluate(model, ds.x_test, ds.y_test)
                final = log.evals[-1]["train_loss"] if not log.diverged else math.inf
                runs[name].append({"seed": seed, "final_train_loss": final, "test_error": test["error"],
                                   "diverged": log.diverged, "first_layer_grad_norm_start": grad_norms[0]
                                   if grad_norms else math.nan,
                                   "first_layer_grad_norm_mean": float(np.mean(grad_norms)) if grad_norms else math.nan,
                                   "eval_steps": [e["step"] for e in log.evals],
                                   "train_loss_curve": [e["train_loss"] for e in log.evals],
                                   "minibatch_loss": log.losses, "first_layer_grad_norm": grad_norms})
                bar.update()

    rows = []
    for name, rs in runs.items():
        for r in rs:
            rows.append([name, r["seed"], r["train_loss_curve"][0], r["final_train_loss"], r["test_error"],
                         r["first_layer_grad_norm_start"], r["first_layer_grad_norm_mean"]])
    he_vs_xavier = [h["final_train_loss"] < x["final_train_loss"] for h, x in zip(runs["he"], runs["xavier"])]
    checks = {
        "He's final train loss below Xavier's for every seed": all(he_vs_xavier),
        "He learns (final train loss < 0.8 ln 10)": all(r["final_train_loss"] < 0.8 * CHANCE for r in runs["he"]),
        "Xavier stalls (final train loss > 0.95 ln 10)": all(r["final_train_loss"] > 0.95 * CHANCE
                                                            for r in runs["xavier"]),
    }
    plot(ctx, runs)

    def avg(name: str, key: str) -> float:
        return float(np.mean([r[key] for r in runs[name]]))

    loss, grad = "final_train_loss", "first_layer_grad_norm_mean"
    measured = (f"final train loss He {avg('he', loss):.3f}, Xavier {avg('xavier', loss):.3f}, "
                f"torch default {avg('torch default', loss):.3f} (chance {CHANCE:.3f}); "
                f"He below Xavier in {sum(he_vs_xavier)}/{len(he_vs_xavier)} seeds; first-layer grad norm "
                f"He {avg('he', grad):.2g} vs Xavier {avg('xavier', grad):.2g}")
    expected = f"a {DEPTH}-layer ReLU MLP learns with He init and stays at chance (ln 10) with Xavier"
    settings = {"model": f"zoo.mlp({DEPTH}, {width}, 'relu')", "inits": SCHEMES, "biases": "zeros",
                "data": "mnist (4000 train / 1000 test, standardized)", "optimizer": "SGD", "lr": lr,
                "momentum": momentum, "batch_size": batch, "steps": steps, "eval_every": eval_every,
                "train loss on": "the first 1000 training examples"}
    return finish(ctx, settings=settings,
                  columns=["init", "seed", "loss at init", "final train loss", "test error", "grad L1 start",
                           "grad L1 mean"],
                  rows=rows, expected=expected, measured=measured, reproduced=all(checks.values()),
                  results={"runs": runs}, checks=checks)


def plot(ctx: Context, runs: dict[str, list[dict]]) -> None:
    fig = new_figure(11, 4)
    ax1, ax2 = fig.subplots(1, 2)
    for i, (name, rs) in enumerate(runs.items()):
        for j, r in enumerate(rs):
            ax1.plot(r["eval_steps"], r["train_loss_curve"], color=f"C{i}", alpha=0.8,
                     label=name if j == 0 else None)
            g = np.asarray(r["first_layer_grad_norm"])
            if len(g):
                ax2.semilogy(np.arange(1, len(g) + 1), np.maximum(g, 1e-30), color=f"C{i}", alpha=0.6, lw=0.8,
                             label=name if j == 0 else None)
    ax1.axhline(CHANCE, color="gray", ls="--", lw=1, label="chance (ln 10)")
    ax1.set_xlabel("step")
    ax1.set_ylabel("training loss")
    ax1.set_title(f"{DEPTH}-layer ReLU MLP on MNIST")
    ax1.legend(fontsize=8)
    ax2.set_xlabel("step")
    ax2.set_ylabel("|grad| of first-layer weight")
    ax2.set_title("gradient reaching the first layer")
    ax2.legend(fontsize=8)
    ctx.save_figure(fig)
