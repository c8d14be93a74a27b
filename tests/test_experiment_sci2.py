"""Negative controls for the experiments' verdicts: each verdict is a pure function of the measured numbers,
so the same code is fed fabricated results where the published effect is present (-> REPRODUCED) and where
it is absent (-> NOT REPRODUCED), and the verdict line that ``finish`` prints is checked for the word.

No training runs here (the real --quick runs are tests/test_experiments.py's job): every test takes
milliseconds except the two that print through ``finish`` (a JSON and a CSV written to tmp_path).
"""


import pytest

from initlab.experiments import activations, mutransfer, pretraining, saturation
from initlab.experiments._common import Context, finish


def printed_verdict(name, checks, tmp_path, capsys):
    """The verdict line ``finish`` prints for ``checks`` (the experiments call it the same way)."""
    ctx = Context(name=name, quick=True, seeds=[0], out=tmp_path, progress=False)
    finish(ctx, settings={}, columns=["x"], rows=[[1]], expected="the effect", measured="fabricated",
           reproduced=all(checks.values()), results={}, checks=checks)
    line = [s for s in capsys.readouterr().out.splitlines() if s.startswith(f"{name}: expected")]
    assert len(line) == 1
    return line[0]


# --------------------------------------------------------------------------------------------------
# activations: std factor per ReLU layer x0.71 / x1.0 / x2.0 for sigma 0.10 / 0.14 / 0.28


def test_activations_verdict_needs_the_three_factors(tmp_path, capsys):
    present = {0.10: 0.713, 0.14: 0.998, 0.28: 1.997}  # the full run's numbers
    assert all(activations.judge(present).values())
    assert printed_verdict("activations", activations.judge(present), tmp_path, capsys).endswith("-> REPRODUCED")
    # effect absent: the weights' scale does not set the activations' scale (every sigma holds x1.0)
    absent = {s: 1.0 for s in activations.SIGMAS}
    assert printed_verdict("activations", activations.judge(absent), tmp_path, capsys).endswith(
        "-> NOT REPRODUCED")
    # each factor is checked on its own: one off by more than the 0.1 tolerance fails the verdict
    for sigma in activations.SIGMAS:
        for off in (-0.12, 0.12):
            mutant = {**present, sigma: present[sigma] + off}
            checks = activations.judge(mutant)
            assert not all(checks.values()) and not checks[f"sigma={sigma:g}"]


# --------------------------------------------------------------------------------------------------
# saturation: slope ratio, variance 1/3 for every d, raw pixels saturate


def _saturation_numbers(variance=lambda d: 1 / 3, outside_std=0.0, outside_raw=0.85):
    dims = saturation.DIMS
    std_sweep = {d: {"variance": variance(d), "outside": outside_std} for d in dims}
    raw_sweep = {d: {"variance": 800.0, "outside": outside_raw} for d in dims}
    return saturation.sigmoid_slope(2.0), saturation.sigmoid_slope(10.0), std_sweep, raw_sweep


def test_saturation_verdict_passes_on_the_effect_and_fails_without_it(tmp_path, capsys):
    checks = saturation.judge(*_saturation_numbers())
    assert printed_verdict("saturation", checks, tmp_path, capsys).endswith("-> REPRODUCED")
    # effect absent 1: the variance grows with the fan-in (weights not scaled by 1/sqrt(d))
    grows = saturation.judge(*_saturation_numbers(variance=lambda d: d / 30))
    assert printed_verdict("saturation", grows, tmp_path, capsys).endswith("-> NOT REPRODUCED")
    assert not grows["variance within 0.02 of 1/3 for every d"]
    # effect absent 2: raw pixels do not saturate the units
    calm = saturation.judge(*_saturation_numbers(outside_raw=0.1))
    assert not all(calm.values()) and not calm["raw: > 50% outside [-4, 4] for every d"]
    # effect absent 3: standardized inputs still leave units beyond +-4
    assert not all(saturation.judge(*_saturation_numbers(outside_std=0.01)).values())
    # a slope that does not collapse (a unit at 10 learning as fast as at 2)
    _, _, std_sweep, raw_sweep = _saturation_numbers()
    assert not all(saturation.judge(0.1, 0.05, std_sweep, raw_sweep).values())


def test_saturation_variance_tolerance_is_two_sided():
    for off in (-0.03, 0.03):
        assert not all(saturation.judge(*_saturation_numbers(variance=lambda d, off=off: 1 / 3 + off)).values())
    assert all(saturation.judge(*_saturation_numbers(variance=lambda d: 1 / 3 + 0.015)).values())


# --------------------------------------------------------------------------------------------------
# pretraining: both pretrained starts end below the random start


@pytest.mark.parametrize("errors,reproduced", [
    ({"random": 0.143, "rbm": 0.103, "dae": 0.112}, True),  # the full run's means
    ({"random": 0.143, "rbm": 0.143, "dae": 0.143}, False),  # pretraining changes nothing
    ({"random": 0.10, "rbm": 0.14, "dae": 0.13}, False),  # pretraining hurts
    ({"random": 0.143, "rbm": 0.103, "dae": 0.150}, False),  # only one of the two helps
])
def test_pretraining_verdict(errors, reproduced, tmp_path, capsys):
    checks = pretraining.judge({m: {"test_error": e} for m, e in errors.items()})
    assert all(checks.values()) is reproduced
    word = "-> REPRODUCED" if reproduced else "-> NOT REPRODUCED"
    assert printed_verdict("pretraining", checks, tmp_path, capsys).endswith(word)


# --------------------------------------------------------------------------------------------------
# mutransfer: SP's best lr moves with width, muP's stays


@pytest.mark.parametrize("sp,mup,reproduced", [
    ([-5.0, -6.0, -7.0], [-5.0, -5.2, -4.9], True),
    ([-5.0, -5.2, -5.1], [-5.0, -5.2, -4.9], False),  # SP's optimum does not move: nothing to transfer
    ([-5.0, -6.0, -7.0], [-5.0, -6.0, -7.0], False),  # muP's optimum moves like SP's
    ([-5.0, -6.0, -7.0], [-5.0, -4.0, -5.5], False),  # muP's optimum wanders (spread 1.5 > 1)
])
def test_mutransfer_verdict(sp, mup, reproduced, tmp_path, capsys):
    checks, numbers = mutransfer.judge({f: {"sp": sp, "mup": mup} for f in mutransfer.FAMILIES})
    assert numbers["mlp"]["sp_shift"] == pytest.approx(sp[0] - sp[-1])
    assert all(checks.values()) is reproduced
    word = "-> REPRODUCED" if reproduced else "-> NOT REPRODUCED"
    assert printed_verdict("mutransfer", checks, tmp_path, capsys).endswith(word)
