"""Every ```python block of README.md and docs/*.md runs as written.

A page is read top to bottom as one session: its blocks run in order in one namespace (a later block
may use what an earlier block of the same page defined, never what another page did), in a fresh
temporary directory, with one intra-op thread. New pages under docs/ are picked up automatically.

Blocks that are not meant to run: put ``<!-- snippet: skip REASON -->`` on the line just before the
opening fence, with the reason (the test refuses a skip without one). A block that shows an error on
purpose: ``<!-- snippet: raises ErrorName -->`` (it must raise an exception of that class name). Keep the
skips few: a block that needs the network, a GPU or a package initlab does not install, a signature that
is not a statement. A slow block should be made smaller instead: each page gets ``LIMIT`` seconds for all
its blocks, and a page over it fails (a slow snippet would slow ``make test`` for everyone). Blocks in
other languages (```text, ```bash, plain ```) are not run.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
MARK = re.compile(r"<!--\s*snippet:\s*(skip|raises)\b\s*(.*?)\s*-->\s*$")
LIMIT = 60  # seconds per page, on a shared 2-core machine; the README's blocks take ~15 s there


class TooSlow(Exception):
    pass


def _alarm(signum, frame):
    raise TooSlow(f"over {LIMIT} s: make the snippet smaller (fewer steps, a smaller model or batch)")


def snippets(text: str) -> list[tuple[int, str, str | None]]:
    """``(line, code, marker or None)`` of every python block of a markdown page; the marker is
    ``"skip REASON"`` or ``"raises ErrorName"``."""
    out = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = MARK.search(before)
        out.append((line, m.group(1), None if mark is None else f"{mark.group(1)} {mark.group(2)}".strip()))
    return out


def test_snippet_extraction_and_skip_marker():  # the parser itself, on a made-up page
    page = ("intro\n```python\nx = 1\n```\ntext\n<!-- snippet: skip needs the network -->\n```python\n"
            "download()\n```\n```bash\nls\n```\n```python title=\"t\"\ny = x + 1\n```\n")
    assert snippets(page) == [(2, "x = 1\n", None), (7, "download()\n", "skip needs the network"),
                              (13, "y = x + 1\n", None)]
    assert snippets("<!-- snippet: raises KeyError -->\n```python\n{}[1]\n```\n")[0][2] == "raises KeyError"


def test_every_page_is_found():
    names = {p.name for p in PAGES}
    assert {"README.md", "probe.md"} <= names and all(p.is_file() for p in PAGES)


def run_blocks(name: str, blocks: list[tuple[int, str, str | None]]) -> None:
    """Run a page's blocks in order in one namespace, within ``LIMIT`` seconds; AssertionError naming
    the page and line of the first block that fails."""
    threads = torch.get_num_threads()
    state = torch.random.get_rng_state()
    namespace: dict = {"__name__": "__main__"}
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(LIMIT)
    try:
        for line, code, mark in blocks:
            kind, _, arg = (mark or "").partition(" ")
            if kind == "skip":
                assert arg, f"{name}:{line}: a skipped snippet must say why"
                continue
            try:
                exec(compile(code, f"{name}:{line}", "exec"), namespace)
            except Exception as exc:
                if kind == "raises" and type(exc).__name__ == arg:
                    continue
                raise AssertionError(f"the snippet at {name} line {line} fails: {type(exc).__name__}: "
                                     f"{exc}\n{code}") from exc
            if kind == "raises":
                raise AssertionError(f"the snippet at {name} line {line} should raise {arg} and does not")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        torch.set_num_threads(threads)
        torch.random.set_rng_state(state)
        import matplotlib.pyplot as plt

        plt.close("all")


def test_the_runner_reports_failing_slow_and_unexplained_snippets(monkeypatch):  # negative controls
    run_blocks("ok.md", [(1, "a = 1\n", None), (5, "b = a + 1\nassert b == 2\n", None),
                         (9, "boom()\n", "skip why"), (12, "{}[1]\n", "raises KeyError")])
    with pytest.raises(AssertionError, match=r"at bad.md line 7 fails: NameError: name 'x' is not defined"):
        run_blocks("bad.md", [(3, "y = 1\n", None), (7, "print(x)\n", None)])
    with pytest.raises(AssertionError, match="a skipped snippet must say why"):
        run_blocks("bad.md", [(3, "y = 1\n", "skip")])
    with pytest.raises(AssertionError, match="line 3 should raise KeyError and does not"):
        run_blocks("bad.md", [(3, "y = 1\n", "raises KeyError")])
    with pytest.raises(AssertionError, match="line 3 fails: ZeroDivisionError"):
        run_blocks("bad.md", [(3, "1 / 0\n", "raises KeyError")])
    monkeypatch.setattr(__import__(__name__), "LIMIT", 1)
    with pytest.raises(AssertionError, match="TooSlow: over 1 s: make the snippet smaller"):
        run_blocks("slow.md", [(2, "import time\nwhile True:\n    time.sleep(0.05)\n", None)])


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_snippets_run(page, tmp_path, monkeypatch):
    blocks = snippets(page.read_text())
    if not blocks:
        pytest.skip(f"{page.name} has no python block")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    run_blocks(page.name, blocks)
