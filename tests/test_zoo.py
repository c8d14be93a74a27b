import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab import zoo


def test_mlp_layout_depth_counts_hidden_layers():
    net = zoo.mlp(3, 16, "tanh", in_features=5, out_features=4)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert len(linears) == 4
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 16), (16, 16), (16, 16), (16, 4)]
    assert sum(isinstance(m, nn.Tanh) for m in net) == 3
    assert net(torch.zeros(2, 5)).shape == (2, 4)
    assert len(zoo.mlp(0, 16, in_features=5)) == 1


def test_mlp_batchnorm_between_linear_and_activation():
    net = zoo.mlp(2, 8, "relu", batchnorm=True, in_features=3)
    kinds = [type(m) for m in net]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]


def test_mlp_activation_forms():
    leaky = zoo.mlp(1, 4, "leaky_relu", in_features=2)[1]
    assert isinstance(leaky, nn.LeakyReLU) and leaky.negative_slope == 0.01
    assert zoo.mlp(1, 4, nn.LeakyReLU(0.2), in_features=2)[1].negative_slope == 0.2
    assert isinstance(zoo.mlp(1, 4, nn.GELU, in_features=2)[1], nn.GELU)
    assert isinstance(zoo.mlp(1, 4, F.silu, in_features=2)[1], nn.SiLU)
    custom = zoo.mlp(1, 4, torch.sin, in_features=2)[1]
    x = torch.linspace(-2, 2, 9)
    assert isinstance(custom, zoo.Lambda) and torch.equal(custom(x), torch.sin(x))
    # per-layer list: the activations experiment's linear first layer then ReLUs
    net = zoo.mlp(3, 4, ["linear", "relu", "relu"], in_features=2)
    assert [type(m) for m in net] == [nn.Linear, nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    # PReLU has a parameter: each layer gets its own
    net = zoo.mlp(2, 4, nn.PReLU(), in_features=2)
    assert net[1].weight is not net[3].weight


def test_builders_are_seeded_and_leave_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = zoo.mlp(2, 8, seed=1), zoo.mlp(2, 8, seed=1), zoo.mlp(2, 8, seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a[0].weight, c[0].weight)


def test_cnn_resnet_transformer_forward_and_backward():
    x = torch.randn(3, 784, generator=torch.Generator().manual_seed(0))
    for net in (zoo.cnn(input_shape=(1, 28, 28)), zoo.resnet(2, 8, input_shape=(1, 28, 28)), zoo.transformer()):
        out = net(x)
        assert out.shape == (3, 10)
        out.sum().backward()
        assert all(p.grad is not None for p in net.parameters())
    res = zoo.resnet(3, 8)
    assert sum(isinstance(m, zoo.BasicBlock) for m in res.modules()) == 3
    assert zoo.cnn((4, 8, 8), in_channels=3)(torch.zeros(2, 3, 16, 16)).shape == (2, 10)


def test_resnet_block_adds_its_input():
    block = zoo.BasicBlock(4).eval()
    # with the residual branch zeroed (last BN scale 0), the block is relu(x)
    nn.init.zeros_(block.bn2.weight)
    x = torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(block(x), torch.relu(x))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: zoo.mlp(-1, 4), "depth"),
        (lambda: zoo.mlp(2, 0), "width"),
        (lambda: zoo.mlp(2, 4, "nope"), "activation must be one of"),
        (lambda: zoo.mlp(2, 4, ["relu"]), "one entry per hidden layer"),
        (lambda: zoo.mlp(2, 4, seed=1.5), "seed"),
        (lambda: zoo.cnn(()), "channels"),
        (lambda: zoo.resnet(2, 4, input_shape=(28,)), "input_shape"),
        (lambda: zoo.transformer(d_model=30, nhead=4), "divisible"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
