"""Negative controls for the experiments' verdicts: each verdict is a pure function of the measured numbers,
so the same code is fed fabricated results where the published effect is present (-> REPRODUCED) and where
it is absent (-> NOT REPRODUCED), and the verdict line that ``finish`` prints is checked for the word.

No training runs here (the real --quick runs are tests/test_experiments.py's job): every test takes
milliseconds except the two that print through ``finish`` (a JSON and a CSV written to tmp_path).
"""


import pytest
from experiment_outputs import printed_verdict

from initlab.experiments import activations, batchnorm, lsuv, mutransfer, pretraining, saturation
from initlab.experiments._common import Context

# --------------------------------------------------------------------------------------------------
# activations: std factor per ReLU layer x0.71 / x1.0 / x2.0 for sigma 0.10 / 0.14 / 0.28


def test_activations_verdict_needs_the_three_factors(tmp_path, capsys):
    present = {0.10: 0.713, 0.14: 0.998, 0.28: 1.997}  # the full run's numbers
    assert all(activations.judge(present).values())
    line = printed_verdict(tmp_path, capsys, "activations", {"checks": activations.judge(present)})
    assert line.endswith("-> REPRODUCED")
    # effect absent: the weights' scale does not set the activations' scale (every sigma holds x1.0)
    absent = {s: 1.0 for s in activations.SIGMAS}
    line = printed_verdict(tmp_path, capsys, "activations", {"checks": activations.judge(absent)})
    assert line.endswith("-> NOT REPRODUCED")
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
    assert printed_verdict(tmp_path, capsys, "saturation", {"checks": checks}).endswith("-> REPRODUCED")
    # effect absent 1: the variance grows with the fan-in (weights not scaled by 1/sqrt(d))
    grows = saturation.judge(*_saturation_numbers(variance=lambda d: d / 30))
    assert printed_verdict(tmp_path, capsys, "saturation", {"checks": grows}).endswith("-> NOT REPRODUCED")
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
    assert printed_verdict(tmp_path, capsys, "pretraining", {"checks": checks}).endswith(word)


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
    assert printed_verdict(tmp_path, capsys, "mutransfer", {"checks": checks}).endswith(word)


# --------------------------------------------------------------------------------------------------
# batchnorm: the spread of the final error across initial scales, BN vs plain


def _bn_errors(bn_far=0.12, plain_best=0.12, noise=0.0):
    """Per-seed final test errors (3 seeds) at the five scales; ``noise`` spreads the seeds of every cell."""
    def cell(m):
        return [m - noise, m, m + noise]
    plain = {s: cell(plain_best if s == 1.0 else 0.9) for s in batchnorm.SCALES}
    bn = {s: cell(0.09 if s == 1.0 else bn_far) for s in batchnorm.SCALES}
    return {"plain": plain, "BN": bn}


def test_batchnorm_verdict_present_and_absent(tmp_path, capsys):
    checks, numbers = batchnorm.judge(_bn_errors())
    assert numbers["spread_plain"] == pytest.approx(0.78) and numbers["spread_bn"] == pytest.approx(0.03)
    assert printed_verdict(tmp_path, capsys, "batchnorm", {"checks": checks}).endswith("-> REPRODUCED")
    # effect absent: BN is as sensitive to the scale as the plain network (fails away from x1 too)
    checks, _ = batchnorm.judge(_bn_errors(bn_far=0.9))
    assert printed_verdict(tmp_path, capsys, "batchnorm", {"checks": checks}).endswith("-> NOT REPRODUCED")
    assert not checks["BN's spread of final error across scales <= 1/3 of the plain network's"]


def test_batchnorm_verdict_each_criterion_can_fail():
    # the plain network set up to fail (it never trains, not even at He's scale): no evidence about BN
    checks, _ = batchnorm.judge(_bn_errors(plain_best=0.85))
    assert not checks["the plain network trains at its best scale (test error < 20%)"]
    # BN's spread a third of plain's but BN stuck at 40..70% error away from x1: it does not learn there
    checks, _ = batchnorm.judge(_bn_errors(bn_far=0.6))
    assert not checks["BN learns at every scale (test error < 50%)"]
    # the difference drowned in seed noise (every cell +-0.3 over the seeds)
    checks, numbers = batchnorm.judge(_bn_errors(noise=0.3))
    assert numbers["noise"] == pytest.approx(0.3)
    assert not checks["the spreads differ by more than 3 x the seed-to-seed noise"]
    # the ratio boundary: BN spread just above / below a third of plain's (0.78 / 3 = 0.26)
    assert not all(batchnorm.judge(_bn_errors(bn_far=0.09 + 0.27))[0].values())
    assert all(batchnorm.judge(_bn_errors(bn_far=0.09 + 0.25))[0].values())


def test_batchnorm_conclude_reports_the_budget(tmp_path, capsys):
    # conclude() on fabricated runs: the verdict text states the spread at every evaluated budget
    def run(err_curve, diverged=False):
        return {"test_error": err_curve[-1], "diverged": diverged, "eval_steps": [0, 100, 200],
                "test_error_curve": err_curve, "final_loss": 0.1}
    runs = {"plain": {s: [run([0.9, 0.5, 0.1] if s == 1.0 else [0.9, 0.9, 0.9]) for _ in range(3)]
                      for s in batchnorm.SCALES},
            "BN": {s: [run([0.9, 0.4 if s == 10.0 else 0.2, 0.1]) for _ in range(3)] for s in batchnorm.SCALES}}
    ctx = Context(name="batchnorm", quick=True, seeds=[0, 1, 2], out=tmp_path, progress=False)
    opts = {**batchnorm.settings_for(True), "chosen_lr": {"plain": 0.01, "BN": 0.1}}
    r = batchnorm.conclude(ctx, runs, opts)
    assert r["verdict"]["reproduced"]
    assert [b["steps"] for b in r["results"]["by_budget"]] == [100, 200]
    assert r["results"]["by_budget"][0]["spread_bn"] == pytest.approx(0.2)
    assert "100: 20.0% vs 40.0%" in r["verdict"]["text"] and "200: 0.0% vs 80.0%" in r["verdict"]["text"]
    assert "-> REPRODUCED" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# lsuv: unit std on held-out data; faster than properly scaled He / orthogonal; the thin network


def _lsuv_numbers(deep_gap=0.05, deep_noise=0.0, thin_lsuv=1.3, thin_base=2.30):
    deep = {}
    for act in lsuv.NETWORKS:
        base = [0.28, 0.29, 0.27]
        deep[act] = {"he": [b + 0.05 for b in base], "orthogonal": base,
                     "lsuv": [b - deep_gap + d for b, d in zip(base, (-deep_noise, 0.0, deep_noise))]}
    thin = {"he": [2.302, 2.303, 2.302], "orthogonal": [thin_base, thin_base - 0.002, thin_base],
            "lsuv": [thin_lsuv - 0.1, thin_lsuv, thin_lsuv + 0.1]}
    return deep, {"tanh": 0.04, "relu": 0.09}, thin


def test_lsuv_verdict_present_and_absent(tmp_path, capsys):
    checks, numbers = lsuv.judge(*_lsuv_numbers())
    assert numbers["relu"]["best"] == "orthogonal" and numbers["relu"]["gap"] == pytest.approx(0.05)
    assert numbers["relu"]["win"]
    assert printed_verdict(tmp_path, capsys, "lsuv", {"checks": checks}).endswith("-> REPRODUCED")
    # effect absent: LSUV worse than properly scaled orthogonal init, and no better on the thin net
    checks, _ = lsuv.judge(*_lsuv_numbers(deep_gap=-0.05, thin_lsuv=2.30))
    assert printed_verdict(tmp_path, capsys, "lsuv", {"checks": checks}).endswith("-> NOT REPRODUCED")
    failed = {k for k, v in checks.items() if not v}
    assert failed == {k for k in checks if "not above the better" in k or "leaves" in k or "advantage" in k}


def test_lsuv_verdict_each_criterion_can_fail():
    deep, std_error, thin = _lsuv_numbers()
    key = "tanh: LSUV's final training loss not above the better of He / orthogonal by > 2 x noise"
    # the paper claims "better or equal": a tie passes (and is not called a win) ...
    checks, numbers = lsuv.judge(*_lsuv_numbers(deep_gap=0.0))
    assert checks[key] and not numbers["tanh"]["win"]
    # ... LSUV behind by 0.05 fails when the seeds agree (noise 0) ...
    assert not lsuv.judge(*_lsuv_numbers(deep_gap=-0.05))[0][key]
    # ... and passes when the per-seed differences scatter by more (0.05 behind, std 0.04: within 2 x noise)
    checks, numbers = lsuv.judge(*_lsuv_numbers(deep_gap=-0.05, deep_noise=0.04))
    assert numbers["tanh"]["noise"] == pytest.approx(0.04) and checks[key]
    # a lead within the noise is not a win
    assert not lsuv.judge(*_lsuv_numbers(deep_gap=0.05, deep_noise=0.04))[1]["tanh"]["win"]
    # a layer off unit std on held-out images
    checks, _ = lsuv.judge(deep, {"tanh": 0.04, "relu": 0.2}, thin)
    assert not checks["LSUV: every layer's std within 0.15 of 1 on held-out images (tanh, relu)"]
    # orthogonal leaves chance on the thin net: reported, not required (the verdict tests He there) ...
    checks, numbers = lsuv.judge(*_lsuv_numbers(thin_base=1.4))  # LSUV 1.2, 1.3, 1.4: a lead within noise
    assert numbers["thin"]["orthogonal_runs_stuck"] == 0 and numbers["thin"]["he_runs_stuck"] == 1
    assert all(checks.values()) and not numbers["thin"]["win"]
    # ... He leaving it fails the verdict
    thin_he = {**thin, "he": [1.3, 1.4, 1.2]}
    checks, numbers = lsuv.judge(deep, std_error, thin_he)
    assert numbers["thin"]["he_runs_stuck"] == 0
    assert not checks["thin: most He runs are still on it (loss > 0.97 ln 10)"]
    assert not checks["thin: LSUV's advantage over He exceeds 2 x noise"]
    # LSUV barely moves on the thin net
    checks, _ = lsuv.judge(*_lsuv_numbers(thin_lsuv=2.1))
    assert not checks["thin: LSUV leaves the chance plateau (mean loss < 0.85 ln 10)"]
    # LSUV's thin-net lead drowned in noise
    thin_noisy = {**thin, "lsuv": [0.5, 2.3, 2.3]}
    checks, numbers = lsuv.judge(deep, std_error, thin_noisy)
    assert not checks["thin: LSUV's advantage over He exceeds 2 x noise"]


def test_trend_word_names_the_direction_with_a_tolerance():
    from initlab.experiments._common import trend_word

    assert trend_word(0.46, 0.17) == "shrinks" and trend_word(0.1, 0.3) == "grows"
    # within 20% of the first value either way: no direction claimed
    assert trend_word(0.368, 0.366) == "stays about the same" == trend_word(1.0, 1.19) == trend_word(1.0, 0.81)
    assert trend_word(1.0, 0.79) == "shrinks" and trend_word(-0.1, 0.2) == "grows"
