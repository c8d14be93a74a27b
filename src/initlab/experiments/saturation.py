"""Why inputs are normalized and weights scaled by 1/sqrt(fan_in): the logistic unit saturates.

The logistic sigmoid's slope is f'(s) = f(s)(1 - f(s)): 0.105 at s = 2 but 4.5e-5 at s = 10, so a unit
driven to 10 learns about 2300 times slower than one at 2 (LeCun et al., "Efficient BackProp"). Keep
pre-activations within about [-4, 4].

With inputs of mean 0 and variance 1 and weights U(-1/sqrt(d), 1/sqrt(d)) (the "standard" init, torch's
Linear default, ``fan_in_uniform`` in the catalogue), the pre-activation ``s = w . x`` has variance
``d * (1 / (3 d)) * 1 = 1/3`` whatever the fan-in d: essentially nothing falls outside [-4, 4]. The same
weights on raw pixels (0..255, here drawn from the real MNIST pixel distribution) give variance
``E[x^2] / 3`` ~ 2400: almost every unit is saturated.

Measured for d = 10 ... 10000 on synthetic N(0, 1) inputs and on raw pixels, and at d = 784 on the real
MNIST images (standardized and raw; constant border pixels make the standardized E[x^2] ~0.9 there, so
the table's ``expected`` column is ``E[x^2] / 3`` of the actual inputs).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from initlab.experiments._common import Context, finish, generator, new_figure

DIMS = (10, 30, 100, 300, 1000, 3000, 10000)
BOUND = 4.0
TOLERANCE = 0.02


def sigmoid_slope(s: float) -> float:
    """f'(s) = f(s)(1 - f(s)) for the logistic f."""
    f = 1.0 / (1.0 + math.exp(-s))
    return f * (1.0 - f)


def _stats(pre: torch.Tensor) -> dict[str, float]:
    sig = torch.sigmoid(pre.double())
    return {"variance": float(pre.double().var()), "outside": float((pre.abs() > BOUND).double().mean()),
            "mean_slope": float((sig * (1 - sig)).mean())}


def judge(slope2: float, slope10: float, std_sweep: dict[Any, dict[str, float]],
          raw_sweep: dict[Any, dict[str, float]]) -> dict[str, bool]:
    """The verdict's checks, a pure function of the measured numbers: the slopes at 2 and 10, and per fan-in
    ``d`` the pre-activation ``variance`` and the fraction ``outside`` [-4, 4] for standardized inputs
    (``std_sweep[d]``) and raw pixels (``raw_sweep[d]``)."""
    return {
        "slope ratio f'(2)/f'(10) > 1000": slope2 / slope10 > 1000,
        f"variance within {TOLERANCE} of 1/3 for every d": all(abs(v["variance"] - 1 / 3) <= TOLERANCE
                                                              for v in std_sweep.values()),
        "standardized: < 0.1% outside [-4, 4]": all(v["outside"] < 1e-3 for v in std_sweep.values()),
        "raw: > 50% outside [-4, 4] for every d": all(v["outside"] > 0.5 for v in raw_sweep.values()),
    }


def run(ctx: Context) -> dict:
    import initlab
    from initlab import data

    n_rows, units = (256, 128) if ctx.quick else (512, 256)
    weights = initlab.get("fan_in_uniform")
    mnist_raw = data.load("mnist", standardize=False)
    mnist_std = data.load("mnist")
    pixels = (mnist_raw.x_train * 255).flatten()  # the empirical raw-pixel distribution
    pixel_m2 = float(pixels.double().square().mean())

    sweep: dict[str, dict[int, list[dict]]] = {"standardized": {d: [] for d in DIMS}, "raw": {d: [] for d in DIMS}}
    mnist: dict[str, list[dict]] = {"mnist standardized": [], "mnist raw": []}
    samples: dict[str, torch.Tensor] = {}
    with ctx.bar(len(ctx.seeds) * (len(DIMS) + 1)) as bar:
        for seed in ctx.seeds:
            g = generator(seed)
            for d in DIMS:
                w = weights.sample((units, d), generator=g)
                x_std = torch.randn(n_rows, d, generator=g)
                x_raw = pixels[torch.randint(len(pixels), (n_rows, d), generator=g)]
                for kind, x in (("standardized", x_std), ("raw", x_raw)):
                    pre = x @ w.T
                    sweep[kind][d].append(_stats(pre))
                    if d == 1000 and seed == ctx.seeds[0]:
                        samples[kind] = pre.flatten()
                bar.update()
            w = weights.sample((units, 784), generator=g)
            rows = torch.randperm(len(mnist_std.x_train), generator=g)[:n_rows]
            mnist["mnist standardized"].append(_stats(mnist_std.x_train[rows] @ w.T))
            mnist["mnist raw"].append(_stats((mnist_raw.x_train[rows] * 255) @ w.T))
            bar.update()

    def mean(runs: list[dict], key: str) -> float:
        return sum(r[key] for r in runs) / len(runs)

    rows_out, results = [], {"sweep": {}, "mnist": {}}
    expected_of = {"standardized": 1 / 3, "raw": pixel_m2 / 3,
                   "mnist standardized": float(mnist_std.x_train.double().square().mean()) / 3,
                   "mnist raw": float((mnist_raw.x_train.double() * 255).square().mean()) / 3}
    for kind, by_d in sweep.items():
        results["sweep"][kind] = {}
        for d, runs in by_d.items():
            entry = {k: mean(runs, k) for k in ("variance", "outside", "mean_slope")}
            results["sweep"][kind][d] = {**entry, "expected_variance": expected_of[kind], "runs": runs}
            rows_out.append([kind, d, entry["variance"], expected_of[kind], entry["outside"], entry["mean_slope"]])
    for kind, runs in mnist.items():
        entry = {k: mean(runs, k) for k in ("variance", "outside", "mean_slope")}
        results["mnist"][kind] = {**entry, "expected_variance": expected_of[kind], "runs": runs}
        rows_out.append([kind, 784, entry["variance"], expected_of[kind], entry["outside"], entry["mean_slope"]])

    slope2, slope10 = sigmoid_slope(2.0), sigmoid_slope(10.0)
    results["slopes"] = {"at_2": slope2, "at_10": slope10, "ratio": slope2 / slope10}
    std_sweep, raw_sweep = results["sweep"]["standardized"], results["sweep"]["raw"]
    checks = judge(slope2, slope10, std_sweep, raw_sweep)
    plot(ctx, results, samples)
    variances = [v["variance"] for v in std_sweep.values()]
    measured = (f"f'(2) = {slope2:.3f}, f'(10) = {slope10:.2e} (ratio {slope2 / slope10:.0f}); variance "
                f"{min(variances):.3f}..{max(variances):.3f} for d = {DIMS[0]}..{DIMS[-1]}, "
                f"max {max(v['outside'] for v in std_sweep.values()):.1e} outside [-4, 4]; raw pixels: "
                f"{min(v['outside'] for v in raw_sweep.values()):.0%}+ outside")
    expected = ("f'(2)/f'(10) ~ 2300; with standardized inputs and U(+-1/sqrt(d)) weights the pre-activation "
                "variance is 1/3 for every d (none beyond |4|); raw pixels saturate")
    settings = {"weights": repr(weights), "dims": list(DIMS), "rows": n_rows, "units": units, "bound": BOUND,
                "tolerance": TOLERANCE, "standardized inputs": "N(0, 1) i.i.d.",
                "raw inputs": "i.i.d. draws from the MNIST pixel values (0..255)", "bias": "none"}
    return finish(ctx, settings=settings, columns=["inputs", "d", "variance", "expected", "outside [-4,4]",
                                                   "mean slope"],
                  rows=rows_out, expected=expected, measured=measured, reproduced=all(checks.values()),
                  results=results, checks=checks)


def plot(ctx: Context, results: dict, samples: dict[str, torch.Tensor]) -> None:
    fig = new_figure(11, 4)
    ax1, ax2 = fig.subplots(1, 2)
    for kind, marker in (("standardized", "o"), ("raw", "s")):
        by_d = results["sweep"][kind]
        ax1.loglog(list(by_d), [v["variance"] for v in by_d.values()], marker=marker, label=f"{kind} inputs")
    ax1.axhline(1 / 3, color="gray", ls="--", lw=1, label="1/3")
    ax1.set_xlabel("fan-in d")
    ax1.set_ylabel("pre-activation variance")
    ax1.set_title("U(-1/sqrt(d), 1/sqrt(d)) weights")
    ax1.legend(fontsize=8)
    for kind, color in (("standardized", "C0"), ("raw", "C1")):
        if kind in samples:
            s = samples[kind].clamp(-60, 60).numpy()
            ax2.hist(s, bins=120, range=(-60, 60), density=True, alpha=0.6, color=color, label=f"{kind} (d=1000)")
    ax2.axvspan(-BOUND, BOUND, color="green", alpha=0.1, label="[-4, 4]")
    ax2.set_yscale("log")
    ax2.set_xlabel("pre-activation s (clipped to +-60)")
    ax2.set_title("where the logistic unit works: |s| < 4")
    ax2.legend(fontsize=8)
    ctx.save_figure(fig)
