"""initlab.lsuv: unit output std on fresh data, execution order, linear cost, zero-init rules, dead layers."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import initlab
from initlab import zoo
from initlab.datainit import LSUVReport, lsuv


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """8x8 digits in [0, 1]: a real data distribution, 1438 rows; fit and fresh batches are disjoint.
    (Not z-scored: near-constant border pixels would get rare huge values and heavy-tailed batch stds.)"""
    return initlab.data.load("digits", standardize=False).x_train


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), f"{k} changed"


NDQLinear = nn.modules.linear.NonDynamicallyQuantizableLinear  # MultiheadAttention.out_proj: never called


def unit_stds(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Output std of every weight LSUV rescales, measured independently of initlab with plain hooks:
    Linear/Conv outputs, the Q/K/V projections and the output of each MultiheadAttention."""
    stds: dict[str, float] = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, nn.MultiheadAttention):
            def pre(mod, args, kwargs, name=name):
                q, k, v = args[:3]  # nn.TransformerEncoderLayer and the tests pass them positionally
                e = mod.embed_dim
                for i, (part, src) in enumerate(zip("qkv", (q, k, v))):
                    w = mod.in_proj_weight[i * e:(i + 1) * e] if mod.in_proj_weight is not None \
                        else getattr(mod, f"{part}_proj_weight")
                    b = None if mod.in_proj_bias is None else mod.in_proj_bias[i * e:(i + 1) * e]
                    stds[f"{name}.in_proj[{part}]"] = float(F.linear(src, w, b).detach().std())

            def post(mod, args, out, name=name):
                stds[f"{name}.out_proj"] = float(out[0].detach().std())

            handles += [m.register_forward_pre_hook(pre, with_kwargs=True), m.register_forward_hook(post)]
        elif isinstance(m, (nn.Linear, nn.Conv2d)) and not isinstance(m, NDQLinear):
            def hook(mod, a, out, name=name):
                stds[name] = float(out.detach().std())

            handles.append(m.register_forward_hook(hook))
    model.eval()
    try:
        with torch.enable_grad():  # grad on: torch's fused attention fast path (which skips submodules) stays off
            model(x)
    finally:
        for h in handles:
            h.remove()
    return stds


MODELS = {
    "mlp": lambda: zoo.mlp(depth=6, width=64, activation="tanh", in_features=64),
    "cnn": lambda: zoo.cnn(channels=(8, 16), activation="relu", input_shape=(1, 8, 8)),
    "transformer": lambda: zoo.transformer(in_features=8, seq_len=8, d_model=16, nhead=2, num_layers=2,
                                           dim_feedforward=32),
}
EXPECTED_UNITS = {"mlp": 7, "cnn": 3, "transformer": 2 + 2 * (4 + 2)}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_fresh_batch_std_within_target(kind: str, digits: torch.Tensor) -> None:
    model = MODELS[kind]()
    fit, fresh = digits[:500], digits[500:1000]
    report = lsuv(model, fit, seed=0)
    assert isinstance(report, LSUVReport)
    assert len(report.visited) == EXPECTED_UNITS[kind] == len(report.layers)
    assert all(r.status == "converged" for r in report.layers)
    measured = unit_stds(model, fresh)
    assert set(report.visited) == set(measured)
    # On the fit batch the std is within tol=2% by construction; on a fresh batch of 500 digits the
    # sampling error of a std over >= 500*10 correlated values is a few percent: the issue asks for 0.1.
    for name in report.visited:
        assert abs(measured[name] - 1.0) < 0.1, (name, measured[name])
        assert abs(report.layer(name).std_after - 1.0) <= 0.02 + 1e-6


def test_target_std_and_center(digits: torch.Tensor) -> None:
    model = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                          nn.ConvTranspose2d(4, 3, 2, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 16 * 16, 10))
    report = lsuv(model, digits[:400], target_std=0.5, center=True, seed=1)
    assert [(r.name, r.kind) for r in report.layers] == [("1", "conv"), ("3", "conv_transpose"), ("6", "linear")]
    assert all(abs(r.std_after - 0.5) <= 0.5 * 0.02 + 1e-6 for r in report.layers)
    # center=True: every output channel has mean ~0 on the fit batch (removed through the bias)
    outputs = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            m.register_forward_hook(lambda mod, a, out, name=name: outputs.__setitem__(name, out))
    with torch.no_grad():
        model.eval()(digits[:400])
    for name, out in outputs.items():
        channel_means = out.mean(dim=[d for d in range(out.ndim) if d != 1])
        assert channel_means.abs().max() < 1e-4, name
        assert abs(float(out.std()) - 0.5) < 0.011, name


class Shuffled(nn.Module):
    """Modules registered in the order c, a, b; they run a -> b -> c."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Linear(16, 4)
        self.a = nn.Linear(8, 16)
        self.b = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.tanh(self.b(torch.tanh(self.a(x)))))


class ShuffledBranchy(Shuffled):
    """Same, with data-dependent control flow: torch.fx cannot trace it (graph falls back to hooks)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.a(x))
        if h.sum() > -1e9:
            h = torch.tanh(self.b(h))
        return self.c(h)


@pytest.mark.parametrize("cls, method", [(Shuffled, "fx"), (ShuffledBranchy, "hooks")])
def test_visits_in_execution_order(cls: type, method: str, gen: torch.Generator) -> None:
    model = cls()
    assert [n for n, _ in model.named_children()] == ["c", "a", "b"]
    report = lsuv(model, torch.randn(300, 8, generator=gen), seed=0)
    assert [r.name for r in report.layers] == ["a", "b", "c"]
    assert report.trace_method == method
    if method == "hooks":
        assert report.fallback_reason and "fx" in report.fallback_reason
        assert "hooks" in report.table()


def test_linear_cost_one_forward_pass(gen: torch.Generator) -> None:
    """The model runs once whatever its depth; each layer is re-run alone only while it is rescaled."""
    for depth in (5, 20):
        model = zoo.mlp(depth=depth, width=32, activation="tanh", in_features=16)
        calls: list[int] = []
        linear_calls: list[int] = []
        model.register_forward_hook(lambda *a, calls=calls: calls.append(1))
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.register_forward_hook(lambda *a, seen=linear_calls: seen.append(1))
        report = lsuv(model, torch.randn(256, 16, generator=gen), seed=0)
        assert len(calls) == 1 and report.forward_passes == 1
        assert len(linear_calls) == depth + 1  # the pass calls each layer once, and nothing else does
        assert report.layer_evaluations == 0  # rescaled outputs come from W x + b being linear in W


class OffsetLinear(nn.Linear):
    """A Linear whose forward is not torch's (output W x + b + 0.1): LSUV cannot assume W x + b, re-runs it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) + 0.1


@pytest.mark.parametrize("center", [False, True])
def test_reported_std_is_the_real_output_std(center: bool, gen: torch.Generator) -> None:
    """The std computed while rescaling (analytically for torch's layers, by re-running a custom one) is
    what the layers really output on the same batch afterwards."""
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), OffsetLinear(32, 32), nn.Tanh(), nn.Linear(32, 8))
    with torch.no_grad():
        model[2].bias.uniform_(-0.5, 0.5, generator=gen)
    x = torch.randn(256, 16, generator=gen)
    report = lsuv(model, x, orthogonal=False, center=center, tol=0.001)
    assert report.layer_evaluations == report.layer("2").iterations >= 2  # only the custom layer is re-run
    real = {}
    for name in ("0", "2", "4"):
        model.get_submodule(name).register_forward_hook(
            lambda m, a, out, name=name: real.__setitem__(name, (float(out.std()), float(out.mean()))))
    with torch.no_grad():
        model(x)
    for r in report.layers:
        assert r.std_after == pytest.approx(real[r.name][0], rel=1e-5, abs=1e-6)
        assert r.mean_after == pytest.approx(real[r.name][1], rel=1e-4, abs=1e-5)
        assert abs(r.std_after - 1.0) <= 0.001


def test_attention_with_separate_projections(gen: torch.Generator) -> None:
    class Cross(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 2, kdim=8, vdim=12, batch_first=True)

        def forward(self, q, k, v):
            return self.attn(q, k, v, need_weights=False)[0]

    model = Cross()
    batch = tuple(torch.randn(32, 6, d, generator=gen) for d in (16, 8, 12))
    fresh = tuple(torch.randn(32, 6, d, generator=gen) for d in (16, 8, 12))
    report = lsuv(model, batch, seed=0)
    assert report.visited == ["attn.in_proj[q]", "attn.in_proj[k]", "attn.in_proj[v]", "attn.out_proj"]
    measured = {}
    model.attn.register_forward_hook(lambda m, a, out: measured.__setitem__("out", float(out[0].std())))
    with torch.no_grad():
        model(*fresh)
    a = model.attn
    for i, (part, x) in enumerate(zip("qkv", fresh)):
        y = F.linear(x, getattr(a, f"{part}_proj_weight"), a.in_proj_bias[i * 16:(i + 1) * 16])
        assert abs(float(y.detach().std()) - 1.0) < 0.1
    assert abs(measured["out"] - 1.0) < 0.1


def test_zero_init_rules_are_respected(gen: torch.Generator) -> None:
    model = zoo.resnet(blocks=2, width=8, input_shape=(1, 8, 8))
    initlab.init_model(model, residual="fixup", seed=0)
    zeroed = {n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and not m.weight.any()}
    assert len(zeroed) == 3  # the last conv of both blocks and the classifier (Fixup)
    report = lsuv(model, torch.randn(64, 64, generator=gen), seed=0)
    for name, m in model.named_modules():
        if name in zeroed:
            assert not m.weight.any(), name
    assert {r.name for r in report.layers if r.status == "zero-init"} == zeroed
    assert set(report.visited) == {r.name for r in report.layers} - zeroed
    assert any("zero" in n for n in report.notes)


class Killer(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.0


def test_dead_layer_raises_and_restores(gen: torch.Generator) -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8), Killer(), nn.Linear(8, 4), nn.Dropout(0.1))
    model.train()
    before = state(model)
    with pytest.raises(ValueError, match=r"'4' is dead.*std 0.*input is all zero"):
        lsuv(model, torch.randn(64, 8, generator=gen), seed=0)
    assert_same_state(model, before)  # the two layers rescaled before it are put back too
    assert all(m.training for m in model.modules())


def test_layer_fed_zeros_through_its_bias_is_dead(gen: torch.Generator) -> None:
    # every ReLU after layer 0 is off, so layer 2 outputs its (non-zero) bias alone: std > 0, but no
    # rescaling of its weight can change it
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    with torch.no_grad():
        model[0].bias.fill_(-100.0)
    before = state(model)
    with pytest.raises(ValueError, match=r"'2' is dead.*does not depend on its weight"):
        lsuv(model, torch.randn(64, 8, generator=gen), orthogonal=False)
    assert_same_state(model, before)


def test_non_finite_layer_raises_and_restores(gen: torch.Generator) -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 4))
    with torch.no_grad():
        model[2].weight[0, 0] = float("inf")
    before = state(model)
    with pytest.raises(ValueError, match=r"'2' is dead.*std is nan"):
        lsuv(model, torch.randn(64, 8, generator=gen), orthogonal=False)
    assert_same_state(model, before)


def test_max_iter_warns_with_layer_and_std(gen: torch.Generator) -> None:
    # Without the orthogonal pre-init (which zeroes biases) the bias spread across the 16 channels
    # (std ~6) stays in the output however small W gets: the std can never come down to 1.
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    with torch.no_grad():
        model[0].bias.copy_(torch.linspace(-10, 10, 16))
    with pytest.warns(UserWarning, match=r"layer '0'.*max_iter=3.*final std 6\."):
        report = lsuv(model, torch.randn(64, 8, generator=gen), orthogonal=False, max_iter=3)
    first = report.layers[0]
    assert (first.status, first.iterations) == ("max_iter", 3)
    assert report.layers[1].status == "converged"


def test_bad_arguments_leave_model_unchanged(gen: torch.Generator) -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 4))
    x = torch.randn(32, 8, generator=gen)
    before = state(model)
    nan = x.clone()
    nan[3, 3] = float("nan")
    cases = [
        (dict(inputs=nan), ValueError, "inputs contains 1 NaN"),
        (dict(target_std=0.0), ValueError, "target_std"),
        (dict(tol=-1.0), ValueError, "tol"),
        (dict(max_iter=0), ValueError, "max_iter"),
        (dict(layers=["nope"]), ValueError, r"unknown.*'nope'.*\['0', '2'\]"),
        (dict(orthogonal="yes"), TypeError, "orthogonal"),
        (dict(inputs=torch.randn(4, 5, generator=gen)), ValueError, "failed on inputs"),
        (dict(inputs="x"), TypeError, "inputs must be"),
    ]
    for kwargs, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            lsuv(model, kwargs.pop("inputs", x), **kwargs)
        assert_same_state(model, before)
    with pytest.raises(TypeError, match="model"):
        lsuv("model", x)


def test_layers_subset_and_seed(gen: torch.Generator) -> None:
    base = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4))
    x = torch.randn(128, 8, generator=gen)
    model = copy.deepcopy(base)
    report = lsuv(model, x, layers=["2"], seed=3)
    assert report.visited == ["2"]
    assert torch.equal(model[0].weight, base[0].weight) and torch.equal(model[4].weight, base[4].weight)
    assert not torch.equal(model[2].weight, base[2].weight)
    again = copy.deepcopy(base)
    lsuv(again, x, layers=["2"], seed=3)
    assert torch.equal(again[2].weight, model[2].weight)  # same seed, same orthogonal draw


def test_dataloader_input_modes_and_table(gen: torch.Generator) -> None:
    x = torch.randn(200, 8, generator=gen)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(200)), batch_size=100)
    a = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    b = copy.deepcopy(a)
    a.train()
    fast = torch.backends.mha.get_fastpath_enabled()
    ra = lsuv(a, loader, seed=0)
    rb = lsuv(b, x[:100], seed=0)
    assert torch.equal(a[0].weight, b[0].weight) and torch.equal(a[2].weight, b[2].weight)
    assert a.training and all(m.training for m in a.modules())
    assert torch.backends.mha.get_fastpath_enabled() == fast
    text = ra.table()
    assert "0" in text and "converged" in text and "std before" in text
    assert str(rb) == rb.table()
    assert ra.to_dict()["layers"][0]["name"] == "0"


def test_unused_layer_left_alone(gen: torch.Generator) -> None:
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(4, 4)
            self.spare = nn.Linear(4, 4)

        def forward(self, x):
            if x.sum() > -1e9:  # fx cannot trace this, the hooks trace sees only the layer that runs
                return self.used(x)
            return self.spare(x)

    model = Unused()
    before = model.spare.weight.detach().clone()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: the layer that runs converges
        report = lsuv(model, torch.randn(32, 4, generator=gen), seed=0)
    assert report.visited == ["used"]
    assert torch.equal(model.spare.weight, before)


def test_cli(tmp_path, monkeypatch, capsys) -> None:
    from initlab.cli import main

    (tmp_path / "lsuv_cli_models.py").write_text(
        "from torch import nn\n"
        "def net():\n"
        "    return nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4))\n")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "net.pt"
    assert main(["lsuv", "lsuv_cli_models:net", "--input-shape", "128,16", "--save", str(out)]) == 0
    text = capsys.readouterr().out
    assert "converged" in text and "saved state_dict" in text
    weights = torch.load(out)
    assert set(weights) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert main(["lsuv", "lsuv_cli_models:net", "--input-shape", "128,16", "--residual", "fixup"]) == 2
    assert "--residual needs --init" in capsys.readouterr().err
    assert main(["lsuv", "lsuv_cli_models:net", "--input-shape", "128,15"]) == 2
    assert "failed on inputs" in capsys.readouterr().err
