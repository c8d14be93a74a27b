"""Greedy layer-wise pretraining as an initialization (Hinton et al. 2006; Bengio et al. 2007;
Vincent et al. 2008; Erhan et al. 2010).

A deep sigmoid MLP learns from a small labelled subset of MNIST (pixels / 255). Three starts:

* ``random``: the best plain random init for logistic units, ``glorot_uniform_sigmoid`` (4x the Glorot
  bound, Bengio 2012), zero biases;
* ``rbm``: each hidden layer pretrained as a restricted Boltzmann machine (CD-1) on all 4000 training
  images without their labels, ``initlab.pretrain(method="rbm")``;
* ``dae``: each hidden layer pretrained as a denoising autoencoder (25% masking noise),
  ``initlab.pretrain(method="dae")``;

then all three are fine-tuned identically with SGD (momentum 0.9) on the labelled subset and tested on
the 1000 held-out digits. Expected (Erhan et al. 2010: pretraining acts as a regularizer and helps most
with deep networks and little labelled data): both pretrained starts end with a lower mean test error
than the random start. The published full-scale numbers (784-500-500-2000-10, 60000 labels: about 1.2%
with RBMs vs 1.6% for random init) are not the target here, only the ordering.
"""

from __future__ import annotations

import numpy as np

from initlab.experiments._common import Context, evaluate, finish, generator, init_weights, new_figure, train

METHODS = ("random", "rbm", "dae")
RANDOM_INIT = "glorot_uniform_sigmoid"


def judge(summary: dict[str, dict[str, float]]) -> dict[str, bool]:
    """The verdict's checks from the mean test error of each start (``summary[method]["test_error"]``): both
    pretrained starts below the random one. A pure function, so a test can feed it results where
    pretraining does not help and see it fail."""
    return {f"{m.upper()} pretraining: lower mean test error than random init":
            summary[m]["test_error"] < summary["random"]["test_error"] for m in ("rbm", "dae")}


def run(ctx: Context) -> dict:
    import initlab
    from initlab import data, zoo

    if ctx.quick:
        depth, width, n_labels, steps, pre_epochs = 3, 128, 300, 400, 3
    else:
        depth, width, n_labels, steps, pre_epochs = 4, 256, 500, 1000, 5
    lr, momentum, batch = 0.1, 0.9, 20
    ds = data.load("mnist", standardize=False)  # [0, 1] pixels: Bernoulli visible units for the first RBM
    runs: dict[str, list[dict]] = {m: [] for m in METHODS}
    with ctx.bar(len(METHODS) * len(ctx.seeds)) as bar:
        for seed in ctx.seeds:
            # a different labelled subset per seed, the same for the three methods
            pick = np.random.default_rng(seed).permutation(len(ds.x_train))[:n_labels]
            x_lab, y_lab = ds.x_train[pick], ds.y_train[pick]
            for method in METHODS:
                model = zoo.mlp(depth, width, "sigmoid", in_features=ds.n_features, out_features=ds.n_classes,
                                seed=seed)
                init_weights(model, RANDOM_INIT, "zeros", generator=generator(seed))
                pre = None
                if method != "random":
                    report = initlab.pretrain(model, ds.x_train, method=method, epochs=pre_epochs, progress=False,
                                              seed=seed)
                    pre = [{"layer": layer.name, "visible": layer.visible, "errors": layer.errors}
                           for layer in report.layers]
                before = evaluate(model, ds.x_test, ds.y_test)
                log = train(model, x_lab, y_lab, steps=steps, lr=lr, batch_size=batch, momentum=momentum,
                            generator=generator(seed, 1), eval_every=max(1, steps // 20),
                            evaluate=lambda m, step: {"test_error": evaluate(m, ds.x_test, ds.y_test)["error"]})
                test = evaluate(model, ds.x_test, ds.y_test)
                runs[method].append({"seed": seed, "test_error": test["error"], "test_loss": test["loss"],
                                     "train_loss": log.final_loss, "diverged": log.diverged,
                                     "test_error_before_finetuning": before["error"], "pretraining": pre,
                                     "eval_steps": [e["step"] for e in log.evals],
                                     "test_error_curve": [e["test_error"] for e in log.evals]})
                bar.update()

    summary = {m: {"test_error": float(np.mean([r["test_error"] for r in rs])),
                   "test_error_std": float(np.std([r["test_error"] for r in rs])),
                   "wins_over_random": None} for m, rs in runs.items()}
    for m in ("rbm", "dae"):
        summary[m]["wins_over_random"] = sum(r["test_error"] < b["test_error"]
                                             for r, b in zip(runs[m], runs["random"]))
    rows = [[m, len(runs[m]), summary[m]["test_error"], summary[m]["test_error_std"],
             "-" if summary[m]["wins_over_random"] is None else f"{summary[m]['wins_over_random']}/{len(runs[m])}"]
            for m in METHODS]
    checks = judge(summary)
    plot(ctx, runs)
    measured = "mean test error " + ", ".join(f"{m} {summary[m]['test_error']:.1%}" for m in METHODS) + (
        f" over {len(ctx.seeds)} seeds")
    expected = (f"with {n_labels} labels, a {depth}-hidden-layer sigmoid MLP ends with a lower test error after RBM "
                "or denoising-autoencoder pretraining than from a random init")
    settings = {"model": f"zoo.mlp({depth}, {width}, 'sigmoid')", "random init": RANDOM_INIT,
                "pretraining": {"methods": ["rbm", "dae"], "epochs": pre_epochs, "data": "4000 unlabelled images"},
                "labels": n_labels, "data": "mnist pixels / 255 (1000 test digits)", "optimizer": "SGD", "lr": lr,
                "momentum": momentum, "batch_size": batch, "steps": steps}
    return finish(ctx, settings=settings, columns=["start", "seeds", "test error", "std", "beats random"],
                  rows=rows, expected=expected, measured=measured, reproduced=all(checks.values()),
                  results={"summary": summary, "runs": runs}, checks=checks)


def plot(ctx: Context, runs: dict[str, list[dict]]) -> None:
    fig = new_figure(7, 4)
    ax = fig.subplots()
    for i, (method, rs) in enumerate(runs.items()):
        curves = np.array([r["test_error_curve"] for r in rs])
        steps = rs[0]["eval_steps"]
        ax.plot(steps, curves.mean(0), color=f"C{i}", label=f"{method} (mean of {len(rs)} seeds)")
        if len(rs) > 1:
            ax.fill_between(steps, curves.min(0), curves.max(0), color=f"C{i}", alpha=0.15)
    ax.set(xlabel="fine-tuning step", ylabel="test error", yscale="log",
           title="deep sigmoid MLP, few labels: random init vs pretraining")
    ax.legend(fontsize=8)
    ctx.save_figure(fig)
