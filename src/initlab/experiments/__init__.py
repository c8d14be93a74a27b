"""The classic demonstrations of initialization, each reproducible from one call or one command.

``initlab.experiments.run(name)`` (or ``initlab experiment NAME``) runs one experiment: a progress bar on
stderr, then a results table and a one-line verdict on stdout stating the expected shape (from the
paper) and whether this run reproduced it. It writes ``NAME.json`` (settings, seeds, every number, the
verdict with a boolean ``reproduced``), ``NAME.csv`` (the table) and ``NAME*.png`` figures into ``out``.

============ ========================================================================================
name         what it shows
============ ========================================================================================
activations  N(0, sigma) weights in a linear+5xReLU MLP on MNIST: per-layer std x0.71 / x1.0 / x2.0
saturation   logistic slope at 2 vs 10; U(+-1/sqrt(d)) pre-activation variance 1/3 for every d
depth        22- and 30-layer ReLU MLPs: steps to leave chance, He vs Xavier (He et al. 2015)
glorot       sigmoid saturation in training; tanh/softsign standard vs normalized init (Glorot 2010)
batchnorm    final error vs init scale (0.1x..10x He), with and without BatchNorm (Ioffe & Szegedy 2015)
pretraining  deep sigmoid MLP on few labels: random vs RBM vs denoising-autoencoder pretraining
deep-linear  deep linear nets: learning time vs depth, orthogonal flat, Gaussian growing (Saxe 2013)
lsuv         LSUV vs He / orthogonal (proper gains) on deep and deep-thin nets (Mishkin & Matas 2016)
trainable-depth
             tanh MLP training accuracy over sigma_w^2 x depth vs the 6 xi_c curve (Schoenholz et al. 2017)
isometry     critical tanh, orthogonal vs Gaussian: Jacobian spectrum and training speed (Pennington 2017)
mutransfer   best Adam learning rate vs width: moves under SP, stays under muP (Yang et al. 2021, TP5)
============ ========================================================================================

Defaults take at most about 3 minutes on 2 CPU cores; ``quick=True`` up to about 30 seconds (smaller models,
fewer steps and seeds; the verdict's criteria are the same). A run uses one torch thread (the models are
small; the caller's thread setting is restored afterwards), so two experiments can run side by side.

>>> result = run("saturation", quick=True, progress=False, out="initlab-results")  # doctest: +SKIP
>>> result["verdict"]["reproduced"]  # doctest: +SKIP
True
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: its name, the module that runs it, its default seed counts, one line."""

    name: str
    module: str
    summary: str
    seeds: int = 3
    quick_seeds: int = 2

    def load(self) -> ModuleType:
        """The experiment's module (imported on first use), whose ``run(ctx)`` runs it."""
        return importlib.import_module(f"initlab.experiments.{self.module}")


REGISTRY: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment("activations", "activations",
                   "N(0, sigma) weights, linear + 5 ReLU layers on MNIST: std x0.71 / x1.0 / x2.0 per layer", 10, 10),
        Experiment("saturation", "saturation",
                   "logistic slope at 2 vs 10; U(+-1/sqrt(d)) keeps pre-activation variance 1/3 for every d", 3, 2),
        Experiment("depth", "depth",
                   "22- and 30-layer ReLU MLPs: steps to leave chance, He vs Xavier (He et al. 2015, Figs. 2-3)", 5, 2),
        Experiment("glorot", "glorot",
                   "sigmoid saturation over training; tanh/softsign standard vs normalized init (Glorot & Bengio 2010)",
                   5, 3),
        Experiment("batchnorm", "batchnorm",
                   "final error vs init scale (0.1x..10x He), with and without BatchNorm (Ioffe & Szegedy 2015)",
                   3, 2),
        Experiment("pretraining", "pretraining",
                   "deep sigmoid MLP on few labels: random init vs RBM vs denoising-autoencoder pretraining", 3, 2),
        Experiment("deep-linear", "deep_linear",
                   "deep linear nets: learning time vs depth, orthogonal flat, Gaussian growing (Saxe 2013)", 5, 3),
        Experiment("lsuv", "lsuv",
                   "LSUV vs He / orthogonal (proper gains) on deep and deep-thin nets (Mishkin & Matas 2016)", 3, 2),
        Experiment("trainable-depth", "trainable_depth",
                   "tanh MLP accuracy over sigma_w^2 x depth vs the 6 xi_c curve (Schoenholz et al. 2017)", 2, 1),
        Experiment("isometry", "isometry",
                   "critical tanh, orthogonal vs Gaussian: Jacobian spectrum, training speed (Pennington 2017)", 3, 2),
        Experiment("mutransfer", "mutransfer", "best Adam LR vs width: moves under SP, stays under muP (TP5)", 1, 1),
    )
}
NAMES = tuple(REGISTRY)


def available() -> list[str]:
    """Names of the experiments, in the order of the docs."""
    return list(NAMES)


def _seed_list(seeds: int | Sequence[int] | None, default: int) -> list[int]:
    if seeds is None:
        return list(range(default))
    if isinstance(seeds, bool):
        raise TypeError("seeds must be a positive int or a sequence of ints")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1; got {seeds}")
        return list(range(seeds))
    try:
        values = list(seeds)
    except TypeError:
        raise TypeError(f"seeds must be a positive int or a sequence of ints; got {type(seeds).__name__}") from None
    if not values or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in values):
        raise ValueError(f"seeds must be a non-empty sequence of non-negative ints; got {seeds!r}")
    return values


def run(name: str, *, quick: bool = False, seeds: int | Sequence[int] | None = None,
        out: str | Path = "initlab-results", progress: bool = True) -> dict[str, Any]:
    """Run experiment ``name``; print its table and verdict; write its JSON, CSV and figures into ``out``.

    Args:
        name: one of :data:`NAMES` (``initlab experiment --list``).
        quick: the small version (up to about 30 s; the test suite uses it).
        seeds: how many seeds (``0..N-1``) or which seeds; None is the experiment's default.
        out: output folder (created).
        progress: show a tqdm progress bar on stderr.

    Returns:
        The JSON payload: ``settings``, ``seeds``, ``columns``/``rows`` (the table), ``results`` (every
        number), ``verdict`` (``text``, ``expected``, ``measured``, ``reproduced``, ``checks``), ``figures``,
        ``seconds``.
    """
    from initlab.experiments._common import Context

    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"experiment must be one of {', '.join(NAMES)}; got {name!r}")
    exp = REGISTRY[name]
    seed_list = _seed_list(seeds, exp.quick_seeds if quick else exp.seeds)
    from initlab._io import output_dir

    ctx = Context(name=name, quick=bool(quick), seeds=seed_list, out=output_dir(out, "out"), progress=bool(progress))
    import torch

    # One intra-op thread for the run (restored afterwards): these models are too small to gain from
    # more, and on a machine whose cores are busy torch's spinning worker threads made runs ~10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return exp.load().run(ctx)
    finally:
        torch.set_num_threads(threads)


__all__ = ["run", "available", "REGISTRY", "NAMES", "Experiment"]
