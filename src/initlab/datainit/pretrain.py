"""Greedy layer-wise unsupervised pretraining of an MLP: stacked RBMs, denoising or plain autoencoders.

The recipe of Hinton et al. 2006 (deep belief nets), Bengio et al. 2007 (stacked autoencoders) and
Vincent et al. 2008 (stacked denoising autoencoders): train the first hidden layer as a one-layer model
of the data, freeze it, train the second on the representation the first produces, and so on; the
weights and hidden biases learned become the initial weights of the network, which is then fine-tuned
with labels. The output layer is left to supervised training.

>>> import torch, initlab
>>> net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Sigmoid(), torch.nn.Linear(32, 10))
>>> report = initlab.pretrain(net, torch.rand(256, 64), method="dae", epochs=2, progress=False, seed=0)
>>> [layer.name for layer in report.layers], report.output_layer
(['0'], '2')
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from initlab.datainit._common import Snapshot, layer_input, quiet
from initlab.datainit.rbm import Learned, train_autoencoder, train_rbm
from initlab.progress import progress_bar
from initlab.validate import check_batch, check_choice, check_flag, check_int, check_number, check_seed

METHODS = ("rbm", "dae", "ae")
VISIBLE = ("auto", "bernoulli", "gaussian")
# Default learning rates, tuned on MNIST / digits (8 epochs, batch 64, 100-500 hidden units). RBM: Hinton's
# guide (0.1 for binary units; Gaussian visible units need about ten times less). Autoencoders: SGD with
# momentum on the loss summed over features, so the step is per-example sized.
DEFAULT_LR = {("rbm", "bernoulli"): 0.1, ("rbm", "gaussian"): 0.01, ("dae", "bernoulli"): 0.01,
              ("dae", "gaussian"): 0.005, ("ae", "bernoulli"): 0.01, ("ae", "gaussian"): 0.005}
# The initial weights of each learner (the catalogue's presets): Hinton's N(0, 0.01^2) for RBMs, the
# 4x Glorot rule for logistic units for autoencoders (the Theano stacked-dA tutorial's choice).
INITIAL = {"rbm": "rbm_normal", "dae": "glorot_uniform_sigmoid", "ae": "glorot_uniform_sigmoid"}
# Chunk of examples per forward pass when computing a layer's input representation.
_CHUNK = 2048


@dataclass
class PretrainedLayer:
    """What pretraining did to one hidden layer."""

    name: str
    in_features: int
    out_features: int
    visible: str  # "bernoulli" or "gaussian": the visible units the layer was trained with
    lr: float
    errors: list[float]  # mean squared reconstruction error per element, one value per epoch
    seconds: float

    @property
    def improvement(self) -> float:
        """First-epoch error divided by last-epoch error (> 1 when the layer learned)."""
        return self.errors[0] / self.errors[-1] if self.errors and self.errors[-1] > 0 else math.nan


@dataclass
class PretrainReport:
    """Result of :func:`pretrain`: one :class:`PretrainedLayer` per hidden layer, first layer first."""

    method: str
    layers: list[PretrainedLayer]
    output_layer: str  # left untouched, for supervised training
    epochs: int
    batch_size: int
    k: int
    corruption: float
    seed: int | None
    n_examples: int
    trace_method: str = "fx"
    notes: list[str] = field(default_factory=list)

    def table(self, color: bool | None = None) -> str:
        """A text table (the shared renderer): per layer the visible units, lr, first and last epoch error."""
        from initlab.report.table import Column, fmt_number, render

        columns = [Column("name", "layer"), Column(lambda r: f"{r.in_features}->{r.out_features}", "shape"),
                   Column("visible"), Column("lr"),
                   Column(lambda r: r.errors[0], "error epoch 1", fmt=lambda v: fmt_number(v, 4)),
                   Column(lambda r: r.errors[-1], f"error epoch {self.epochs}", fmt=lambda v: fmt_number(v, 4)),
                   Column("improvement", "first/last", fmt=lambda v: f"{v:.2f}x"),
                   Column("seconds", "time s", fmt=".1f")]
        title = (f"pretrain method={self.method} epochs={self.epochs} batch_size={self.batch_size} "
                 f"examples={self.n_examples} seed={self.seed}")
        footer = f"output layer {self.output_layer!r}: untouched (left to supervised training)"
        footer += "".join(f"\nnote: {n}" for n in self.notes)
        return render(self.layers, columns, title=title, footer=footer, color=color)

    def __str__(self) -> str:
        return self.table(color=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def plot(self, path: str | Path) -> Path:
        """Save the reconstruction-error curves (one line per layer, log scale) to ``path`` (PNG, SVG...)."""
        import matplotlib

        if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
            matplotlib.use("Agg")  # files only: never open a window from a library call
        import matplotlib.pyplot as plt

        path = Path(path)
        fig, ax = plt.subplots(figsize=(6, 4))
        try:
            for layer in self.layers:
                epochs = range(1, len(layer.errors) + 1)
                label = f"layer {layer.name} ({layer.in_features}->{layer.out_features}, {layer.visible} visible)"
                ax.plot(epochs, layer.errors, marker="o", label=label)
            ax.set_xlabel("epoch")
            ax.set_ylabel("reconstruction error (MSE per element)")
            ax.set_yscale("log")
            ax.set_title(f"greedy pretraining: {self.method}")
            ax.legend()
            fig.tight_layout()
            from initlab._io import atomic_figure

            atomic_figure(fig, path, "path")
        finally:
            plt.close(fig)
        return path


# a hidden pre-activation this large (in std) leaves sigmoid units with slopes below e^-100: they never learn
SATURATED = 100.0


def _diverged(learned: Learned, v: torch.Tensor) -> str | None:
    """Why a layer's training diverged, or None: non-finite weights; weights so large that the typical hidden
    pre-activation ``sqrt(fan_in) * rms(w) * rms(v)`` exceeds ``SATURATED``; or a reconstruction error that
    rose to more than twice its best and above its start."""
    w = learned.weight
    if not (torch.isfinite(w).all() and torch.isfinite(learned.bias).all()):
        return "non-finite weights"
    scale = math.sqrt(w.shape[1]) * float(w.double().pow(2).mean().sqrt()) * float(v.double().pow(2).mean().sqrt())
    if scale > SATURATED:
        return f"weights grew until a typical hidden pre-activation has std {scale:.3g}: every unit saturated"
    errs = [e for e in learned.errors if math.isfinite(e)]
    if len(errs) >= 2 and errs[-1] > 2 * min(errs) and errs[-1] > errs[0]:
        return f"the reconstruction error rose from {errs[0]:.4g} (best {min(errs):.4g}) to {errs[-1]:.4g}"
    return None


def _collect(data: Any) -> torch.Tensor:
    """All model inputs of ``data`` as one tensor: a tensor as is, a DataLoader's batches (``x`` of
    ``(x, y)``) concatenated. Pretraining holds its (MLP-sized) data in memory and batches it itself."""
    if isinstance(data, torch.Tensor):
        x = data
    elif isinstance(data, (str, bytes, dict)) or not hasattr(data, "__iter__"):
        raise TypeError(f"data must be a tensor (n, features...) or a DataLoader; got {type(data).__name__}")
    else:
        parts = []
        with torch.random.fork_rng(devices=[]):  # a DataLoader's iterator draws from the global RNG
            for batch in data:
                if isinstance(batch, (tuple, list)):
                    batch = batch[0]
                if not isinstance(batch, torch.Tensor):
                    raise TypeError(f"data batches must be tensors or (x, y) tuples; got {type(batch).__name__}")
                parts.append(batch)
        if not parts:
            raise ValueError("data yielded no batch")
        x = torch.cat(parts)
    if not x.is_floating_point():
        raise TypeError(f"data must be floating point; got dtype {x.dtype}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"data must have shape (n, features...) with n >= 1; got {tuple(x.shape)}")
    check_batch(x, "data")
    return x


def _linear_stack(graph: Any) -> list[Any]:
    """The graph's layers when they form a chain of ``nn.Linear`` (an MLP); ValueError naming the culprit."""
    layers = graph.layers
    if not layers:
        raise ValueError("model has no parametrized layers: pretrain needs an MLP (a chain of nn.Linear layers)")
    for node in layers:
        if not isinstance(node.module, nn.Linear):
            raise ValueError(
                f"pretrain needs an MLP, a chain of nn.Linear layers; layer {node.name!r} is "
                f"{type(node.module).__name__} (kind {node.kind!r})"
            )
        if getattr(node, "branch", None) is not None:
            raise ValueError(f"pretrain needs a plain chain of Linear layers; {node.name!r} sits on a residual branch")
    for below, node in zip(layers, layers[1:]):
        inputs = list(getattr(node, "inputs", []) or [])
        if inputs and inputs != [below.name]:
            raise ValueError(
                f"pretrain needs a chain of Linear layers each fed by the one below; {node.name!r} is fed by {inputs}"
            )
    if len(layers) < 2:
        raise ValueError(
            f"model has a single Linear layer ({layers[0].name!r}): pretrain needs at least one hidden layer "
            "below the output layer"
        )
    return layers


def _features(model: nn.Module, node: Any, x: torch.Tensor) -> torch.Tensor:
    """The input of ``node`` for every example, flattened to ``(rows, in_features)``."""
    parts = []
    for chunk in x.split(_CHUNK):
        args, kwargs = layer_input(model, node.module, (chunk,), {}, node.name)
        inp = args[0] if args else next(iter(kwargs.values()))
        parts.append(inp.detach().reshape(-1, inp.shape[-1]))
    return torch.cat(parts)


def _visible_kind(v: torch.Tensor, visible: str) -> str:
    if visible != "auto":
        return visible
    return "bernoulli" if float(v.min()) >= 0.0 and float(v.max()) <= 1.0 else "gaussian"


def pretrain(model: nn.Module, data: Any, *, method: str = "rbm", epochs: int = 10, lr: float | None = None,
             batch_size: int = 64, k: int = 1, corruption: float = 0.25, visible: str = "auto",
             progress: bool = True, seed: int | None = None) -> PretrainReport:
    """Greedy layer-wise unsupervised pretraining of the hidden ``nn.Linear`` layers of an MLP, in place.

    The model's Linear layers are found by :func:`initlab.trace` in forward execution order and must form
    a chain (an MLP, activations and other parameter-free ops in between). Every layer but the last is
    trained, first layer first, as a one-layer model of the representation the (already pretrained)
    layers below it produce, computed by the model's own forward pass in eval mode; the learned weight
    ``(out, in)`` and hidden bias are then written into the layer. The output layer is left untouched.

    Methods:

    * ``"rbm"``: a restricted Boltzmann machine with logistic hidden units trained by CD-``k``
      (Hinton et al. 2006; Hinton's practical guide, 2010), started from ``N(0, 0.01^2)``. Bernoulli
      visible units for data in [0, 1], Gaussian unit-variance visible units for standardized data.
      The hidden units are logistic, so the model's layers should be followed by sigmoids.
    * ``"dae"``: a denoising autoencoder with tied weights (Vincent et al. 2008): a fraction
      ``corruption`` of the inputs is set to 0 and the clean input is reconstructed. The encoder uses the
      activation that follows the layer in the model; the decoder is logistic with cross-entropy for
      [0, 1] data, linear with squared error otherwise. Started from the 4x Glorot rule.
    * ``"ae"``: the same autoencoder without corruption (Bengio et al. 2007).

    Args:
        model: an MLP; its hidden Linear layers are overwritten, everything else is left as it was.
        data: unlabelled model inputs, a tensor ``(n, features...)`` or a DataLoader of tensors or
            ``(x, y)`` batches (read once and held in memory).
        method: ``"rbm"``, ``"dae"`` or ``"ae"``.
        epochs: passes over the data per layer.
        lr: learning rate; None picks a default per method and visible units (:data:`DEFAULT_LR`).
        batch_size: minibatch size.
        k: Gibbs steps of contrastive divergence (``rbm`` only).
        corruption: masking-noise rate in [0, 1) (``dae`` only).
        visible: ``"auto"`` (Bernoulli when a layer's input lies in [0, 1], else Gaussian), ``"bernoulli"``
            or ``"gaussian"``, for every layer.
        progress: a tqdm progress bar per layer (when tqdm is installed).
        seed: seed of every random draw (initial weights, minibatch order, sampling, noise); None draws a
            fresh seed. Torch's global RNG is never used.

    Returns:
        :class:`PretrainReport` with the reconstruction error per epoch of every layer (``.table()``,
        ``.plot(path)``).

    Raises:
        ValueError / TypeError: bad arguments, data with NaN/inf or the wrong number of features, a model
        without a chain of at least two Linear layers; raised before the model is touched. If training
        fails midway (e.g. diverges), every pretrained layer is put back as it was before the call.
    """
    check_choice(method, "method", METHODS)
    check_choice(visible, "visible", VISIBLE)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    epochs = check_int(epochs, "epochs", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    k = check_int(k, "k", 1)
    if lr is not None:
        check_number(lr, "lr", minimum=0, strict=True)
    if check_number(corruption, "corruption", minimum=0) >= 1:
        raise ValueError(f"corruption must be a finite number in [0, 1); got {corruption!r}")
    check_flag(progress, "progress")
    check_seed(seed)
    x = _collect(data)

    from initlab.graph import trace
    from initlab.initializers import get

    with quiet(model):
        graph = trace(model)  # fx first: a layer/data mismatch is then reported below, naming the layer
        if graph.method == "modules":
            try:
                graph = trace(model, (x[:2],))  # runs the model when torch.fx cannot trace it
            except (RuntimeError, ValueError) as exc:
                raise ValueError(f"the model cannot run on data of shape {tuple(x.shape)}: {exc}") from exc
        layers = _linear_stack(graph)
        hidden, output = layers[:-1], layers[-1]
        first = hidden[0]
        try:
            args, _ = layer_input(model, first.module, (x[:2],), {}, first.name)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(
                f"the model cannot run on data of shape {tuple(x.shape)}: {exc}"
            ) from exc
        n_in = args[0].shape[-1] if args else None
        if n_in != first.module.in_features:
            raise ValueError(
                f"data has {n_in} features per example where the first Linear layer {first.name!r} expects "
                f"in_features={first.module.in_features} (data shape {tuple(x.shape)})"
            )

    # one generator for every draw, on the model's device (sampling, noise and minibatch order happen there)
    generator = torch.Generator(device=first.module.weight.device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    notes = []
    if method == "rbm":
        others = [f"{n.name} ({n.act_out})" for n in hidden if getattr(n.act_out, "name", "sigmoid") != "sigmoid"]
        if others:
            note = ("rbm hidden units are logistic, but these layers are followed by another activation: "
                    + ", ".join(others) + "; the learned weights assume sigmoid units")
            warnings.warn(note, stacklevel=2)
            notes.append(note)

    snapshot = Snapshot(n.module for n in hidden)
    done: list[PretrainedLayer] = []
    try:
        for node in hidden:
            done.append(_pretrain_layer(model, node, x, method=method, epochs=epochs, lr=lr,
                                        batch_size=batch_size, k=k, corruption=corruption, visible=visible,
                                        progress=progress, generator=generator, init=get(INITIAL[method])))
    except BaseException:
        snapshot.restore()
        raise
    return PretrainReport(method=method, layers=done, output_layer=output.name, epochs=epochs,
                          batch_size=batch_size, k=k, corruption=float(corruption) if method == "dae" else 0.0,
                          seed=seed, n_examples=int(x.shape[0]), trace_method=graph.method, notes=notes)


def _pretrain_layer(model: nn.Module, node: Any, x: torch.Tensor, *, method: str, epochs: int, lr: float | None,
                    batch_size: int, k: int, corruption: float, visible: str, progress: bool,
                    generator: torch.Generator, init: Any) -> PretrainedLayer:
    layer: nn.Linear = node.module
    with quiet(model):
        v = _features(model, node, x)
    kind = _visible_kind(v, visible)
    rate = float(lr) if lr is not None else DEFAULT_LR[(method, kind)]
    v = v.to(torch.float32)
    weight = init.sample(tuple(layer.weight.shape), dtype=torch.float32, generator=generator).to(v.device)
    batches = math.ceil(v.shape[0] / batch_size)
    bar = progress_bar(epochs * batches, f"pretrain {method} {node.name}", progress)

    def tick(epoch: int, error: float) -> None:
        bar.update(1)
        bar.set_postfix_str(f"epoch {epoch + 1}/{epochs} error {error:.4f}", refresh=False)

    start = time.perf_counter()
    try:
        if method == "rbm":
            learned: Learned = train_rbm(v, weight, visible=kind, epochs=epochs, lr=rate, batch_size=batch_size,
                                         k=k, generator=generator, train_bias=layer.bias is not None, tick=tick)
        else:
            encoder = node.act_out if node.act_out is not None else (lambda t: t)
            learned = train_autoencoder(v, weight, visible=kind, encoder=encoder, epochs=epochs, lr=rate,
                                        batch_size=batch_size, corruption=corruption if method == "dae" else 0.0,
                                        generator=generator, train_bias=layer.bias is not None, tick=tick)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    why = _diverged(learned, v)
    if why:  # raised before anything is assigned: pretrain() puts back the layers already done
        raise ValueError(f"pretraining of layer {node.name!r} diverged with lr={rate:g} ({why}); the model was "
                         "restored; pass a smaller lr")
    with torch.no_grad():
        layer.weight.copy_(learned.weight)
        if layer.bias is not None:
            layer.bias.copy_(learned.bias)
    return PretrainedLayer(name=node.name, in_features=layer.in_features, out_features=layer.out_features,
                           visible=kind, lr=rate, errors=learned.errors, seconds=seconds)
