"""The HTML report in a real browser: headless Chromium (Debian's ``chromium``; ``make test``'s set-up
installs it when it is missing) opens a report, and the test checks what a reader would see: no console
error, every image decoded and not blank, the table, its legend and the verdicts present. A screenshot is
kept under ``build/test-artifacts/`` (``docs/report.png`` is one of them).

Without Chromium the test FAILS with the install command; set ``INITLAB_NO_BROWSER=1`` to skip it on
purpose (a machine where no browser may be installed).

How: the test copies the report and puts a small checker script at the top of the copy (the report
itself carries no script). On ``load`` the checker reads every ``<img>`` (``naturalWidth``, and the
pixels, drawn on a canvas: a blank image has a single colour), collects ``error`` events (a broken
image, a script error) and writes its findings as JSON into the page, which ``chromium --dump-dom``
prints. Console messages are read from Chromium's log (``--enable-logging=stderr``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

import initlab

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "build" / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars"]

CHECKER = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  var t = e.target;
  window.__errors.push(t && t.tagName ? ("failed to load " + t.tagName + " " + (t.alt || "")) : String(e.message));
}, true);
window.addEventListener("load", function () {
  var out = {images: [], tables: document.querySelectorAll("table.probe").length,
             rows: document.querySelectorAll("table.probe tr").length,
             legend: Array.prototype.map.call(document.querySelectorAll("dl.legend dt"), function (d) {
               return d.textContent; }),
             verdicts: Array.prototype.map.call(document.querySelectorAll("div.v b"), function (b) {
               return b.textContent; }),
             healthy: document.querySelectorAll("div.ok").length};
  Array.prototype.forEach.call(document.images, function (img) {
    var info = {alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
                colours: 0, dark: 0};
    if (img.naturalWidth > 0) {
      var c = document.createElement("canvas");
      c.width = img.naturalWidth; c.height = img.naturalHeight;
      var g = c.getContext("2d");
      g.drawImage(img, 0, 0);
      var d = g.getImageData(0, 0, c.width, c.height).data, seen = {};
      for (var i = 0; i < d.length; i += 4 * 7) {  // every 7th pixel is plenty
        seen[(d[i] >> 4) + "," + (d[i + 1] >> 4) + "," + (d[i + 2] >> 4)] = 1;
        if (d[i] + d[i + 1] + d[i + 2] < 200) info.dark++;
      }
      info.colours = Object.keys(seen).length;
    }
    out.images.push(info);
  });
  out.errors = window.__errors;
  var pre = document.createElement("pre");
  pre.id = "initlab-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str | None:
    """The Chromium executable: $CHROMIUM, or chromium / chromium-browser / google-chrome on PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> str:
    if os.environ.get("INITLAB_NO_BROWSER") == "1":
        pytest.skip("INITLAB_NO_BROWSER=1: the browser test is skipped on purpose")
    exe = chromium()
    if exe is None:
        pytest.fail("the browser test needs Chromium: `apt-get install -y chromium` (make test installs it when "
                    "run as root), or set CHROMIUM=/path/to/chrome; INITLAB_NO_BROWSER=1 skips the test",
                    pytrace=False)
    return exe


def run_chromium(exe: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="initlab-chromium-") as profile:
        return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "HOME": profile})


def console_messages(log: str) -> list[str]:
    """The console messages in Chromium's log (``--enable-logging=stderr``): Chromium logs every one at
    INFO level, ``[pid:tid:time:INFO:CONSOLE:12] "Uncaught ...", source: file:///... (12)``, whatever its
    console level. The report has no script, so any message at all (an uncaught error, a refused
    resource) is a defect."""
    return [line for line in log.splitlines() if re.search(r":CONSOLE[:(]\d+", line)]


def test_console_parser_finds_messages():  # the check below can fail
    log = ('[1:2:1130/1.0:WARNING:media/gpu/vaapi/vaapi_wrapper.cc:1655] drmGetDevices2() has not found any devices\n'
           '[1:2:1130/1.0:INFO:CONSOLE:9] "Uncaught ReferenceError: x is not defined", source: file:///r.html (9)\n'
           '[1:2:1130/1.0:INFO:CONSOLE(3)] "hello", source: file:///r.html (3)')
    assert console_messages(log) == log.splitlines()[1:]


def inspect(exe: str, html: Path, tmp: Path) -> dict:
    """What the checker script saw in ``html`` (plus ``console``: the console messages)."""
    text = html.read_text()
    probe_page = tmp / f"checked-{html.name}"
    probe_page.write_text(text.replace("<head>", "<head>" + CHECKER, 1))
    done = run_chromium(exe, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom",
                        probe_page.as_uri())
    found = re.search(r'<pre id="initlab-check">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the checker did not run (chromium exit {done.returncode}): {done.stderr[-2000:]}"
    import html as html_mod

    out = json.loads(html_mod.unescape(found.group(1)))
    out["console"] = console_messages(done.stderr)
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, dict]:
    """A two-init comparison: a vanishing N(0, 0.01) tanh net (verdicts) and He (healthy)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(128, 16, generator=gen)
    results = {}
    for label, std in (("N(0, 0.01)", 0.01), ("Glorot", (1 / 32) ** 0.5)):
        net = nn.Sequential(nn.Linear(16, 32), *[m for _ in range(6) for m in (nn.Tanh(), nn.Linear(32, 32))])
        for m in net:
            if isinstance(m, nn.Linear):
                initlab.Normal(std=std).init_(m.weight, generator=gen)
                nn.init.zeros_(m.bias)
        results[label] = initlab.probe(net, x)
    path = tmp_path_factory.mktemp("html") / "report.html"
    initlab.report.to_html(results, path, title="initlab probe: two inits of a 7-layer tanh MLP")
    return path, results


def test_report_reads_in_a_browser(browser, report, tmp_path):
    path, results = report
    seen = inspect(browser, path, tmp_path)
    assert seen["errors"] == [] and seen["console"] == [], (seen["errors"], seen["console"])
    # two figures: histograms and profile; each decoded, of a plausible size, and drawn (many colours, ink)
    assert [i["alt"] for i in seen["images"]] == ["activation histograms", "std per layer"]
    for img in seen["images"]:
        assert img["complete"] and img["width"] > 300 and img["height"] > 200, img
        assert img["colours"] >= 8 and img["dark"] > 100, img  # a blank or single-colour image fails
    # one table per result, a header and one row per recorded point; the legend explains every header
    assert seen["tables"] == 2
    assert seen["rows"] == sum(len(r.layers) + 1 for r in results.values())
    assert seen["legend"][:3] == ["layer", "kind", "act"] and {"zero", "dead", "sat", "sym", "gw/w"} <= set(
        seen["legend"])
    codes = [v.code for v in results["N(0, 0.01)"].verdicts]
    assert codes and [b.split()[-1] for b in seen["verdicts"]] == codes
    assert seen["healthy"] == 1  # the Glorot net
    # the screenshot, kept for the docs (docs/report.png is one)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    done = run_chromium(browser, f"--screenshot={shot}", "--window-size=1400,2600", path.as_uri())
    assert shot.is_file() and shot.stat().st_size > 20_000, done.stderr[-2000:]


def test_the_checker_sees_a_broken_and_a_blank_image(browser, tmp_path):
    """Negative control: an image that does not decode, a blank one, a script error."""
    blank = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg==")
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
                    '<img alt="broken" src="data:image/png;base64,AAAA">'
                    f'<img alt="blank" src="data:image/png;base64,{blank}"><script>notDefined()</script></body></html>')
    seen = inspect(browser, page, tmp_path)
    broken, one_pixel = seen["images"]
    assert broken["width"] == 0 and any("IMG" in e for e in seen["errors"])
    assert any("notDefined" in e for e in seen["errors"]) and any("notDefined" in e for e in seen["console"])
    assert one_pixel["colours"] == 1 and one_pixel["dark"] == 0
    assert seen["tables"] == 0 and seen["verdicts"] == [] and seen["legend"] == []


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine (make test cannot run here)")
@pytest.mark.parametrize("apt_status", [0, 100])
def test_make_installs_chromium_when_it_is_missing(tmp_path, apt_status):
    """The Makefile's `browser` step, on a PATH without chromium: as root it calls apt-get (a fake one here);
    when that fails, or without root or sudo, it says how to install it; INITLAB_NO_BROWSER=1 skips it."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("id", "env"):
        (fake / tool).symlink_to(shutil.which(tool))
    (fake / "apt-get").write_text(f'#!/bin/sh\necho "apt-get $*" >> {tmp_path}/calls\nexit {apt_status}\n')
    (fake / "apt-get").chmod(0o755)
    env = {"PATH": str(fake), "HOME": str(tmp_path)}

    def make(**extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([shutil.which("make"), "-s", "-C", str(ROOT), "browser"], capture_output=True,
                              text=True, env={**env, **extra}, timeout=60)

    done = make()
    calls = (tmp_path / "calls").read_text() if (tmp_path / "calls").exists() else ""
    if os.geteuid() == 0:
        assert calls.startswith("apt-get update")
        assert ("apt-get install -y -qq chromium" in calls) == (apt_status == 0)  # a failed update stops there
        assert ("could not install chromium" in done.stderr) == (apt_status != 0)
    else:  # no sudo on this PATH
        assert calls == "" and "could not install chromium" in done.stderr
    assert done.returncode == 0  # the set-up goes on; the browser test is what fails, and says why
    (tmp_path / "calls").unlink(missing_ok=True)
    skipped = make(INITLAB_NO_BROWSER="1")
    assert not (tmp_path / "calls").exists() and skipped.stderr == "" and skipped.returncode == 0
