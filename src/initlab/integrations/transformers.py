"""``ProbeCallback``: :func:`initlab.probe` inside a Hugging Face ``transformers.Trainer`` run.

At step 0 (before the first update) and after every ``every``-th optimizer step the callback probes the model
on one fixed batch, logs a summary through ``Trainer.log`` (so it reaches every ``report_to`` logger and
``trainer.state.log_history``), writes the per-layer scalars and histograms to TensorBoard when asked, and
reacts to an unhealthy verdict: warn, stop the training, raise, or ignore.

The probe batch is fixed for the whole run, so the numbers of two steps differ only because the weights did:

* ``batch=`` given at construction: a dict of the model's keyword inputs (``input_ids``, ``attention_mask``,
  ``labels`` ...), used as it is (moved to the model's device);
* else, at the start of training, the first ``batch_size`` examples of the Trainer's train dataset, put
  together by the train dataloader's own collate function, so the batch looks like a training batch. The
  dataloader is not iterated (that would draw from the global RNG and shift the shuffling); the collate
  function runs with the torch, NumPy and ``random`` RNG states saved and restored around it (a masking
  collator draws random numbers).

When the batch carries ``labels`` the gradients are those of the model's own loss (the scalar a
``transformers`` model returns first, what ``Trainer`` minimizes); without labels, the probe's random
Gaussian cotangent (see :func:`initlab.probe`). Each probe runs in eval mode by default (``train=False``: no
dropout noise in a measurement), and, as :func:`initlab.probe` promises, leaves the model exactly as it was:
modes, ``requires_grad`` flags, ``.grad`` (gradients go through ``torch.autograd.grad``), buffers and the global
RNG. A run with the callback takes the same optimizer steps as one without it.

Logged keys (:func:`initlab.integrations.tensorboard.summary`, prefixed ``initlab/``): ``initlab/errors``,
``initlab/warnings``, ``initlab/verdict/CODE`` (1.0 for each verdict raised), ``initlab/act_std_min``,
``initlab/act_std_max``, ``initlab/grad_std_min``, ``initlab/grad_std_max``, ``initlab/grad_weight_ratio_max``.

Usage::

    trainer = Trainer(model=model, args=args, train_dataset=ds)
    probe_cb = ProbeCallback(every=100, on_unhealthy="stop", tensorboard="runs/initlab").attach(trainer)
    trainer.train()
    probe_cb.results[-1].table()

``attach`` adds the callback to the trainer and keeps the trainer, whose ``log`` it calls: a callback cannot
reach the trainer otherwise, so one given as ``Trainer(callbacks=[cb])`` raises a RuntimeError saying to attach
it when training begins.
"""

from __future__ import annotations

import contextlib
import random
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch.utils import _pytree as pytree

try:
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover - exercised only without transformers
    raise ImportError("initlab.integrations.transformers needs the transformers package (and accelerate for the "
                      "Trainer); install them with pip install initlab[transformers]") from None

from initlab.probing.health import HealthError, Thresholds, Verdict
from initlab.validate import check_choice, check_flag, check_int, check_seed

__all__ = ["ProbeCallback", "ProbeWarning", "OnUnhealthy", "ON_UNHEALTHY"]

OnUnhealthy = Literal["warn", "stop", "raise", "ignore"]
ON_UNHEALTHY: tuple[str, ...] = get_args(OnUnhealthy)


class ProbeWarning(UserWarning):
    """An unhealthy verdict seen by :class:`ProbeCallback` with ``on_unhealthy="warn"``."""


@contextlib.contextmanager
def _rng_kept() -> Iterator[None]:
    """torch (CPU and CUDA), NumPy and ``random`` states as they were on exit."""
    py, npy = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_initialized() else []):
            yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)


class ProbeCallback(TrainerCallback):
    """Probe a ``Trainer``'s model at step 0 and every ``every`` optimizer steps (see the module docstring).

    Args:
        every: probe after every ``every``-th optimizer step (and at step 0).
        batch: the probe batch, a dict of keyword inputs; default: the first ``batch_size`` training examples.
        batch_size: examples in the default batch (the verdicts on dead units and identical outputs need 8).
        on_unhealthy: what a verdict whose code is not in ``ignore`` does: "warn" (a :class:`ProbeWarning`),
            "stop" (``control.should_training_stop = True``; the Trainer checks it after a step, so a stop at
            step 0 still lets one step run), "raise" (:class:`~initlab.probing.health.HealthError`, at step 0
            before any update), or "ignore".
        ignore: verdict codes that never count as unhealthy.
        tensorboard: a folder for the TensorBoard records (see :mod:`initlab.integrations.tensorboard`).
        thresholds, layers, bins, seed, train: passed to :func:`initlab.probe` (``train=False``: eval mode).

    Attributes:
        steps: the probed global steps; results: their :class:`~initlab.probing.probe.ProbeResult` s;
        logged: the dicts given to ``Trainer.log``; unhealthy: ``(step, verdicts)`` of each unhealthy probe.
    """

    def __init__(self, every: int = 100, *, batch: dict[str, Any] | None = None, batch_size: int = 32,
                 on_unhealthy: OnUnhealthy = "warn", ignore: tuple[str, ...] | list[str] = (),
                 tensorboard: str | Path | None = None, thresholds: Thresholds | dict[str, Any] | None = None,
                 layers: Any = None, bins: int = 64, seed: int = 0, train: bool | None = False) -> None:
        check_int(every, "every", 1)
        check_int(batch_size, "batch_size", 1)
        check_choice(on_unhealthy, "on_unhealthy", ON_UNHEALTHY)
        check_int(bins, "bins", 1, 100_000)
        check_seed(seed, optional=False)
        check_flag(train, "train", optional=True)
        if batch is not None and not isinstance(batch, dict):
            raise TypeError(f"batch must be None or a dict of the model's keyword inputs; got {type(batch).__name__}")
        if isinstance(ignore, str) or not all(isinstance(c, str) for c in ignore):
            raise TypeError(f"ignore must be a tuple of verdict codes; got {ignore!r}")
        self.every, self.batch, self.batch_size, self.on_unhealthy = every, batch, batch_size, on_unhealthy
        self.ignore = frozenset(ignore)
        self.thresholds = Thresholds.make(thresholds)
        if tensorboard is not None:  # a wrong type, a missing package or a bad folder: refused now, not mid-run
            from initlab.integrations.tensorboard import check_logdir

            check_logdir(tensorboard, "tensorboard")
        self.tensorboard = tensorboard
        self.probe_kwargs = {"layers": layers, "bins": bins, "seed": seed, "train": train}
        self.trainer: Any = None
        self.steps: list[int] = []
        self.results: list[Any] = []
        self.logged: list[dict[str, float]] = []
        self.unhealthy: list[tuple[int, list[Verdict]]] = []
        self._batch: dict[str, Any] | None = None
        self._graph: Any = None
        self._writer: Any = None

    def attach(self, trainer: Any) -> ProbeCallback:
        """Add this callback to ``trainer`` and log through its ``log`` method; returns ``self``."""
        if not callable(getattr(trainer, "log", None)) or not callable(getattr(trainer, "add_callback", None)):
            raise TypeError(f"trainer must be a transformers.Trainer; got {type(trainer).__name__}")
        self.trainer = trainer
        trainer.add_callback(self)
        return self

    # -- Trainer events ------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, train_dataloader: Any = None,
                       **kwargs: Any) -> Any:
        if self.trainer is None:
            raise RuntimeError("ProbeCallback logs through the Trainer: add it with ProbeCallback(...).attach(trainer) "
                               "rather than Trainer(callbacks=[...])")
        self._batch = dict(self.batch) if self.batch is not None else self._first_examples(train_dataloader)
        if self.tensorboard is not None and state.is_world_process_zero and self._writer is None:
            from initlab.integrations.tensorboard import ProbeWriter

            self._writer = ProbeWriter(self.tensorboard, "tensorboard")
        self._probe(model, state, control)
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
        if state.global_step % self.every == 0 and (not self.steps or self.steps[-1] != state.global_step):
            self._probe(model, state, control)
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return control

    # -- the steps -----------------------------------------------------------------------------------
    def _first_examples(self, dataloader: Any) -> dict[str, Any]:
        """The first ``batch_size`` examples of the dataloader's dataset, collated as the Trainer collates."""
        dataset = getattr(dataloader, "dataset", None)
        collate = getattr(dataloader, "collate_fn", None)
        if dataset is None or collate is None or not hasattr(dataset, "__getitem__") or not hasattr(dataset,
                                                                                                      "__len__"):
            raise ValueError("ProbeCallback: the train dataset cannot be indexed (an IterableDataset?); give the "
                             "probe batch as ProbeCallback(batch={...})")
        n = min(self.batch_size, len(dataset))
        with _rng_kept():
            batch = collate([dataset[i] for i in range(n)])
        if not isinstance(batch, dict) and not hasattr(batch, "keys"):
            raise TypeError(f"ProbeCallback: the collate function returned a {type(batch).__name__}, not a dict of "
                            "keyword inputs; give the probe batch as ProbeCallback(batch={...})")
        return dict(batch)

    def _probe(self, model: Any, state: Any, control: Any) -> None:
        from initlab.integrations.tensorboard import summary
        from initlab.probing.probe import probe

        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        batch = pytree.tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, self._batch)
        if self._graph is None:
            from initlab.graph import trace

            self._graph = trace(model, batch, argument="batch")
        loss = _own_loss if "labels" in batch else None
        result = probe(model, batch, loss=loss, thresholds=self.thresholds, graph=self._graph, **self.probe_kwargs)
        step = int(state.global_step)
        self.steps.append(step)
        self.results.append(result)
        logs = {f"initlab/{k}": v for k, v in summary(result.layers, result.verdicts).items()}
        self.logged.append(dict(logs))
        should_log = control.should_log  # Trainer.log clears it: the Trainer's own log of this step must still run
        self.trainer.log(logs)
        control.should_log = should_log
        if self._writer is not None:
            self._writer.write(result.layers, result.verdicts, step)
        bad = [v for v in result.verdicts if v.code not in self.ignore]
        if bad:
            self._react(step, bad, control)

    def _react(self, step: int, bad: list[Verdict], control: Any) -> None:
        self.unhealthy.append((step, bad))
        if self.on_unhealthy == "raise":
            raise HealthError(bad)
        codes = ", ".join(v.code for v in bad)
        if self.on_unhealthy == "warn":
            warnings.warn(f"initlab ProbeCallback, step {step}: unhealthy ({codes}): {bad[0].message}",
                          ProbeWarning, stacklevel=2)
        elif self.on_unhealthy == "stop":
            warnings.warn(f"initlab ProbeCallback, step {step}: unhealthy ({codes}); stopping the training",
                          ProbeWarning, stacklevel=2)
            control.should_training_stop = True


def _own_loss(output: torch.Tensor) -> torch.Tensor:
    """The model's own loss: :func:`initlab.probe` hands over the first floating output, which for a
    ``transformers`` model given ``labels`` is ``loss``."""
    if output.numel() != 1:
        raise ValueError("the probe batch carries labels but the model's first output is not a scalar loss; "
                         "give a batch without labels (the probe then uses a random cotangent)")
    return output.reshape(())
