"""Every experiment in --quick mode: its files, its JSON, and the expected shape read from its numbers.

The expected shapes are the issue's acceptance criteria and each experiment's own verdict, checked here
from the raw numbers in NAME.json (not only from the stored ``reproduced`` flag). All runs use fixed seeds,
so they are deterministic; the margins quoted in the comments are those of these seeds.
"""

import csv
import json

import pytest
import torch

from initlab import experiments
from initlab.cli import main


def run_quick(name, tmp_path, **kw):
    result = experiments.run(name, quick=True, out=tmp_path, progress=False, **kw)
    # the JSON on disk is strict (no NaN/inf) and equals the returned payload
    with open(tmp_path / f"{name}.json") as f:
        on_disk = json.load(f, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert on_disk == result
    with open(tmp_path / f"{name}.csv") as f:
        table = list(csv.reader(f))
    assert table[0] == result["columns"] and len(table) == len(result["rows"]) + 1
    assert result["figures"] and all((tmp_path / fig).stat().st_size > 1000 for fig in result["figures"])
    assert all(fig.startswith(name) and fig.endswith(".png") for fig in result["figures"])
    verdict = result["verdict"]
    assert verdict["text"].startswith(f"{name}: expected ") and verdict["checks"]
    assert verdict["reproduced"] == all(verdict["checks"].values())
    assert result["quick"] is True and result["seeds"]
    return result


@pytest.mark.slow
def test_activations(tmp_path, capsys):
    state = torch.random.get_rng_state()
    r = run_quick("activations", tmp_path)
    # models, inits and probes all draw from their own seeded generators
    assert torch.equal(torch.random.get_rng_state(), state)
    factors = {float(k): v["factor"] for k, v in r["results"].items()}
    # the acceptance: within 0.1 of 0.71, 1.0 and 2.0 (these seeds give 0.71, 1.00, 2.00)
    for sigma, target in ((0.10, 0.71), (0.14, 1.0), (0.28, 2.0)):
        assert abs(factors[sigma] - target) <= 0.1, (sigma, factors[sigma])
    assert r["verdict"]["reproduced"]
    out = capsys.readouterr().out
    assert "std L1" in out and "-> REPRODUCED" in out


@pytest.mark.slow
def test_saturation(tmp_path):
    r = run_quick("saturation", tmp_path)
    sweep = r["results"]["sweep"]
    assert len(sweep["standardized"]) == 7
    for d, v in sweep["standardized"].items():
        # the acceptance: 1/3 within 0.02 for every d (this run: 0.332..0.337)
        assert abs(v["variance"] - 1 / 3) <= 0.02, (d, v["variance"])
        assert v["outside"] < 1e-3
    for v in sweep["raw"].values():
        assert v["outside"] > 0.5 and v["mean_slope"] < 0.05
    slopes = r["results"]["slopes"]
    assert slopes["at_2"] == pytest.approx(0.104994, rel=1e-5)
    assert slopes["at_10"] == pytest.approx(4.5396e-5, rel=1e-4)
    assert 2000 < slopes["ratio"] < 2500
    assert r["verdict"]["reproduced"]


# depth and glorot: tests/test_experiment_sci1.py (verdict controls and the --quick runs)


@pytest.mark.slow
def test_batchnorm(tmp_path):
    r = run_quick("batchnorm", tmp_path)
    s = r["results"]["summary"]
    assert len(s) == 12
    for key, v in s.items():
        if "| BN |" in key:
            assert v["test_error"] < 0.5, key
            assert v["test_error"] < s[key.replace("BN", "plain")]["test_error"], key
        elif "lr 1x" in key:
            assert v["test_error"] > 0.8, key
    # the too-large plain network overflows
    assert s["too large | plain | lr 1x"]["diverged"] >= 1
    assert r["verdict"]["reproduced"]


@pytest.mark.slow
def test_pretraining(tmp_path):
    r = run_quick("pretraining", tmp_path)
    s = r["results"]["summary"]
    # this run: random 17.9%, rbm 15.6%, dae 15.9%
    assert s["rbm"]["test_error"] < s["random"]["test_error"]
    assert s["dae"]["test_error"] < s["random"]["test_error"]
    for run in r["results"]["runs"]["rbm"]:
        # every pretrained layer's reconstruction error went down
        assert run["pretraining"] and all(layer["errors"][-1] < layer["errors"][0] for layer in run["pretraining"])
    assert r["verdict"]["reproduced"]


# deep-linear: tests/test_experiment_sci1.py


@pytest.mark.slow
def test_lsuv(tmp_path):
    r = run_quick("lsuv", tmp_path)
    s = r["results"]["summary"]
    for act in ("tanh", "relu"):
        assert s[f"{act} | lsuv"]["max_std_error"] <= 0.15
        assert s[f"{act} | lsuv"]["final_train_loss"] <= 1.1 * min(s[f"{act} | he"]["final_train_loss"],
                                                                   s[f"{act} | orthogonal"]["final_train_loss"])
    assert s["relu | orthogonal"]["layer_std"][-2] < 0.01
    # LSUV went through the real initlab.lsuv: one forward pass, every Linear rescaled
    info = r["results"]["runs"]["tanh | lsuv"][0]["lsuv"]
    assert info["forward_passes"] <= 2 and len(info["std_after"]) == 21
    assert r["verdict"]["reproduced"]


def test_registry_and_bad_arguments(tmp_path):
    assert experiments.available() == ["activations", "saturation", "depth", "glorot", "batchnorm", "pretraining",
                                       "deep-linear", "lsuv", "trainable-depth", "isometry", "mutransfer"]
    with pytest.raises(ValueError, match="experiment must be one of"):
        experiments.run("nope", out=tmp_path)
    with pytest.raises(ValueError, match="seeds"):
        experiments.run("saturation", seeds=0, out=tmp_path)
    with pytest.raises(ValueError, match="seeds"):
        experiments.run("saturation", seeds=[], out=tmp_path)
    with pytest.raises(TypeError, match="seeds"):
        experiments.run("saturation", seeds=1.5, out=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing written on bad input


def test_seeds_argument_and_cli(tmp_path, capsys):
    rc = main(["experiment", "saturation", "--quick", "--seeds", "1", "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "saturation: expected" in out and "-> REPRODUCED" in out
    assert json.loads((tmp_path / "saturation.json").read_text())["seeds"] == [0]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        r = experiments.run("saturation", quick=True, seeds=[3, 5], out=tmp_path, progress=False)
        assert torch.get_num_threads() == 2  # the run's single thread is given back
    finally:
        torch.set_num_threads(before)
    assert r["seeds"] == [3, 5] and r["threads"] == 1
    assert main(["experiment", "--list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in experiments.NAMES)
    assert main(["experiment", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err
