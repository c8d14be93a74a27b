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


# --------------------------------------------------------------------------------------------------
# report quality (issue 16): legends, scales, colour bars, one rounding rule


def _tanh_net(gen, std, depth=6):
    net = nn.Sequential(nn.Linear(16, 32), *[m for _ in range(depth) for m in (nn.Tanh(), nn.Linear(32, 32))])
    for m in net:
        if isinstance(m, nn.Linear):
            initlab.Normal(std=std).init_(m.weight, generator=gen)
            nn.init.zeros_(m.bias)
    return net


def test_percent_columns_print_zero_as_zero_percent(gen):
    r = initlab.probe(_tanh_net(gen, 0.1, depth=2), torch.randn(64, 16, generator=gen))
    lines = r.table(color=False).splitlines()
    header = lines[1].split()
    tanh_row = lines[3].split()  # the first tanh output: nothing exactly 0, nothing saturated
    assert r[1].frac_zero == 0 and r[1].frac_saturated == 0
    for col in ("zero", "dead", "sat"):
        assert tanh_row[header.index(col)] == "0%"
    assert T.fmt_percent(0) == "0%" and T.fmt_percent(0.5) == "50%" and T.fmt_percent(None) == "-"


def test_every_column_is_explained_in_html_and_help(results, tmp_path, capsys):
    from initlab.report.columns import PROBE_COLUMNS, describe

    page = initlab.report.to_html(results, tmp_path / "r.html").read_text()
    legend = page[page.index('<dl class="legend">'):]
    for c in PROBE_COLUMNS:
        assert f"<dt>{c.header}</dt><dd>{c.meaning}</dd>" in legend.replace("&#x27;", "'")
        assert f'title="{c.meaning}"'.replace("'", "&#x27;") in page  # a tooltip on the header
    assert "red</span>: the layer is named by an error verdict" in page and "yellow</span>" in page
    with pytest.raises(SystemExit):
        main(["probe", "--help"])
    helptext = " ".join(capsys.readouterr().out.split())
    for c in PROBE_COLUMNS:
        assert f"{c.header} {c.meaning}" in helptext, c.header
    with pytest.raises(ValueError, match="header must be one of"):
        describe("speed")


def test_each_histogram_panel_has_its_own_range_and_a_label(gen):
    import matplotlib.pyplot as plt

    r = initlab.probe(_tanh_net(gen, 0.05), torch.randn(128, 16, generator=gen))  # std shrinks x~0.28 per layer
    stats = representations(r.layers)
    fig = plot_activations(r)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    for ax, s in zip(axes, stats):
        lo, hi = ax.get_xlim()
        data = s.hist_edges[-1] - s.hist_edges[0]
        assert data <= hi - lo <= 1.2 * data, (s.name, (lo, hi), data)  # scaled to its own histogram
    assert axes[-1].get_xlabel().startswith("activation value") and axes[0].get_xlabel() == ""
    shared = plot_activations(r, sharex="col")  # the old behaviour: one range, the deep layers a spike
    spans = {round(ax.get_xlim()[1] - ax.get_xlim()[0], 12) for ax in shared.axes if ax.get_visible()}
    assert len(spans) == 1
    plt.close("all")


def test_profile_axes_do_not_magnify_noise(gen):
    import matplotlib.pyplot as plt

    from initlab.report.figures import log_limits

    # a healthy GELU net at He-like init: the std wobbles by a few percent from layer to layer
    net = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(64, 64), nn.GELU())], nn.Linear(64, 4))
    initlab.init_model(net, generator=gen)
    r = initlab.probe(net, torch.randn(256, 64, generator=gen))
    fwd = [s.act_std for s in r.profile()]
    assert max(fwd) / min(fwd) < 2  # the wobble
    fig = plot_profile(r)
    for ax in fig.axes[:2]:
        lo, hi = ax.get_ylim()
        assert hi / lo >= 10 - 1e-9  # at least a decade: a few percent is a flat line, not a V
        fig.canvas.draw()
        labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        assert labels and not any("e" in t or "10^" in t for t in labels), labels  # plain numbers
    # negative control: data spanning more than the minimum keeps its own range
    assert log_limits([1e-3, 10.0]) == pytest.approx((1e-3 / 1.1, 11.0))
    plt.close("all")


def test_robust_ylim_ignores_one_outlier_but_not_the_bulk():
    from initlab.report.figures import mark_clipped, robust_ylim

    # five seeds' loss curves near 2.3 -> 0.5; one seed starts at 15.6
    curves = [[2.3 - 0.2 * k for k in range(10)] for _ in range(5)]
    curves[3][0] = 15.6
    lo, hi = robust_ylim(curves)
    assert lo < 0.5 and 2.3 <= hi < 3.0
    clean = robust_ylim([c for i, c in enumerate(curves) if i != 3])
    assert clean == pytest.approx((lo, hi))
    # negative control: when a whole curve is high it sets the limit
    assert robust_ylim([[15.6 - k for k in range(10)]] + curves)[1] > 15.6
    # ratio plots: 1 stays in view and a 1 % wobble gets a span of at least 0.5
    lo, hi = robust_ylim([0.99, 1.01, 1.0], around=1.0, min_span=0.5)
    assert lo <= 0.75 and hi >= 1.25
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    assert mark_clipped(ax, range(10), curves[3], (lo, 3.0)) == 1 and "15.6" in ax.texts[0].get_text()
    plt.close(fig)


def test_monitor_figure_has_a_colour_bar(gen):
    import matplotlib.pyplot as plt

    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    x = torch.randn(32, 8, generator=gen)
    with initlab.Monitor(net, every=1) as mon:
        for _ in range(3):
            net(x)
            mon.step()
    fig = mon.plot()
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "log(1 + count) per bin"]
    assert len(bars) == 1
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len({im.get_clim() for im in images}) == 1  # one colour scale for all panels: the bar reads for each
    assert images[0].get_clim()[0] == 0 and images[0].get_clim()[1] > 0
    plt.close("all")


def test_verdict_and_figure_title_round_the_same_way(gen):
    import matplotlib.pyplot as plt

    from initlab._format import fmt_factor

    r = initlab.probe(_tanh_net(gen, 0.05), torch.randn(128, 16, generator=gen))
    v = next(v for v in r.verdicts if v.code == "vanishing_activations")
    title = plot_activations({"small": r}).axes[0].get_title()
    assert f"about {fmt_factor(v.value)} per layer" in v.message
    assert f"std {fmt_factor(v.value)} per layer (fit)" in title
    given = plot_activations({"small": r}, factors={"small": 0.7071}).axes[0].get_title()
    assert given == "small\nstd x0.71 per layer"
    assert (fmt_factor(0.7149), fmt_factor(0.715001), fmt_factor(2.004), fmt_factor(17.77)) == (
        "x0.71", "x0.72", "x2.00", "x17.8")
    plt.close("all")


@pytest.mark.slow
def test_activations_experiment_verdict_matches_its_figure(tmp_path, monkeypatch):
    """The seed figure's column titles print the very factors of the verdict (one seed keeps it short)."""
    import matplotlib.pyplot as plt

    from initlab import experiments
    from initlab._format import fmt_factor

    titles = []
    real = initlab.plot_activations

    def spy(*args, **kwargs):
        fig = real(*args, **kwargs)
        titles.extend(ax.get_title() for ax in fig.axes if ax.get_title())
        return fig

    monkeypatch.setattr(initlab, "plot_activations", spy)
    monkeypatch.setattr(plt, "close", lambda *a: None)
    r = experiments.run("activations", quick=True, seeds=[0], out=tmp_path, progress=False)
    factors = [fmt_factor(v["factor"]) for v in r["results"].values()]
    assert r["verdict"]["measured"].startswith(", ".join(factors))
    assert [t.splitlines()[1] for t in titles] == [f"std {f} per layer" for f in factors]
    monkeypatch.undo()
    plt.close("all")
