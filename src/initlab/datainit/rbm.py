"""The single-layer learners of greedy pretraining: an RBM trained by CD-k, and a tied-weight autoencoder.

Each learner sees a matrix ``v`` of shape ``(n, visible)`` (the representation that the layers below
produce), trains for some epochs and returns the weight ``(hidden, visible)`` and hidden bias it learned,
with the reconstruction error of every epoch. They know nothing about the model: the driver in
:mod:`initlab.datainit.pretrain` feeds them and writes their result into the model.

References: Hinton, "A Practical Guide to Training Restricted Boltzmann Machines" (UTML TR 2010-003);
Hinton & Salakhutdinov 2006; Bengio et al. 2007; Vincent et al. 2008.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from initlab import sampling

# Hinton's guide, sections 9-10: momentum 0.5 while the weights settle, 0.9 afterwards; L2 weight cost 2e-4.
RBM_MOMENTUM = (0.5, 0.9)
RBM_MOMENTUM_SWITCH = 5
RBM_WEIGHT_COST = 2e-4
AE_MOMENTUM = 0.9


@dataclass
class Learned:
    weight: torch.Tensor  # (hidden, visible)
    bias: torch.Tensor  # (hidden,)
    errors: list[float]  # mean squared reconstruction error per element, averaged over each epoch


Tick = Callable[[int, float], None]  # called after every minibatch with (epoch, running error)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    order = sampling.randperm(n, generator=generator)
    return list(order.split(batch_size))


def train_rbm(v: torch.Tensor, init: torch.Tensor, *, visible: str, epochs: int, lr: float, batch_size: int,
              k: int, generator: torch.Generator, train_bias: bool, tick: Tick) -> Learned:
    """Contrastive divergence CD-k (Hinton 2002) for an RBM with logistic (Bernoulli) hidden units.

    Energy ``E(v, h) = -b.v - c.h - h.W.v`` for Bernoulli visible units; Gaussian visible units of unit
    variance (``visible="gaussian"``, for standardized data) add ``|v - b|^2 / 2``, so
    ``p(v | h) = N(b + W^T h, I)`` instead of ``sigmoid(b + W^T h)``. Per minibatch::

        p0 = sigmoid(c + v0 W^T);   h ~ Bernoulli(p0)
        repeat k times: vk = E[v | h] (mean-field reconstruction); pk = sigmoid(c + vk W^T); h ~ Bernoulli(pk)
        dW = (p0^T v0 - pk^T vk) / n - weight_cost * W,   db = mean(v0 - vk),   dc = mean(p0 - pk)

    with momentum (0.5, then 0.9 after 5 epochs). The reconstruction error reported is that of the first
    mean-field reconstruction ``v1`` (the guide's monitor, a rough proxy of the likelihood).
    """
    n, n_vis = v.shape
    w = init.clone()
    if visible == "bernoulli":
        # the guide (section 8): visible bias log(p / (1 - p)), p = fraction of the time unit i is on
        p = v.mean(0).clamp(1e-3, 1 - 1e-3)
        b = torch.log(p / (1 - p))
    else:
        b = v.mean(0).clone()
    c = torch.zeros(w.shape[0], dtype=v.dtype, device=v.device)
    dw, db, dc = torch.zeros_like(w), torch.zeros_like(b), torch.zeros_like(c)

    def visible_mean(h: torch.Tensor) -> torch.Tensor:
        pre = torch.addmm(b, h, w)
        return torch.sigmoid(pre) if visible == "bernoulli" else pre

    errors = []
    for epoch in range(epochs):
        momentum = RBM_MOMENTUM[0] if epoch < RBM_MOMENTUM_SWITCH else RBM_MOMENTUM[1]
        total, count = 0.0, 0
        for idx in _batches(n, batch_size, generator):
            v0 = v[idx]
            p0 = torch.sigmoid(torch.addmm(c, v0, w.t()))
            h = torch.bernoulli(p0, generator=generator)
            vk, pk = v0, p0
            for step in range(k):
                vk = visible_mean(h)
                if step == 0:
                    err = float((vk - v0).pow(2).mean())
                pk = torch.sigmoid(torch.addmm(c, vk, w.t()))
                if step < k - 1:
                    h = torch.bernoulli(pk, generator=generator)
            m = v0.shape[0]
            grad_w = (p0.t() @ v0 - pk.t() @ vk) / m - RBM_WEIGHT_COST * w
            dw.mul_(momentum).add_(grad_w, alpha=lr)
            db.mul_(momentum).add_((v0 - vk).mean(0), alpha=lr)
            w.add_(dw)
            b.add_(db)
            if train_bias:
                dc.mul_(momentum).add_((p0 - pk).mean(0), alpha=lr)
                c.add_(dc)
            total += err * m
            count += m
            tick(epoch, total / count)
        errors.append(total / count)
        if not math.isfinite(errors[-1]):
            break
    return Learned(w, c, errors)


def train_autoencoder(v: torch.Tensor, init: torch.Tensor, *, visible: str, encoder: Callable, epochs: int,
                      lr: float, batch_size: int, corruption: float, generator: torch.Generator,
                      train_bias: bool, tick: Tick) -> Learned:
    """A tied-weight autoencoder; with ``corruption > 0`` a denoising one (Vincent et al. 2008).

    ``h = f(c + x~ W^T)`` with ``f`` the activation that follows the layer in the model, and
    ``x^ = g(b + h W)``: ``g = sigmoid`` with cross-entropy loss for ``visible="bernoulli"`` (data in [0, 1]),
    ``g = identity`` with squared error otherwise. ``x~`` is ``x`` with a random fraction ``corruption`` of
    its entries set to 0 (masking noise); the loss compares ``x^`` with the CLEAN ``x``. Plain SGD with
    momentum 0.9 on the per-example loss summed over features; the reported error is the mean squared
    error per element between ``x^`` and ``x``.
    """
    n, n_vis = v.shape
    w = init.clone().requires_grad_(True)
    b = torch.zeros(n_vis, dtype=v.dtype, device=v.device, requires_grad=True)
    c = torch.zeros(w.shape[0], dtype=v.dtype, device=v.device, requires_grad=train_bias)
    params = [w, b] + ([c] if train_bias else [])
    opt = torch.optim.SGD(params, lr=lr, momentum=AE_MOMENTUM)
    errors = []
    with torch.enable_grad():
        for epoch in range(epochs):
            total, count = 0.0, 0
            for idx in _batches(n, batch_size, generator):
                x = v[idx]
                noisy = x
                if corruption > 0:
                    keep = sampling.uniform(x.shape, generator=generator).to(x.device) >= corruption
                    noisy = x * keep.to(x.dtype)
                h = encoder(F.linear(noisy, w, c))
                pre = F.linear(h, w.t(), b)
                if visible == "bernoulli":
                    loss = F.binary_cross_entropy_with_logits(pre, x, reduction="sum") / x.shape[0]
                    recon = torch.sigmoid(pre)
                else:
                    loss = 0.5 * (pre - x).pow(2).sum() / x.shape[0]
                    recon = pre
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                m = x.shape[0]
                total += float((recon.detach() - x).pow(2).mean()) * m
                count += m
                tick(epoch, total / count)
            errors.append(total / count)
            if not math.isfinite(errors[-1]):
                break
    return Learned(w.detach(), c.detach(), errors)
