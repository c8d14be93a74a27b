"""Parameter roles from the runtime dataflow (initlab.semantics) and what init_model, lsuv, probe and
theory.propagate do with them: custom layers initlab does not know, tied weights, gates, the length-map
warning, BatchNorm in eval mode, zero padding, and tracing robustness.

Every custom module here is written in the test; none of its class or parameter names mean anything to
initlab (roles come from what the forward pass does with each tensor)."""

import math
from collections import Counter

import numpy as np
import pytest
import realmodels
import torch
import torch.nn.functional as F
from torch import nn

import initlab
from initlab.gains import gate, resolve_activation, variance_gain
from initlab.graph import trace
from initlab.model_init import _activation_warnings, init_model
from initlab.probing.hooks import normalizes
from initlab.semantics import describe
from initlab.theory.propagate import _padding_classes, propagate

MODES = ["fx", "hooks"]


def batch(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def guard(model: nn.Module, x: torch.Tensor) -> None:
    """Data-dependent control flow when ``model.untraceable``: torch.fx cannot trace it (hooks mode)."""
    if model.untraceable and not bool(torch.isfinite(x).all()):
        raise ValueError("non-finite input")


def traced(model: nn.Module, x, mode: str):
    g = trace(model, x)
    assert g.method == mode, g.fallback_reason
    return g


def sample_std(t: torch.Tensor) -> float:
    return float(t.detach().double().std())


# --------------------------------------------------------------------------------------------------
# 1a. a Conv1D-like layer: weight stored (in, out), used by torch.addmm


class DenseInOut(nn.Module):
    """GPT-2's Conv1D pattern: weight stored (in, out)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out))  # std 1: far from any sensible init
        self.bias = nn.Parameter(torch.ones(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[:-1] + (self.weight.size(1),)
        return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(shape)


class DenseOutIn(nn.Module):
    """The same layer with torch's layout (out, in), through F.linear: the other outcome of the layout rule."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in))
        self.bias = nn.Parameter(torch.ones(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class DenseNet(nn.Module):
    def __init__(self, layer: type, untraceable: bool = False) -> None:
        super().__init__()
        self.fc1 = layer(32, 96)  # in != out
        self.fc2 = layer(96, 96)  # square: the shapes alone cannot tell (in, out) from (out, in)
        self.untraceable = untraceable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        guard(self, x)
        return self.fc2(self.fc1(x))


@pytest.mark.parametrize("mode", MODES)
def test_addmm_weight_stored_in_out_is_a_lasagne_dense_weight(mode):
    net = DenseNet(DenseInOut, untraceable=mode == "hooks")
    x = batch(4, 32)
    g = traced(net, x, mode)
    sem = describe(g)
    for name in ("fc1", "fc2"):
        info = sem.params[f"{name}.weight"]
        assert (info.role, info.layout, info.out_axis) == ("weight", "lasagne_dense", 1), name
        assert g.layer(name).kind == "linear"
        assert sem.params[f"{name}.bias"].role == "bias"
        assert sem.weight(g.layer(name)) == f"{name}.weight"
    assert sem.output_layer().name == "fc2"

    report = init_model(net, example_inputs=x, seed=0)
    assert not report.untouched
    # fan_in is the FIRST axis (in = 32), not 96: std 1/sqrt(32) = 0.177 vs 1/sqrt(96) = 0.102.
    # 3072 and 9216 draws: the sample std is within ~1.3% of the truth (1 SE), so 5% is > 3.5 SE and far from
    # the other candidate (-42%).
    assert report["fc1.weight"].fans.fan_in == 32
    assert sample_std(net.fc1.weight) == pytest.approx(1 / math.sqrt(32), rel=0.05)
    assert sample_std(net.fc2.weight) == pytest.approx(1 / math.sqrt(96), rel=0.05)
    assert torch.equal(net.fc1.bias, torch.zeros(96))
    with torch.no_grad():  # and the layer really preserves a unit-variance signal
        assert sample_std(net.fc1(batch(512, 32, seed=7))) == pytest.approx(1.0, rel=0.1)


def test_f_linear_weight_stored_out_in_keeps_torch_layout():
    net = DenseNet(DenseOutIn)
    x = batch(4, 32)
    sem = describe(traced(net, x, "fx"))
    for name in ("fc1", "fc2"):
        info = sem.params[f"{name}.weight"]
        assert (info.role, info.layout, info.out_axis) == ("weight", "torch", 0), name
    init_model(net, example_inputs=x, seed=0)
    # weight (96, 32): fan_in is the SECOND axis here
    assert sample_std(net.fc1.weight) == pytest.approx(1 / math.sqrt(32), rel=0.05)


# --------------------------------------------------------------------------------------------------
# 1b. an RMSNorm-like gain, and the same multiplier without the normalization


class RMSLike(nn.Module):
    def __init__(self, d: int, form: str) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((d,), 0.3))
        self.form = form

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.form == "plain":  # no normalization: a plain multiplier
            return self.weight * x
        if self.form == "weight_first":
            return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))  # Llama / T5 order


class NormNet(nn.Module):
    def __init__(self, form: str, untraceable: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 32)
        self.norm = RMSLike(32, form)
        self.fc2 = nn.Linear(32, 4)
        self.untraceable = untraceable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        guard(self, x)
        return self.fc2(F.relu(self.norm(self.fc1(x))))


def check_rms_gain(net: NormNet, mode: str) -> None:
    x = batch(4, 8)
    g = traced(net, x, mode)
    assert describe(g).params["norm.weight"].role == "norm_gain"
    assert g.layer("norm").kind == "norm"
    report = init_model(net, example_inputs=x, seed=0)
    assert report["norm.weight"].role == "norm" and report["norm.weight"].initializer == "Ones()"
    assert torch.equal(net.norm.weight, torch.ones(32))


# "weight_first" (`self.weight * x * rsqrt(...)` multiplies the gain into the raw x before the rsqrt) was
# classified 'scale' when this test was written (fixed since)
@pytest.mark.parametrize("form", ["normalized", "weight_first"])
@pytest.mark.parametrize("mode", MODES)
def test_rmsnorm_like_gain_is_a_norm_gain_set_to_ones(mode, form):
    check_rms_gain(NormNet(form, untraceable=mode == "hooks"), mode)


@pytest.mark.parametrize("mode", MODES)
def test_multiplier_without_normalization_is_a_scale_left_alone(mode):
    net = NormNet("plain", untraceable=mode == "hooks")
    x = batch(4, 8)
    g = traced(net, x, mode)
    assert describe(g).params["norm.weight"].role == "scale"
    assert g.layer("norm").kind == "other"
    report = init_model(net, example_inputs=x, seed=0)
    assert "norm.weight" not in [e.name for e in report.entries]
    (why,) = [u.reason for u in report.untouched if u.name == "norm.weight"]
    assert "'ones'" in why and "zeros" not in why  # a multiplier is never proposed zeros
    assert torch.equal(net.norm.weight, torch.full((32,), 0.3))


# --------------------------------------------------------------------------------------------------
# 1c. class token (concatenated) and position embedding (added)

WIDE = 1024


class TokenNet(nn.Module):
    def __init__(self, untraceable: bool = False) -> None:
        super().__init__()
        self.proj = nn.Linear(8, WIDE)
        self.cls = nn.Parameter(torch.zeros(1, 1, WIDE))
        self.pos = nn.Parameter(torch.zeros(1, 5, WIDE))
        self.shift = nn.Parameter(torch.ones(WIDE))  # 1-D and added: a bias, not a position embedding
        self.head = nn.Linear(WIDE, 3)
        self.untraceable = untraceable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        guard(self, x)
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), self.proj(x)], 1)
        t = t + self.pos
        return self.head(t[:, 0] + self.shift)


@pytest.mark.parametrize("mode", MODES)
def test_class_token_and_position_embedding(mode):
    net = TokenNet(untraceable=mode == "hooks")
    x = batch(2, 4, 8)
    sem = describe(traced(net, x, mode))
    assert (sem.params["cls"].role, sem.params["pos"].role, sem.params["shift"].role) == ("token", "position", "bias")
    report = init_model(net, example_inputs=x, seed=0)
    assert not report.untouched
    # N(0, 0.02): 1024 (cls) and 5120 (pos) draws give a sample std within 2.2% / 1% (1 SE) of 0.02, so 10% is
    # > 4.5 SE, and excludes the other candidates (the zeros they were built with, an N(0, 1) embedding)
    for name in ("cls", "pos"):
        p = getattr(net, name)
        assert sample_std(p) == pytest.approx(0.02, rel=0.10), name
        assert abs(float(p.detach().mean())) < 4 * 0.02 / math.sqrt(p.numel())
        assert "Normal(std=0.02)" in report[name].initializer
    assert torch.equal(net.shift, torch.zeros(WIDE))  # the bias rule: zeros


class PosAfterLayer(nn.Module):
    """A table added straight to a layer's output (no class token in between): SimpleViT-like."""

    def __init__(self, first: str, table: tuple[int, ...], untraceable: bool) -> None:
        super().__init__()
        self.embed = (nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16)) if first == "norm"
                      else nn.Sequential(nn.Linear(8, 16)))
        self.table = nn.Parameter(torch.zeros(table))
        self.head = nn.Linear(16, 2)
        self.untraceable = untraceable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        guard(self, x)
        return self.head((self.embed(x) + self.table).mean(1))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("first", ["linear", "norm"])
def test_table_added_to_a_layer_output_is_a_position_embedding(first, mode):
    # (1, 5, 16): two non-trivial dims, a position embedding whatever produced the activations (in hooks mode
    # the Linear / LayerNorm output is seen as such; it must not make the table a 'bias' / 'norm_bias')
    net = PosAfterLayer(first, (1, 5, 16), untraceable=mode == "hooks")
    x = batch(2, 5, 8)
    assert describe(traced(net, x, mode)).params["table"].role == "position"
    report = init_model(net, example_inputs=x, seed=0)
    assert "Normal(std=0.02)" in report["table"].initializer


@pytest.mark.parametrize("mode", MODES)
def test_vector_added_to_a_linear_output_is_a_bias(mode):
    # (1, 1, 16): one non-trivial dim, the other outcome of the rule
    net = PosAfterLayer("linear", (1, 1, 16), untraceable=mode == "hooks")
    x = batch(2, 5, 8)
    assert describe(traced(net, x, mode)).params["table"].role == "bias"
    assert init_model(net, example_inputs=x, seed=0)["table"].initializer == "Zeros()"


# --------------------------------------------------------------------------------------------------
# 1d. layer scale


class ScaledBlock(nn.Module):
    def __init__(self, d: int, residual: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.gamma = nn.Parameter(1e-6 * torch.ones(d))
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gamma * F.gelu(self.fc(x))
        return x + y if self.residual else y


class ScaledNet(nn.Module):
    def __init__(self, residual: bool, untraceable: bool = False) -> None:
        super().__init__()
        self.blocks = nn.Sequential(ScaledBlock(16, residual), ScaledBlock(16, residual))
        self.head = nn.Linear(16, 2)
        self.untraceable = untraceable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        guard(self, x)
        return self.head(self.blocks(x))


@pytest.mark.parametrize("mode", MODES)
def test_layer_scale_before_residual_sum_is_kept(mode):
    net = ScaledNet(residual=True, untraceable=mode == "hooks")
    x = batch(4, 16)
    g = traced(net, x, mode)
    assert len(g.branches) == 2
    sem = describe(g)
    assert [sem.params[f"blocks.{i}.gamma"].role for i in range(2)] == ["layer_scale"] * 2
    before = [b.gamma.detach().clone() for b in net.blocks]
    report = init_model(net, example_inputs=x, seed=0)
    assert not report.untouched
    for i, block in enumerate(net.blocks):
        assert torch.equal(block.gamma, before[i])  # bit-identical: 1e-6 kept
        entry = report[f"blocks.{i}.gamma"]
        assert entry.role == "layer_scale" and entry.initializer.startswith("kept")


@pytest.mark.parametrize("mode", MODES)
def test_multiplier_without_residual_sum_is_not_layer_scale(mode):
    net = ScaledNet(residual=False, untraceable=mode == "hooks")
    x = batch(4, 16)
    g = traced(net, x, mode)
    assert not g.branches
    sem = describe(g)
    assert [sem.params[f"blocks.{i}.gamma"].role for i in range(2)] == ["scale"] * 2
    report = init_model(net, example_inputs=x, seed=0)
    assert {u.name for u in report.untouched} == {"blocks.0.gamma", "blocks.1.gamma"}


# --------------------------------------------------------------------------------------------------
# 2. tied weights

V, D = 512, 64


class TinyLM(nn.Module):
    def __init__(self, tied: bool = True) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, V, bias=False)
        if tied:
            self.head.weight = self.emb.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.emb(ids)))


def tiny_lm(tied: bool = True) -> TinyLM:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return TinyLM(tied)


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.randint(0, V, (8, 32), generator=torch.Generator().manual_seed(1))


def logits_std(model: nn.Module, ids: torch.Tensor) -> float:
    with torch.no_grad():
        return sample_std(model(ids))


def test_tied_weight_is_one_parameter_with_two_uses(ids):
    sem = describe(trace(tiny_lm(), ids))
    assert "head.weight" not in sem.params  # one ParamInfo, under the first name
    info = sem.params["emb.weight"]
    assert info.shared and sorted(info.names) == ["emb.weight", "head.weight"]
    assert sorted((u.role, u.layer.name, u.output) for u in info.uses) == [("embedding", "emb", False),
                                                                           ("weight", "head", True)]
    assert info.role == "weight" and info.node.name == "head"  # the output projection decides
    # the other outcome of `shared`: the same net untied
    sem_u = describe(trace(tiny_lm(tied=False), ids))
    assert not sem_u.params["emb.weight"].shared and not sem_u.params["head.weight"].shared
    assert sem_u.params["emb.weight"].role == "embedding"


def test_init_model_on_tied_lm_gives_logits_of_order_one(ids):
    model = tiny_lm()
    # the embedding's own N(0, 1) init, read back by the head: logits of std ~ sqrt(d) = 8
    assert logits_std(model, ids) == pytest.approx(math.sqrt(D), rel=0.25)
    result = initlab.probe(model, ids)
    assert "output_scale" in [v.code for v in result.verdicts]

    report = init_model(model, example_inputs=ids, seed=0)
    assert [e.name for e in report.entries].count("emb.weight") == 1
    assert "head.weight" not in [e.name for e in report.entries] and not report.untouched
    entry = report["emb.weight"]
    assert set(entry.uses.split("; ")) == {"embedding in emb", "weight (output) in head"}
    assert entry.initializer == "He(gain=1.0)" and entry.fans.fan_in == D  # the output projection's rule
    assert model.head.weight is model.emb.weight
    # He(gain=1) over fan_in d: 32768 draws, 1 SE = 0.4%, so 5% is generous
    assert sample_std(model.emb.weight) == pytest.approx(1 / math.sqrt(D), rel=0.05)
    assert 0.5 <= logits_std(model, ids) <= 2.0
    assert "output_scale" not in [v.code for v in initlab.probe(model, ids).verdicts]

    untied = tiny_lm(tied=False)  # untied, the embedding keeps the documented N(0, 1)
    init_model(untied, example_inputs=ids, seed=0)
    assert sample_std(untied.emb.weight) == pytest.approx(1.0, rel=0.05)
    assert sample_std(untied.head.weight) == pytest.approx(1 / math.sqrt(D), rel=0.05)


@pytest.fixture
def gpt2():
    return realmodels.build("gpt2")


def test_gpt2_conv1d_fans_and_logits(gpt2):
    from transformers.pytorch_utils import Conv1D

    model = gpt2.model
    wte = model.transformer.wte.weight
    assert model.lm_head.weight is wte
    with torch.no_grad():
        nn.init.normal_(wte, generator=torch.Generator().manual_seed(0))  # the embedding's N(0, 1), read by the head
        before = sample_std(gpt2.run())
    assert before > 4
    assert "output_scale" in [v.code for v in initlab.probe(model, gpt2.inputs).verdicts]

    report = init_model(model, example_inputs=gpt2.inputs, seed=0)
    graph = report.graph
    convs = {n: m for n, m in model.named_modules() if isinstance(m, Conv1D)}
    assert len(convs) == 8
    for name, module in convs.items():
        w = module.weight
        entry = report[f"{name}.weight"]
        assert entry.fans.fan_in == w.shape[0], name
        act = graph.layer(name).act_in
        gain = 1.0 if act is None else variance_gain(act)  # > 1 only for the MLP's c_proj (after GELU)
        # 4096 to 16384 draws: 1 SE <= 1.1%; 5% separates fan_in = shape[0] from shape[1] wherever they differ
        assert sample_std(w) == pytest.approx(gain / math.sqrt(w.shape[0]), rel=0.05), name
    assert "lm_head" in report["transformer.wte.weight"].uses
    with torch.no_grad():
        assert 0.5 <= sample_std(gpt2.run()) <= 2.0
    assert "output_scale" not in [v.code for v in initlab.probe(model, gpt2.inputs).verdicts]


def two_linear(in_std: float, out_std: float) -> nn.Sequential:
    """Linear(64, 64) -> Linear(64, 10): on N(0, 1) inputs the first output has std ~in_std, the logits
    ~in_std * out_std."""
    net = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 10))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        nn.init.normal_(net[0].weight, std=in_std / 8, generator=gen)
        nn.init.normal_(net[1].weight, std=out_std / 8, generator=gen)
        nn.init.zeros_(net[0].bias)
        nn.init.zeros_(net[1].bias)
    return net


@pytest.mark.parametrize("in_std, out_std, thresholds, flagged", [
    (1, 8, None, True),  # logits ~7.8 from an input of std ~1: the output layer's weights
    (1, 8, {"output": 16}, False),  # the same, under a looser Thresholds.output
    (1, 3, None, False),  # logits ~2.9 <= 4
    (8, 8, None, False),  # input std ~8 > 4 already: the depth rules speak, not output_scale
    (0.1, 80, None, False),  # input std ~0.1 < 1/4
])
def test_output_scale_verdict(in_std, out_std, thresholds, flagged):
    result = initlab.probe(two_linear(in_std, out_std), batch(256, 64), thresholds=thresholds)
    found = [v for v in result.verdicts if v.code == "output_scale"]
    assert bool(found) == flagged
    if flagged:
        (v,) = found
        assert v.layer == "1" and v.layers == ("1",)
        assert v.value == pytest.approx(result["1"].act_std / result["0"].act_std, rel=1e-9)


# --------------------------------------------------------------------------------------------------
# 3. LSUV leaves a tied weight alone


def test_lsuv_leaves_a_tied_head_alone_and_rescales_an_untied_one(ids):
    model = tiny_lm()
    emb = model.emb.weight.detach().clone()
    report = initlab.lsuv(model, ids, seed=0)
    record = report.layer("head")
    assert record.status == "shared" and record.scale == 1.0 and report.visited == []
    assert torch.equal(model.emb.weight, emb)
    assert any("shared" in n and "head" in n for n in report.notes)

    untied = tiny_lm(tied=False)
    head = untied.head.weight.detach().clone()
    emb = untied.emb.weight.detach().clone()
    report = initlab.lsuv(untied, ids, seed=0)
    assert report.layer("head").status == "converged" and report.visited == ["head"]
    assert not torch.equal(untied.head.weight, head)
    assert torch.equal(untied.emb.weight, emb)
    assert logits_std(untied, ids) == pytest.approx(1.0, rel=0.02)
    assert not any("shared" in n for n in report.notes)


# --------------------------------------------------------------------------------------------------
# 4. gates


def gauss(fn) -> float:
    """E[fn(z)], z ~ N(0, 1), by 120-point Gauss-Hermite (probabilists') quadrature: independent of initlab's."""
    z, w = np.polynomial.hermite_e.hermegauss(120)
    return float((w * fn(z)).sum() / math.sqrt(2 * math.pi))


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_gate_second_moment_is_product_of_factors():
    g = gate([resolve_activation("silu"), resolve_activation(None)])
    assert g.is_gate and not resolve_activation("silu").is_gate
    silu2 = gauss(lambda z: (z * sigmoid(z)) ** 2)  # E[z^2] = 1 for the linear factor
    # both are quadratures of a smooth integrand: they agree to ~1e-12; 1e-6 leaves room for float rounding
    assert g.second_moment() == pytest.approx(silu2, rel=1e-6)
    g2 = gate([resolve_activation("silu"), resolve_activation("sigmoid")])
    assert g2.second_moment() == pytest.approx(silu2 * gauss(lambda z: sigmoid(z) ** 2), rel=1e-6)


class GLU(nn.Module):
    def __init__(self, d: int, h: int, gated: bool = True) -> None:
        super().__init__()
        self.up = nn.Linear(d, h)
        self.gate = nn.Linear(d, h)
        self.down = nn.Linear(h, d)
        self.gated = gated

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.gated:
            return self.down(torch.sigmoid(self.up(x)))
        return self.down(self.up(x) * torch.sigmoid(self.gate(x)))


def test_glu_stack_down_gain_and_output_scale():
    d, h = 128, 256
    net = nn.Sequential(*[GLU(d, h) for _ in range(6)])
    g = trace(net)
    act = g.layer("3.down").act_in
    assert act.is_gate and str(act) == "gate(linear*sigmoid)"
    sig2 = gauss(lambda z: sigmoid(z) ** 2)  # 0.2934
    report = init_model(net, seed=0)
    assert variance_gain(act) == pytest.approx(1 / math.sqrt(sig2), rel=1e-6)
    for i in range(6):
        # He with gain 1/sqrt(E[sigmoid(z)^2]) over fan_in h (the up branch is linear: E[z^2] = 1)
        assert report[f"{i}.down.weight"].expected_std == pytest.approx(1 / math.sqrt(sig2 * h), rel=1e-6)
        assert report[f"{i}.up.weight"].expected_std == pytest.approx(1 / math.sqrt(d), rel=1e-6)
    x = batch(512, d)
    with torch.no_grad():
        out = sample_std(net(x))
    assert 0.5 <= out <= 2.0
    # the mutant: the gate ignored (gain 1 on the down projections): each block shrinks the signal by
    # sqrt(E[sigmoid^2]) = 0.54, x0.025 after 6 blocks
    with torch.no_grad():
        gen = torch.Generator().manual_seed(3)
        for block in net:
            nn.init.normal_(block.down.weight, std=1 / math.sqrt(h), generator=gen)
        mutant = sample_std(net(x))
    assert mutant < out / 5

    # not a gate: down(sigmoid(up(x))) reads a plain sigmoid
    plain = trace(nn.Sequential(GLU(d, h, gated=False)))
    assert not plain.layer("0.down").act_in.is_gate and str(plain.layer("0.down").act_in) == "sigmoid"


# --------------------------------------------------------------------------------------------------
# 5. the length-map warning


def mlp(act: type, depth: int, d: int = 16) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(d, d), act()]
    return nn.Sequential(*layers[:-1])


class PreLN(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


def length_warnings(net: nn.Module) -> list[str]:
    report = init_model(net, seed=0)
    found = [w for w in report.warnings if "length map" in w]
    assert found == _activation_warnings(report.graph)
    return found


@pytest.mark.parametrize("depth", [3, 5])  # 3: the smallest stack where a GELU-fed layer feeds another one
def test_length_map_warning_for_a_deep_gelu_mlp(depth):
    (w,) = length_warnings(mlp(nn.GELU, depth))
    assert w.startswith("gelu:") and "slope 1.144" in w and f"{depth - 1} layer(s)" in w


def test_length_map_warning_lists_only_layers_not_fed_by_a_norm():
    # "3" reads GELU(LayerNorm(.)): re-standardized samples, no drift; "5" reads GELU of "3": it compounds
    net = nn.Sequential(nn.Linear(16, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 16), nn.GELU(),
                        nn.Linear(16, 16))
    (w,) = length_warnings(net)
    assert "(1 layer(s) after this activation: 5)" in w


@pytest.mark.parametrize("net", [
    pytest.param(lambda: nn.Sequential(*[PreLN(16) for _ in range(4)]), id="pre_ln_blocks"),
    pytest.param(lambda: mlp(nn.GELU, 2), id="one_hidden_layer"),
    # the normalization between the layers: a norm-fed activation does not compound
    pytest.param(lambda: nn.Sequential(*[m for _ in range(5) for m in (nn.Linear(16, 16), nn.LayerNorm(16),
                                                                       nn.GELU())]), id="post_norm"),
    pytest.param(lambda: mlp(nn.ReLU, 5), id="relu_slope_1"),  # slope 1: at the threshold, not above
])
def test_no_length_map_warning(net):
    assert length_warnings(net()) == []


# --------------------------------------------------------------------------------------------------
# 6. BatchNorm in eval mode does not normalize


def test_normalizes():
    bn = nn.BatchNorm2d(4)
    assert normalizes(bn) and normalizes(bn, train=True) and not normalizes(bn, train=False)
    bn.eval()
    assert not normalizes(bn) and normalizes(bn, train=True)
    untracked = nn.BatchNorm2d(4, track_running_stats=False).eval()
    assert normalizes(untracked) and normalizes(untracked, train=False)  # batch statistics even in eval
    assert normalizes(nn.LayerNorm(4)) and normalizes(nn.LayerNorm(4).eval(), train=False)


def small_conv_bn() -> nn.Sequential:
    layers: list[nn.Module] = []
    c = 3
    for _ in range(6):
        layers += [nn.Conv2d(c, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()]
        c = 16
    net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(16 * 8 * 8, 10))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, std=0.01, generator=gen)
                nn.init.zeros_(m.bias)
    return net


def test_probe_reads_through_eval_batchnorm():
    net = small_conv_bn().eval()  # fresh running stats 0 / 1: the BN applies the identity
    x = batch(32, 3, 8, 8)
    convs = [str(i) for i in range(0, 18, 3)]
    result = initlab.probe(net, x)
    assert not net.training
    codes = {v.code: v for v in result.verdicts}
    assert "vanishing_activations" in codes
    assert set(codes["vanishing_activations"].layers) >= set(convs[1:])
    assert not any(result[c].normalized for c in convs)

    result = initlab.probe(net, x, train=True)
    assert not net.training  # the mode is restored
    assert all(result[c].normalized for c in convs)
    assert not any(v.code == "vanishing_activations" and set(v.layers) & set(convs) for v in result.verdicts)


# --------------------------------------------------------------------------------------------------
# 7. theory.propagate: nn.Identity, zero padding


def seeded_linear_stack(*mods: nn.Module) -> nn.Sequential:
    net = nn.Sequential(*mods)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=1 / math.sqrt(m.in_features), generator=gen)
                nn.init.zeros_(m.bias)
    return net


class Roll(nn.Module):
    """Parameter-free and not elementwise: no variance rule (a gap)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.roll(1, -1)


def test_propagate_through_identity_modules():
    plain = seeded_linear_stack(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    ident = seeded_linear_stack(nn.Linear(8, 8), nn.Identity(), nn.ReLU(), nn.Identity(), nn.Linear(8, 4),
                                nn.Identity())
    assert [op.kind for op in trace(ident).ops if isinstance(op.module, nn.Identity)] == ["identity"] * 3
    p, q = propagate(plain), propagate(ident)
    assert q.gaps == [] and all(lp.reliable for lp in q.layers)
    assert q.layer("0").forward_var == pytest.approx(p.layer("0").forward_var, rel=1e-12)
    assert q.layer("4").forward_var == pytest.approx(p.layer("2").forward_var, rel=1e-12)
    assert q.layer("0").grad_var == pytest.approx(p.layer("0").grad_var, rel=1e-12)
    # the other outcome: a parameter-free module without a rule is a gap
    rolled = propagate(seeded_linear_stack(nn.Linear(8, 8), Roll(), nn.ReLU(), nn.Linear(8, 4)))
    assert rolled.gaps and not rolled.layer("3").reliable


def test_padding_classes_3x3_pad1_on_4x4():
    conv = nn.Conv2d(1, 1, 3, padding=1)
    classes = _padding_classes(conv, (1, 1, 4, 4))
    assert sum(share for share, _ in classes) == pytest.approx(1.0, abs=1e-12)
    # brute force: which of the 9 taps of each output position land inside the 4x4 input
    masks = Counter(tuple(float(0 <= i + di < 4 and 0 <= j + dj < 4) for di in (-1, 0, 1) for dj in (-1, 0, 1))
                    for i in range(4) for j in range(4))
    assert {tuple(mask): share * 16 for share, mask in classes} == pytest.approx(dict(masks), abs=1e-9)
    inside = sum(sum(mask) * count for mask, count in masks.items())
    assert inside == 100  # 4 corners x 4 + 8 edges x 6 + 4 interior x 9
    assert sum(share * mask.sum() for share, mask in classes) == pytest.approx(inside / 16, abs=1e-12)
    # the other outcomes: no padding -> no classes; padding with an unknown input size -> None
    assert _padding_classes(nn.Conv2d(1, 1, 3), (1, 1, 4, 4)) == []
    assert _padding_classes(conv, None) is None


def test_propagate_models_zero_padding_with_example_inputs():
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in (net[0], net[2]):
            nn.init.normal_(m.weight, std=math.sqrt(2 / (m.in_channels * 9)), generator=gen)
            nn.init.zeros_(m.bias)
    x = batch(256, 3, 4, 4)
    with torch.no_grad():
        h0 = net[0](x)
        h2 = net[2](net[1](h0))
    modelled = propagate(net, example_inputs=x[:2])
    ignored = propagate(net)
    assert any("zero padding modelled" in n for n in modelled.notes)
    assert any("padding ignored" in n for n in ignored.notes)
    assert "zero padding modelled" in modelled.layer("0").note
    # 10%: 256 x 16 positions per channel give the measured std to ~1%; the first conv's prediction is exact in
    # expectation (its own weights, Gaussian inputs), the second's is mean-field (units of the first conv taken
    # as uncorrelated), a few % off here. Ignoring the padding overestimates by sqrt(9 / 6.25) = 1.2 on a 4x4
    # map (100 of 144 taps inside), so 10% separates the two.
    for name, h in (("0", h0), ("2", h2)):
        measured = sample_std(h)
        assert modelled.layer(name).forward_std == pytest.approx(measured, rel=0.10), name
        assert ignored.layer(name).forward_std > 1.15 * measured, name


# --------------------------------------------------------------------------------------------------
# 8. tracing robustness


class PickColumn(nn.Module):
    """Parameter-free, childless, not elementwise: indexes column 7, so it raises on any narrower input
    (tracing's elementwise probe is a 2 x 6 tensor)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x[:, 7:8].sign() + x[:, 7].mean()


class Swish(nn.Module):
    """Parameter-free and elementwise: a custom activation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class PickNet(nn.Module):
    def __init__(self, untraceable: bool) -> None:
        super().__init__()
        self.fc0 = nn.Linear(8, 8)
        self.pick = PickColumn()
        self.fc1 = nn.Linear(8, 16)
        self.act = Swish()
        self.fc2 = nn.Linear(16, 16)
        self.fc3 = nn.Linear(16, 2)
        self.untraceable = untraceable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        guard(self, x)
        return self.fc3(F.relu(self.fc2(self.act(self.fc1(self.pick(self.fc0(x)))))))


@pytest.mark.parametrize("mode", MODES)
def test_trace_survives_a_module_that_raises_on_the_probe(mode):
    net = PickNet(untraceable=mode == "hooks")
    calls = {"pick": 0, "act": 0}
    net.pick.register_forward_hook(lambda m, a, o: calls.__setitem__("pick", calls["pick"] + 1))
    net.act.register_forward_hook(lambda m, a, o: calls.__setitem__("act", calls["act"] + 1))
    x = batch(3, 8)
    g = traced(net, x, mode)
    assert [layer.name for layer in g.layers] == ["fc0", "fc1", "fc2", "fc3"]
    assert str(g.layer("fc2").act_in) == "custom:Swish" and str(g.layer("fc3").act_in) == "relu"
    kinds = {op.name: op.kind for op in g.ops if op.module is not None}
    assert kinds["pick"] == "other" and kinds["act"] == "activation"
    # one real forward pass in hooks mode, none in fx mode: the elementwise probes never reach the hooks
    # (init_model below runs one in both: it checks its example_inputs)
    real = 1 if mode == "hooks" else 0
    assert calls == {"pick": real, "act": real}
    net(x)
    assert calls == {"pick": real + 1, "act": real + 1}
    report = init_model(net, example_inputs=x, seed=0)
    assert not report.untouched and len(report.entries) == 8
    assert report["fc3.weight"].initializer == f"He(gain={math.sqrt(2)!r})"
    assert calls["pick"] == real + 2



# -- a classifier after an average pool of activations ----------------------------------------------------


def _head(pool: nn.Module, act: nn.Module | None = None, pool_first: bool = False) -> nn.Sequential:
    act = act or nn.ReLU()
    body = [pool, act] if pool_first else [act, pool]
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), *body, nn.Flatten(), nn.Linear(32 * (1 if isinstance(
        pool, nn.AdaptiveAvgPool2d) else 16), 10))


@pytest.mark.parametrize("pool, n, name", [
    (nn.AdaptiveAvgPool2d(1), math.inf, "avgpool(relu)"),
    (nn.AvgPool2d(2), 4.0, "avgpool4(relu)"),
])
def test_an_average_pool_after_the_activation_sets_the_heads_gain(pool, n, name):
    """The pool keeps the mean of relu(z) and shrinks its spread by 1 (correlated positions) to 1/n
    (independent): the head's gain uses the geometric mean of the two second moments."""
    net = _head(pool)
    head = trace(net).layer("4")
    assert str(head.act_in) == name
    mu2, m2 = 1 / (2 * math.pi), 0.5  # E[relu(z)]^2 and E[relu(z)^2]
    floor = mu2 + (0 if math.isinf(n) else (m2 - mu2) / n)
    assert variance_gain(head.act_in) == pytest.approx((floor * m2) ** -0.25, rel=1e-3)


@pytest.mark.parametrize("net", [
    _head(nn.AdaptiveMaxPool2d(1)),                      # a max pool: not an average
    _head(nn.AdaptiveAvgPool2d(1), pool_first=True),     # pool, then activation: acts on pre-activations
    _head(nn.AdaptiveAvgPool2d(1), act=nn.Tanh()),       # zero mean: a global pool's floor would be 0
], ids=["max", "pool-first", "zero-mean"])
def test_other_pools_keep_the_activations_gain(net):
    head = trace(net).layer("4")
    assert not str(head.act_in).startswith("avgpool")


def test_a_pooled_relu_head_lands_near_unit_output():
    """ResNet's head (ReLU features, global average pool, linear): with the plain ReLU gain the logits come
    out at ~0.55 (the pool drops the spread of relu(z) but keeps its mean); with the pooled gain they are
    within the documented x0.75..x1.33 band. 8x8 features, 6 seeds; the band is for the expectation,
    so the test allows the sampling spread of 10 logits (chi with ~10 dof: +-25 %)."""
    x = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    outs, plain = [], []
    for seed in range(6):
        net = _head(nn.AdaptiveAvgPool2d(1))
        init_model(net, seed=seed)
        with torch.no_grad():
            feats = net[:4](x)
            outs.append(float(net[4](feats).pow(2).mean().sqrt()))
            w = torch.randn(10, 32, generator=torch.Generator().manual_seed(seed)) * math.sqrt(2 / 32)
            plain.append(float((feats @ w.T).pow(2).mean().sqrt()))
    assert 0.75 * 0.75 <= float(np.mean(outs)) <= 1.33 * 1.25, (outs, plain)
    assert float(np.mean(plain)) < 0.5, plain  # the control: the plain ReLU gain errs low (0.41 here)


# -- the meta device: no values to read ------------------------------------------------------------------


@pytest.mark.parametrize("form", ["normalized", "weight_first", "plain"])
def test_meta_norm_gains_are_read_from_how_the_tensor_was_made(form):
    """Built on meta, the RMSNorm written out (either order) is still a norm gain, and a plain multiplier is
    still a scale: the meta route gives the plan of the in-place route."""
    x = batch(4, 8)
    here = NormNet(form, untraceable=True)
    with torch.device("meta"):
        there = NormNet(form, untraceable=True)
    role = describe(trace(there, x)).params["norm.weight"].role
    assert role == describe(trace(here, x)).params["norm.weight"].role
    assert role == ("scale" if form == "plain" else "norm_gain")


class MaskCheck(nn.Module):
    """A data-dependent branch, as transformers' mask helpers have: `if cond:` on a tensor."""

    def __init__(self, integer: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.integer = integer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.integer:
            return self.fc(x)[:, : int((x > 0).sum().item())]  # a size from the values: not decidable on meta
        return self.fc(x) if bool((x == x).all()) else x


def test_meta_boolean_conditions_take_the_usual_branch_and_integer_ones_fail_clearly():
    with torch.device("meta"):
        net, bad = MaskCheck(), MaskCheck(integer=True)
    report = init_model(net, example_inputs=batch(2, 8), seed=0, device="cpu")
    assert report["fc.weight"].role == "weight" and not net.fc.weight.is_meta
    with pytest.raises(initlab.graph.InputsError, match="example_inputs"):
        init_model(bad, example_inputs=batch(2, 8), seed=0, device="cpu")
    assert bad.fc.weight.is_meta  # left as it was
