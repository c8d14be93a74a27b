"""What every experiment shares: the run context, weight init from the catalogue, a small training loop,
and the output (terminal table, one-line verdict, ``NAME.json``, ``NAME.csv``, figures).
"""

from __future__ import annotations

import csv
import io
import json
import math
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from initlab._io import atomic_figure, atomic_text, output_dir

# --------------------------------------------------------------------------------------------------
# Run context


@dataclass
class Context:
    """Settings of one run, handed to an experiment's ``run(ctx)``."""

    name: str
    quick: bool
    seeds: list[int]
    out: Path
    progress: bool
    started: float = field(default_factory=time.perf_counter)
    figures: list[str] = field(default_factory=list)

    def bar(self, total: int, desc: str | None = None):
        """A tqdm progress bar on stderr (silent when ``progress=False`` or tqdm is not installed); use as a
        context manager."""
        from initlab.progress import progress_bar

        return progress_bar(total, desc or self.name, self.progress)

    def figure_path(self, suffix: str = "") -> Path:
        """``out/NAME[-suffix].png``, recorded for the JSON."""
        path = self.out / f"{self.name}{'-' + suffix if suffix else ''}.png"
        self.figures.append(path.name)
        return path

    def save_figure(self, fig: Any, suffix: str = "", **kwargs: Any) -> Path:
        """Write ``fig`` to :meth:`figure_path` atomically (a failure leaves no half-written file)."""
        return atomic_figure(fig, self.figure_path(suffix), "out", dpi=kwargs.pop("dpi", 110), **kwargs)


def generator(seed: int, salt: int = 0) -> torch.Generator:
    """A CPU generator for ``seed``; ``salt`` separates independent streams (data order, weights...)."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(salt))


# --------------------------------------------------------------------------------------------------
# Initialization through the catalogue

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def init_weights(model: nn.Module, weight: Any, bias: Any = "zeros", *,
                 generator: torch.Generator | None = None,
                 last: Any = None) -> nn.Module:
    """Fill every Linear/Conv weight of ``model`` with the catalogue initializer ``weight`` (a spec for
    ``initlab.get``) and every bias with ``bias``, in module order; ``last`` (optional) overrides the
    initializer of the final weighted layer. Returns ``model``.
    """
    import initlab

    w_ini, b_ini = initlab.get(weight), initlab.get(bias)
    layers = [m for m in model.modules() if isinstance(m, WEIGHTED)]
    for i, layer in enumerate(layers):
        ini = initlab.get(last) if (last is not None and i == len(layers) - 1) else w_ini
        ini.init_(layer.weight, generator=generator)
        if layer.bias is not None:
            b_ini.init_(layer.bias, generator=generator)
    return model


# --------------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainLog:
    """Per-step minibatch losses, the periodic evaluations and whether training blew up."""

    losses: list[float]
    evals: list[dict[str, float]]
    diverged: bool

    @property
    def final_loss(self) -> float:
        """Mean of the last 10% of minibatch losses (inf if training diverged)."""
        if self.diverged or not self.losses:
            return math.inf
        k = max(1, len(self.losses) // 10)
        return float(np.mean(self.losses[-k:]))


def minibatches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless minibatch indices into ``n`` examples: a fresh permutation per epoch (``generator``), cut into
    batches of ``batch_size`` (at most ``n``); an epoch's last incomplete batch is skipped."""
    batch_size = min(batch_size, n)
    while True:
        order = torch.randperm(n, generator=generator)
        for pos in range(0, n - batch_size + 1, batch_size):
            yield order[pos:pos + batch_size]


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int, lr: float | None = None,
          batch_size: int | None = 64, momentum: float = 0.0, generator: torch.Generator | None = None,
          loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy,
          eval_every: int | None = None, evaluate: Callable[[nn.Module, int], dict[str, float]] | None = None,
          threshold: float | None = None, on_step: Callable[[], None] | None = None,
          optimizer: torch.optim.Optimizer | None = None) -> TrainLog:
    """Minibatch SGD (with momentum) on ``(x, y)`` for ``steps`` steps, or ``optimizer`` instead of SGD
    (then ``lr`` and ``momentum`` are not used).

    Minibatches come from :func:`minibatches` (``generator``); ``batch_size=None`` means full batch.
    ``evaluate(model, step)`` runs at step 0 and every ``eval_every`` steps (after the update) and its
    dict is stored in ``evals``. With ``threshold``, training stops after the first step whose minibatch
    loss falls below it (that step is ``len(losses)``). A non-finite loss stops training (``diverged``).
    ``on_step()`` runs after each update, while the gradients are still there. Torch's global RNG is not
    used (no ``generator`` means a fixed one, seed 0).
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    if optimizer is None:
        if lr is None:
            raise TypeError("train needs lr (for SGD) or an optimizer")
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=momentum)
    n = len(x)
    batches = minibatches(n, n if batch_size is None else batch_size, generator)
    log = TrainLog([], [], False)
    model.train()
    if evaluate is not None:
        log.evals.append({"step": 0, **evaluate(model, 0)})
        model.train()
    for step in range(1, steps + 1):
        idx = next(batches)
        loss = loss_fn(model(x[idx]), y[idx])
        value = float(loss.detach())
        if not math.isfinite(value):
            log.diverged = True
            log.losses.append(value)
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        log.losses.append(value)
        if on_step is not None:
            on_step()
        if threshold is not None and value < threshold:
            break
        if evaluate is not None and eval_every and step % eval_every == 0:
            log.evals.append({"step": step, **evaluate(model, step)})
            model.train()
    return log


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 2000) -> dict[str, float]:
    """Mean cross-entropy and error rate of ``model`` on ``(x, y)`` in eval mode (mode restored)."""
    was_training = model.training
    model.eval()
    total_loss, wrong = 0.0, 0
    for i in range(0, len(x), batch):
        out = model(x[i:i + batch])
        total_loss += float(nn.functional.cross_entropy(out, y[i:i + batch], reduction="sum"))
        wrong += int((out.argmax(1) != y[i:i + batch]).sum())
    model.train(was_training)
    loss = total_loss / len(x)
    return {"loss": loss if math.isfinite(loss) else math.inf, "error": wrong / len(x)}


# --------------------------------------------------------------------------------------------------
# Output


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The results table through the shared renderer (``initlab.report.table``), 4 significant digits."""
    from initlab.report.table import Column, fmt_number, render

    return render([list(r) for r in rows],
                  [Column(i, header=c, fmt=lambda v: fmt_number(v, 4)) for i, c in enumerate(columns)])


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None  # strict JSON has no NaN/inf
    if isinstance(obj, Path):
        return str(obj)
    return obj


def finish(ctx: Context, *, settings: dict[str, Any], columns: Sequence[str], rows: list[Sequence[Any]],
           expected: str, measured: str, reproduced: bool, results: dict[str, Any],
           checks: dict[str, bool] | None = None) -> dict[str, Any]:
    """Print the table and the verdict, write ``NAME.json`` and ``NAME.csv``, return the JSON payload.

    The verdict line reads ``NAME: expected <expected>; measured <measured> -> REPRODUCED|NOT REPRODUCED``.
    ``checks`` names each criterion behind ``reproduced`` (stored in the JSON).
    """
    import initlab

    seconds = time.perf_counter() - ctx.started
    word = "REPRODUCED" if reproduced else "NOT REPRODUCED"
    verdict = f"{ctx.name}: expected {expected}; measured {measured} -> {word}"
    payload = {
        "experiment": ctx.name,
        "quick": ctx.quick,
        "seeds": list(ctx.seeds),
        "settings": settings,
        "columns": list(columns),
        "rows": [list(r) for r in rows],
        "results": results,
        "verdict": {"text": verdict, "expected": expected, "measured": measured, "reproduced": bool(reproduced),
                    "checks": checks or {}},
        "figures": list(ctx.figures),
        "seconds": round(seconds, 2),
        "versions": {"initlab": initlab.__version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "threads": torch.get_num_threads(),
    }
    payload = _jsonable(payload)
    output_dir(ctx.out, "out")
    atomic_text(ctx.out / f"{ctx.name}.json", json.dumps(payload, indent=1, allow_nan=False), "out")
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(columns)
    writer.writerows(_jsonable([list(r) for r in rows]))
    atomic_text(ctx.out / f"{ctx.name}.csv", table.getvalue(), "out")
    print(format_table(columns, rows))
    print(verdict)
    files = [f"{ctx.name}.json", f"{ctx.name}.csv", *ctx.figures]
    print(f"({seconds:.1f} s; wrote {', '.join(files)} to {ctx.out}/)")
    return payload


def new_figure(width: float = 8.0, height: float = 4.5):
    """A matplotlib Figure that is not registered with pyplot (no global backend or state touched)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("figures need matplotlib: pip install 'initlab[plot]'") from exc
    return Figure(figsize=(width, height), layout="constrained")


def seed_std(values: Sequence[float]) -> float:
    """The seed-to-seed noise of a measurement: the sample standard deviation (ddof 1) of its per-seed
    values, 0 for a single seed.

    >>> seed_std([0.1, 0.3]), seed_std([0.5])
    (0.1414213562373095, 0.0)
    """
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def geomean(values: Iterable[float]) -> float:
    vals = [float(v) for v in values]
    return float(math.exp(sum(math.log(v) for v in vals) / len(vals))) if vals else math.nan


def trend_word(first: float, last: float, tolerance: float = 0.2) -> str:
    """How a quantity moved over the training budget, for verdict texts: ``"shrinks"`` when ``last`` is below
    ``first`` by more than ``tolerance`` of ``|first|``, ``"grows"`` when above it by more, else
    ``"stays about the same"``.

    >>> trend_word(0.46, 0.17), trend_word(0.368, 0.366), trend_word(0.1, 0.3)
    ('shrinks', 'stays about the same', 'grows')
    """
    if last < first - tolerance * abs(first):
        return "shrinks"
    if last > first + tolerance * abs(first):
        return "grows"
    return "stays about the same"
