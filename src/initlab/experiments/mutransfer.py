"""Tensor Programs V, Figure 1, at CPU scale: the best learning rate moves with width under the standard
parametrization (SP) and stays put under muP.

Setup: MNIST-1D (4000 training sequences of 40 values, 10 classes). Two families at several widths: an MLP
(``zoo.mlp(2, width, "relu")``: 40 -> width -> width -> 10; widths 128..1024, 150 steps) and a tiny pre-LN
transformer (:class:`TinyTransformer`: the 40 values read as 10 tokens of 4, ``width`` = d_model, 2 heads whose
``head_dim`` grows with width, 2 blocks, mean-pooled readout; widths 16..64, 100 steps). Every model goes
through ``initlab.mup(model, base=<the narrowest model>, parametrization="sp" | "mup")``, so both
parametrizations share the classes, the init of input and hidden weights and the base width (where they are
the same model, trained once), and differ only where muP says they should: the readout (its multiplier and
init), the attention scale (``1/d``) and the per-layer Adam learning rates. Each (family, parametrization,
width, learning rate 2^-11 .. 2^-3) is trained with Adam, batch 128; the training loss is measured at the end
on 1000 fixed training examples. The best learning rate of a width is read from its loss curve by
:func:`best_log2_lr` (a parabola fitted around the minimum of the lightly smoothed curve, in log2 lr), so that
one noisy run cannot move it by a whole grid step. ``quick``: two widths per family (MLP 32, 256; a one-block
transformer 16, 64), 100 steps, 8 learning rates; the same criteria.

Expected: under SP the best learning rate of the widest model is at least ``SHIFT`` (in log2 units) below
that of the narrowest; under muP the best learning rates of all widths lie within ``SPREAD`` of each other.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from initlab.experiments._common import Context, finish, generator, new_figure, train

FAMILIES = ("mlp", "transformer")
PARAMETRIZATIONS = ("sp", "mup")
SHIFT = 1.5  # log2 units: SP's best lr must fall by at least this from the narrowest to the widest
SPREAD = 1.0  # log2 units: muP's best lrs must lie within this of each other
TOKENS, TOKEN_FEATURES = 10, 4


class Attention(nn.Module):
    """Multi-head self-attention that exposes ``head_dim`` and ``scale``, the attributes ``initlab.mup`` sets."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))`` (GELU, 2x expansion)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(width), Attention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyTransformer(nn.Module):
    """A sequence classifier: ``(n, tokens * features)`` -> linear embedding + learned positions -> blocks ->
    LayerNorm -> mean over tokens -> Linear readout.

    >>> TinyTransformer(32)(torch.zeros(2, 40)).shape
    torch.Size([2, 10])
    """

    def __init__(self, width: int, *, heads: int = 2, depth: int = 2, tokens: int = TOKENS,
                 features: int = TOKEN_FEATURES, classes: int = 10) -> None:
        super().__init__()
        self.tokens, self.features = tokens, features
        self.embed = nn.Linear(features, width)
        self.pos = nn.Parameter(torch.zeros(1, tokens, width))
        self.blocks = nn.Sequential(*[Block(width, heads) for _ in range(depth)])
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.reshape(x.shape[0], self.tokens, self.features)) + self.pos
        return self.head(self.ln_f(self.blocks(h)).mean(dim=1))


def build(family: str, width: int, seed: int = 0, depth: int = 2) -> nn.Module:
    """A model of ``family`` (``"mlp"`` or ``"transformer"`` with ``depth`` blocks) at ``width``; torch's global
    RNG is untouched (``initlab.mup`` draws the weights anyway).

    >>> [type(build(f, 8)).__name__ for f in FAMILIES]
    ['Sequential', 'TinyTransformer']
    """
    from initlab import zoo

    if family == "mlp":
        return zoo.mlp(2, width, "relu", in_features=TOKENS * TOKEN_FEATURES, out_features=10, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyTransformer(width, depth=depth)


def settings_for(quick: bool) -> dict[str, Any]:
    """Widths (the first is the base), learning-rate grid (log2), steps, batch size and transformer depth."""
    if quick:
        return {"widths": {"mlp": [32, 256], "transformer": [16, 64]},
                "log2_lrs": {"mlp": list(range(-10, -2)), "transformer": list(range(-10, -2))},
                "steps": {"mlp": 100, "transformer": 100}, "batch_size": 128, "depth": 1}
    return {"widths": {"mlp": [128, 256, 512, 1024], "transformer": [16, 32, 64]},
            "log2_lrs": {"mlp": list(range(-11, -2)), "transformer": list(range(-11, -2))},
            "steps": {"mlp": 150, "transformer": 100}, "batch_size": 128, "depth": 2}


def train_one(model: nn.Module, groups: list[dict], x: torch.Tensor, y: torch.Tensor, x_eval: torch.Tensor,
              y_eval: torch.Tensor, *, steps: int, batch_size: int, gen: torch.Generator) -> float:
    """Adam on ``groups`` for ``steps`` minibatch steps (``_common.train``); the training loss on
    ``(x_eval, y_eval)`` at the end (inf when training blew up)."""
    log = train(model, x, y, steps=steps, batch_size=batch_size, generator=gen, optimizer=torch.optim.Adam(groups))
    if log.diverged:
        return math.inf
    with torch.no_grad():
        final = float(nn.functional.cross_entropy(model.eval()(x_eval), y_eval))
    return final if math.isfinite(final) else math.inf


def smooth(values: list[float]) -> list[float]:
    """A loss curve smoothed with weights (1, 2, 1) (renormalized at the ends); a blown-up run (inf, nan)
    counts as the curve's worst finite loss.

    >>> smooth([1.0, 4.0, 1.0, float("inf")])
    [2.0, 2.5, 2.5, 3.0]
    """
    finite = [v for v in values if math.isfinite(v)]
    worst = max(finite) if finite else 2 * math.log(10)
    v = np.array([x if math.isfinite(x) else worst for x in values], dtype=float)
    padded = np.concatenate([[0.0], v, [0.0]])
    weights = np.concatenate([[0.0], np.ones_like(v), [0.0]])
    num = padded[:-2] + 2 * padded[1:-1] + padded[2:]
    den = weights[:-2] + 2 * weights[1:-1] + weights[2:]
    return [float(x) for x in num / den]


def best_log2_lr(log2_lrs: list[int], losses: list[float]) -> float:
    """The best learning rate (log2) of one loss curve: the vertex of a least-squares parabola through the five
    grid points around the minimum of the :func:`smooth` ed curve, kept within those points (the grid point
    itself when the parabola opens downwards). Smoothing and fitting five points make one lucky or unlucky run
    move the answer by a fraction of a grid step instead of a whole one.

    >>> round(best_log2_lr([-5, -4, -3, -2, -1], [1.0, 0.5, 0.3, 0.5, 1.0]), 6)
    -3.0
    """
    smoothed = smooth(losses)
    i = int(np.argmin(smoothed))
    lo, hi = max(0, i - 2), min(len(smoothed), i + 3)
    x, y = np.asarray(log2_lrs[lo:hi], dtype=float), np.asarray(smoothed[lo:hi])
    if len(x) < 3:
        return float(log2_lrs[i])
    a, b, _ = np.polyfit(x, y, 2)
    if a <= 0:
        return float(log2_lrs[i])
    return float(np.clip(-b / (2 * a), x[0], x[-1]))


def judge(best: dict[str, dict[str, list[float]]]) -> tuple[dict[str, bool], dict[str, dict[str, float]]]:
    """The verdict's checks from the best log2 learning rates (``best[family][parametrization]``, one per
    width, narrowest first): SP's shift (narrowest minus widest) >= SHIFT, muP's spread (max - min) <= SPREAD,
    for every family. Also returns the shifts and spreads."""
    checks: dict[str, bool] = {}
    numbers: dict[str, dict[str, float]] = {}
    for family, per in best.items():
        sp, mu = per["sp"], per["mup"]
        numbers[family] = {"sp_shift": sp[0] - sp[-1], "sp_spread": max(sp) - min(sp),
                           "mup_shift": mu[0] - mu[-1], "mup_spread": max(mu) - min(mu)}
        checks[f"{family}: SP's best lr falls by >= {SHIFT:g} (log2) from the narrowest to the widest"] = \
            numbers[family]["sp_shift"] >= SHIFT
        checks[f"{family}: muP's best lrs lie within {SPREAD:g} (log2) of each other"] = \
            numbers[family]["mup_spread"] <= SPREAD
    return checks, numbers


def _sweep(ctx: Context, family: str, cfg: dict[str, Any], ds: Any, bar: Any) -> dict[str, Any]:
    """Final training loss for every (parametrization, width, lr, seed) of one family. At the base width
    (the first) SP and muP are the same model with the same draws and learning rates, so it is trained once."""
    import initlab

    widths, lrs = cfg["widths"][family], cfg["log2_lrs"][family]
    x_eval, y_eval = ds.x_train[:1000], ds.y_train[:1000]
    losses = {p: {str(w): [[math.nan] * len(ctx.seeds) for _ in lrs] for w in widths} for p in PARAMETRIZATIONS}
    for si, seed in enumerate(ctx.seeds):
        base = build(family, widths[0], seed, cfg["depth"])
        for param in PARAMETRIZATIONS:
            for w in widths if param == "sp" else widths[1:]:
                for li, log2_lr in enumerate(lrs):
                    model = build(family, w, seed, cfg["depth"])
                    report = initlab.mup(model, base=base, parametrization=param, seed=seed)
                    losses[param][str(w)][li][si] = train_one(
                        model, report.param_groups(2.0 ** log2_lr, "adam"), ds.x_train, ds.y_train, x_eval, y_eval,
                        steps=cfg["steps"][family], batch_size=cfg["batch_size"], gen=generator(seed, 1))
                    bar.update()
        losses["mup"][str(widths[0])] = [list(v) for v in losses["sp"][str(widths[0])]]
    mean = {p: {w: [float(np.mean(v)) for v in per_lr] for w, per_lr in per_w.items()} for p, per_w in losses.items()}
    best = {p: [best_log2_lr(lrs, mean[p][str(w)]) for w in widths] for p in PARAMETRIZATIONS}
    return {"widths": widths, "log2_lrs": lrs, "loss": mean, "loss_per_seed": losses, "best_log2_lr": best}


def run(ctx: Context) -> dict:
    from initlab import data

    cfg = settings_for(ctx.quick)
    ds = data.load("mnist1d")
    total = sum((2 * len(cfg["widths"][f]) - 1) * len(cfg["log2_lrs"][f]) for f in FAMILIES)
    with ctx.bar(total * len(ctx.seeds)) as bar:
        results = {family: _sweep(ctx, family, cfg, ds, bar) for family in FAMILIES}
    return conclude(ctx, cfg, results)


def conclude(ctx: Context, cfg: dict[str, Any], results: dict[str, Any]) -> dict:
    """The figure, the table and the verdict from the sweep's ``results`` (``results[family]`` with
    ``widths``, ``log2_lrs``, ``loss[param][str(width)]`` and ``best_log2_lr[param]``)."""
    checks, numbers = judge({f: r["best_log2_lr"] for f, r in results.items()})
    plot(ctx, results)
    rows = []
    for family, r in results.items():
        for param in PARAMETRIZATIONS:
            for w, b in zip(r["widths"], r["best_log2_lr"][param]):
                rows.append([family, param, w, b, 2.0 ** b, min(r["loss"][param][str(w)])])
    measured = "; ".join(
        f"{f}: best log2 lr SP {_fmt(r['best_log2_lr']['sp'])} (shift {numbers[f]['sp_shift']:.2f}), "
        f"muP {_fmt(r['best_log2_lr']['mup'])} (spread {numbers[f]['mup_spread']:.2f})" for f, r in results.items())
    expected = (f"the best learning rate falls with width under SP (by >= {SHIFT:g} in log2 from the narrowest "
                f"to the widest) and stays put under muP (all within {SPREAD:g})")
    settings = {"data": "mnist1d (4000 train; loss on the first 1000)", "optimizer": "Adam (torch defaults)",
                "mlp": "zoo.mlp(2, width, 'relu'), 40 -> width -> width -> 10",
                "transformer": f"TinyTransformer(width): {TOKENS} tokens x {TOKEN_FEATURES}, 2 heads, "
                               f"{cfg['depth']} pre-LN block(s)",
                "base width": "the narrowest of each family, trained once (SP and muP coincide there)",
                **cfg}
    return finish(ctx, settings=settings, columns=["family", "param", "width", "best log2 lr", "best lr",
                                                   "best loss"],
                  rows=rows, expected=expected, measured=measured, reproduced=all(checks.values()),
                  results={"families": results, "numbers": numbers}, checks=checks)


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.1f}" for v in values) + "]"


def plot(ctx: Context, results: dict[str, Any]) -> None:
    """Figure 1's layout: training loss against log2 learning rate, a line per width; SP left, muP right."""
    fig = new_figure(10, 3.6 * len(results))
    axes = fig.subplots(len(results), 2, squeeze=False)
    for row, (family, r) in enumerate(results.items()):
        finite = [v for p in PARAMETRIZATIONS for w in r["loss"][p].values() for v in w if math.isfinite(v)]
        top = min(max(finite), 2 * math.log(10)) if finite else 2 * math.log(10)
        for col, param in enumerate(PARAMETRIZATIONS):
            ax = axes[row][col]
            for i, w in enumerate(r["widths"]):
                vals = [min(v, top) if math.isfinite(v) else top for v in r["loss"][param][str(w)]]
                color = f"C{i}"
                ax.plot(r["log2_lrs"], vals, marker="o", ms=3, color=color, label=f"width {w}")
                ax.axvline(r["best_log2_lr"][param][i], color=color, lw=0.8, ls=":")
            ax.set_title(f"{family}, {'muP' if param == 'mup' else 'SP'}")
            ax.set_xlabel("log2 learning rate (Adam)")
            ax.set_ylabel("training loss")
            ax.set_ylim(top=top * 1.02)
            ax.legend(fontsize=7)
    ctx.save_figure(fig)
