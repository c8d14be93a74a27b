"""``initlab.Monitor``: the probe's per-layer statistics during training, every ``every`` steps.

>>> import torch, initlab
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
>>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
>>> x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
>>> with initlab.Monitor(net, every=5) as mon:
...     for _ in range(20):
...         opt.zero_grad()
...         nn.functional.cross_entropy(net(x), y).backward()
...         opt.step()
...         mon.step()
>>> mon.steps
[0, 5, 10, 15]
>>> len(mon.series("1", "frac_zero"))
4
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from initlab.probing.health import Thresholds, Verdict, diagnose
from initlab.probing.hooks import Recorder, select_targets
from initlab.probing.stats import LayerStats
from initlab.semantics import describe
from initlab.validate import check_flag, check_int

__all__ = ["Monitor"]


class Monitor:
    """Record per-layer activation and gradient statistics while a model trains.

    Call :meth:`step` once per training step (after ``optimizer.step()``). On every ``every``-th step
    (0, every, 2*every, ...) forward hooks are installed for that step's passes: each recorded point folds
    its outputs into running moments and a fixed-range histogram (``bins``) and the gradients flowing back
    into it; at the next :meth:`step` the summary is kept (:attr:`history`), the weights and their
    ``.grad`` are summarised, and the hooks are removed. Between recordings the model carries no hook at
    all, so the overhead of a step that is not recorded is one Python call. Only summaries and
    histograms are kept: memory grows with the number of recordings, never with the batch.

    Used as a context manager, the hooks are removed on exit (also on an exception).

    Args:
        model: the model being trained.
        every: record one step in ``every`` (the first step is always recorded).
        layers: what to record, as in :func:`initlab.probe` (None = every layer and activation).
        bins: histogram bins (fastai uses 40).
        hist_range: a fixed histogram range for every point and step (default: each step's min/max; the
            figure re-bins onto a common grid).
        example_inputs: only for models torch.fx cannot trace: one batch, so functional activations and
            residual branches are found (see :func:`initlab.trace`).
        grads: also record the gradient with respect to each output.
        thresholds: :class:`~initlab.probing.health.Thresholds` (or a dict of overrides) of the verdicts judged
            on each recording.
        tensorboard: a folder: each recording is also written there as TensorBoard scalars, histograms and
            verdict counts at its step (see :mod:`initlab.integrations.tensorboard`; needs the ``tensorboard``
            package, ``pip install initlab[tensorboard]``). The folder is checked, and the writer made, before
            any hook is installed.

    Attributes:
        steps: the recorded step numbers.
        history: one ``{name: LayerStats}`` per recorded step.
        verdicts: the health verdicts of each recorded step (:func:`initlab.probing.health.diagnose` on its
            statistics; no input summary, so the input-normalization rule is not judged).
    """

    def __init__(self, model: nn.Module, every: int = 50, *, layers: Any = None, bins: int = 40,
                 hist_range: tuple[float, float] | None = None, example_inputs: Any = None, grads: bool = True,
                 thresholds: Thresholds | dict[str, Any] | None = None, tensorboard: str | Path | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        check_int(every, "every", 1)
        check_int(bins, "bins", 1, 100_000)
        check_flag(grads, "grads")
        self.thresholds = Thresholds.make(thresholds)
        if tensorboard is not None and not isinstance(tensorboard, (str, Path)):
            raise TypeError(f"tensorboard must be None or a folder (str or Path); got {type(tensorboard).__name__}")
        from initlab.graph import trace
        from initlab.probing.stats import TensorAccumulator

        if hist_range is not None:
            TensorAccumulator(bins=bins, hist_range=hist_range)  # validates
        self.model = model
        self.every = every
        self.bins = bins
        self.hist_range = hist_range
        self.grads = grads
        self.graph = trace(model, example_inputs, check=True)
        self.targets = select_targets(self.graph, layers)
        self._semantics: Any = None
        self.steps: list[int] = []
        self.history: list[dict[str, LayerStats]] = []
        self.verdicts: list[list[Verdict]] = []
        self._writer: Any = None
        if tensorboard is not None:  # the integration sits at the edge: imported only when asked for
            from initlab.integrations.tensorboard import ProbeWriter

            self._writer = ProbeWriter(tensorboard, "tensorboard")
        self.step_count = 0
        self._recorder: Recorder | None = None
        self._closed = False
        self._arm()

    # -- the training-loop interface -----------------------------------------------------------------
    @property
    def recording(self) -> bool:
        """True while hooks are installed (the current step is being recorded)."""
        return self._recorder is not None

    def step(self) -> None:
        """Mark the end of a training step: keep what was recorded, move on, install hooks if due."""
        if self._closed:
            raise RuntimeError("this Monitor is closed; create a new one to record again")
        self._finish()
        self.step_count += 1
        if self.step_count % self.every == 0:
            self._arm()

    def close(self) -> None:
        """Keep what the current step recorded (if anything) and remove every hook."""
        if not self._closed:
            try:
                self._finish()
            finally:
                self._closed = True
                if self._writer is not None:
                    self._writer.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # never leave hooks on a model that outlives its monitor
        rec = getattr(self, "_recorder", None)
        if rec is not None:
            rec.detach()

    def _arm(self) -> None:
        rec = Recorder(self.targets, bins=self.bins, hist_range=self.hist_range, grads=self.grads)
        rec.attach()
        self._recorder = rec

    def _finish(self) -> None:
        rec, self._recorder = self._recorder, None
        if rec is None:
            return
        rec.detach()
        stats = rec.results()
        if not stats:
            return
        from initlab.probing.probe import _fill_weights

        if self._semantics is None:
            self._semantics = describe(self.graph)
        grads = {id(p): p.grad for p in self.model.parameters() if p.grad is not None}  # after loss.backward()
        _fill_weights(self.model, stats, self.targets, grads, self._semantics)
        self.steps.append(self.step_count)
        self.history.append({s.name: s for s in stats})
        self.verdicts.append(diagnose(stats, None, self.thresholds))
        if self._writer is not None:
            self._writer.write(stats, self.verdicts[-1], self.step_count)

    # -- results -------------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Recorded points (those of the latest recording, execution order)."""
        return list(self.history[-1]) if self.history else []

    def series(self, name: str, stat: str = "act_std") -> np.ndarray:
        """One statistic of one point over the recorded steps (NaN where it was missing)."""
        if not self.history:
            raise ValueError("nothing recorded yet: call step() after each training step")
        if not any(name in h for h in self.history):
            raise KeyError(f"no recorded point {name!r}; recorded: {self.names}")
        if stat not in LayerStats.__dataclass_fields__ or stat in ("hist_counts", "hist_edges", "shape", "name"):
            raise ValueError(f"stat must be a numeric LayerStats field such as 'act_std', 'frac_zero', "
                             f"'grad_std'; got {stat!r}")
        vals = []
        for h in self.history:
            v = getattr(h[name], stat) if name in h else None
            vals.append(np.nan if v is None else float(v))
        return np.asarray(vals)

    def to_dict(self) -> dict[str, Any]:
        """Steps and per-step statistics as plain Python values."""
        return {"every": self.every, "steps": list(self.steps),
                "history": [{n: s.to_dict() for n, s in h.items()} for h in self.history],
                "verdicts": [[v.to_dict() for v in vs] for vs in self.verdicts]}

    def plot(self, path: str | Path | None = None, **kwargs: Any) -> Any:
        """The histogram-over-time figure per layer (see :func:`initlab.report.figures.plot_monitor`)."""
        from initlab.report.figures import plot_monitor

        return plot_monitor(self, path, **kwargs)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("recording" if self.recording else "idle")
        return f"Monitor(every={self.every}, step={self.step_count}, recorded={len(self.steps)}, {state})"
