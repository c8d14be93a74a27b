"""The trainable-depth and isometry experiments (their verdicts on fabricated results, driven to both
outcomes; a --quick run of each, its JSON, CSV and figure), and theory acceptance checks against
independent computations: chi_1 = 1 crossings by numpy quadrature, GELU's missing crossing, and a float64
Jacobian condition number far beyond float32 on a deep network against a numpy product of layer Jacobians.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from experiment_outputs import check_outputs
from torch import nn

from initlab import experiments
from initlab.experiments import isometry, trainable_depth
from initlab.experiments._common import Context

# ---- trainable-depth: the verdict on fabricated cells

SW2 = [0.5, 1.0, 1.75, 3.0, 4.0]
LIMITS = [7.0, 22.0, 2500.0, 54.0, 42.0]  # 6 xi_c per column (the theory's values, rounded)
DEPTHS = [4, 8, 16, 32, 64]


def cells(acc) -> list[dict]:
    """Cells of the grid with accuracy ``acc(sigma_w2, depth, limit)``."""
    return [{"sigma_w2": w, "depth": float(d), "accuracy": float(acc(w, d, lim)), "limit": lim}
            for w, lim in zip(SW2, LIMITS) for d in DEPTHS]


def paper_like(w, d, lim):
    """Trains under the curve up to a budget depth of 32 (deeper at criticality is out of budget)."""
    return 0.95 if d <= min(lim, 32) else 0.1


def td_checks(acc) -> dict[str, bool]:
    checks, _ = trainable_depth.verdict(cells(acc), max(DEPTHS))
    return checks


def test_trainable_depth_verdict_reproduced_when_training_follows_the_curve():
    checks, stats = trainable_depth.verdict(cells(paper_like), 64)
    assert all(checks.values()), checks
    assert stats["trained"] == stats["trained_under_curve"] > 0
    assert stats["far_above"] == 4  # (0.5: 16, 32, 64) and (1.0: 64)
    assert stats["reach"] == {"0.5": 4.0, "1": 16.0, "1.75": 32.0, "3": 32.0, "4": 32.0}


def test_trainable_depth_verdict_each_criterion_can_fail():
    # no effect at all: every cell trains, far above the curve too
    checks = td_checks(lambda w, d, lim: 0.95)
    assert not all(checks.values())
    assert not checks["no cell at depth >= 2 x 6 xi_c trains (>= 3 such cells)"]
    assert not checks[">= 90% of trained cells (accuracy >= 0.5) lie under 6 xi_c"]
    # nothing trains: the bound holds vacuously, the positive controls fail
    checks = td_checks(lambda w, d, lim: 0.1)
    assert not checks[">= 60% of cells with depth <= 6 xi_c / 4 train"]
    assert not checks[">= 90% of trained cells (accuracy >= 0.5) lie under 6 xi_c"]
    assert not all(checks.values())
    # one cell far above the curve trains
    checks = td_checks(lambda w, d, lim: 0.95 if (w, d) == (0.5, 32) else paper_like(w, d, lim))
    assert not checks["no cell at depth >= 2 x 6 xi_c trains (>= 3 such cells)"]
    # the trainable region does not peak at criticality: the ends train deeper than the critical column
    checks = td_checks(lambda w, d, lim: 0.95 if d <= (8 if w == 1.75 else 16) else 0.1)
    assert not checks["trainable depth is largest in the column nearest criticality (and smaller in some other)"]
    # exactly at the threshold counts as trained; just below it does not
    at = td_checks(lambda w, d, lim: trainable_depth.TRAINED if (w, d) == (0.5, 64) else paper_like(w, d, lim))
    below = td_checks(lambda w, d, lim: 0.499 if (w, d) == (0.5, 64) else paper_like(w, d, lim))
    assert not at["no cell at depth >= 2 x 6 xi_c trains (>= 3 such cells)"] and all(below.values())


def test_trainable_depth_verdict_needs_enough_far_cells_and_a_big_enough_under_fraction():
    shallow = [c for c in cells(paper_like) if c["depth"] <= 16]  # only (0.5, 16) is far above: 1 < 3 cells
    checks, stats = trainable_depth.verdict(shallow, 16)
    assert stats["far_above"] == 1
    assert not checks["no cell at depth >= 2 x 6 xi_c trains (>= 3 such cells)"]
    # 2 of 18 trained cells above the curve (89% < 90%) fails; 1 of 17 (94%) passes
    two = td_checks(lambda w, d, lim: 0.95 if (w, d) in ((0.5, 8), (1.0, 32)) else paper_like(w, d, lim))
    one = td_checks(lambda w, d, lim: 0.95 if (w, d) == (0.5, 8) else paper_like(w, d, lim))
    key = ">= 90% of trained cells (accuracy >= 0.5) lie under 6 xi_c"
    assert not two[key] and one[key]


# ---- isometry: the verdict on fabricated per-seed numbers


def iso_runs(conditions, steps) -> list[dict]:
    return [{"condition": c, "steps": s} for c, s in zip(conditions, steps)]


def test_isometry_verdict_reproduced_when_orthogonal_is_better_conditioned_and_faster():
    orth, gauss = iso_runs([10, 12, 11], [60, 70, 64]), iso_runs([1e10, 1e18, 3e9], [None, 200, 150])
    checks, stats = isometry.verdict(orth, gauss, 300)
    assert all(checks.values()), checks
    assert stats["gaussian_steps_min"] == 150 and stats["orthogonal_steps_max"] == 70
    # 1e18 is beyond float64's resolution: capped at 1e15, so the ratio is a lower bound
    assert stats["condition_ratio"] == pytest.approx((1e10 * 1e15 * 3e9) ** (1 / 3) / (10 * 12 * 11) ** (1 / 3))


def test_isometry_verdict_each_criterion_can_fail():
    orth, gauss = iso_runs([10, 12], [60, 64]), iso_runs([1e10, 3e9], [None, 150])
    # no effect: both equally conditioned and equally fast
    checks, _ = isometry.verdict(orth, iso_runs([11, 10], [62, 60]), 300)
    assert not checks["Gaussian's condition number >= 1000x orthogonal's (geometric means)"]
    assert not checks["orthogonal's slowest seed needs <= 1/2 of the steps of Gaussian's fastest"]
    # means far apart, but one Gaussian seed as well conditioned as orthogonal: no separation
    checks, _ = isometry.verdict(orth, iso_runs([1e15, 50], [None, 150]), 300)
    assert checks["Gaussian's condition number >= 1000x orthogonal's (geometric means)"]
    assert not checks["every Gaussian seed >= 100x worse conditioned than every orthogonal seed"]
    # faster on average but within seed noise: one orthogonal seed at 80 steps vs Gaussian's fastest at 150
    checks, _ = isometry.verdict(iso_runs([10, 12], [40, 80]), gauss, 300)
    assert not checks["orthogonal's slowest seed needs <= 1/2 of the steps of Gaussian's fastest"]
    checks, _ = isometry.verdict(iso_runs([10, 12], [40, 75]), gauss, 300)
    assert all(checks.values())  # 2 x 75 = 150: the margin is met exactly
    # an orthogonal seed that never reaches the target
    checks, _ = isometry.verdict(iso_runs([10, 12], [60, None]), iso_runs([1e10, 3e9], [None, None]), 100)
    assert not checks["every orthogonal seed reaches loss 1"]
    # a non-finite condition number is not evidence
    checks, _ = isometry.verdict(iso_runs([10, math.nan], [60, 64]), gauss, 300)
    assert not checks["Gaussian's condition number >= 1000x orthogonal's (geometric means)"]


def test_steps_to_target_uses_a_trailing_window():
    losses = [2.0] * 20 + [0.5] * 20
    # the 10-step mean first drops below 1.0 once 7 of its 10 values are 0.5: at step 27
    assert isometry.steps_to_target(losses) == 27
    assert isometry.steps_to_target([2.0] * 50) is None
    assert isometry.steps_to_target([0.1] * 5) is None  # fewer losses than one window
    assert isometry.steps_to_target([0.9] * 10) == 10


# ---- --quick runs: files, JSON, CSV, figure content


def record_figures(monkeypatch) -> list:
    figures = []
    original = Context.save_figure

    def save(self, fig, suffix="", **kwargs):
        figures.append(fig)
        return original(self, fig, suffix, **kwargs)

    monkeypatch.setattr(Context, "save_figure", save)
    return figures


def read_outputs(name, tmp_path, result):
    table = check_outputs(name, tmp_path, result)
    import matplotlib.image

    image = matplotlib.image.imread(tmp_path / f"{name}.png")
    assert image.shape[0] > 300 and image.shape[1] > 600 and image[..., :3].std() > 0.1  # not blank
    assert len(result["verdict"]["checks"]) == 4
    return table, image


@pytest.mark.slow
def test_trainable_depth_quick_run(tmp_path, capsys, monkeypatch):
    figures = record_figures(monkeypatch)
    state = torch.random.get_rng_state()
    r = experiments.run("trainable-depth", quick=True, out=tmp_path, progress=False)
    assert torch.equal(torch.random.get_rng_state(), state)
    table, image = read_outputs("trainable-depth", tmp_path, r)
    sw2 = r["settings"]["sigma_w2"]
    depths = r["settings"]["depths (hidden layers)"]
    assert table[0] == ["depth", *[f"sw2={w:g}" for w in sw2]] and table[-1][0] == "6 xi_c"
    # the 6 xi_c row is the theory's, recomputed here
    from initlab.theory import mean_field

    for w, shown in zip(sw2, table[-1][1:]):
        assert float(shown) == pytest.approx(6 * mean_field("tanh", w, 0.05).xi_c, rel=1e-6)
    acc = np.asarray(r["results"]["accuracy_per_seed"])
    assert acc.shape == (1, len(depths), len(sw2)) and ((acc >= 0) & (acc <= 1)).all()
    # the verdict is recomputed from the stored cells (not just the stored flag)
    checks, _ = trainable_depth.verdict(r["results"]["cells"], max(depths))
    assert checks == r["verdict"]["checks"] and r["verdict"]["reproduced"]
    # the shape itself: shallow nets train in every column (this run: >= 0.86), the deepest ordered cell
    # (sigma_w^2 = 0.5, depth 32, 4.5x above its 6 xi_c = 7.1) stays at chance
    assert acc[0, 0].min() > 0.8 and acc[0, -1, 0] < 0.2
    out = capsys.readouterr().out
    assert "trainable-depth: expected" in out and "-> REPRODUCED" in out
    # the figure: a heatmap with a colour bar, labelled axes, the 6 xi_c curve and the accuracies written in
    (fig,) = figures
    ax, cax = fig.axes
    assert "sigma_w" in ax.get_xlabel() and "depth" in ax.get_ylabel() and cax.get_ylabel() == "training accuracy"
    mesh = ax.collections[0]
    assert np.allclose(np.asarray(mesh.get_array()).reshape(acc[0].shape), acc[0])
    curve = [ln for ln in ax.get_lines() if "xi_c" in ln.get_label()]
    assert len(curve) == 1
    xs, ys = curve[0].get_data()
    assert np.allclose(xs, r["results"]["curve"]["sigma_w2"]) and len(xs) >= 10
    assert ys[0] == pytest.approx(r["results"]["curve"]["six_xi_c"][0]) and ys[0] < 10  # ordered end: shallow
    texts = {t.get_text() for t in ax.texts}
    assert f"{acc[0, 0, 0]:.2f}" in texts and len(ax.texts) == acc[0].size
    # the colours of the best cell and of the chance cell are both painted on the image
    import matplotlib

    rgb = image[..., :3]
    for value in (acc[0].max(), acc[0, -1, 0]):
        colour = np.asarray(matplotlib.colormaps["viridis"](value)[:3])
        assert (np.abs(rgb - colour).sum(-1) < 0.05).sum() > 1000


@pytest.mark.slow
def test_isometry_quick_run(tmp_path, monkeypatch):
    figures = record_figures(monkeypatch)
    r = experiments.run("isometry", quick=True, out=tmp_path, progress=False)
    table, image = read_outputs("isometry", tmp_path, r)
    runs = r["results"]["runs"]
    assert len(runs["orthogonal"]) == len(runs["gaussian"]) == 2
    from initlab.theory import critical_point, mean_field

    sw2 = critical_point("tanh", 1e-5)
    assert r["settings"]["sigma_w2"] == pytest.approx(sw2)
    assert mean_field("tanh", sw2, 1e-5).chi_1 == pytest.approx(1.0, abs=1e-9)
    for o, g in zip(runs["orthogonal"], runs["gaussian"]):
        # orthogonal is nearly isometric (this run: condition ~10, 97% of values within 3x of 1); Gaussian's
        # smallest singular values fall below float64's resolution (condition > 1e15)
        assert o["condition"] < 100 and o["near_one"] > 0.9
        assert g["condition"] > 1e12 and g["near_one"] < 0.3 and g["condition_beyond_float64"]
        assert len(o["singular_values"]) == isometry.JACOBIAN_EXAMPLES * 32  # 8 examples x width 32
    checks, _ = isometry.verdict(runs["orthogonal"], runs["gaussian"], r["settings"]["steps"])
    assert checks == r["verdict"]["checks"] and r["verdict"]["reproduced"]
    assert [row[2] for row in table[1:]][2:] == [">1e+15", ">1e+15"]
    (fig,) = figures
    ax1, ax2 = fig.axes
    assert "singular value" in ax1.get_xlabel() and ax1.get_xscale() == "log"
    assert ax2.get_xlabel() == "SGD step" and ax2.get_ylabel() == "minibatch loss"
    labels = [t.get_text() for t in ax1.get_legend().get_texts()]
    assert any(lab.startswith("orthogonal (condition number ~1") for lab in labels)
    assert "gaussian (condition number ~>1e+15)" in labels and "float64 rounding floor" in labels
    assert len(ax2.get_lines()) == 2 * 2 + 1  # a curve per seed and init, and the target line
    first = ax2.get_lines()[0]
    assert np.allclose(first.get_ydata(), runs["orthogonal"][0]["loss_curve"])
    rgb = image[..., :3]
    # the histogram bars: C0 blue (orthogonal) and C1 orange (gaussian) at alpha 0.6 over white
    for colour in ([0.122, 0.467, 0.706], [1.0, 0.498, 0.055]):
        bar = 0.6 * np.asarray(colour) + 0.4
        assert (np.abs(rgb - bar).sum(-1) < 0.06).sum() > 200


def test_both_experiments_are_registered(capsys):
    from initlab.cli import main

    assert {"trainable-depth", "isometry"} <= set(experiments.available())
    assert experiments.REGISTRY["trainable-depth"].load() is trainable_depth
    assert experiments.REGISTRY["isometry"].load() is isometry
    assert main(["experiment", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "trainable-depth" in listing and "6 xi_c" in listing and "isometry" in listing
    assert experiments.__doc__ is not None and "trainable-depth" in experiments.__doc__


# ---- theory acceptance: crossings against independent quadrature (numpy trapezoid on a fine grid)

Z = np.linspace(-14.0, 14.0, 280_001)
PHI = np.exp(-Z * Z / 2) / math.sqrt(2 * math.pi) * (Z[1] - Z[0])
FUNCS = {"tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
         "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2)}


def numpy_chi_1(name: str, sw2: float, sb2: float) -> float:
    """chi_1 by the trapezoid rule (exponentially accurate for these smooth Gaussian-weighted integrands)
    with q* by fixed-point iteration from q0 = 1 (the same starting point as initlab's default)."""
    f, df = FUNCS[name]
    q = 1.0
    for _ in range(5000):
        q_next = sw2 * float(PHI @ f(math.sqrt(q) * Z) ** 2) + sb2
        if abs(q_next - q) <= 1e-14 * q:
            break
        q = q_next
    return sw2 * float(PHI @ df(math.sqrt(q) * Z) ** 2)


@pytest.mark.parametrize("name, sb2", [("tanh", 0.1), ("sigmoid", 0.5)])
def test_critical_point_crossing_matches_numpy_quadrature(name, sb2):
    from initlab.theory import critical_point

    sw2 = critical_point(name, sb2)
    # both quadratures are accurate to ~1e-12 here; 1e-7 leaves room for the fixed-point iteration
    assert numpy_chi_1(name, sw2, sb2) == pytest.approx(1.0, abs=1e-7)
    assert numpy_chi_1(name, sw2 * 0.99, sb2) < 1 < numpy_chi_1(name, sw2 * 1.01, sb2)


def test_gelu_has_no_critical_point_and_the_cli_json_says_so(capsys):
    from initlab.cli import main
    from initlab.theory import critical_point

    with pytest.raises(ValueError, match="gelu.*no critical point"):
        critical_point("gelu")
    assert main(["theory", "gelu", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["critical_sigma_w2"] is None and "has no critical point" in data["note"]
    assert data["phase"] != "critical"
    # with a bias the crossing exists and is a real one (chi_1 = 1 there)
    from initlab.theory import mean_field

    sw2 = critical_point("gelu", 0.5)
    assert mean_field("gelu", sw2, 0.5).chi_1 == pytest.approx(1.0, abs=1e-6)


# ---- theory acceptance: a condition number far beyond float32, faithfully, on a deep network


def test_deep_tanh_jacobian_condition_beyond_1e12_matches_numpy_float64():
    from initlab.theory import jacobian_spectrum

    width, depth = 16, 14
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(*[m for _ in range(depth) for m in (nn.Linear(width, width), nn.Tanh())])
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(width, width, generator=g) / math.sqrt(width))
                m.bias.copy_(0.1 * torch.randn(width, generator=g))
    x = 0.3 * torch.randn(2, width, generator=g)  # float32 inputs, float32 model: the common case
    spec = jacobian_spectrum(net, x)
    # the independent reference: the product of the layers' Jacobians diag(tanh'(h)) W in numpy float64
    for i in range(2):
        h, jac = x[i].double().numpy(), np.eye(width)
        for m in net:
            if isinstance(m, nn.Linear):
                w, b = m.weight.detach().double().numpy(), m.bias.detach().double().numpy()
                pre = w @ h + b
                jac = ((1 - np.tanh(pre) ** 2)[:, None] * w) @ jac
                h = np.tanh(pre)
        ref = np.linalg.svd(jac, compute_uv=False)
        ours = spec.singular_values[i]
        # a condition number ~1e13-1e14 leaves float64 ~3 good digits in the smallest value: 1e-2 is ample
        assert ref[0] / ref[-1] > 1e12
        np.testing.assert_allclose(ours, ref, rtol=1e-2)
    assert spec.condition > 1e12
    # float32 would have stopped near 1e7: its rounding of the Jacobian floors the smallest values
    j32 = torch.func.jacrev(lambda v: net(v[None])[0])(x[0])
    s32 = torch.linalg.svdvals(j32.detach().double())
    assert float(s32[0] / s32[-1]) < 1e10 < spec.condition
    assert net[0].weight.dtype == torch.float32  # the model is untouched
