"""Gains: torch's table under rule="torch", 1/sqrt(E[f(z)^2]) under rule="variance" (REFERENCE.md section 3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, special
from torch import nn

import initlab
from initlab.compat import torch as ctorch
from initlab.gains import expect, gain, is_activation, resolve_activation, resolve_gain

TORCH_NAMES = ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
               "sigmoid", "tanh", "relu", "leaky_relu", "selu"]
EXTRA_NAMES = ["elu", "gelu", "silu", "swish", "mish", "softplus", "softsign", "hardtanh", "relu6", "prelu"]


def _phi(z: float) -> float:
    return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _Phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2)))


def _softplus(z: float) -> float:
    return math.log1p(math.exp(z)) if z < 30 else z


def quad_gain(f) -> float:
    """1 / sqrt(E[f(z)^2]) by adaptive quadrature (scipy), independent of initlab's Gauss-Legendre rule."""
    m2 = integrate.quad(lambda z: f(z) ** 2 * _phi(z), -np.inf, np.inf, epsabs=1e-13, epsrel=1e-13, limit=200)[0]
    return 1.0 / math.sqrt(m2)


# scalar reference implementations (math/scipy, not torch) of the activations
SELU_L, SELU_A = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717
REFERENCE_FNS = {
    "tanh": math.tanh,
    "sigmoid": special.expit,
    "gelu": lambda z: z * _Phi(z),
    "silu": lambda z: z * special.expit(z),
    "elu": lambda z: z if z > 0 else math.expm1(z),
    "softplus": _softplus,
    "mish": lambda z: z * math.tanh(_softplus(z)),
    "softsign": lambda z: z / (1 + abs(z)),
    "selu": lambda z: SELU_L * (z if z > 0 else SELU_A * math.expm1(z)),
    "hardtanh": lambda z: max(-1.0, min(1.0, z)),
    "relu6": lambda z: max(0.0, min(6.0, z)),
}


# --------------------------------------------------------------------------------------------------
# rule="torch": identical to torch.nn.init.calculate_gain

@pytest.mark.parametrize("name", TORCH_NAMES)
def test_torch_rule_matches_calculate_gain(name):
    assert gain(name) == nn.init.calculate_gain(name)
    assert initlab.gain is gain


@pytest.mark.parametrize("slope", [None, 0, 0.01, 0.2, 0.5, 1, 3, 1e-8])
def test_torch_rule_leaky_relu_params(slope):
    assert gain("leaky_relu", slope) == nn.init.calculate_gain("leaky_relu", slope)


@pytest.mark.parametrize("param", [True, "0.2", [0.2]])
def test_leaky_relu_bad_param_raises_like_torch(param):
    with pytest.raises(ValueError):
        nn.init.calculate_gain("leaky_relu", param)
    with pytest.raises(ValueError, match="negative_slope .* not a valid number"):  # the compat layer: as torch
        ctorch.calculate_gain("leaky_relu", param)
    with pytest.raises(TypeError, match="param .*leaky_relu.* must be a finite number"):  # initlab's vocabulary
        gain("leaky_relu", param)


def test_torch_rule_values():
    assert gain("relu") == math.sqrt(2.0)
    assert gain("tanh") == 5.0 / 3
    assert gain("selu") == 0.75
    assert gain("sigmoid") == 1.0
    assert gain("leaky_relu") == math.sqrt(2 / (1 + 0.01**2))


@pytest.mark.parametrize("name", EXTRA_NAMES)
def test_torch_rule_extends_to_more_names_with_variance_gains(name):
    """The extra names are not in torch's table; their torch-rule gain is the variance-preserving one."""
    with pytest.raises(ValueError):
        nn.init.calculate_gain(name)
    assert gain(name) == gain(name, rule="variance")
    assert 0.5 < gain(name) < 3.0


def test_prelu_default_slope_is_nn_prelu_init():
    assert gain("prelu") == pytest.approx(math.sqrt(2 / (1 + 0.25**2)), rel=1e-15)
    assert gain(nn.PReLU(), rule="variance") == pytest.approx(math.sqrt(2 / (1 + 0.25**2)), rel=1e-7)


def test_torch_rule_rejects_names_outside_its_table():
    with pytest.raises(ValueError, match="'hardswish' has no rule='torch' gain; accepted names: linear.*prelu"):
        gain("hardswish")
    assert gain("hardswish", rule="variance") > 1.0  # but the variance rule takes it


@pytest.mark.parametrize("bad", ["foo", "relu2", ""])
def test_unknown_nonlinearity(bad):
    for rule in ("torch", "variance"):
        with pytest.raises(ValueError, match=f"nonlinearity must be one of .*relu.*got '{bad}'"):
            gain(bad, rule=rule)


def test_unknown_rule():
    with pytest.raises(ValueError, match="rule must be one of torch, variance; got 'keras'"):
        gain("relu", rule="keras")


def test_not_an_activation():
    with pytest.raises(TypeError, match="nonlinearity must be a name, an nn.Module, or a callable"):
        gain(3.0)
    with pytest.raises(ValueError, match="not a known activation"):
        gain(nn.Linear)


# --------------------------------------------------------------------------------------------------
# rule="variance": 1/sqrt(E[f(z)^2])

def test_relu_is_sqrt2_exactly():
    assert gain("relu", rule="variance") == pytest.approx(math.sqrt(2), abs=1e-12)
    # through quadrature (a custom callable has no closed form): the kink at 0 is a break point
    assert gain(lambda x: x.clamp(min=0), rule="variance") == pytest.approx(math.sqrt(2), abs=1e-12)


@pytest.mark.parametrize("a", [0.0, 0.01, 0.1, 0.2, 0.5, 1.0, 2.0])
def test_leaky_slope(a):
    expected = math.sqrt(2 / (1 + a * a))  # He et al. 2015
    assert gain("leaky_relu", a, rule="variance") == pytest.approx(expected, abs=1e-12)
    assert gain(nn.LeakyReLU(a), rule="variance") == pytest.approx(expected, abs=1e-12)
    assert gain(lambda x: F.leaky_relu(x, a), rule="variance") == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("name", sorted(REFERENCE_FNS))
def test_variance_rule_against_scipy_quadrature(name):
    # both sides are accurate to ~1e-13; 1e-10 leaves room for the tails of the adaptive quadrature
    assert gain(name, rule="variance") == pytest.approx(quad_gain(REFERENCE_FNS[name]), rel=1e-10)


def test_known_closed_forms():
    assert gain("linear", rule="variance") == 1.0
    assert gain("selu", rule="variance") == pytest.approx(1.0, abs=1e-9)  # self-normalizing: E[selu(z)^2] = 1
    assert gain(lambda x: 2 * x, rule="variance") == pytest.approx(0.5, abs=1e-12)
    assert gain(lambda x: x**3, rule="variance") == pytest.approx(1 / math.sqrt(15), abs=1e-12)  # E[z^6] = 15
    assert gain(torch.abs, rule="variance") == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_parametrised_modules(alpha):
    expected = quad_gain(lambda z: z if z > 0 else alpha * math.expm1(z))
    assert gain(nn.ELU(alpha=alpha), rule="variance") == pytest.approx(expected, rel=1e-10)
    assert gain("elu", alpha, rule="variance") == pytest.approx(expected, rel=1e-10)


def test_softplus_beta():
    beta = 2.0
    expected = quad_gain(lambda z: _softplus(beta * z) / beta)
    assert gain(nn.Softplus(beta=beta), rule="variance") == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("module_cls,name", [(nn.ReLU, "relu"), (nn.Tanh, "tanh"), (nn.Sigmoid, "sigmoid"),
                                             (nn.GELU, "gelu"), (nn.SiLU, "silu"), (nn.ELU, "elu"),
                                             (nn.Mish, "mish"), (nn.Softsign, "softsign"), (nn.SELU, "selu"),
                                             (nn.Identity, "linear")])
def test_modules_instances_and_classes(module_cls, name):
    for rule in ("torch", "variance"):
        expected = gain(name, rule=rule)
        assert gain(module_cls(), rule=rule) == expected
        assert gain(module_cls, rule=rule) == expected


def test_torch_rule_on_modules_uses_torch_values():
    assert gain(nn.Tanh()) == 5.0 / 3
    assert gain(nn.ReLU) == math.sqrt(2)
    assert gain(nn.LeakyReLU(0.2)) == nn.init.calculate_gain("leaky_relu", 0.2)


def test_gelu_tanh_approximation_is_its_own_activation():
    exact, approx = gain(nn.GELU(), rule="variance"), gain(nn.GELU("tanh"), rule="variance")
    assert approx != exact and approx == pytest.approx(exact, rel=1e-3)
    assert resolve_activation(nn.GELU("tanh")).name == "gelu_tanh"


@pytest.mark.parametrize("fn,name", [(F.relu, "relu"), (torch.relu, "relu"), (torch.tanh, "tanh"),
                                     (F.gelu, "gelu"), (torch.sigmoid, "sigmoid"), (F.silu, "silu")])
def test_functions(fn, name):
    assert resolve_activation(fn).name == name
    assert gain(fn, rule="variance") == gain(name, rule="variance")
    assert is_activation(fn)


def test_custom_callable():
    def scaled_tanh(x):
        return 1.7159 * torch.tanh(2 * x / 3)  # LeCun 1998

    act = resolve_activation(scaled_tanh)
    assert act.name == "custom:scaled_tanh"
    expected = quad_gain(lambda z: 1.7159 * math.tanh(2 * z / 3))
    assert gain(scaled_tanh, rule="variance") == pytest.approx(expected, rel=1e-10)
    assert not is_activation(scaled_tanh)


def test_custom_callable_with_zero_output_raises():
    with pytest.raises(ValueError, match="no variance-preserving gain"):
        gain(lambda x: 0 * x, rule="variance")


@pytest.mark.parametrize("alias,name", [("rectify", "relu"), ("logistic", "sigmoid"), ("swish", "silu"),
                                        ("identity", "linear"), ("RELU", "relu")])
def test_aliases(alias, name):
    assert resolve_activation(alias).name == name
    assert gain(alias, rule="variance") == gain(name, rule="variance")


# --------------------------------------------------------------------------------------------------
# Lasagne's gain="relu" wherever a gain is accepted

def test_resolve_gain_numbers_and_names():
    assert resolve_gain(1.5) == 1.5
    assert resolve_gain("relu") == math.sqrt(2)
    assert resolve_gain(nn.Tanh()) == 5.0 / 3
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="gain must be"):
            resolve_gain(bad)
    with pytest.raises(TypeError, match="gain must be"):  # a wrong type
        resolve_gain(True)


def test_lasagne_relu_string_is_a_gain():
    shape = (256, 512)
    assert initlab.He(gain="relu").expected_std(shape) == pytest.approx(math.sqrt(2 / 512), rel=1e-15)
    assert initlab.HeNormal(gain="rectify").expected_std(shape) == pytest.approx(math.sqrt(2 / 512), rel=1e-15)
    assert initlab.GlorotUniform(gain="relu").expected_std(shape) == pytest.approx(
        math.sqrt(2) * math.sqrt(2 / (256 + 512)), rel=1e-15)
    assert initlab.Glorot(gain="tanh").gain == 5.0 / 3
    w = initlab.Orthogonal(gain="relu").sample((32, 64), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(w @ w.T, 2 * torch.eye(32), atol=2e-5, rtol=0)
    w = initlab.DeltaOrthogonal(gain="relu").sample((8, 4, 3, 3), generator=torch.Generator().manual_seed(0))
    c = w[:, :, 1, 1]
    torch.testing.assert_close(c.T @ c, 2 * torch.eye(4), atol=2e-5, rtol=0)


def test_identity_accepts_a_gain_name():
    """Identity takes a gain too, so Lasagne's gain='relu' must work there as well."""
    w = initlab.Identity(gain="relu").sample((3, 3))
    assert torch.equal(w, math.sqrt(2) * torch.eye(3))


# --------------------------------------------------------------------------------------------------
# Gaussian expectations

def test_expect_moments():
    assert expect(lambda x: x**2) == pytest.approx(1.0, abs=1e-13)
    assert expect(lambda x: x**4) == pytest.approx(3.0, abs=1e-12)
    assert expect(lambda x: x, std=2.0, mean=0.5) == pytest.approx(0.5, abs=1e-13)
    assert expect(lambda x: x**2, std=2.0, mean=0.5) == pytest.approx(4.25, abs=1e-12)
    stds = np.array([0.5, 1.0, 3.0])
    np.testing.assert_allclose(expect(lambda x: x**2, std=stds), stds**2, rtol=1e-12)


def test_second_moment_of_tanh_against_scipy():
    for std in (0.3, 1.0, 4.0):
        ref = integrate.quad(lambda z, s=std: math.tanh(s * z) ** 2 * _phi(z), -np.inf, np.inf, epsabs=1e-13)[0]
        assert resolve_activation("tanh").second_moment(std) == pytest.approx(ref, rel=1e-10)
