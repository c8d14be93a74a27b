"""initlab.trace: layers in execution order, activations around them, residual branches from dataflow."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import initlab
from initlab.gains import resolve_activation
from initlab.graph import LAYER_KINDS, OP_KINDS, Graph, trace


def names(graph: Graph) -> list[str]:
    return [n.name for n in graph.layers]


def acts(graph: Graph) -> list[tuple[str | None, str]]:
    return [(None if n.act_in is None else str(n.act_in), str(n.act_out)) for n in graph.layers]


class Functional(nn.Module):
    """Activations as functions and tensor methods, modules registered in a different order than called."""

    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Linear(8, 2)
        self.d = nn.Linear(8, 8)
        self.c = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.a = nn.Linear(4, 8)

    def forward(self, x):
        x = F.relu(self.a(x))
        x = torch.tanh(self.b(x))
        x = self.c(x).sigmoid()
        x = F.leaky_relu(F.gelu(self.d(x)), 0.2)
        return self.out(x)


class Branchy(Functional):
    """Same as Functional but with Python control flow, which torch.fx cannot trace."""

    def forward(self, x):
        if x.sum() > -1e9:  # data-dependent: forces the hooks fallback
            return super().forward(x)
        return x


def test_layers_in_execution_order_with_norm_between_layer_and_activation():
    g = trace(nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 2)))
    assert g.method == "fx" and g.fallback_reason is None
    assert names(g) == ["0", "1", "4"]
    assert [n.kind for n in g.layers] == ["linear", "norm", "linear"]
    # Linear -> BN -> ReLU: the ReLU is the Linear's act_out (looked through the norm); the next layer's act_in
    assert acts(g) == [(None, "relu"), ("linear", "relu"), ("relu", "linear")]
    assert [n.inputs for n in g.layers] == [[], ["0"], ["1"]]
    assert g.layer("4").index == 2 and all(k in LAYER_KINDS for k in (n.kind for n in g.layers))
    with pytest.raises(KeyError, match="no parametrized layer named 'nope'"):
        g.layer("nope")


@pytest.mark.parametrize("model_cls, method", [(Functional, "fx"), (Branchy, "hooks")])
def test_functional_activations_recognised(model_cls, method):
    g = trace(model_cls(), torch.randn(3, 4))
    assert g.method == method
    assert names(g) == ["a", "b", "c", "d", "out"]  # execution order, not registration order
    got = acts(g)
    assert got[:4] == [(None, "relu"), ("relu", "tanh"), ("tanh", "sigmoid"), ("sigmoid", got[3][1])]
    # gelu then leaky_relu(0.2) compose into one activation whose fn replays both
    composed = g.layer("out").act_in
    assert composed.name.startswith("custom:") and "gelu" in composed.name and "leaky_relu(0.2)" in composed.name
    z = torch.linspace(-3, 3, 13, dtype=torch.float64)
    assert torch.allclose(composed(z), F.leaky_relu(F.gelu(z), 0.2))
    if method == "hooks":
        assert "torch.fx could not trace" in g.fallback_reason


def test_leaky_relu_parameter_and_method_calls():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x):
            return self.c(self.b(F.leaky_relu(self.a(x), negative_slope=0.3)).relu())

    g = trace(M())
    assert g.layer("b").act_in == resolve_activation("leaky_relu", 0.3)
    assert str(g.layer("c").act_in) == "relu"


def test_custom_activation_module_and_composite_expression():
    class Swishy(nn.Module):  # unknown module: recognised because it acts elementwise
        def forward(self, x):
            return x * torch.sigmoid(1.5 * x)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c, self.act = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 3), Swishy()

        def forward(self, x):
            h = self.a(x)
            return self.c(self.act(self.b(h * torch.sigmoid(h))))  # silu written out

    g = trace(M())
    z = torch.linspace(-4, 4, 17, dtype=torch.float64)
    silu = g.layer("b").act_in
    assert silu.name.startswith("custom:") and torch.allclose(silu(z), F.silu(z))
    swishy = g.layer("c").act_in
    assert swishy.name == "custom:Swishy" and torch.allclose(swishy(z), z * torch.sigmoid(1.5 * z))
    # a parameter-free module that is NOT elementwise (softmax) is not taken for an activation
    g2 = trace(nn.Sequential(nn.Linear(3, 3), nn.Softmax(-1), nn.Linear(3, 3)))
    assert g2.layers[1].act_in.is_linear


class Block(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        # deliberately misleading names: the tracer must find the branch from the dataflow
        self.shortcut = nn.Conv2d(cin, cout, 3, padding=1, stride=1 if cin == cout else 2, bias=False)
        self.downsample = nn.BatchNorm2d(cout)
        self.skip = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.identity = nn.BatchNorm2d(cout)
        self.proj = None if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = self.identity(self.skip(F.relu(self.downsample(self.shortcut(x)))))
        return F.relu(h + (x if self.proj is None else self.proj(x)))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.residual = nn.BatchNorm2d(8)
        self.b1, self.b2 = Block(8, 8), Block(8, 16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.residual(self.stem(x)))
        x = self.b2(self.b1(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def test_resnet_branches_found_from_dataflow_not_names():
    g = trace(ResNet())
    assert g.method == "fx" and len(g.branches) == 2
    b1, b2 = g.branches
    assert b1.layers == ["b1.shortcut", "b1.downsample", "b1.skip", "b1.identity"] and b1.last == "b1.identity"
    assert b1.shortcut == []
    assert b2.last == "b2.identity" and b2.shortcut == ["b2.proj.0", "b2.proj.1"]
    assert g.ops[b1.add].kind == "add"
    assert g.layer("b1.identity").last_in_branch and not g.layer("b1.skip").last_in_branch
    assert g.layer("b1.skip").branch == 0 and g.layer("b2.shortcut").branch == 1
    assert g.layer("residual").branch is None and g.layer("fc").branch is None and g.layer("b2.proj.0").branch is None
    # the ReLU after the addition is the next block's act_in; after BN -> ReLU it is the act_out of the conv
    assert str(g.layer("b2.shortcut").act_in) == "relu" and str(g.layer("b1.shortcut").act_out) == "relu"
    assert str(g.layer("b1.identity").act_out) == "linear"  # feeds the addition, not an activation
    assert set(g.layer("b2.shortcut").inputs) == {"b1.identity", "residual"}  # branch output + identity skip
    assert set(g.layer("fc").inputs) == {"b2.identity", "b2.proj.1"}


def test_transformer_encoder_falls_back_to_hooks_and_keeps_dataflow():
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    model.train()
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(0))
    rng_before = torch.random.get_rng_state()
    g = trace(model, x)
    assert torch.equal(rng_before, torch.random.get_rng_state()) and model.training
    assert g.method == "hooks" and "torch.fx could not trace" in g.fallback_reason
    assert [n.kind for n in g.layers[:5]] == ["attention", "norm", "linear", "linear", "norm"]
    assert [(br.layers, br.last) for br in g.branches[:2]] == [
        (["layers.0.self_attn"], "layers.0.self_attn"),
        (["layers.0.linear1", "layers.0.linear2"], "layers.0.linear2"),
    ]
    assert len(g.branches) == 4
    assert str(g.layer("layers.0.linear2").act_in) == "relu"  # F.relu, a function, seen in hooks mode
    assert str(g.layer("layers.1.self_attn").act_in) == "linear"  # fed by a LayerNorm
    assert g.layer("layers.0.self_attn").params == [
        "layers.0.self_attn.in_proj_weight", "layers.0.self_attn.in_proj_bias",
        "layers.0.self_attn.out_proj.weight", "layers.0.self_attn.out_proj.bias"]
    assert all(op.kind in OP_KINDS for op in g.ops)
    assert all(j < op.index for op in g.ops for j in op.inputs)


def test_without_example_inputs_falls_back_to_registration_order():
    model = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 1,
                                  enable_nested_tensor=False)
    g = trace(model)
    assert g.method == "modules" and g.branches == []
    assert "registration order" in g.fallback_reason
    assert names(g) == ["layers.0.self_attn", "layers.0.linear1", "layers.0.linear2", "layers.0.norm1",
                        "layers.0.norm2"]


def test_hooks_trace_leaves_model_exactly_as_it_was():
    model = Branchy()
    bn_model = nn.Sequential(model, nn.BatchNorm1d(2))
    bn_model.train()
    state = {k: v.clone() for k, v in bn_model.state_dict().items()}
    trace(bn_model, torch.randn(8, 4) * 5 + 3)
    assert bn_model.training and all(m.training for m in bn_model.modules())
    assert all(torch.equal(state[k], v) for k, v in bn_model.state_dict().items())  # running stats untouched
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in bn_model.modules())


def test_meta_device_model_is_traced_without_allocating():
    with torch.device("meta"):
        model = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, norm_first=True,
                                                                 activation="gelu"), 2, enable_nested_tensor=False)
    g = trace(model, torch.randn(1, 3, 16))  # a CPU input is moved to meta
    assert g.method == "hooks" and all(p.is_meta for p in model.parameters())
    assert [br.layers for br in g.branches[:2]] == [
        ["layers.0.norm1", "layers.0.self_attn"], ["layers.0.norm2", "layers.0.linear1", "layers.0.linear2"]]
    assert str(g.layer("layers.0.linear2").act_in) == "gelu"
    assert g.layer("layers.0.norm1").act_in is None  # pre-norm: fed by the data


def test_rnn_embedding_and_parameter_use_outside_leaves():
    class Gate(nn.Module):  # owns a parameter and a child: traced through, the parameter's use is seen
        def __init__(self):
            super().__init__()
            self.alpha = nn.Parameter(torch.zeros(()))
            self.fc = nn.Linear(16, 16)

        def forward(self, x):
            return x + self.alpha * torch.tanh(self.fc(x))

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.lstm = nn.Embedding(10, 8), nn.LSTM(8, 16, batch_first=True)
            self.gate, self.head = Gate(), nn.Linear(16, 3)

        def forward(self, x):
            out, _ = self.lstm(self.emb(x))
            return self.head(self.gate(out[:, -1]))

    g = trace(M())
    assert [(n.name, n.kind) for n in g.layers] == [("emb", "embedding"), ("lstm", "rnn"), ("gate.fc", "linear"),
                                                    ("gate", "other"), ("head", "linear")]
    assert g.layer("gate").params == ["gate.alpha"] and g.layer("lstm").params[0] == "lstm.weight_ih_l0"
    assert [(br.layers, br.last) for br in g.branches] == [(["gate.fc", "gate"], "gate")]
    assert str(g.layer("gate").act_in) == "tanh"


def test_module_called_twice_appears_once_and_prelu_is_an_activation():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.PReLU(), shared, nn.PReLU(init=0.1), nn.Linear(4, 1))
    g = trace(model)
    assert names(g) == ["0", "1", "3", "4"]  # "2" is the same module as "0"
    assert g.layers[1].kind == "other" and g.ops[g.layers[1].op].kind == "activation"
    assert str(g.layer("0").act_out) == "prelu(0.25)" and str(g.layer("4").act_in) == "prelu(0.1)"


def test_table_and_lazy_export():
    g = initlab.trace(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 1)))
    assert isinstance(g, initlab.Graph)
    text = g.table()
    assert "Graph traced by fx: 2 layers" in text and "Conv2d" in text and "relu" in text
    assert len(g) == 2 and [n.name for n in g] == ["0", "3"]


def test_bad_input():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        trace("not a model")
