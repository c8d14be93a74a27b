"""Singular values of the input-output Jacobian at initialization: the dynamical-isometry check.

Saxe et al. (2013) showed that deep linear networks with orthogonal weights learn in a time that does
not grow with depth, because every singular value of the input-output Jacobian ``J = dy/dx`` is exactly
1; Pennington et al. (2017) extended the idea ("dynamical isometry") to nonlinear networks: the
spectrum of ``J`` should concentrate near 1, which orthogonal weights + tanh at criticality achieve and
ReLU cannot. With scaled Gaussian weights the spectrum spreads as depth grows, even when its mean square
is kept at 1.

``jacobian_spectrum(model, inputs)`` computes, for each example of ``inputs``, the Jacobian of that
example's output with respect to that example's input:

* exactly (``torch.func.jacrev`` then ``torch.linalg.svdvals``) when the Jacobian is small
  (``in_dim * out_dim <= 2**24`` entries) or ``k >= min(in_dim, out_dim)``;
* otherwise the ``k`` largest singular values by a randomized range finder (Halko, Martinsson & Tropp
  2011) with four power iterations, using only Jacobian-vector and vector-Jacobian products
  (``torch.func.jvp`` / ``vjp``), so the Jacobian is never formed.

Each example is run on its own (batch of one), in the model's current mode, under a forked RNG; the
model, its gradients and torch's global RNG are left as they were.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from initlab.validate import check_int

EXACT_MAX_ENTRIES = 2**24
DEFAULT_K = 64
_OVERSAMPLE = 10
_POWER_ITERS = 4


@dataclass
class JacobianSpectrum:
    """Singular values of the input-output Jacobian, one row per example (descending).

    ``exact``: all ``min(in_dim, out_dim)`` values (True) or the top ``k`` (False). Summaries are over
    every value of every example; ``condition`` is the mean over examples of ``s_max / s_min`` (for a
    randomized estimate ``s_1 / s_k``, a lower bound on the true condition number).
    """

    singular_values: np.ndarray
    exact: bool
    in_dim: int
    out_dim: int

    @property
    def mean(self) -> float:
        return float(self.singular_values.mean())

    @property
    def std(self) -> float:
        return float(self.singular_values.std())

    @property
    def min(self) -> float:
        return float(self.singular_values.min())

    @property
    def max(self) -> float:
        return float(self.singular_values.max())

    @property
    def mean_sq(self) -> float:
        """Mean squared singular value (= ||J||_F^2 / r; its log grows by ln(chi_1) per layer)."""
        return float((self.singular_values**2).mean())

    @property
    def condition(self) -> float:
        s = self.singular_values
        with np.errstate(divide="ignore"):
            return float(np.mean(s[:, 0] / s[:, -1]))

    def summary(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "min": self.min, "max": self.max, "mean_sq": self.mean_sq,
                "condition": self.condition, "exact": self.exact, "examples": int(self.singular_values.shape[0]),
                "values_per_example": int(self.singular_values.shape[1]), "in_dim": self.in_dim,
                "out_dim": self.out_dim}

    def __str__(self) -> str:
        s = self.summary()
        kind = "exact" if self.exact else f"top {s['values_per_example']} (randomized)"
        return (f"Jacobian singular values ({kind}, {s['examples']} examples, {self.out_dim} x {self.in_dim}): "
                f"mean {s['mean']:.4g}, std {s['std']:.4g}, min {s['min']:.4g}, max {s['max']:.4g}, "
                f"condition {s['condition']:.4g}")


class _NotATensor(TypeError):
    """The model's output is not a tensor (our own message, never reworded as a problem of the inputs)."""


def _out_dim(f, x: torch.Tensor, shape: torch.Size) -> int:
    """The size of the model's output on one example; a model that fails on it is an error about ``inputs``,
    worded as :func:`initlab.graph.trace` words it (:class:`initlab.graph.InputsError`)."""
    from initlab.graph import InputsError

    with torch.no_grad():
        try:
            return int(f(x).numel())
        except _NotATensor:
            raise
        except Exception as exc:  # noqa: BLE001 - report it as a problem with the inputs we were given
            if "more than 1 value per channel" in str(exc):
                raise ValueError("jacobian_spectrum runs one example at a time: put BatchNorm layers in eval mode "
                                 "(model.eval()) first") from exc
            first = (str(exc).strip().splitlines() or [""])[0]
            raise InputsError(f"the model failed on inputs ({type(exc).__name__}: {first}); jacobian_spectrum runs "
                              f"each example alone, as a batch of shape {(1, *shape)}") from exc


def _example_fn(model: nn.Module, shape: torch.Size):
    """The model on one example, in float64: its parameters and floating buffers are read as float64 copies
    (the model itself is untouched), so singular values far below float32's 1e-7 relative precision, and
    condition numbers beyond 1e10, are computed faithfully."""
    state = {n: p.detach().to(torch.float64) for n, p in model.named_parameters()}
    state.update({n: (b.to(torch.float64) if b.is_floating_point() else b) for n, b in model.named_buffers()})

    def f(v: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(model, state, (v.to(torch.float64).reshape(1, *shape),))
        if not isinstance(out, torch.Tensor):
            raise _NotATensor(f"model must return a tensor; got {type(out).__name__}")
        return out.reshape(-1)

    return f


def _exact(f, x: torch.Tensor) -> torch.Tensor:
    try:
        jac = torch.func.jacrev(f)(x)
    except Exception:  # noqa: BLE001 - models torch.func cannot transform: plain autograd
        jac = torch.autograd.functional.jacobian(f, x)
    return torch.linalg.svdvals(jac.detach().to(torch.float64))


def _jvps(f, x: torch.Tensor, vs: torch.Tensor) -> torch.Tensor:
    """Columns ``J v`` for the rows ``v`` of ``vs`` (returns shape (len(vs), out_dim))."""
    with warnings.catch_warnings():
        # torch's forward-mode AD loads its jvp decompositions through torch.jit.script on first use,
        # which warns of its own deprecation; nothing the caller can act on
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
        try:
            return torch.func.vmap(lambda v: torch.func.jvp(f, (x,), (v,))[1])(vs)
        except Exception:  # noqa: BLE001 - no batching rule: one product at a time
            return torch.stack([torch.func.jvp(f, (x,), (v,))[1] for v in vs])


def _vjps(f, x: torch.Tensor, us: torch.Tensor) -> torch.Tensor:
    """Rows ``u^T J`` for the rows ``u`` of ``us`` (returns shape (len(us), in_dim))."""
    _, pull = torch.func.vjp(f, x)
    try:
        return torch.func.vmap(lambda u: pull(u)[0])(us)
    except Exception:  # noqa: BLE001
        return torch.stack([pull(u)[0] for u in us])


def _randomized(f, x: torch.Tensor, out_dim: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """Top-``k`` singular values by a randomized range finder with power iterations."""
    from initlab import sampling

    m = min(2 * k + _OVERSAMPLE, x.numel(), out_dim)
    omega = sampling.normal((m, x.numel()), generator=generator, dtype=x.dtype, device=x.device)
    y = _jvps(f, x, omega)  # (m, out): rows span the range of J
    for _ in range(_POWER_ITERS):
        q, _ = torch.linalg.qr(y.T.to(torch.float64))
        z = _vjps(f, x, q.T.to(x.dtype))  # (m, in)
        q2, _ = torch.linalg.qr(z.T.to(torch.float64))
        y = _jvps(f, x, q2.T.to(x.dtype))
    q, _ = torch.linalg.qr(y.T.to(torch.float64))  # (out, m) orthonormal basis of the range
    b = _vjps(f, x, q.T.to(x.dtype)).to(torch.float64)  # (m, in) = Q^T J
    return torch.linalg.svdvals(b)[:k]


def jacobian_spectrum(model: nn.Module, inputs: torch.Tensor, *, k: int | None = None,
                      generator: torch.Generator | None = None) -> JacobianSpectrum:
    """Singular values of ``d model(x) / d x`` for each example ``x`` of ``inputs`` (batch first).

    ``k``: None picks exact SVD for Jacobians up to ``2**24`` entries and the top ``DEFAULT_K = 64``
    values by randomized SVD beyond; an integer asks for the top ``k`` (exact if ``k >= min(in, out)``).
    ``generator`` seeds the random probes of the randomized method (default: seed 0).

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(*[nn.Linear(32, 32, bias=False) for _ in range(10)])
    >>> for lin in net:
    ...     _ = nn.init.orthogonal_(lin.weight, generator=torch.Generator().manual_seed(0))
    >>> spec = jacobian_spectrum(net, torch.zeros(2, 32))
    >>> round(spec.min, 4), round(spec.max, 4)
    (1.0, 1.0)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point():
        raise TypeError("inputs must be a floating-point tensor with the batch on dim 0")
    if inputs.ndim < 2 or inputs.shape[0] < 1 or inputs[0].numel() == 0:
        raise ValueError(f"inputs must have shape (batch >= 1, features...); got {tuple(inputs.shape)}")
    if k is not None:
        check_int(k, "k", 1)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
    if generator is None:
        generator = torch.Generator(device=inputs.device).manual_seed(0)
    training_bn = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    if training_bn:  # checked before anything runs: a failed pass would already have moved num_batches_tracked
        raise ValueError(f"jacobian_spectrum runs one example at a time: put BatchNorm layers in eval mode "
                         f"(model.eval()) first; in training mode: {', '.join(training_bn[:4])}")
    shape = inputs.shape[1:]
    f = _example_fn(model, shape)
    in_dim = int(inputs[0].numel())
    values = []
    out_dim = 0
    with torch.random.fork_rng(devices=[]):
        for x in inputs.detach():
            # differentiate with respect to a float64 copy: a float32 input would round the Jacobian itself
            # to float32 (jacrev returns it in the input's dtype), flooring its singular values at ~1e-7
            # of the largest whatever precision the network ran in
            x = x.reshape(-1).to(torch.float64).clone()
            if not out_dim:
                out_dim = _out_dim(f, x, shape)
            r = min(in_dim, out_dim)
            exact = (k is None and in_dim * out_dim <= EXACT_MAX_ENTRIES) or (k is not None and k >= r)
            if exact:
                s = _exact(f, x)
            else:
                s = _randomized(f, x, out_dim, min(k or DEFAULT_K, r), generator)
            values.append(s.detach().cpu().numpy())
    sv = np.stack(values)
    if not np.all(np.isfinite(sv)):
        raise ValueError("the Jacobian has non-finite entries (the network overflows at these inputs)")
    return JacobianSpectrum(sv, exact, in_dim, out_dim)
