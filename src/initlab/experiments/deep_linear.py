"""Saxe, McClelland & Ganguli 2013: learning time in deep LINEAR networks, orthogonal vs Gaussian init.

A deep linear network ``W_D ... W_1 x`` computes a linear map, yet its learning dynamics are nonlinear
and depend on the initialization. With random orthogonal layers the product starts orthogonal (all its
singular values are 1) and, with the learning rate scaled as 1/D, the time to learn stops growing with
depth. With scaled Gaussian layers (std 1/sqrt(n), the "variance-preserving" choice) the singular values
of the product spread out exponentially with depth: some modes start near zero and learning time grows.

Setup: a teacher ``y = A x`` on 512 Gaussian inputs of dimension 32, A with singular values log-spaced
in [0.3, 3]; students ``zoo.mlp(D - 1, 32, "linear", bias=False)`` (D bias-free Linear layers) with
``orthogonal`` or ``normal(std=1/sqrt(32))`` weights from the catalogue; full-batch gradient descent with
learning rate 0.1 / D on ``0.5 |y - f(x)|^2``; counted: steps until the loss falls below 1% of the
zero-predictor loss (capped at ``max_steps``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from initlab.experiments._common import Context, finish, generator, new_figure, train

WIDTH = 32
N_SAMPLES = 512
BASE_LR = 0.1
THRESHOLD = 0.01
SINGULAR_RANGE = (0.3, 3.0)


def teacher(width: int = WIDTH, n: int = N_SAMPLES) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed inputs and targets (the same for every seed, so seeds vary only the students)."""
    g = generator(12345)
    x = torch.randn(n, width, generator=g)
    u, _ = torch.linalg.qr(torch.randn(width, width, generator=g))
    v, _ = torch.linalg.qr(torch.randn(width, width, generator=g))
    s = torch.logspace(math.log10(SINGULAR_RANGE[1]), math.log10(SINGULAR_RANGE[0]), width)
    return x, x @ (u @ torch.diag(s) @ v.T).T


def _mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 0.5 * (out - target).pow(2).sum(1).mean()


def run(ctx: Context) -> dict:
    from initlab import zoo
    from initlab.experiments._common import init_weights

    depths, max_steps = ((2, 4, 8, 16), 1000) if ctx.quick else ((2, 4, 8, 16, 32), 2000)
    inits = {"orthogonal": "orthogonal", "gaussian": f"normal(std={1 / math.sqrt(WIDTH):.6g})"}
    x, y = teacher()
    zero_loss = float(_mse(torch.zeros_like(y), y))
    target = THRESHOLD * zero_loss
    runs: dict[str, dict[int, list[dict]]] = {k: {d: [] for d in depths} for k in inits}
    with ctx.bar(len(inits) * len(depths) * len(ctx.seeds)) as bar:
        for depth in depths:
            for name, spec in inits.items():
                for seed in ctx.seeds:
                    model = zoo.mlp(depth - 1, WIDTH, "linear", in_features=WIDTH, out_features=WIDTH, bias=False,
                                    seed=seed)
                    init_weights(model, spec, generator=generator(seed))
                    log = train(model, x, y, steps=max_steps, lr=BASE_LR / depth, batch_size=None, loss_fn=_mse,
                                threshold=target)
                    reached = log.steps_to_threshold
                    runs[name][depth].append({"seed": seed, "steps": reached if reached else max_steps,
                                              "reached": reached is not None, "diverged": log.diverged,
                                              "initial_loss": log.losses[0] if log.losses else math.nan,
                                              "final_loss": log.losses[-1] if log.losses else math.nan,
                                              "loss_curve": log.losses[:: max(1, len(log.losses) // 200)]})
                    bar.update()

    summary: dict[str, dict[int, dict]] = {k: {} for k in inits}
    rows = []
    for depth in depths:
        for name in inits:
            rs = runs[name][depth]
            steps = float(np.mean([r["steps"] for r in rs]))
            capped = sum(not r["reached"] for r in rs)
            summary[name][depth] = {"steps": steps, "capped": capped}
            rows.append([depth, name, steps, f"{capped}/{len(rs)}", float(np.mean([r["initial_loss"] for r in rs]))])

    orth, gauss = summary["orthogonal"], summary["gaussian"]
    deep = [d for d in depths if d >= 8]
    orth_deep = [orth[d]["steps"] for d in deep]
    checks = {
        "orthogonal reaches the threshold at every depth": all(v["capped"] == 0 for v in orth.values()),
        "orthogonal: no growth beyond depth 8 (max/min <= 2)": max(orth_deep) <= 2 * min(orth_deep),
        "gaussian: steps grow with depth (deepest >= 4x shallowest)":
            gauss[depths[-1]]["steps"] >= 4 * gauss[depths[0]]["steps"],
        "gaussian slower than orthogonal at every depth >= 8": all(gauss[d]["steps"] > orth[d]["steps"] for d in deep),
    }
    plot(ctx, summary, depths, max_steps)
    measured = ("steps to threshold by depth " + ", ".join(str(d) for d in depths) + ": orthogonal "
                + " / ".join(f"{orth[d]['steps']:.0f}" for d in depths) + ", gaussian "
                + " / ".join(f"{gauss[d]['steps']:.0f}" + ("+" if gauss[d]["capped"] else "") for d in depths)
                + f" (+ = hit the {max_steps}-step cap)")
    expected = ("with lr ~ 1/depth, orthogonal init's learning time levels off with depth while scaled Gaussian "
                "init's keeps growing")
    settings = {"width": WIDTH, "samples": N_SAMPLES, "teacher singular values": list(SINGULAR_RANGE),
                "depths": list(depths), "inits": inits, "lr": f"{BASE_LR} / depth", "optimizer": "full-batch GD",
                "threshold": f"{THRESHOLD} x zero-predictor loss ({target:.4g})", "max_steps": max_steps}
    return finish(ctx, settings=settings, columns=["depth", "init", "steps to threshold", "capped", "initial loss"],
                  rows=rows, expected=expected, measured=measured, reproduced=all(checks.values()),
                  results={"summary": summary, "runs": runs}, checks=checks)


def plot(ctx: Context, summary: dict, depths: tuple[int, ...], max_steps: int) -> None:
    fig = new_figure(6, 4)
    ax = fig.subplots()
    for i, (name, by_depth) in enumerate(summary.items()):
        ax.plot(depths, [by_depth[d]["steps"] for d in depths], marker="o", color=f"C{i}", label=name)
    ax.axhline(max_steps, color="gray", ls="--", lw=1, label="step cap")
    ax.set(xscale="log", yscale="log", xlabel="depth (layers)", ylabel="steps to 1% loss",
           title="deep linear networks (Saxe et al. 2013)")
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.set_xticks([], minor=True)  # log-axis minor labels would overlap the depth labels
    ax.legend(fontsize=8)
    ctx.save_figure(fig)
