"""Reports: terminal tables, figures, HTML, and the `initlab probe` / `initlab doctor` commands."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from torch import nn

import initlab
from initlab.cli import main
from initlab.report import table as T
from initlab.report.figures import plot_activations, plot_profile, rebin, representations


@pytest.fixture
def results(gen):
    x = torch.randn(64, 8, generator=gen)
    out = {}
    for std in (0.1, 1.0):
        net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
        for m in net:
            if isinstance(m, nn.Linear):
                initlab.Normal(std=std).init_(m.weight, generator=gen)
        out[f"std {std}"] = initlab.probe(net, x)
    return out


# --------------------------------------------------------------------------------------------------
# tables


def test_render_aligns_and_formats():
    rows = [{"name": "a", "x": 1.23456, "n": 3}, {"name": "longer", "x": None, "n": 12}]
    text = T.render(rows, ["name", T.Column("x", "value"), T.Column("n", fmt="03d")], color=False)
    lines = text.splitlines()
    assert lines[0].split() == ["name", "value", "n"]
    assert lines[2] == "a        1.23  003"  # numbers right-aligned under their header
    assert lines[3] == "longer      -  012"
    assert len({len(line) for line in lines}) == 1  # every line padded to the same width


def test_render_colors_only_when_asked(monkeypatch):
    rows = [("a", 0.5), ("b", 2.0)]
    cols = [T.Column(0, "k"), T.Column(1, "v", color=lambda v, row: "red" if v > 1 else None)]
    plain = T.render(rows, cols, color=False)
    colored = T.render(rows, cols, color=True)
    assert "\x1b[" not in plain and "\x1b[31m2\x1b[0m" in colored
    # colour codes do not disturb the alignment
    assert [T.visible_len(line) for line in colored.splitlines()] == [len(line) for line in plain.splitlines()]
    monkeypatch.setenv("NO_COLOR", "1")
    assert not T.use_color()
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert T.use_color()


def test_render_objects_title_and_errors():
    class Row:
        def __init__(self, a):
            self.a = a

    text = T.render([Row(1), Row(22)], ["a"], title="T", footer="end", color=False)
    assert text.splitlines()[0] == "T" and text.splitlines()[-1] == "end"
    with pytest.raises(ValueError, match="columns must be given"):
        T.render([Row(1)])
    with pytest.raises(ValueError, match="style must be"):
        T.style("x", "purple")
    assert T.fmt_number(float("inf")) == "inf" and T.fmt_percent(0.256) == "26%" and T.fmt_percent(None) == "-"


def test_probe_table(gen):
    # a 10-layer tanh net with N(0, 0.01) weights: activations vanish, so the table carries verdicts
    x = torch.randn(64, 8, generator=gen)
    net = nn.Sequential(nn.Linear(8, 32), *[m for _ in range(9) for m in (nn.Tanh(), nn.Linear(32, 32))])
    for m in net:
        if isinstance(m, nn.Linear):
            initlab.Normal(std=0.01).init_(m.weight, generator=gen)
    r = initlab.probe(net, x)
    text = r.table(color=False)
    lines = text.splitlines()
    assert lines[0].startswith("probe: batch 64, backward by cotangent")
    assert [ln.split()[0] for ln in lines[3:3 + len(r.layers)]] == [s.name for s in r.layers]
    assert r.verdicts  # std 0.1 vanishes: the table must carry its verdicts
    for v in r.verdicts:
        assert v.code in text and v.suggestion in text
    colored = r.table(color=True)
    assert "\x1b[33m" in colored or "\x1b[31m" in colored
    assert str(r) == text


# --------------------------------------------------------------------------------------------------
# figures and HTML


def test_figures_are_written(results, tmp_path):
    fig = plot_activations(results, tmp_path / "act.png", title="t")
    assert (tmp_path / "act.png").stat().st_size > 5000
    # one column per result, one row per representation (ReLU outputs and the output layer)
    names = [s.name for s in representations(results["std 0.1"].layers)]
    assert names == ["1", "3", "4"]
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 2 * 3
    assert "std 0.1" in visible[0].get_title()
    fig2 = plot_profile(results, tmp_path / "profile.svg")
    assert (tmp_path / "profile.svg").read_text().startswith("<?xml")
    assert len(fig2.axes[0].lines) == 2
    single = results["std 1.0"].plot(tmp_path / "one.png", layers="all")
    assert len([ax for ax in single.axes if ax.get_visible()]) == len(results["std 1.0"].layers)
    import matplotlib.pyplot as plt

    plt.close("all")


def test_figure_arguments_are_checked(results):
    with pytest.raises(TypeError, match="ProbeResult"):
        plot_activations(3)
    with pytest.raises(TypeError, match="must be a ProbeResult"):
        plot_activations({"a": 1})
    with pytest.raises(ValueError, match="empty"):
        plot_activations({})
    with pytest.raises(ValueError, match="sharex"):
        plot_activations(results, sharex="rows")
    with pytest.raises(ValueError, match="not recorded"):
        plot_activations(results, layers=["nope"])


def test_hide_zeros_removes_relu_spike(results):
    s = results["std 1.0"]["1"]  # a ReLU output: about half its values are exactly 0
    fig = plot_activations(results["std 1.0"], layers=["1"], hide_zeros=True)
    text = [t.get_text() for t in fig.axes[0].texts][0]
    assert "zeros" in text and f"{s.frac_zero:.0%}" in text


def test_rebin_preserves_counts():
    counts = [1.0, 3.0, 0.0, 4.0]
    edges = [0.0, 1.0, 2.0, 3.0, 4.0]
    out = rebin(torch.tensor(counts).numpy(), torch.tensor(edges).numpy(), torch.linspace(-1, 5, 13).numpy())
    assert out.sum() == pytest.approx(8.0) and out[:2].sum() == 0


def test_html_is_self_contained(results, tmp_path):
    path = results["std 1.0"].to_html(tmp_path / "r.html")
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count("data:image/png;base64,") == 2
    assert "http://" not in text and "https://" not in text and "<script" not in text
    for s in results["std 1.0"].layers:
        assert f">{s.name}<" in text
    both = initlab.report.to_html(results, tmp_path / "both.html", title="cmp")
    assert "std 0.1" in both.read_text() and "std 1.0" in both.read_text()


# --------------------------------------------------------------------------------------------------
# CLI


def test_cli_probe_writes_everything(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["probe", "--model", "mlp", "--depth", "2", "--width", "16", "--data", "digits", "--batch", "64",
                 "--init", "normal(std=0.1)", "--init", "he_normal", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "== init normal(std=0.1) ==" in printed and "wrote" in printed
    for name in ("normal_std_0.1", "he_normal"):
        data = json.loads((out / f"{name}.json").read_text())
        assert data["batch_size"] == 64 and data["backward"] == "loss"
        # linear Dense(16), 2 x (Dense(16), ReLU), classifier
        assert [d["name"] for d in data["layers"]] == ["0", "1", "2", "3", "4", "5"]
        assert (out / f"{name}.txt").read_text().startswith("probe: batch 64")
        assert (out / f"{name}.html").stat().st_size > 1000
    for name in ("activations.png", "profile.png", "report.html"):
        assert (out / name).stat().st_size > 1000


def test_cli_probe_errors(tmp_path, capsys):
    assert main(["probe", "--model", "cnn", "--data", "gaussian", "--out", str(tmp_path)]) == 2
    assert "needs image data" in capsys.readouterr().err
    assert main(["probe", "--batch", "0", "--out", str(tmp_path)]) == 2


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "doctor_nets.py").write_text(
        "import torch\nfrom torch import nn\n"
        "def bad():\n"
        "    net = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(32, 32), nn.Tanh())], nn.Linear(32, 2))\n"
        "    with torch.no_grad():\n"
        "        for m in net[::2]:\n"
        "            m.weight.normal_(0, 0.01, generator=torch.Generator().manual_seed(0)); m.bias.zero_()\n"
        "    return net\n"
        "def good():\n"
        "    import initlab\n"
        "    net = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))\n"
        "    initlab.init_model(net, seed=0)\n"
        "    return net\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("doctor_nets", None)


def test_cli_doctor_exit_codes(user_module, capsys):
    assert main(["doctor", "doctor_nets:good", "--input-shape", "128,32"]) == 0
    assert "healthy" in capsys.readouterr().out
    assert main(["doctor", "doctor_nets:bad", "--input-shape", "128,32", "--json", "r.json", "--html", "r.html",
                 "--table"]) == 1
    out = capsys.readouterr().out
    assert "vanishing_activations" in out and "fix:" in out
    assert json.loads((user_module / "r.json").read_text())["healthy"] is False
    assert (user_module / "r.html").stat().st_size > 1000
    codes = ["--ignore", "vanishing_activations", "--ignore", "vanishing_gradients"]
    assert main(["doctor", "doctor_nets:bad", "--input-shape", "128,32", *codes]) == 0
    assert main(["doctor", "doctor_nets:bad", "--input-shape", "128,32", "--ignore", "bogus"]) == 2
    assert main(["doctor", "doctor_nets:missing", "--input-shape", "128,32"]) == 2


def test_cli_doctor_with_data(user_module, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(user_module / "batch.npz", x=rng.normal(size=(100, 32)).astype("float32"), y=rng.integers(0, 2, 100))
    assert main(["doctor", "doctor_nets:good", "--data", "batch.npz", "--labels"]) == 0
    assert "your data" in capsys.readouterr().out
    assert main(["doctor", "doctor_nets:good", "--input-shape", "8,32", "--labels"]) == 2
