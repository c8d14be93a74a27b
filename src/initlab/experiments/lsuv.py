"""LSUV, "All you need is a good init" (Mishkin & Matas 2016), against He and orthogonal init.

Deep MLPs (20 hidden layers) with tanh and with ReLU units on standardized MNIST, three starts:

* ``he``: ``he_normal`` (std sqrt(2 / fan_in)) on every Linear, zero biases;
* ``orthogonal``: ``orthogonal`` (gain 1, Saxe et al. 2013), zero biases;
* ``lsuv``: ``initlab.lsuv(model, batch)``: orthogonal pre-init, then each layer's weight divided by the
  std of its output on a batch of 500 training images, layer after layer in execution order.

Measured: the std of every Linear layer's output at init on a DIFFERENT batch (held-out images), with
``initlab.probe``; then the first epochs of training (SGD, momentum 0.9), full training loss after each
epoch, and the test error. Expected: LSUV puts every layer at unit std (it generalizes beyond its batch),
where orthogonal init without rescaling lets a ReLU network's signal vanish; and LSUV trains at least as
fast as the better of the two data-independent inits on both networks.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from initlab.experiments._common import Context, evaluate, finish, generator, init_weights, new_figure, train

NETWORKS = ("tanh", "relu")
METHODS = {"he": "he_normal", "orthogonal": "orthogonal", "lsuv": None}
DEPTH = 20
STD_TOLERANCE = 0.15  # LSUV's own tolerance is 2% on its batch; held-out images get some slack
LOSS_SLACK = 1.1  # "at least as fast": final loss within 10% of the best of he / orthogonal


def run(ctx: Context) -> dict:
    import initlab
    from initlab import data, zoo

    width, epochs = (128, 2) if ctx.quick else (128, 4)
    lr, momentum, batch = 0.01, 0.9, 64
    ds = data.load("mnist")
    lsuv_batch, held_out = ds.x_train[:500], ds.x_train[500:1000]
    steps_per_epoch = math.ceil(len(ds.x_train) / batch)
    runs: dict[str, list[dict]] = {}
    with ctx.bar(len(NETWORKS) * len(METHODS) * len(ctx.seeds)) as bar:
        for act in NETWORKS:
            for method, spec in METHODS.items():
                key = f"{act} | {method}"
                runs[key] = []
                for seed in ctx.seeds:
                    model = zoo.mlp(DEPTH, width, act, in_features=ds.n_features, out_features=ds.n_classes,
                                    seed=seed)
                    lsuv_info = None
                    if spec is None:
                        with warnings.catch_warnings(record=True) as caught:
                            warnings.simplefilter("always")
                            report = initlab.lsuv(model, lsuv_batch, seed=seed)
                        lsuv_info = {"iterations": [r.iterations for r in report.layers],
                                     "std_after": [r.std_after for r in report.layers],
                                     "forward_passes": report.forward_passes,
                                     "warnings": [str(w.message) for w in caught]}
                    else:
                        init_weights(model, spec, "zeros", generator=generator(seed))
                    probe = initlab.probe(model, held_out)
                    stds = [s.act_std for s in probe.layers if s.is_layer]  # every Linear's output, classifier too
                    log = train(model, ds.x_train, ds.y_train, steps=epochs * steps_per_epoch, lr=lr,
                                batch_size=batch, momentum=momentum, generator=generator(seed, 1),
                                eval_every=steps_per_epoch,
                                evaluate=lambda m, step: {"train_loss": evaluate(m, ds.x_train, ds.y_train)["loss"]})
                    test = evaluate(model, ds.x_test, ds.y_test)
                    runs[key].append({"seed": seed, "layer_std": stds, "lsuv": lsuv_info,
                                      "epoch_train_loss": [e["train_loss"] for e in log.evals],
                                      "final_train_loss": log.evals[-1]["train_loss"] if not log.diverged else math.inf,
                                      "test_error": test["error"], "diverged": log.diverged})
                    bar.update()

    summary, rows = {}, []
    for key, rs in runs.items():
        act, method = (p.strip() for p in key.split("|"))
        stds = np.mean([r["layer_std"] for r in rs], axis=0)
        s = {"layer_std": stds.tolist(), "max_std_error": float(np.max(np.abs(stds - 1))),
             "final_train_loss": float(np.mean([r["final_train_loss"] for r in rs])),
             "test_error": float(np.mean([r["test_error"] for r in rs])),
             "epoch_train_loss": np.mean([r["epoch_train_loss"] for r in rs], axis=0).tolist()}
        summary[key] = s
        rows.append([act, method, float(stds[0]), float(stds[-2]), s["max_std_error"], s["epoch_train_loss"][1],
                     s["final_train_loss"], s["test_error"]])

    def best_other(act: str) -> float:
        return min(summary[f"{act} | {m}"]["final_train_loss"] for m in METHODS if m != "lsuv")

    checks = {
        f"LSUV: every layer's std within {STD_TOLERANCE} of 1 on held-out images (tanh and ReLU)":
            all(summary[f"{a} | lsuv"]["max_std_error"] <= STD_TOLERANCE for a in NETWORKS),
        "orthogonal without rescaling: the ReLU network's signal vanishes (last hidden std < 0.01)":
            summary["relu | orthogonal"]["layer_std"][-2] < 0.01,
        f"LSUV trains at least as fast as the better of he / orthogonal (final loss <= {LOSS_SLACK}x)":
            all(summary[f"{a} | lsuv"]["final_train_loss"] <= LOSS_SLACK * best_other(a) for a in NETWORKS),
    }
    plot(ctx, summary, epochs)
    measured = "; ".join(
        f"{a}: std error LSUV {summary[f'{a} | lsuv']['max_std_error']:.2f}, final train loss "
        + ", ".join(f"{m} {summary[f'{a} | {m}']['final_train_loss']:.3f}" for m in METHODS) for a in NETWORKS)
    expected = ("LSUV gives every layer unit output std and trains at least as fast as He and orthogonal init on "
                f"{DEPTH}-layer tanh and ReLU networks; orthogonal alone lets the ReLU signal vanish")
    settings = {"model": f"zoo.mlp({DEPTH}, {width}, act)", "networks": list(NETWORKS), "inits": METHODS,
                "lsuv": {"batch": len(lsuv_batch), "target_std": 1.0, "tol": 0.02, "max_iter": 20},
                "std measured on": f"{len(held_out)} held-out training images (initlab.probe)",
                "data": "mnist (4000 train / 1000 test, standardized)", "optimizer": "SGD", "lr": lr,
                "momentum": momentum, "batch_size": batch, "epochs": epochs}
    return finish(ctx, settings=settings,
                  columns=["network", "init", "std L1", "std last hidden", "max |std-1|", "loss epoch 1",
                           f"loss epoch {epochs}", "test error"],
                  rows=rows, expected=expected, measured=measured, reproduced=all(checks.values()),
                  results={"summary": summary, "runs": runs}, checks=checks)


def plot(ctx: Context, summary: dict, epochs: int) -> None:
    fig = new_figure(12, 7)
    axes = fig.subplots(2, 2)
    for row, act in enumerate(NETWORKS):
        for i, method in enumerate(METHODS):
            s = summary[f"{act} | {method}"]
            stds = np.maximum(np.asarray(s["layer_std"]), 1e-12)
            axes[row][0].semilogy(np.arange(1, len(stds) + 1), stds, marker="o", ms=3, color=f"C{i}", label=method)
            axes[row][1].plot(range(len(s["epoch_train_loss"])), s["epoch_train_loss"], marker="o", color=f"C{i}",
                              label=method)
        axes[row][0].axhline(1.0, color="gray", ls="--", lw=1)
        axes[row][0].set(title=f"{act}: output std per Linear layer at init", xlabel="layer", ylabel="std")
        axes[row][1].set(title=f"{act}: training loss", xlabel="epoch", ylabel="train loss", yscale="log")
        axes[row][0].legend(fontsize=8)
        axes[row][1].legend(fontsize=8)
    ctx.save_figure(fig)
