"""TensorBoard records of Monitor and ``initlab probe --tensorboard``, read back with TensorBoard's own reader.

Every value read back is compared with what the Monitor / probe measured: scalars are stored by TensorBoard as
float32, so they are compared with a relative tolerance of 1e-6 (float32 has 24 bits, 6e-8 relative); histogram
fields are float64 and compared exactly.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import initlab
from initlab.cli import main
from initlab.integrations import tensorboard as tb
from initlab.probing.health import CODES
from initlab.probing.stats import LayerStats

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

F32 = 1e-6  # relative tolerance of a value that went through float32


def read(logdir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _train(net: nn.Module, mon: initlab.Monitor, steps: int, gen: torch.Generator) -> None:
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    x = torch.randn(64, 12, generator=gen)
    y = torch.randint(0, 3, (64,), generator=gen)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        mon.step()


def _net(std: float | None = None, depth: int = 4) -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        mods: list[nn.Module] = []
        width = 12
        for _ in range(depth):
            mods += [nn.Linear(width, 32), nn.Tanh()]
            width = 32
        mods.append(nn.Linear(32, 3))
        net = nn.Sequential(*mods)
        for m in net:  # Glorot with tanh's gain 5/3: healthy; N(0, 0.01^2): activations and gradients vanish
            if isinstance(m, nn.Linear):
                if std is None:
                    nn.init.xavier_normal_(m.weight, gain=5 / 3)
                else:
                    nn.init.normal_(m.weight, std=std)
                nn.init.zeros_(m.bias)
    return net


# --------------------------------------------------------------------------------------------------
# Monitor


def test_monitor_records_read_back_equal_what_it_measured(tmp_path, gen):
    net = _net()
    with initlab.Monitor(net, every=3, tensorboard=tmp_path / "run") as mon:
        _train(net, mon, 8, gen)
    acc = read(tmp_path / "run")
    assert mon.steps == [0, 3, 6]
    expected = set(tb.verdict_counts([]))
    for h in mon.history:
        expected |= set(tb.layer_scalars(list(h.values())))
    assert set(acc.Tags()["scalars"]) == expected
    # a Linear layer carries all three headline statistics; an activation record has no weight
    assert {"act_std/0", "grad_std/0", "grad_weight_ratio/0", "act_std/1", "frac_saturated/1"} <= expected
    assert "grad_weight_ratio/1" not in expected
    for name in mon.names:
        for stat in tb.SCALARS:
            tag = f"{stat}/{name}"
            if tag not in expected:
                continue
            events = acc.Scalars(tag)
            assert [e.step for e in events] == mon.steps
            np.testing.assert_allclose([e.value for e in events], mon.series(name, stat), rtol=F32)
    # the histogram of each point and step is the monitor's own
    assert set(acc.Tags()["histograms"]) == {f"activations/{n}" for n in mon.names}
    for step, h in zip(mon.steps, mon.history):
        for name, s in h.items():
            (event,) = [e for e in acc.Histograms(f"activations/{name}") if e.step == step]
            hv = event.histogram_value
            assert hv.num == s.count == sum(hv.bucket)
            assert list(hv.bucket) == [float(c) for c in s.hist_counts]  # no under/overflow: per-step range
            assert list(hv.bucket_limit) == s.hist_edges[1:]
            assert hv.min == s.act_min and hv.max == pytest.approx(s.hist_edges[-1])
            assert hv.sum == pytest.approx(s.act_mean * s.count, rel=1e-12, abs=1e-9)
    # healthy: every verdict count is 0 at every step; the monitor kept its verdicts too
    assert mon.verdicts == [[], [], []]
    for tag in tb.verdict_counts([]):
        assert [e.value for e in acc.Scalars(tag)] == [0.0, 0.0, 0.0]
    assert _hooks(net) == 0


def test_monitor_verdict_counts_of_an_unhealthy_net(tmp_path, gen):
    net = _net(std=0.01, depth=6)
    with initlab.Monitor(net, every=2, tensorboard=tmp_path) as mon:
        _train(net, mon, 3, gen)
    acc = read(tmp_path)
    codes = [[v.code for v in vs] for vs in mon.verdicts]
    # at step 0 both profiles vanish; two SGD steps already regrow the last layers' outputs, so the counts move
    assert mon.steps == [0, 2] and "vanishing_activations" in codes[0] and all(codes)
    for code in CODES:  # each count is the number of verdicts of that code at that step
        values = [e.value for e in acc.Scalars(f"verdicts/{code}")]
        assert values == [float(c.count(code)) for c in codes], code
    assert [e.value for e in acc.Scalars("verdicts/total")] == [float(len(c)) for c in codes]
    for severity, tag in (("error", "verdicts/errors"), ("warning", "verdicts/warnings")):
        counts = [float(sum(v.severity == severity for v in vs)) for vs in mon.verdicts]
        assert [e.value for e in acc.Scalars(tag)] == counts
    assert mon.to_dict()["verdicts"][0][0]["code"] == mon.verdicts[0][0].code
    # the thresholds decide: with a per-layer drift allowed up to x1e6 the same recording raises no depth verdict
    net = _net(std=0.01, depth=6)
    with initlab.Monitor(net, every=2, thresholds={"factor": 1e6, "total": 1e6}) as relaxed:
        _train(net, relaxed, 1, gen)
    assert relaxed.verdicts == [[]]
    with pytest.raises(ValueError, match="thresholds: unknown name"):
        initlab.Monitor(net, thresholds={"nope": 1})


def test_values_outside_a_fixed_range_are_extra_buckets(tmp_path, gen):
    net = _net()
    with initlab.Monitor(net, every=1, hist_range=(-0.05, 0.05), bins=10, tensorboard=tmp_path) as mon:
        _train(net, mon, 1, gen)
    acc = read(tmp_path)
    s = mon.history[0]["1"]  # tanh outputs: most fall outside [-0.05, 0.05]
    assert s.hist_under > 0 and s.hist_over > 0
    (event,) = acc.Histograms("activations/1")
    hv = event.histogram_value
    assert list(hv.bucket) == [s.hist_under, *s.hist_counts, s.hist_over]
    assert list(hv.bucket_limit) == [s.hist_edges[0], *s.hist_edges[1:], s.act_max]
    assert sum(hv.bucket) == hv.num == s.count
    assert hv.min == s.act_min and hv.max == s.act_max


def test_histogram_and_summary_helpers():
    s = LayerStats(name="fc", kind="linear", count=10, act_mean=0.5, act_std=2.0, act_min=-3.0, act_max=4.0,
                   hist_counts=[3, 4], hist_edges=[-1.0, 0.0, 1.0], hist_under=1, hist_over=2)
    h = tb.histogram(s)
    assert h["bucket_limits"] == [-1.0, 0.0, 1.0, 4.0] and h["bucket_counts"] == [1, 3, 4, 2]
    assert h["sum"] == 5.0 and h["sum_squares"] == (4.0 + 0.25) * 10 and h["min"] == -3.0 and h["max"] == 4.0
    assert tb.histogram(LayerStats(name="empty", kind="linear")) is None
    layers = [LayerStats(name="a", kind="linear", act_std=1.0, grad_std=0.5, grad_weight_ratio=0.1),
              LayerStats(name="b", kind="activation", act_std=float("nan"), grad_std=2.0),
              LayerStats(name="c", kind="linear", act_std=3.0, grad_std=None, grad_weight_ratio=0.3),
              LayerStats(name="ln", kind="norm", act_std=1.0, grad_std=1.0, grad_weight_ratio=12.0)]
    from initlab.probing.health import Verdict

    verdicts = [Verdict("dead_units", "a", "m", "s", "error"), Verdict("output_scale", "c", "m", "s")]
    out = tb.summary(layers, verdicts)
    assert out == {"errors": 1.0, "warnings": 1.0, "verdict/dead_units": 1.0, "verdict/output_scale": 1.0,
                   "act_std_min": 1.0, "act_std_max": 3.0, "grad_std_min": 0.5, "grad_std_max": 2.0,
                   "grad_weight_ratio_max": 0.3}  # the NaN std and the norm gain's ratio are left out of the extremes
    all_nan = tb.summary([LayerStats(name="b", kind="linear", act_std=float("nan"))], [])
    assert math.isnan(all_nan["act_std_min"]) and "grad_std_min" not in all_nan


def test_monitor_tensorboard_bad_arguments(tmp_path):
    net = _net()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(TypeError, match="tensorboard must be None or a folder"):
        initlab.Monitor(net, tensorboard=3)
    with pytest.raises(ValueError, match="tensorboard .*is a file"):
        initlab.Monitor(net, tensorboard=tmp_path / "afile")
    with pytest.raises(ValueError, match="tensorboard .*afile.* is a file, not a folder"):
        initlab.Monitor(net, tensorboard=tmp_path / "afile" / "run")
    assert _hooks(net) == 0


def test_a_missing_tensorboard_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` now raises ImportError
    net = _net()
    with pytest.raises(ImportError, match=r"tensorboard: .*needs the tensorboard package.*pip install "
                                          r"initlab\[tensorboard\]"):
        initlab.Monitor(net, tensorboard=tmp_path / "tb")
    assert _hooks(net) == 0 and not (tmp_path / "tb").exists()
    with initlab.Monitor(net, every=1) as mon:  # without tensorboard= nothing is needed
        net(torch.zeros(2, 12))
    assert mon.steps == [0]
    code = main(["probe", "--data", "gaussian", "--depth", "1", "--width", "8", "--batch", "16", "--no-html",
                 "--out", str(tmp_path / "out"), "--tensorboard", str(tmp_path / "tb")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--tensorboard" in err[0] and "pip install" in err[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "tb").exists()


def test_import_initlab_does_not_import_tensorboard():
    code = ("import sys, torch, initlab\n"
            "net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())\n"
            "with initlab.Monitor(net, every=1) as mon:\n"
            "    net(torch.zeros(2, 3))\n"
            "initlab.probe(net, torch.zeros(8, 3))\n"
            "print(sorted(m for m in sys.modules if 'tensorboard' in m or m.startswith('initlab.integrations')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "PATH": ""})
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------------
# initlab probe --tensorboard


PROBE = ["probe", "--model", "mlp", "--depth", "3", "--width", "24", "--activation", "tanh", "--data", "gaussian",
         "--batch", "128", "--no-html"]


def test_cli_probe_tensorboard_runs_read_back(tmp_path, capsys):
    inits = ["glorot_normal", "normal(std=0.01)"]
    argv = [*PROBE, "--out", str(tmp_path / "out"), "--tensorboard", str(tmp_path / "tb")]
    for spec in inits:
        argv += ["--init", spec]
    assert main(argv) == 0
    assert "tb" in capsys.readouterr().out
    runs = sorted(p.name for p in (tmp_path / "tb").iterdir())
    assert runs == ["glorot_normal", "normal_std_0.01"]  # one run per init, no temporary folder left
    for run in runs:
        data = json.loads((tmp_path / "out" / f"{run}.json").read_text())
        acc = read(tmp_path / "tb" / run)
        layers = [LayerStats.from_dict(d) for d in data["layers"]]
        for s in layers:
            (event,) = acc.Scalars(f"act_std/{s.name}")
            assert event.step == 0 and event.value == pytest.approx(s.act_std, rel=F32)
            (g,) = acc.Scalars(f"grad_std/{s.name}")
            assert g.value == pytest.approx(s.grad_std, rel=F32)
            (h,) = acc.Histograms(f"activations/{s.name}")
            assert list(h.histogram_value.bucket) == [float(c) for c in s.hist_counts]
        codes = [v["code"] for v in data["verdicts"]]
        (total,) = acc.Scalars("verdicts/total")
        (vanishing,) = acc.Scalars("verdicts/vanishing_activations")
        assert total.value == len(codes) and vanishing.value == codes.count("vanishing_activations")
        chain = initlab.ProbeResult.from_dict(data).profile()
        profile = acc.Scalars("profile/act_std")
        assert [e.step for e in profile] == list(range(len(chain))) and len(chain) == 5
        np.testing.assert_allclose([e.value for e in profile], [s.act_std for s in chain], rtol=F32)
    # the negative control of the verdict counts: N(0, 0.01) vanishes, Glorot does not
    assert read(tmp_path / "tb" / "glorot_normal").Scalars("verdicts/vanishing_activations")[0].value == 0
    assert read(tmp_path / "tb" / "normal_std_0.01").Scalars("verdicts/vanishing_activations")[0].value == 1


def test_cli_probe_tensorboard_rerun_replaces_the_run(tmp_path, capsys):
    argv = [*PROBE, "--depth", "1", "--out", str(tmp_path / "out"), "--tensorboard", str(tmp_path / "tb")]
    assert main([*argv, "--seed", "1"]) == 0
    assert main([*argv, "--seed", "2"]) == 0
    capsys.readouterr()
    assert [p.name for p in (tmp_path / "tb").iterdir()] == ["default"]
    assert len(list((tmp_path / "tb" / "default").iterdir())) == 1  # one event file: the second run's
    data = json.loads((tmp_path / "out" / "default.json").read_text())
    (event,) = read(tmp_path / "tb" / "default").Scalars("act_std/0")
    assert event.value == pytest.approx(data["layers"][0]["act_std"], rel=F32)


def test_write_run_is_all_or_nothing(tmp_path, monkeypatch):
    layers = [LayerStats(name="fc", kind="linear", act_std=1.0, is_layer=True)]
    first = tb.write_run(tmp_path, "run", layers, [])
    before = {p.name: p.read_bytes() for p in first.iterdir()}

    def boom(self, layers):
        raise OSError("disk full")

    monkeypatch.setattr(tb.ProbeWriter, "write_profile", boom)
    with pytest.raises(OSError, match="disk full"):
        tb.write_run(tmp_path, "run", [LayerStats(name="fc", kind="linear", act_std=2.0)], [])
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no .part folder left
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before  # the previous run untouched


@pytest.mark.parametrize("where", ["afile", "afile/sub"])
def test_cli_probe_unwritable_tensorboard_is_one_line_exit_2(tmp_path, capsys, where):
    (tmp_path / "afile").write_text("x")
    code = main([*PROBE, "--out", str(tmp_path / "out"), "--tensorboard", str(tmp_path / where)])
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--tensorboard" in lines[0] and "is a file" in lines[0]
    assert cap.out == "" and not (tmp_path / "out").exists()  # refused before any work


# --------------------------------------------------------------------------------------------------
# The screenshots of docs/tensorboard.md: TensorBoard itself serving what Monitor wrote


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - localhost only
        return r.read()


def _colour_shares(png: Path) -> tuple[float, float, float]:
    """Shares of TensorBoard orange in the header, and of the two runs' colours (orange, blue) in the chart area
    (below the header, right of the side bar, whose run check boxes carry the same colours)."""
    import matplotlib.image

    rgb = (matplotlib.image.imread(png)[..., :3] * 255).astype(int)

    def orange(a):
        return float(((a[..., 0] > 200) & (a[..., 1] > 60) & (a[..., 1] < 170) & (a[..., 2] < 110)).mean())

    charts = rgb[150:, 360:]
    r, g, b = charts[..., 0], charts[..., 1], charts[..., 2]
    blue = float(((b > 150) & (r < 80) & (g > 60) & (g < 160)).mean())
    return orange(rgb[:50]), orange(charts), blue


@pytest.mark.slow
def test_tensorboard_serves_the_monitor_records_screenshots(tmp_path, gen):
    import shutil
    import time

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium to take the screenshots")
    logdir = tmp_path / "runs"
    for run, std in (("glorot_tanh", None), ("normal_0.01", 0.01)):  # a healthy and a vanishing deep tanh net
        net = _net(std=std, depth=6)
        with initlab.Monitor(net, every=3, tensorboard=logdir / run) as mon:
            _train(net, mon, 31, gen)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", "runs", "--port", str(port),
                               "--host", "127.0.0.1", "--load_fast", "false"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        tags: dict = {}
        for _ in range(120):  # TensorBoard loads the runs in the background: poll its API until both are in
            time.sleep(0.5)
            try:
                tags = json.loads(_get(f"{base}/data/plugin/scalars/tags"))
            except OSError:
                continue
            if set(tags) == {"glorot_tanh", "normal_0.01"} and all("verdicts/total" in t for t in tags.values()):
                break
        assert set(tags) == {"glorot_tanh", "normal_0.01"}
        assert {"act_std/10", "grad_std/0", "verdicts/vanishing_activations"} <= set(tags["normal_0.01"])
        served = json.loads(_get(f"{base}/data/plugin/scalars/scalars?run=normal_0.01&tag=act_std/10"))
        assert [row[1] for row in served] == mon.steps  # [wall time, step, value] rows, the monitor's steps
        np.testing.assert_allclose([row[2] for row in served], mon.series("10", "act_std"), rtol=F32)
        shots = {}
        pages = (("histograms", "histograms&tagFilter=activations%2F(0%7C10)%24"),
                 ("scalars", "scalars&_smoothingWeight=0&tagFilter=act_std%2F(0%7C10)%24%7Cverdicts%2Ftotal"))
        for name, page in pages:
            shots[name] = tmp_path / f"tensorboard_{name}.png"
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                            "--disable-component-update", "--disable-sync", "--no-first-run",
                            "--enable-unsafe-swiftshader", f"--user-data-dir={tmp_path / 'chromium'}",
                            f"--screenshot={shots[name]}", "--window-size=1400,900", "--virtual-time-budget=20000",
                            f"{base}/#{page}"], capture_output=True, timeout=120, check=False)
            assert shots[name].is_file(), name
            # the orange header is drawn, and below it both runs' curves or histograms (orange and blue): a page
            # whose charts failed to draw has neither colour there (measured: 0.0015 and 0 on such a page; 0.002
            # and 0.003 on the scalars, 0.03 and 0.02 on the histograms)
            header, run1, run2 = _colour_shares(shots[name])
            assert header > 0.5 and run1 > 1e-3 and run2 > 1e-3, (name, header, run1, run2)
    finally:
        server.terminate()
        server.wait(timeout=30)
    if os.environ.get("INITLAB_WRITE_DOCS"):  # regenerate the figures of docs/tensorboard.md
        docs = Path(__file__).resolve().parents[1] / "docs"
        for name, png in shots.items():
            shutil.copyfile(png, docs / f"tensorboard_{name}.png")
