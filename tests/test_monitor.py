"""initlab.Monitor: records every `every` steps, carries no hook in between, keeps only summaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import initlab


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _setup(gen):
    net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(48, 10, generator=gen)
    y = torch.randint(0, 3, (48,), generator=gen)
    return net, opt, x, y


def _train_step(net, opt, x, y):
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    opt.step()


def test_records_every_k_steps_and_no_hooks_in_between(gen):
    net, opt, x, y = _setup(gen)
    mon = initlab.Monitor(net, every=4)
    hooked = []
    for _ in range(10):
        hooked.append(_hooks(net) > 0)
        _train_step(net, opt, x, y)
        mon.step()
    mon.close()
    # steps 0, 4, 8 carry hooks; every other step runs the bare model
    assert hooked == [i % 4 == 0 for i in range(10)]
    assert mon.steps == [0, 4, 8] and _hooks(net) == 0 and not mon.recording
    assert mon.names == ["0", "1", "2", "3", "4"]
    assert len(mon.series("3", "frac_saturated")) == 3


def test_recorded_statistics_match_the_step(gen):
    net, opt, x, y = _setup(gen)
    with initlab.Monitor(net, every=3, bins=20) as mon:
        for step in range(7):
            if step == 6:  # the third recording: the reference on the same weights, without calling the
                # modules (any forward pass during a recorded step is recorded)
                h = F.relu(F.linear(x, net[0].weight, net[0].bias)).detach().double()
                w0 = net[0].weight.detach().clone()
            _train_step(net, opt, x, y)
            mon.step()
    last = mon.history[-1]
    assert mon.steps == [0, 3, 6]
    s = last["1"]
    assert s.act_std == pytest.approx(h.std(correction=0).item(), rel=1e-6)
    assert s.frac_zero == pytest.approx((h == 0).double().mean().item())
    assert len(s.hist_counts) == 20 and sum(s.hist_counts) + s.hist_under + s.hist_over == h.numel()
    assert s.grad_std is not None and s.grad_std > 0
    # weights are summarised at step(): after the optimizer moved them, with the .grad of that step
    assert last["0"].weight_grad_std == pytest.approx(net[0].weight.grad.double().std(correction=0).item(), rel=1e-5)
    assert last["0"].weight_std == pytest.approx(net[0].weight.detach().double().std(correction=0).item(), rel=1e-5)
    assert not torch.equal(w0, net[0].weight)
    # only summaries are kept: no tensor survives in the history
    for rec in mon.history:
        for stats in rec.values():
            assert not any(isinstance(v, torch.Tensor) for v in vars(stats).values())


def test_context_manager_removes_hooks_on_error(gen):
    net, opt, x, y = _setup(gen)
    with pytest.raises(RuntimeError, match="stop"):
        with initlab.Monitor(net, every=1):
            _train_step(net, opt, x, y)
            raise RuntimeError("stop")
    assert _hooks(net) == 0


def test_monitor_leaves_rng_and_plots(gen, tmp_path):
    net, opt, x, y = _setup(gen)
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    with initlab.Monitor(net, every=2) as mon:
        for _ in range(6):
            _train_step(net, opt, x, y)
            mon.step()
    assert torch.equal(torch.rand(2), expected)
    fig = mon.plot(tmp_path / "mon.png")
    assert (tmp_path / "mon.png").stat().st_size > 3000
    # one image per layer output (ReLU, Tanh, output layer), the std under each, and one colour bar
    assert len(fig.axes) == 7 and fig.axes[-1].get_ylabel() == "log(1 + count) per bin"
    d = mon.to_dict()
    assert d["steps"] == [0, 2, 4] and set(d["history"][0]) == set(mon.names)
    import matplotlib.pyplot as plt

    plt.close("all")


def test_monitor_arguments(gen):
    net, *_ = _setup(gen)
    for bad, exc in ((0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(exc, match="every must be an int >= 1"):  # a wrong type is a TypeError
            initlab.Monitor(net, every=bad)
    with pytest.raises(ValueError, match="bins"):
        initlab.Monitor(net, bins=0)
    with pytest.raises(TypeError, match="model"):
        initlab.Monitor("net")
    assert _hooks(net) == 0
    mon = initlab.Monitor(net, every=2)
    with pytest.raises(ValueError, match="nothing recorded"):
        mon.series("0")
    mon.close()
    with pytest.raises(RuntimeError, match="closed"):
        mon.step()
    with pytest.raises(ValueError, match="not recorded any step"):
        mon.plot()


def test_fixed_range_and_series_errors(gen):
    net, opt, x, y = _setup(gen)
    with initlab.Monitor(net, every=1, hist_range=(-3.0, 3.0), layers="activations") as mon:
        for _ in range(3):
            _train_step(net, opt, x, y)
            mon.step()
    assert mon.names == ["1", "3"]
    edges = [mon.history[k]["3"].hist_edges for k in range(3)]
    assert edges[0] == edges[2] and edges[0][0] == -3.0
    assert np.all(np.isfinite(mon.series("1", "act_mean")))
    with pytest.raises(KeyError, match="no recorded point"):
        mon.series("9")
    with pytest.raises(ValueError, match="stat must be"):
        mon.series("1", "hist_counts")
