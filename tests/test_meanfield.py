"""Mean-field theory (initlab.theory.meanfield) against independent numerical integration (scipy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize
from torch import nn

from initlab.theory import TRAINABLE_MULTIPLE, critical_point, mean_field, phase_diagram

SQRT2PI = math.sqrt(2 * math.pi)


# ---- an independent reference: adaptive quadrature (scipy.integrate.quad) on closed-form functions


def gauss(g, lo=-12.0, hi=12.0) -> float:
    """E[g(z)], z ~ N(0, 1), by scipy's adaptive quadrature (break point at 0 for kinked integrands)."""
    f = lambda z: g(z) * math.exp(-0.5 * z * z) / SQRT2PI  # noqa: E731
    return integrate.quad(f, lo, 0, epsabs=1e-14, epsrel=1e-12, limit=200)[0] + \
        integrate.quad(f, 0, hi, epsabs=1e-14, epsrel=1e-12, limit=200)[0]


FUNCS = {
    "tanh": (math.tanh, lambda x: 1 - math.tanh(x) ** 2),
    "sigmoid": (lambda x: 1 / (1 + math.exp(-x)), lambda x: math.exp(-x) / (1 + math.exp(-x)) ** 2),
    "relu": (lambda x: max(x, 0.0), lambda x: 1.0 if x > 0 else 0.0),
}


def ref_q_star(name: str, sw2: float, sb2: float) -> float:
    f, _ = FUNCS[name]
    V = lambda q: sw2 * gauss(lambda z: f(math.sqrt(q) * z) ** 2) + sb2  # noqa: E731
    if abs(V(1e-300) - 0.0) < 1e-300 and V(1.0) < 1.0:  # no bias, contracting: the fixed point is 0
        return 0.0
    return optimize.brentq(lambda q: V(q) - q, 1e-12, 100.0, xtol=1e-15, rtol=1e-14)


def ref_chi_1(name: str, sw2: float, sb2: float) -> tuple[float, float]:
    _, df = FUNCS[name]
    q = ref_q_star(name, sw2, sb2)
    s = math.sqrt(max(q, 1e-300))
    return sw2 * gauss(lambda z: df(s * z) ** 2), q


# ---- chi_1 and q*


def test_chi_1_tanh_at_1_0_matches_direct_integration():
    mf = mean_field("tanh", 1.0, 0.0)
    chi, q = ref_chi_1("tanh", 1.0, 0.0)
    assert mf.q_star == pytest.approx(q, abs=1e-10)  # q* = 0: tanh(0) = 0 and V'(0) = 1
    assert mf.chi_1 == pytest.approx(chi, rel=1e-9)
    assert mf.chi_1 == pytest.approx(1.0, rel=1e-9) and mf.phase == "critical"


@pytest.mark.parametrize("name,sw2,sb2", [
    ("tanh", 1.5, 0.0), ("tanh", 2.0, 0.05), ("tanh", 0.7, 0.3), ("sigmoid", 4.0, 0.1), ("sigmoid", 20.0, 0.0),
    ("relu", 1.5, 0.2),
])
def test_q_star_and_chi_1_match_direct_integration(name, sw2, sb2):
    mf = mean_field(name, sw2, sb2)
    chi, q = ref_chi_1(name, sw2, sb2)
    # both sides integrate smooth or kink-at-0 integrands to ~1e-12; 1e-8 leaves room for brentq's tolerance
    assert mf.q_star == pytest.approx(q, rel=1e-8)
    assert mf.chi_1 == pytest.approx(chi, rel=1e-8)


def test_relu_chi_1_is_exact_for_the_kink():
    # E[relu'(sqrt(q) z)^2] = 1/2 whatever q: chi_1 = sigma_w2 / 2, also when q* = 0 (autograd gives relu'(0) = 0,
    # so q = 0 must be taken as a limit)
    for sw2 in (0.5, 1.0, 1.9):
        mf = mean_field("relu", sw2)
        assert mf.q_star == 0.0
        assert mf.chi_1 == pytest.approx(sw2 / 2, rel=1e-12)


# ---- critical point


@pytest.mark.parametrize("sb2", [0.0, 0.3])
def test_relu_critical_point_is_2(sb2):
    assert abs(critical_point("relu", sb2) - 2.0) < 1e-6


def test_tanh_critical_line_matches_direct_integration():
    assert critical_point("tanh") == pytest.approx(1.0, abs=1e-6)
    # with bias: solve chi_1(sigma_w2) = 1 with the scipy reference
    ref = optimize.brentq(lambda w: ref_chi_1("tanh", w, 0.05)[0] - 1.0, 1.2, 3.0, xtol=1e-12)
    assert critical_point("tanh", 0.05) == pytest.approx(ref, rel=1e-6)
    assert critical_point("tanh", 0.05) > 1.0  # bias pushes the edge of chaos to larger weights


def test_critical_point_no_crossing_is_a_value_error():
    with pytest.raises(ValueError, match="critical point"):
        critical_point(lambda x: 0.0 * x)  # f' = 0: chi_1 = 0 for every sigma_w2


# ---- phases and depth scales


def test_phases():
    assert mean_field("relu", 1.0).phase == "ordered"
    assert mean_field("relu", 2.0).phase == "critical"
    assert mean_field("relu", 3.0).phase == "chaotic"
    assert mean_field("tanh", 0.5).phase == "ordered"
    assert mean_field("tanh", 1.5).phase == "chaotic"


def test_ordered_depth_scales():
    mf = mean_field("tanh", 0.8, 0.1)
    assert mf.phase == "ordered"
    # ordered phase: the correlation fixed point is c* = 1 and xi_c = -1 / ln(chi_1)
    assert mf.c_star == 1.0
    assert mf.xi_c == pytest.approx(-1 / math.log(mf.chi_1), rel=1e-12)
    assert mf.trainable_depth == pytest.approx(TRAINABLE_MULTIPLE * mf.xi_c)
    assert TRAINABLE_MULTIPLE == 6.0
    # xi_q = -1 / ln V'(q*): V' by central differences of the scipy length map
    f, _ = FUNCS["tanh"]
    V = lambda q: 0.8 * gauss(lambda z: f(math.sqrt(q) * z) ** 2) + 0.1  # noqa: E731
    h = 1e-4
    slope = (V(mf.q_star + h) - V(mf.q_star - h)) / (2 * h)
    assert mf.xi_q == pytest.approx(-1 / math.log(slope), rel=1e-6)
    assert mf.trainable(int(mf.trainable_depth)) and not mf.trainable(int(mf.trainable_depth) + 1)


def test_critical_depth_scales_diverge():
    mf = mean_field("relu", 2.0)
    assert math.isinf(mf.xi_c) and math.isinf(mf.trainable_depth) and mf.trainable(10_000)


def test_chaotic_tanh_correlation_fixed_point():
    # odd unit without bias: C(0) = 0, so c* = 0, and the slope there is sigma_w2 * E[f'(sqrt(q*) z)]^2
    sw2 = 2.5
    mf = mean_field("tanh", sw2, 0.0)
    assert mf.phase == "chaotic"
    assert abs(mf.c_star) < 1e-9
    _, df = FUNCS["tanh"]
    q = ref_q_star("tanh", sw2, 0.0)
    chi_c = sw2 * gauss(lambda z: df(math.sqrt(q) * z)) ** 2
    assert mf.chi_c == pytest.approx(chi_c, rel=1e-7)
    assert mf.xi_c == pytest.approx(-1 / math.log(chi_c), rel=1e-6)
    # deeper into chaos, correlations are forgotten faster
    assert mean_field("tanh", 4.0).xi_c < mf.xi_c


def test_chaotic_with_bias_correlation_fixed_point_is_a_fixed_point():
    sw2, sb2 = 2.0, 0.05
    mf = mean_field("tanh", sw2, sb2)
    assert 0 < mf.c_star < 1 and mf.chi_c < 1
    # C(c*) = c* checked by scipy's 2-D quadrature of E[f(u1) f(u2)]
    q, c = mf.q_star, mf.c_star
    s = math.sqrt(q)

    def inner(z1: float) -> float:
        return gauss(lambda z2: math.tanh(s * (c * z1 + math.sqrt(1 - c * c) * z2)), -10, 10)

    pair = gauss(lambda z1: math.tanh(s * z1) * inner(z1), -10, 10)
    assert (sw2 * pair + sb2) / q == pytest.approx(c, abs=1e-6)


def test_diverging_length_map_uses_the_gradient_depth_scale():
    mf = mean_field("relu", 3.0)
    assert math.isinf(mf.q_star)
    assert mf.xi_c == pytest.approx(1 / math.log(1.5), rel=1e-12)


# ---- any activation


def test_any_activation_form():
    ref = mean_field("tanh", 1.5, 0.1)
    for act in (torch.tanh, nn.Tanh(), nn.Tanh, lambda x: torch.tanh(x)):
        mf = mean_field(act, 1.5, 0.1)
        assert mf.q_star == pytest.approx(ref.q_star, rel=1e-12)
        assert mf.chi_1 == pytest.approx(ref.chi_1, rel=1e-12)


def test_leaky_relu_and_selu():
    # leaky_relu(a): E[f'^2] = (1 + a^2) / 2, so the critical point is 2 / (1 + a^2) (He et al. 2015)
    assert critical_point(nn.LeakyReLU(0.2)) == pytest.approx(2 / 1.04, rel=1e-9)
    # SELU at sigma_w2 = 1 keeps unit second moment (its design), slightly chaotic
    mf = mean_field("selu", 1.0)
    assert mf.q_star == pytest.approx(1.0, abs=1e-5)
    assert 1.0 < mf.chi_1 < 1.1


# ---- bad input


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"sigma_w2": 0.0}, ValueError, "sigma_w2"),
    ({"sigma_w2": -1.0}, ValueError, "sigma_w2"),
    ({"sigma_w2": float("nan")}, ValueError, "sigma_w2"),
    ({"sigma_w2": "2"}, TypeError, "sigma_w2"),
    ({"sigma_w2": 1.0, "sigma_b2": -0.1}, ValueError, "sigma_b2"),
    ({"sigma_w2": 1.0, "q0": 0.0}, ValueError, "q0"),
])
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        mean_field("tanh", **kwargs)


def test_unknown_activation():
    with pytest.raises(ValueError, match="activation must be one of"):
        mean_field("nope", 1.0)
    with pytest.raises(TypeError):
        mean_field(3, 1.0)


# ---- phase diagram


def test_phase_diagram_writes_a_figure(tmp_path):
    out = phase_diagram("tanh", tmp_path / "sub" / "phase.png", resolution=(12, 8))
    assert out.exists() and out.stat().st_size > 5000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("kwargs", [{"resolution": (1, 5)}, {"resolution": "big"}, {"sigma_w2": (2.0, 1.0)},
                                    {"sigma_b2": (-1.0, 1.0)}])
def test_phase_diagram_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        phase_diagram("tanh", tmp_path / "x.png", **kwargs)
    assert not (tmp_path / "x.png").exists()


def test_chi_1_grid_matches_mean_field():
    from initlab.theory.meanfield import chi_1_grid

    w, b = np.array([0.5, 1.5, 3.0]), np.array([0.0, 0.2])
    grid = chi_1_grid("tanh", w, b)
    assert grid.shape == (2, 3)
    for i, sb2 in enumerate(b):
        for j, sw2 in enumerate(w):
            assert grid[i, j] == pytest.approx(mean_field("tanh", sw2, sb2).chi_1, rel=1e-10)


# ---- the critical point is a real crossing, or none (issue: GELU's chi_1 jumps over 1 at sigma_b2 = 0)


def _quadrature_chi_1(fn, dfn, sw2: float, sb2: float) -> float:
    """chi_1 by an independent computation: adaptive quadrature (scipy) for q* (fixed-point iteration) and
    E[f'(sqrt(q*) z)^2]; Gauss-Hermite nodes would be too coarse for sigmoid's narrow f'^2 at q* ~ 46."""
    def gauss(g, q: float) -> float:
        return integrate.quad(lambda z: np.exp(-z * z / 2) / math.sqrt(2 * math.pi) * g(math.sqrt(q) * z),
                              -40, 40, points=[0.0], limit=400, epsabs=1e-13, epsrel=1e-12)[0]

    q = 1.0
    for _ in range(200):
        q_next = sw2 * gauss(lambda x: fn(x) ** 2, q) + sb2
        if abs(q_next - q) < 1e-12 * q:
            break
        q = q_next
    return sw2 * gauss(lambda x: dfn(x) ** 2, q)


@pytest.mark.parametrize("name, sb2", [("tanh", 0.05), ("tanh", 0.3), ("sigmoid", 0.0)])
def test_critical_point_is_where_chi_1_equals_one(name, sb2):
    fns = {"tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
           "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2)}
    sw2 = critical_point(name, sb2)
    assert _quadrature_chi_1(*fns[name], sw2, sb2) == pytest.approx(1.0, abs=1e-6)
    assert _quadrature_chi_1(*fns[name], sw2 * 0.98, sb2) < 1 < _quadrature_chi_1(*fns[name], sw2 * 1.02, sb2)


def test_gelu_has_no_critical_point_at_zero_bias_and_says_so(capsys):
    with pytest.raises(ValueError, match="no critical point"):
        critical_point("gelu", 0.0)
    below, above = mean_field("gelu", 2.3517 * 0.999, 0.0).chi_1, mean_field("gelu", 2.3517 * 1.001, 0.0).chi_1
    assert below < 0.7 and above > 1.1  # the jump the old root finder took for a crossing
    from initlab.cli import main

    assert main(["theory", "gelu"]) == 0
    out = capsys.readouterr().out
    assert "has no critical point" in out and "(critical point)" not in out


def test_jacobian_condition_numbers_beyond_float32_are_faithful():
    import torch
    from torch import nn

    from initlab.theory import jacobian_spectrum

    net = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    with torch.no_grad():
        for lin in net:
            lin.weight.copy_(torch.diag(torch.tensor([1.0, 1e-4, 1e-8, 1e-7])))
    spec = jacobian_spectrum(net, torch.zeros(1, 4))
    # the composite Jacobian is diag(1, 1e-8, 1e-16, 1e-14): condition number 1e16, far beyond float32
    assert spec.max == pytest.approx(1.0, rel=1e-7) and spec.min == pytest.approx(1e-16, rel=1e-6)
    assert net[0].weight.dtype == torch.float32  # the model itself is untouched
