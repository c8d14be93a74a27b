"""Health verdicts: what a probe's numbers mean, and what to do about them.

Each rule reads the measured :class:`~initlab.probing.stats.LayerStats` and returns zero or one
:class:`Verdict` (a code, the worst layer, every affected layer, a plain-language message and a concrete
fix). The thresholds are the fields of :class:`Thresholds`; every default is justified below.

Rules
=====
The *depth chain* is the sequence of Linear / Conv / ConvTranspose outputs in execution order, without
those that go straight into a normalization layer (their drift is undone there).

``vanishing_activations`` / ``exploding_activations``
    A least-squares fit of ``log(act_std)`` against position along the chain gives the per-layer
    factor ``r``. Flagged when ``r < 1/factor`` (``r > factor``) AND the std changes by more than
    ``total`` between the ends, with at least ``min_layers`` points, and at least 75 % of the
    layer-to-layer steps go that way (a trend, not the zig-zag of a Transformer block whose Linear
    layers alternate between widths). The first layer is left out of the
    fit: its scale is set by the inputs (``unnormalized_inputs`` covers that). Any non-finite
    activation, or an activation that is exactly zero everywhere after some layer, is flagged too.
    Forward variance theory (Glorot & Bengio 2010; He et al. 2015; docs/references.md):
    ``Var(x_{l+1}) = n_l Var(w_l) E[f(x_l)^2]``; a wrong
    scale multiplies the std by the same factor at every layer, hence a geometric profile.
``vanishing_gradients`` / ``exploding_gradients``
    The same fit on ``grad_std`` (the gradient with respect to each layer's output), read from the
    output back to the input; the output layer is left out (its gradient is the loss's, and the next
    step is set by the output layer's fan ratio, not by depth).
``saturated_units``
    Logistic/tanh: fraction of pre-activations outside [-4, 4] (or outputs within 1e-2 of the bounds)
    above ``saturated``. f'(4) is 0.018 for the logistic and 0.0013 for tanh (Glorot & Bengio 2010; docs/references.md).
``dead_units``
    ReLU family: fraction of units never positive over the batch above ``dead``. The default 0.5 is
    SageMaker Debugger's DeadRelu threshold: deep He-initialized ReLU networks without normalization
    legitimately leave 10-20 % of units inactive on a whole batch (the examples' representations grow
    correlated with depth), so a lower threshold would flag healthy networks.
``symmetric_units``
    At least ``symmetric`` units of a hidden layer identical to another (same incoming weights and
    bias, or same output over the batch): a constant or zero init, which gradient descent can never
    break (Bengio 2012). Output layers are exempt: zeros are fine there.
``output_scale``
    The output layer (logits) has std above ``output`` while the point feeding it has a std within
    ``[1/output, output]``: the blow-up happens in the output layer, so its weights cause it (a tied
    embedding head left at the embedding's N(0, 1) gives logits of std ~sqrt(d)). A softmax over logits of
    std 4 already puts most of its mass on a few classes before any training. Small logits are not
    flagged: near-uniform initial predictions are the usual start (GPT-2's own init gives 0.15).
``unnormalized_inputs``
    Floating-point inputs whose overall mean exceeds ``input_mean`` in absolute value, or whose std
    lies outside ``input_std``. The 1/sqrt(fan_in) weight rules assume mean 0, std 1 inputs: with
    them the pre-activation variance is ~1/3 whatever the fan-in (LeCun et al. 1998); otherwise the
    first layer saturates or dies. MNIST pixels / 255 (mean 0.13, std 0.31) pass.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from initlab._format import fmt_factor, fmt_number
from initlab.probing.stats import RELU_FAMILY, InputStats, LayerStats
from initlab.semantics import CHAIN_KINDS

__all__ = ["Thresholds", "Verdict", "HealthError", "diagnose", "depth_chain", "fit_factor", "CODES", "init_advice"]

CODES = ("vanishing_activations", "exploding_activations", "vanishing_gradients", "exploding_gradients",
         "saturated_units", "dead_units", "symmetric_units", "unnormalized_inputs", "output_scale")
CONSISTENCY = 0.75  # share of layer-to-layer steps that must go the flagged way (a trend, not a zig-zag)


@dataclass(frozen=True)
class Thresholds:
    """Thresholds of the health rules (see the module docstring for what each one guards).

    Args:
        factor: per-layer std factor beyond which (above ``factor`` or below ``1/factor``) a profile drifts.
        total: ... and only when the std changes by more than this factor between the ends of the chain.
        min_layers: points needed to fit a depth trend.
        dead: fraction of dead units in a layer (ReLU family).
        saturated: fraction of saturated logistic / tanh values in a layer.
        symmetric: number of units identical to another one in a hidden layer.
        input_mean: largest acceptable absolute mean of the inputs.
        input_std: acceptable range of the inputs' std.
        output: largest std of the output layer (logits) when its input is of order one.
        min_batch: examples needed to judge what is measured over the batch (dead units, identical outputs):
            a healthy ReLU unit is never positive on n examples with probability 2^-n, 0.4 % at n = 8 but
            50 % at n = 1, so a smaller batch is not judged (the probe's notes say so).
    """

    factor: float = 1.25
    total: float = 4.0
    min_layers: int = 3
    dead: float = 0.5
    saturated: float = 0.05
    symmetric: int = 2
    input_mean: float = 1.0
    input_std: tuple[float, float] = (0.25, 4.0)
    output: float = 4.0
    min_batch: int = 8

    def __post_init__(self) -> None:
        for name in ("factor", "total", "output"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 1:
                raise ValueError(f"{name} must be a number > 1; got {v!r}")
        for name in ("dead", "saturated"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"{name} must be a fraction in [0, 1]; got {v!r}")
        for name, low in (("min_layers", 2), ("symmetric", 2), ("min_batch", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {v!r}")
        if isinstance(self.input_mean, bool) or not isinstance(self.input_mean, (int, float)) or self.input_mean < 0:
            raise ValueError(f"input_mean must be a non-negative number; got {self.input_mean!r}")
        lo_hi = self.input_std
        if (not isinstance(lo_hi, (tuple, list)) or len(lo_hi) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in lo_hi)
                or not 0 <= lo_hi[0] < lo_hi[1]):
            raise ValueError(f"input_std must be a pair (low, high) with 0 <= low < high; got {lo_hi!r}")
        object.__setattr__(self, "input_std", (float(lo_hi[0]), float(lo_hi[1])))

    @classmethod
    def make(cls, value: Thresholds | dict[str, Any] | None) -> Thresholds:
        """``Thresholds`` from an instance, a dict of overrides, or None (the defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {f.name for f in fields(cls)}
            if unknown:
                raise ValueError(f"thresholds: unknown name(s) {sorted(unknown)}; accepted: "
                                 f"{[f.name for f in fields(cls)]}")
            return cls(**value)
        raise TypeError(f"thresholds must be a Thresholds, a dict or None; got {type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_std"] = list(self.input_std)
        return d


@dataclass(frozen=True)
class Verdict:
    """One finding: ``code`` (one of ``CODES``), the worst ``layer``, every affected layer, what it means
    (``message``), what to do (``suggestion``), ``severity`` ("error" or "warning") and the number
    behind it (``value``: a per-layer factor, a fraction, a count)."""

    code: str
    layer: str | None
    message: str
    suggestion: str
    severity: str = "warning"
    value: float | None = None
    layers: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = list(self.layers)
        return d

    def __str__(self) -> str:
        where = f" [{self.layer}]" if self.layer else ""
        return f"{self.severity.upper()} {self.code}{where}: {self.message}\n  fix: {self.suggestion}"


class HealthError(AssertionError):
    """Raised by ``ProbeResult.assert_healthy()``; ``.verdicts`` holds the findings."""

    def __init__(self, verdicts: Sequence[Verdict]) -> None:
        self.verdicts = list(verdicts)
        lines = [f"{len(self.verdicts)} health problem(s) found:"] + [str(v) for v in self.verdicts]
        super().__init__("\n".join(lines))


# --------------------------------------------------------------------------------------------------
# Advice


def init_advice(activation: str | None) -> str:
    """The initializer that preserves variance through ``activation`` (a name as in ``LayerStats.activation``)."""
    name = (activation or "linear").split("(")[0]
    if name in ("relu", "relu6"):
        return "He (Kaiming) initialization, std = sqrt(2 / fan_in): initlab.He() or 'he_normal'"
    if name in ("leaky_relu", "prelu", "rrelu"):
        return "He initialization with the slope-aware gain sqrt(2 / (1 + a^2)) (initlab.gain('leaky_relu', a))"
    if name == "tanh":
        return "Glorot/Xavier ('glorot_normal') or orthogonal(gain='tanh') (gain 5/3)"
    if name == "sigmoid":
        return "'glorot_uniform_sigmoid' (Glorot bound x 4, Bengio 2012) on standardized inputs"
    if name == "selu":
        return "LeCun normal ('lecun_normal'), as self-normalizing networks require"
    if name == "linear":
        return "LeCun/Glorot scaling ('lecun_normal', 'glorot_normal')"
    return f"the variance-preserving gain 1/sqrt(E[f(z)^2]) for {name} (initlab.gain({name!r}, rule='variance'))"


_ALL_LAYERS = "initlab.init_model(model) applies the right initializer to every layer"


# --------------------------------------------------------------------------------------------------
# Depth profiles


def depth_chain(layers: Sequence[LayerStats]) -> list[LayerStats]:
    """Linear/Conv/ConvTranspose outputs in execution order, minus those fed straight into a norm layer."""
    return [s for s in layers if s.is_layer and s.kind in CHAIN_KINDS and not s.normalized]


def fit_factor(values: Sequence[float]) -> float:
    """Per-step factor ``exp(slope)`` of a least-squares line through ``log(values)``."""
    y = np.log(np.asarray(values, dtype=np.float64))
    k = np.arange(len(y), dtype=np.float64)
    k -= k.mean()
    return float(np.exp((k * (y - y.mean())).sum() / (k * k).sum()))


def _common_activation(chain: Sequence[LayerStats]) -> str | None:
    acts = [s.activation for s in chain[:-1] if s.activation and s.activation != "linear"]
    return Counter(acts).most_common(1)[0][0] if acts else (chain[0].activation if chain else None)


def _profile_rules(chain: list[LayerStats], t: Thresholds, forward: bool) -> list[Verdict]:
    what = "activation" if forward else "gradient"
    key = "act_std" if forward else "grad_std"
    vals = [getattr(s, key) for s in chain]
    pts = [(s, v) for s, v in zip(chain, vals) if v is not None]
    if not pts:
        return []
    codes = ("vanishing_activations", "exploding_activations") if forward else \
        ("vanishing_gradients", "exploding_gradients")
    act = _common_activation(chain)
    fix_init = f"initialize for the activation: {init_advice(act)}; {_ALL_LAYERS}"
    bad = [s for s, v in pts if not math.isfinite(v)]
    if bad or (forward and any(s.n_nonfinite for s, _ in pts)):
        first = bad[0] if bad else next(s for s, _ in pts if s.n_nonfinite)
        return [Verdict(codes[1], first.name, f"non-finite {what}s (inf or nan) from layer {first.name!r} on: the "
                        "signal overflowed", f"scale the weights down; {fix_init}", "error", math.inf,
                        (first.name,))]
    # a std of exactly zero: every example gives the same value (all zero, or one constant), so nothing
    # about the input gets through (forward) or no layer below learns anything example-specific (backward)
    zeros = [s for s, v in pts if v == 0]
    if zeros:
        z = zeros[0] if forward else zeros[-1]
        side = "on" if forward else "and before"
        mean = z.act_mean if forward else z.grad_mean
        what_is = "exactly zero" if mean == 0 else "the same for every example (std 0)"
        return [Verdict(codes[0], z.name, f"{what}s are {what_is} at layer {z.name!r} {side}: no information "
                        f"{'about the input reaches the output' if forward else 'reaches the first layers'}",
                        f"check for zero or constant weights; {fix_init}", "error", 0.0,
                        tuple(s.name for s in zeros))]
    fit_pts = pts[1:] if forward else pts[:-1]
    if len(fit_pts) < t.min_layers:
        return []
    seq = [v for _, v in fit_pts]
    r = fit_factor(seq)
    if not forward:
        r = 1.0 / r  # read from the output back to the input
    total = (seq[-1] / seq[0]) if forward else (seq[0] / seq[-1])
    first, last = fit_pts[0][0].name, fit_pts[-1][0].name
    span = f"{fmt_number(seq[0])} at {first!r} to {fmt_number(seq[-1])} at {last!r} ({len(seq)} layers)"
    names = tuple(s.name for s, _ in fit_pts)
    direction = "per layer" if forward else "per layer towards the input"
    steps = [b / a for a, b in zip(seq, seq[1:])]  # along the chain (forward order)
    if not forward:
        steps = [1 / s for s in steps]
    shrinking = sum(s < 1 for s in steps) >= CONSISTENCY * len(steps)
    growing = sum(s > 1 for s in steps) >= CONSISTENCY * len(steps)
    if r < 1 / t.factor and total < 1 / t.total and shrinking:
        msg = (f"the {what} std shrinks geometrically, about {fmt_factor(r)} {direction}: from {span}"
               if forward else
               f"the {what} std shrinks geometrically, about {fmt_factor(r)} {direction}: "
               f"{fmt_number(seq[-1])} at {last!r}, {fmt_number(seq[0])} at {first!r} ({len(seq)} layers); "
               "the first layers barely learn")
        fix = (f"the weights are about {fmt_factor(1 / r)} too small; {fix_init}; or rescale from data with "
               "initlab.lsuv(model, batch); or insert BatchNorm after each Linear")
        return [Verdict(codes[0], last if forward else first, msg, fix, "warning", r, names)]
    if r > t.factor and total > t.total and growing:
        msg = (f"the {what} std grows geometrically, about {fmt_factor(r)} {direction}: from {span}" if forward else
               f"the {what} std grows geometrically, about {fmt_factor(r)} {direction}: "
               f"{fmt_number(seq[-1])} at {last!r}, {fmt_number(seq[0])} at {first!r} ({len(seq)} layers)")
        fix = (f"the weights are about {fmt_factor(r)} too large; {fix_init}; or rescale from data with "
               "initlab.lsuv(model, batch); or insert BatchNorm after each Linear")
        return [Verdict(codes[1], last if forward else first, msg, fix, "warning", r, names)]
    return []


# --------------------------------------------------------------------------------------------------


def diagnose(layers: Sequence[LayerStats], inputs: InputStats | None = None,
             thresholds: Thresholds | dict[str, Any] | None = None) -> list[Verdict]:
    """All verdicts for a probe's layer statistics (and input summary), worst problems first."""
    t = Thresholds.make(thresholds)
    out: list[Verdict] = []
    chain = depth_chain(layers)
    out += _profile_rules(chain, t, forward=True)
    out += _profile_rules(chain, t, forward=False)
    out += _saturation(layers, t)
    if batch_too_small(inputs, t) is None:
        out += _dead(layers, t)
    out += _symmetry(layers, t)
    out += _output_scale(layers, t)
    if inputs is not None:
        out += _inputs(inputs, t)
    order = {"error": 0, "warning": 1}
    return sorted(out, key=lambda v: order.get(v.severity, 2))


def batch_too_small(inputs: InputStats | None, t: Thresholds) -> str | None:
    """The note to give when the batch is too small to judge dead units and identical outputs, else None."""
    n = inputs.shape[0] if inputs is not None and inputs.shape else None
    if n is None or n >= t.min_batch:
        return None
    return (f"a batch of {n} example(s) is too small to judge dead units and units with identical outputs "
            f"(min_batch={t.min_batch}): not judged; probe a larger batch")


def _dedupe(hits: list[LayerStats]) -> list[LayerStats]:
    """Drop an activation record whose source layer is already listed (same units, same finding)."""
    names = {s.name for s in hits}
    return [s for s in hits if s.source is None or s.source not in names]


def _saturation(layers: Sequence[LayerStats], t: Thresholds) -> list[Verdict]:
    hits = _dedupe([s for s in layers if s.frac_saturated is not None and s.frac_saturated > t.saturated])
    if not hits:
        return []
    worst = max(hits, key=lambda s: s.frac_saturated)
    act = worst.activation or "tanh"
    where = ", ".join(f"{s.name!r} {s.frac_saturated:.0%}" for s in hits[:6]) + (" ..." if len(hits) > 6 else "")
    msg = (f"{act} units are saturated (pre-activation outside [-4, 4], or output within 1e-2 of its bounds) in "
           f"{len(hits)} layer(s): {where}; there the slope is below 0.02 and learning is orders of magnitude "
           "slower")
    fix = (f"scale the weights down: {init_advice(act)}; normalize the inputs to mean 0, std 1; {_ALL_LAYERS}; "
           "or initlab.lsuv(model, batch)")
    return [Verdict("saturated_units", worst.name, msg, fix, "warning", worst.frac_saturated,
                    tuple(s.name for s in hits))]


def _dead(layers: Sequence[LayerStats], t: Thresholds) -> list[Verdict]:
    relu_like = [s for s in layers if s.activation and s.activation.split("(")[0] in RELU_FAMILY
                 and not (s.is_layer and s.normalized)]
    hits = _dedupe([s for s in relu_like if s.units and s.frac_dead_units > t.dead])
    if not hits:
        return []
    worst = max(hits, key=lambda s: s.frac_dead_units)
    where = ", ".join(f"{s.name!r} {s.dead_units}/{s.units}" for s in hits[:6]) + (" ..." if len(hits) > 6 else "")
    msg = (f"dead units (never positive over the whole batch, so they pass no gradient) in {len(hits)} layer(s): "
           f"{where}")
    fix = (f"{init_advice('relu')} with zero biases ({_ALL_LAYERS}); a LeakyReLU keeps a gradient; BatchNorm "
           "before the activation; a smaller learning rate if this appears during training")
    return [Verdict("dead_units", worst.name, msg, fix, "error" if worst.frac_dead_units >= 1 else "warning",
                    worst.frac_dead_units, tuple(s.name for s in hits))]


def _symmetry(layers: Sequence[LayerStats], t: Thresholds) -> list[Verdict]:
    hits = _dedupe([s for s in layers if not s.is_output and s.symmetric_units >= t.symmetric])
    if not hits:
        return []
    worst = max(hits, key=lambda s: s.symmetric_units / max(s.units, 1))
    where = ", ".join(f"{s.name!r} {s.symmetric_units}/{s.units}" for s in hits[:6]) + (" ..." if len(hits) > 6
                                                                                         else "")
    msg = (f"identical units (same incoming weights, or the same output on every example) in {len(hits)} hidden "
           f"layer(s): {where}; they get identical gradients, so training never tells them apart (the symmetry a "
           "constant or zero init leaves unbroken)")
    fix = (f"use a random initializer for hidden layers ({_ALL_LAYERS}); zeros are safe only for biases and the "
           "output layer")
    return [Verdict("symmetric_units", worst.name, msg, fix, "error", float(worst.symmetric_units),
                    tuple(s.name for s in hits))]


def _output_scale(layers: Sequence[LayerStats], t: Thresholds) -> list[Verdict]:
    outputs = [i for i, s in enumerate(layers) if s.is_output and s.is_layer and s.kind in CHAIN_KINDS]
    if not outputs:
        return []
    i = outputs[-1]
    s = layers[i]
    before = layers[i - 1].act_std if i > 0 else None
    if not (math.isfinite(s.act_std) and s.act_std > t.output):
        return []
    if before is None or not (1 / t.output <= before <= t.output):
        return []  # the input is already off: the depth rules speak for that
    w = f" (weight std {fmt_number(s.weight_std)})" if s.weight_std is not None else ""
    msg = (f"the output layer {s.name!r} turns an input of std {fmt_number(before)} into logits of std "
           f"{fmt_number(s.act_std)}{w}: its weights are too large for the output, so the first predictions "
           "are overconfident")
    fix = ("initialize the output layer for logits of order 1: std 1/sqrt(fan_in) (LeCun), or zeros (Bengio 2012); "
           "initlab.init_model(model) does it, a weight tied to the input embedding included")
    return [Verdict("output_scale", s.name, msg, fix, "warning", s.act_std / before, (s.name,))]


def _inputs(x: InputStats, t: Thresholds) -> list[Verdict]:
    if not x.is_float or not math.isfinite(x.mean) or not math.isfinite(x.std):
        return []
    lo, hi = t.input_std
    if abs(x.mean) <= t.input_mean and lo <= x.std <= hi:
        return []
    msg = (f"inputs have mean {fmt_number(x.mean)} and std {fmt_number(x.std)} (per-feature means from "
           f"{fmt_number(x.feature_mean_min)} to {fmt_number(x.feature_mean_max)}); the 1/sqrt(fan_in) weight "
           "scales assume mean 0, std 1, and far from that the first layer saturates or dies")
    fix = ("standardize each feature with the training set's mean and std (x - mean) / std, e.g. "
           "initlab.data.load(name, standardize=True) or sklearn's StandardScaler")
    return [Verdict("unnormalized_inputs", None, msg, fix, "warning", x.mean if abs(x.mean) > t.input_mean else x.std)]
