"""init_model and InitReport: variance-preserving "auto", overrides, residual rules, atomicity, meta device, CLI."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import initlab
from initlab import model_init
from initlab.cli import main
from initlab.gains import resolve_activation, variance_gain
from initlab.model_init import IncompleteInitError, InitReport, init_model, length_map_slope

WIDTH, DEPTH, BATCH = 1024, 20, 256


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(model: nn.Module, snap: dict[str, torch.Tensor]) -> bool:
    state = model.state_dict()
    return state.keys() == snap.keys() and all(torch.equal(state[k], snap[k]) for k in snap)


def deep_mlp(act: nn.Module, width: int = WIDTH, depth: int = DEPTH) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Linear(width, width))
        if i < depth - 1:
            layers.append(act)
    with torch.random.fork_rng():  # torch's default init, reproducible, without moving the caller's RNG
        torch.manual_seed(0)
        return nn.Sequential(*[nn.Linear(width, width) if isinstance(m, nn.Linear) else m for m in layers])


def preactivation_stds(model: nn.Sequential, x: torch.Tensor) -> list[float]:
    out = []
    with torch.no_grad():
        for m in model:
            x = m(x)
            if isinstance(m, nn.Linear):
                out.append(float(x.std()))
    return out


@pytest.fixture(scope="module")
def unit_batch() -> torch.Tensor:
    # its own seed: a batch drawn from the same stream as the weights would correlate with them
    return torch.randn(BATCH, WIDTH, generator=torch.Generator().manual_seed(12345))


ACTS = {"relu": nn.ReLU(), "leaky_relu": nn.LeakyReLU(0.2), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid(),
        "selu": nn.SELU()}


@pytest.mark.parametrize("name", list(ACTS))
def test_deep_mlp_auto_keeps_every_preactivation_std_near_one(name, unit_batch):
    model = deep_mlp(ACTS[name])
    default = preactivation_stds(model, unit_batch)
    # torch's default U(+-1/sqrt(fan_in)) gives Var = 1/3 per layer before the activation: the signal decays
    assert min(default) < 0.8 or max(default) > 1.25
    runs = []
    for seed in (101, 102, 103):
        report = init_model(model, seed=seed)
        assert not report.untouched and len(report) == 2 * DEPTH
        runs.append(preactivation_stds(model, unit_batch))
    mean = [sum(col) / len(col) for col in zip(*runs)]
    # Each layer multiplies the second moment by a random factor with relative sd ~ sqrt(Var(f(z)^2)/E^2 / n)
    # (<= 0.07 for ReLU at n = 1024: a random walk in log-std of step <= 0.035), so after 20 layers one seed
    # wanders by ~ +-0.16 in log std and the mean of 3 seeds by ~ +-0.09; [0.8, 1.25] is ~2.5 sd of that.
    assert all(0.8 <= s <= 1.25 for s in mean), mean
    assert 0.9 < mean[0] < 1.1  # first layer: gain 1 on unit-variance data


def test_auto_gains_follow_the_input_activation():
    net = nn.Sequential(nn.Linear(16, 16), nn.LeakyReLU(0.2), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16),
                        nn.SELU(), nn.Linear(16, 16), nn.Sigmoid(), nn.Linear(16, 4))
    report = init_model(net, seed=0)
    gains = [report[f"{i}.weight"].initializer for i in (0, 2, 4, 6, 8)]
    expected = [1.0, math.sqrt(2 / (1 + 0.04)), variance_gain(resolve_activation("tanh")), 1.0,
                variance_gain(resolve_activation("sigmoid"))]
    for text, g in zip(gains, expected):
        assert text.startswith("He(") and f"gain={g!r}" in text
    assert report["2.weight"].act_in == "leaky_relu(0.2)" and report["2.weight"].act_out == "tanh"
    assert report["0.weight"].fans.fan_in == 16 and report["0.weight"].expected_std == pytest.approx(0.25)
    assert report["0.bias"].initializer == "Zeros()" and torch.all(net[0].bias == 0)


def test_gelu_and_custom_activations_warn_about_the_length_map():
    class Swishy(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(1.5 * x)

    for act, label in ((nn.GELU(), "gelu"), (Swishy(), "custom:Swishy")):
        # a deep MLP (20 hidden layers), as the acceptance asks
        net = nn.Sequential(*[m for _ in range(20) for m in (nn.Linear(32, 32), act)], nn.Linear(32, 2))
        report = init_model(net, seed=0)
        act_in = report.graph.layer("2").act_in
        assert str(act_in) == label
        slope = length_map_slope(act_in)
        assert slope > 1.1  # GELU 1.144, x*sigmoid(1.5x) 1.151: both expand the length map
        (warning,) = [w for w in report.warnings if w.startswith(label)]
        assert f"slope {slope:.3f}" in warning
        assert f"doubles every {math.log(2) / math.log(slope):.1f} layers" in warning
        assert "normalization" in warning and "initlab.lsuv" in warning
        # the custom function's gain comes from quadrature
        g = variance_gain(report.graph.layer("2").act_in)
        assert f"gain={g!r}" in report["2.weight"].initializer
    for act in (nn.ReLU(), nn.Tanh()):
        net = nn.Sequential(*[m for _ in range(20) for m in (nn.Linear(8, 8), act)], nn.Linear(8, 1))
        assert init_model(net, seed=0).warnings == []
    # GELU applied to LayerNorm outputs acts on re-standardized samples each time: nothing accumulates
    normed = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.GELU(), nn.Linear(8, 8), nn.LayerNorm(8), nn.GELU(),
                           nn.Linear(8, 1))
    assert init_model(normed, seed=0).warnings == []


def test_functional_activation_model():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c, self.d = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 1)

        def forward(self, x):
            return self.d(torch.tanh(self.c(self.b(F.relu(self.a(x))).sigmoid())))

    report = init_model(M(), seed=0)
    assert [report[f"{n}.weight"].act_in for n in "abcd"] == [None, "relu", "sigmoid", "tanh"]
    assert f"gain={math.sqrt(2)!r}" in report["b.weight"].initializer


def test_cnn_grouped_and_transposed_convolutions():
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1, groups=4),
                        nn.ReLU(), nn.ConvTranspose2d(16, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    report = init_model(net, seed=0)
    assert report["2.weight"].fans.fan_in == 4 * 9 and report["2.weight"].fans.fan_out == 4 * 9  # groups-aware
    assert "groups=4" in report["2.weight"].initializer
    assert "layout='torch_transposed'" in report["4.weight"].initializer
    assert report["0.weight"].std == pytest.approx(1 / math.sqrt(27), rel=0.1)  # 432 draws: ~3.4% sd of the std
    # the transposed conv preserves the second moment of ReLU inputs: measured on interior pixels
    x = F.relu(torch.randn(64, 16, 8, 8, generator=torch.Generator().manual_seed(7)))
    # 8 output channels of 144 weights each: one draw's second moment spreads by ~20 % (seeds 0-5 gave 0.80 to
    # 1.43), so average 6 draws: their mean has ~8 % spread
    moments = []
    for seed in range(6):
        init_model(net, seed=seed)
        with torch.no_grad():
            moments.append(float(net[4](x)[..., 1:-1, 1:-1].pow(2).mean()))
    assert sum(moments) / len(moments) == pytest.approx(1.0, rel=0.15)


def test_resnet_residual_options_found_without_names():
    from test_graph import ResNet  # tests/ is on sys.path (pytest prepend import mode)

    net = ResNet()
    report = init_model(net, seed=0, residual="zero_last")
    # the branch ends are the BatchNorms deceptively named "identity"; timm's zero_init_last zeroes their weight
    for block in (net.b1, net.b2):
        assert torch.all(block.identity.weight == 0)
        assert torch.all(block.downsample.weight == 1)
    assert torch.all(net.b2.proj[1].weight == 1) and torch.all(net.residual.weight == 1)  # shortcut/stem
    assert report["b1.identity.weight"].role == "residual_last"
    assert not report.untouched

    report = init_model(net, seed=0, residual="gpt2")  # last of each branch is a norm: scale the last conv
    assert "std / sqrt(2)" in report["b1.skip.weight"].initializer
    assert report["b1.skip.weight"].expected_std == pytest.approx(math.sqrt(2 / 72) / math.sqrt(2))
    assert report["b1.shortcut.weight"].expected_std == pytest.approx(math.sqrt(2 / 72))


def test_fixup_on_a_norm_free_resnet():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.u, self.v, self.w = nn.Linear(32, 32), nn.Linear(32, 32), nn.Linear(32, 32)

        def forward(self, x):
            return x + self.w(F.relu(self.v(F.relu(self.u(x)))))

    net = nn.Sequential(nn.Linear(8, 32), Block(), Block(), Block(), Block(), nn.Linear(32, 3))
    report = init_model(net, seed=0, residual="fixup")
    L, m = 4, 3
    factor = L ** (-1 / (2 * m - 2))
    for i in range(1, 5):
        assert torch.all(net[i].w.weight == 0) and report[f"{i}.w.weight"].role == "residual_last"
        assert report[f"{i}.v.weight"].expected_std == pytest.approx(math.sqrt(2 / 32) * factor)
        # u reads the residual stream (no activation): gain 1
        assert report[f"{i}.u.weight"].expected_std == pytest.approx(math.sqrt(1 / 32) * factor)
    assert torch.all(net[5].weight == 0) and torch.all(net[5].bias == 0)  # classifier starts at zero
    assert report["0.weight"].expected_std == pytest.approx(math.sqrt(1 / 8))


def transformer(layers: int = 2) -> nn.TransformerEncoder:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), layers,
                                     enable_nested_tensor=False)


def test_transformer_encoder_auto_and_residual_options():
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1))
    net = transformer(3)
    report = init_model(net, seed=0, example_inputs=x)
    assert report.graph.method == "hooks" and not report.untouched
    e = report["layers.0.self_attn.in_proj_weight"]
    assert "chunks=3" in e.initializer and e.fans.fan_out == 16 and e.fans.fan_in == 16
    assert report["layers.0.linear2.weight"].act_in == "relu" and f"gain={math.sqrt(2)!r}" in \
        report["layers.0.linear2.weight"].initializer
    assert torch.all(net.layers[1].norm1.weight == 1) and torch.all(net.layers[1].norm1.bias == 0)

    report = init_model(net, seed=0, example_inputs=x, residual="zero_last")
    for layer in net.layers:
        assert torch.all(layer.self_attn.out_proj.weight == 0) and torch.all(layer.linear2.weight == 0)
        assert layer.linear1.weight.std() > 0 and layer.self_attn.in_proj_weight.std() > 0

    report = init_model(net, seed=0, example_inputs=x, residual="gpt2")
    n = len(report.graph.branches)
    assert n == 6  # two residual branches per block: GPT-2's 2 * n_layer
    for i in range(3):
        assert report[f"layers.{i}.self_attn.out_proj.weight"].expected_std == pytest.approx(
            1 / math.sqrt(16) / math.sqrt(n))
        assert report[f"layers.{i}.linear2.weight"].expected_std == pytest.approx(
            math.sqrt(2 / 32) / math.sqrt(n))
        assert report[f"layers.{i}.linear1.weight"].expected_std == pytest.approx(1 / math.sqrt(16))


def test_transformer_residual_without_example_inputs_is_a_clear_error():
    net = transformer(1)
    snap = snapshot(net)
    with pytest.raises(ValueError, match="residual='zero_last' needs the residual branches.*example_inputs"):
        init_model(net, residual="zero_last", seed=0)
    assert same(net, snap)
    report = init_model(net, seed=0)  # without residual it still works, with a warning about the fallback
    assert report.graph.method == "modules" and any("example_inputs" in w for w in report.warnings)


def test_lstm_orthogonal_recurrent_glorot_input_forget_bias_one():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 8, padding_idx=0)
            self.lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True)
            self.gru = nn.GRU(16, 8, batch_first=True)
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            h, _ = self.lstm(self.emb(x))
            h, _ = self.gru(h)
            return self.fc(h[:, -1])

    net = M()
    report = init_model(net, seed=0)
    assert not report.untouched
    for k in (0, 1):
        w_hh = getattr(net.lstm, f"weight_hh_l{k}").detach()
        for block in w_hh.split(16):  # each gate's recurrent matrix is orthogonal
            assert torch.allclose(block @ block.T, torch.eye(16), atol=1e-5)
        b_ih, b_hh = getattr(net.lstm, f"bias_ih_l{k}"), getattr(net.lstm, f"bias_hh_l{k}")
        assert torch.all(b_ih[16:32] == 1) and torch.all(b_ih[:16] == 0) and torch.all(b_ih[32:] == 0)
        assert torch.all(b_hh == 0)
    bound = math.sqrt(6 / (8 + 16))  # Glorot for each (16, 8) gate block of weight_ih_l0
    assert net.lstm.weight_ih_l0.abs().max() <= bound and net.lstm.weight_ih_l0.abs().max() > 0.9 * bound
    assert "GlorotUniform(chunks=4)" in report["lstm.weight_ih_l0"].initializer
    assert "GlorotUniform(chunks=3)" in report["gru.weight_ih_l0"].initializer
    assert torch.all(net.gru.bias_ih_l0 == 0)  # no forget gate in a GRU
    assert torch.all(net.emb.weight[0] == 0) and float(net.emb.weight[1:].detach().std()) == pytest.approx(1, abs=0.2)


def test_scheme_specs_rules_output_and_bias():
    net = nn.Sequential(nn.Linear(64, 64), nn.Sigmoid(), nn.Linear(64, 64), nn.Sigmoid(), nn.Linear(64, 2))
    report = init_model(net, "glorot_uniform_sigmoid", seed=0)
    bound = 4 * math.sqrt(6 / 128)
    assert 0.9 * bound < float(net[2].weight.detach().abs().max()) <= bound
    assert report.scheme == "GlorotUniformSigmoid()"

    report = init_model(net, "orthogonal(gain='relu')", seed=0, output="zeros", bias="constant(0.1)")
    w = net[2].weight.detach()
    assert torch.allclose(w @ w.T, 2 * torch.eye(64), atol=1e-4)
    assert torch.all(net[4].weight == 0) and report["4.weight"].role == "output"  # zeros allowed on the output
    assert torch.all(net[0].bias == 0.1)

    rules = [("2.*", "normal(std=0.5)"), (nn.Linear, "uniform(0.01)"), ("4.bias", "ones")]
    report = init_model(net, seed=0, rules=rules, output="zeros")
    assert report["2.weight"].initializer == "Normal(std=0.5)" and report["2.bias"].initializer == "Normal(std=0.5)"
    # first match wins: 4.bias gets the module-class rule, not "ones"; rules also beat output=
    for p in (net[0].weight, net[4].weight, net[4].bias):
        assert float(p.detach().abs().max()) <= 0.01 and float(p.detach().std()) > 0


def test_symmetric_scheme_is_refused_unless_allowed():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    snap = snapshot(net)
    # the output layer (4.weight) may start symmetric; the hidden ones may not
    with pytest.raises(ValueError, match=r"identical across units.*: 0\.weight, 2\.weight\. Use"):
        init_model(net, "zeros", seed=0)
    with pytest.raises(ValueError, match=r"symmetry.*: 2\.weight"):
        init_model(net, seed=0, rules=[("2.weight", "constant(0.3)")])
    assert same(net, snap)
    report = init_model(net, "zeros", allow_symmetric=True)
    assert all(torch.all(p == 0) for p in net.parameters()) and report.scheme == "Zeros()"


class FailingInit(initlab.Normal):
    name = "failing"

    def _draw(self, shape, dtype, device, generator):
        raise ValueError("boom")


def test_rollback_when_drawing_fails():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    snap = snapshot(net)
    with pytest.raises(ValueError, match=r"parameter 4\.weight .*boom"):
        init_model(net, seed=0, rules=[("4.weight", FailingInit())])
    assert same(net, snap)


def test_rollback_when_assignment_fails_mid_way(monkeypatch):
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 1))
    snap = snapshot(net)
    real, calls = model_init._assign_one, []

    def flaky(param, new):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("device lost mid-way")
        real(param, new)

    monkeypatch.setattr(model_init, "_assign_one", flaky)
    with pytest.raises(RuntimeError, match="device lost"):
        init_model(net, seed=0)
    assert len(calls) == 5 and same(net, snap)  # four parameters had been swapped in, then restored


def test_rollback_on_meta_puts_every_slot_back_tied_ones_included(monkeypatch):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.fc, self.head = nn.Embedding(10, 8), nn.Linear(8, 8), nn.Linear(8, 10, bias=False)
            self.head.weight = self.emb.weight  # one parameter in two slots

        def forward(self, x):
            return self.head(torch.relu(self.fc(self.emb(x))))

    with torch.device("meta"):
        net = Tied()
    slots = [(mod, key, p) for mod in net.modules() for key, p in mod._parameters.items() if p is not None]

    def fail(*a, **k):  # after every parameter was replaced: the last step of the assignment
        raise RuntimeError("out of memory while materializing buffers")

    monkeypatch.setattr(model_init, "_materialize_buffers", fail)
    with pytest.raises(RuntimeError, match="out of memory"):
        init_model(net, seed=0, device="cpu")
    assert all(mod._parameters[key] is p for mod, key, p in slots) and len(slots) == 4
    monkeypatch.undo()
    init_model(net, seed=0, device="cpu")  # the negative control: this time every slot holds a new tensor
    assert not any(mod._parameters[key] is p for mod, key, p in slots)
    assert net.head.weight is net.emb.weight and not net.emb.weight.is_meta


def test_untouched_parameters_and_assert_complete():
    class Scale(nn.Module):  # a parameter initlab cannot place: unknown module, unknown role
        def __init__(self):
            super().__init__()
            self.gamma = nn.Parameter(torch.full((8,), 3.0))

        def forward(self, x):
            return x * self.gamma

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.scale, self.head = nn.Linear(4, 8), Scale(), nn.Linear(8, 1)
            self.unused = nn.Linear(2, 2)
            self.pos = nn.Parameter(torch.zeros(5, 8))  # added to the activations: a learned position embedding

        def forward(self, x):
            return self.head(self.scale(self.fc(x) + self.pos))

    net = M()
    report = init_model(net, seed=0)
    assert report["pos"].role == "additive" and report["pos"].initializer.startswith("Normal(std=0.02)")
    assert report.graph.ops[report.graph.layer("").op].params == ["pos"]
    untouched = {u.name: u.reason for u in report.untouched}
    assert set(untouched) == {"scale.gamma", "unused.weight", "unused.bias"}
    assert "Scale is not a layer type initlab knows" in untouched["scale.gamma"]
    assert "not used in the forward pass" in untouched["unused.weight"]
    assert torch.all(net.scale.gamma == 3.0)  # left exactly as it was
    with pytest.raises(IncompleteInitError, match="3 parameter\\(s\\) not initialized: scale.gamma"):
        report.assert_complete()
    report = init_model(net, seed=0, rules=[("scale.gamma", "ones"), ("unused.*", "zeros")])  # not hidden units
    report.assert_complete()
    assert torch.all(net.scale.gamma == 1.0)


def test_meta_device_model_is_materialized_once(monkeypatch):
    with torch.device("meta"):
        net = nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 4))
    with pytest.raises(ValueError, match="meta device.*device="):
        init_model(net, seed=0)
    assert all(p.is_meta for p in net.parameters())

    def no_to_empty(*a, **k):
        raise AssertionError("to_empty would allocate a second full-size copy")

    monkeypatch.setattr(nn.Module, "to_empty", no_to_empty)
    report = init_model(net, seed=0, device="cpu")
    assert all(p.device.type == "cpu" for p in net.parameters())
    assert all(b.device.type == "cpu" for b in net.buffers())
    assert torch.all(net[1].running_var == 1) and torch.all(net[1].running_mean == 0)
    assert report["3.weight"].std == pytest.approx(math.sqrt(2 / 64), rel=0.1)  # 256 draws: ~4.4% sd
    assert isinstance(net[0].weight, nn.Parameter) and net[0].weight.requires_grad
    # same seed on a regular CPU model gives the same values
    cpu = nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 4))
    init_model(cpu, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(cpu.parameters(), net.parameters()))


def test_reproducible_and_global_rng_untouched():
    a = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    b = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    state = torch.random.get_rng_state()
    init_model(a, seed=3, rng="torch")
    init_model(b, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    init_model(a, seed=3)  # the default with a seed: the counter-based stream
    init_model(b, seed=3, rng="philox")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    init_model(b, seed=3, rng="torch")
    assert not torch.equal(a[0].weight, b[0].weight)  # the two streams differ
    report = init_model(a)  # no seed: a fresh seed whose value is reported
    init_model(b, seed=report.seed)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(scheme="nope"), ValueError, "scheme: "),
    (dict(scheme=3.5), TypeError, "scheme: "),
    (dict(residual="bogus"), ValueError, "residual must be one of"),
    (dict(seed=1, generator=torch.Generator()), ValueError, "give seed or generator, not both"),
    (dict(seed=-1), ValueError, "seed must be a non-negative int"),
    (dict(generator=5), TypeError, "generator must be a torch.Generator"),
    (dict(rules=[("a",)]), ValueError, r"rules\[0\] must be a \(pattern, spec\) pair"),
    (dict(rules=[(3, "zeros")]), TypeError, r"rules\[0\]: the pattern must be a glob"),
    (dict(rules="x"), TypeError, "rules must be a list"),
    (dict(bias="normal(std=-1)"), ValueError, "bias: "),
    (dict(output="what"), ValueError, "output: "),
    (dict(device="meta"), ValueError, "device='meta' cannot hold"),
    (dict(device="warp-drive"), ValueError, "device must be a torch device"),
    (dict(allow_symmetric="yes"), TypeError, "allow_symmetric must be True or False"),
])
def test_bad_inputs_raise_and_leave_the_model_unchanged(kwargs, error, message):
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    snap = snapshot(net)
    with pytest.raises(error, match=message):
        init_model(net, **kwargs)
    assert same(net, snap)


def test_not_a_model():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        init_model(torch.zeros(3))


def test_report_table_and_dict():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    report = initlab.init_model(net, seed=0)
    assert isinstance(report, InitReport)
    text = report.table()
    assert "0.weight" in text and "He(gain=1.0)" in text and "relu -> linear" in text and "4 parameters" in text
    lines = report.table(color=False).splitlines()  # the shared renderer: title, header, dashes, one row each
    assert lines[0].startswith("init_model: scheme='auto'") and lines[1].split()[:2] == ["parameter", "shape"]
    assert set(lines[2].replace(" ", "")) == {"-"} and len(lines) == 3 + 4 and "\x1b[" not in "".join(lines)
    assert lines[3].split()[:3] == ["0.weight", "4x1x3x3", "Conv2d"]
    assert lines[3].endswith(f"{report['0.weight'].std:.4g}")
    assert report.table(color=True).startswith("\x1b[1minit_model:")  # colour only when asked (or on a terminal)
    d = json.loads(json.dumps(report.to_dict()))
    assert d["seed"] == 0 and d["method"] == "fx" and len(d["entries"]) == 4
    w = d["entries"][0]
    assert w["shape"] == [4, 1, 3, 3] and w["fans"]["fan_in"] == 9 and w["act_in"] is None
    assert w["std"] == pytest.approx(float(net[0].weight.detach().std()))


FACTORY_SOURCE = '''
import torch
from torch import nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(16, 16), nn.Linear(16, 16)

    def forward(self, x):
        return x + self.b(F.relu(self.a(x)))


def make_net():
    return nn.Sequential(nn.Linear(8, 16), Block(), nn.Linear(16, 2))


def make_transformer():
    return nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 1,
                                 enable_nested_tensor=False)


class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.g = nn.Parameter(torch.ones(2))

    def forward(self, x):
        return x * self.g


def make_incomplete():
    return nn.Sequential(nn.Linear(3, 2), Scale())
'''


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    (tmp_path / "initlab_cli_factories.py").write_text(FACTORY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "initlab_cli_factories"


def test_cli_init(factory_module, capsys):
    assert main(["init", f"{factory_module}:make_net", "--residual", "zero_last", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "residual='zero_last', seed=0, traced by fx" in out
    assert "1.b.weight" in out and "Zeros() (last of residual branch 0: zero_last)" in out

    assert main(["init", f"{factory_module}:make_transformer", "--input-shape", "1,4,8", "--residual", "gpt2",
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["method"] == "hooks" and d["residual"] == "gpt2"

    assert main(["init", f"{factory_module}:make_incomplete", "--check"]) == 1
    assert "not initialized: 1.g" in capsys.readouterr().out


def test_cli_init_rng(factory_module, capsys):
    """--rng philox is the default; torch's stream gives other values; the choice is checked."""
    def stds(*extra):
        assert main(["init", f"{factory_module}:make_net", "--seed", "0", "--json", *extra]) == 0
        return [e["std"] for e in json.loads(capsys.readouterr().out)["entries"] if e["name"].endswith("weight")]

    default = stds()
    assert default == stds("--rng", "philox")
    assert default != stds("--rng", "torch")
    with pytest.raises(SystemExit) as exc:  # argparse's choices: exit 2 with one line naming the option
        main(["init", f"{factory_module}:make_net", "--rng", "numpy"])
    assert exc.value.code == 2 and "--rng" in capsys.readouterr().err


def test_report_std_is_the_sample_std():
    """The report reads each parameter's std with a sum and a dot product where that is exact, and falls
    back to the two-pass std where the mean dominates (the one-pass formula would cancel)."""
    from initlab.model_init import _std

    g = torch.Generator().manual_seed(0)
    cases = [torch.randn(100_000, generator=g) * 0.02,                 # the fast path
             torch.randn(300, 200, generator=g).t(),                    # not contiguous
             torch.randn(1000, generator=g).half(),                     # not float32
             torch.ones(4096), torch.zeros(3),                          # constants: exactly 0
             1.0 + 1e-4 * torch.randn(1_000_000, generator=g)]          # mean 1e4 x the spread: cancellation
    for x in cases:
        exact = float(x.double().std())
        # float32 accumulation of 1e6 terms: relative error well under 1e-4
        assert _std(x) == pytest.approx(exact, rel=1e-4, abs=1e-12), x.shape
    assert _std(torch.ones(1)) is None


@pytest.mark.parametrize("argv, message", [
    (["init", "no_colon_here"], "expected MODULE:FACTORY"),
    (["init", "initlab_cli_factories:missing"], "has no attribute 'missing'"),
    (["init", "initlab_cli_factories:make_net", "--scheme", "nope"], "scheme: "),
    (["init", "initlab_cli_factories:make_net", "--input-shape", "1,a"], "--input-shape must be"),
    (["init", "no_such_module_xyz:f"], "No module named"),
])
def test_cli_init_errors(factory_module, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("initlab init: error:") and message in err


def test_output_layer_may_start_at_zero_through_a_rule_but_hidden_layers_may_not():
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    init_model(net, seed=0, rules=[("4.weight", "zeros")])
    assert torch.all(net[4].weight == 0) and net[2].weight.std() > 0
    snap = snapshot(net)
    with pytest.raises(ValueError, match=r"symmetry\): 2.weight"):
        init_model(net, seed=0, rules=[("2.weight", "zeros")])
    assert same(net, snap)


def test_fixup_on_the_resnet_and_the_transformer():
    from test_graph import ResNet

    net = ResNet()
    report = init_model(net, seed=0, residual="fixup")
    # the branch's weight layers end with a BatchNorm: fixup zeroes the last weight layer and warns about norms
    assert any("without normalization" in w for w in report.warnings)
    for block in (net.b1, net.b2):
        assert torch.all(block.skip.weight == 0) and block.shortcut.weight.std() > 0
        assert torch.all(block.identity.weight == 1)
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1))
    tf = transformer(2)
    report = init_model(tf, seed=0, example_inputs=x, residual="fixup")
    n = len(report.graph.branches)
    for layer in tf.layers:
        # attention branch: in_proj scaled by L^(-1/(2m-2)) with m = 2, out_proj zero; MLP branch likewise
        assert torch.all(layer.self_attn.out_proj.weight == 0) and torch.all(layer.linear2.weight == 0)
    assert report["layers.0.linear1.weight"].expected_std == pytest.approx(1 / math.sqrt(16) * n ** (-1 / 2))


def test_counter_based_values_depend_only_on_seed_name_and_index():
    """rng='philox': a parameter's values are a function of (seed, its name, the element index): adding a
    layer, or drawing in another order, changes nothing else; the global RNG is untouched."""
    class Net(nn.Module):
        def __init__(self, extra: bool):
            super().__init__()
            if extra:
                self.pre = nn.Linear(8, 8)  # registered (and drawn) first
            self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

        def forward(self, x):
            x = self.pre(x) if hasattr(self, "pre") else x
            return self.fc2(torch.tanh(self.fc1(x)))

    a, b, c = Net(extra=False), Net(extra=True), Net(extra=False)
    state = torch.random.get_rng_state()  # after building (torch's layers draw their defaults from it)
    init_model(a, seed=5, rng="philox")
    init_model(b, seed=5, rng="philox")
    for name in ("fc1.weight", "fc2.weight"):
        assert torch.equal(dict(a.named_parameters())[name], dict(b.named_parameters())[name])
    init_model(c, seed=5, rng="torch")  # torch's stream: the values depend on what was drawn before
    init_model(b, seed=5, rng="torch")
    assert not torch.equal(dict(c.named_parameters())["fc1.weight"], dict(b.named_parameters())["fc1.weight"])
    init_model(c, seed=6, rng="philox")
    assert not torch.equal(c.fc1.weight, a.fc1.weight)  # another seed, other values
    init_model(c, seed=5)  # philox is the default when a seed is given
    assert torch.equal(c.fc1.weight, a.fc1.weight)
    assert torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(ValueError, match="rng must be one of"):
        init_model(a, seed=5, rng="numpy")
    with pytest.raises(ValueError, match="generator= is torch's stream"):
        init_model(a, generator=torch.Generator(), rng="philox")
