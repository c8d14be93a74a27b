"""Every command with bad arguments: exit status 2, ONE line on stderr naming the culprit, no traceback, nothing
written.

``initlab.cli.main`` runs in-process. An argparse usage error leaves through ``SystemExit(2)``, any other user
error is returned as 2; either way the process exits with 2. Warnings a real process would print on stderr are
recorded and counted as stderr lines. Each command runs in an empty temporary folder holding only the factory
module and a plain file ``afile``; the folder must be exactly as it was afterwards (no output, no partial
``.part`` file, no empty output folder).

The commands are discovered from ``build_parser()``: a new command fails ``test_every_command_is_covered``
until it has a minimal valid command line here (for the unknown-option test) and bad-value cases.
"""

from __future__ import annotations

import argparse
import re
import time
import warnings
from pathlib import Path

import pytest

from initlab.cli import build_parser, main

MODULE = "initlab_cli_errors_models"
M = f"{MODULE}:mlp"

MODELS = '''
import torch
from torch import nn


def mlp():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))


def boom():
    raise RuntimeError("the factory exploded")


def not_a_model():
    return 5
'''


@pytest.fixture
def cli(tmp_path, monkeypatch):
    (tmp_path / f"{MODULE}.py").write_text(MODELS)
    (tmp_path / "afile").write_text("a plain file: not a folder, not an archive of arrays\n")
    (tmp_path / "text.npz").write_text("a text file named like an archive\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INITLAB_TRACEBACK", raising=False)
    return tmp_path


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if "__pycache__" not in p.parts}


def run(capsys, argv: list[str]) -> tuple[int, str, list[str], float]:
    """(exit status, stdout, stderr lines including the warnings a process would print, seconds)."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for quiet in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", quiet)  # ignored by a plain `python` process too
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: the process would exit with this status
            code = exc.code
    seconds = time.perf_counter() - start
    out, err = capsys.readouterr()
    lines = err.splitlines() + [f"{w.category.__name__}: {w.message}" for w in caught]
    return code, out, lines, seconds


def names_culprit(message: str, names: tuple[str, ...]) -> bool:
    return any(re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", message) for n in names)


def commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def bug(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=f"BUG: {reason}")


def case(argv: str | list[str], names: str | tuple[str, ...], id: str, marks=()):
    argv = argv.split() if isinstance(argv, str) else argv
    return pytest.param(argv, (names,) if isinstance(names, str) else names, id=id, marks=marks)


CASES = [
    # list
    case("list extra", "extra", "list-extra-positional"),
    # show
    case("show he_normal --shape 0 5", "--shape", "show-zero-size"),
    case("show he_normal --shape -1 5", "--shape", "show-negative-size"),
    case("show he_normal --shape 100000 100000", "--shape", "show-37GiB"),
    case("show he_normal --shape 99999999999 99999999999 99999999999 99999999999", "--shape", "show-1e35GiB"),
    case("show he_normal --shape a", "--shape", "show-non-int-shape"),
    case("show he_normal", "--shape", "show-no-shape"),
    case("show he_normal --shape 4", ("--shape", "shape"), "show-1d-for-fans"),
    case("show nope --shape 4 4", "nope", "show-unknown-spec"),
    case(["show", "normal(std=", "--shape", "4", "4"], "normal(std=", "show-unclosed-spec"),
    case(["show", "normal(std=1, std=2)", "--shape", "4", "4"], "std", "show-repeated-keyword"),
    case("show he_normal --shape 4 4 --layout x", ("--layout", "layout"), "show-bad-layout"),
    case("show zeros --shape 4 4 --layout keras", ("--layout", "layout"), "show-layout-for-zeros"),
    case("show he_normal --shape 4 4 --groups 0", ("--groups", "groups"), "show-zero-groups"),
    case("show he_normal --shape 4 4 --dtype int8", "--dtype", "show-int-dtype"),
    case("show he_normal --shape 4 4 --seed -1", "--seed", "show-negative-seed"),
    case(f"show he_normal --shape 4 4 --seed {2**70}", ("--seed", "seed"), "show-huge-seed"),
    case(["show", "normal(std=1e6)", "--shape", "4", "4", "--dtype", "float16"], ("std", "float16", "--dtype"),
         "show-overflowing-float16"),
    # init
    case(f"init {M} --input-shape 64,7", "--input-shape", "init-wrong-features"),
    case(f"init {M} --input-shape 64", "--input-shape", "init-1d-input-shape"),
    case(f"init {M} --input-shape 64,16 --tokens 100", "--tokens", "init-tokens-to-float-model"),
    case(f"init {M} --input-shape 2,a", "--input-shape", "init-non-int-input-shape"),
    case(f"init {M} --input-shape 0,16", "--input-shape", "init-zero-input-shape"),
    case(f"init {M} --tokens 100", "--tokens", "init-tokens-without-shape"),
    case(f"init {M} --input-shape 2,16 --tokens 0", "--tokens", "init-zero-tokens"),
    case(f"init {M} --input-shape 4,16 --batch 0", "--batch", "init-zero-batch"),
    case(f"init {MODULE}:boom", f"{MODULE}:boom", "init-factory-raises"),
    case(f"init {MODULE}:not_a_model", f"{MODULE}:not_a_model", "init-factory-returns-int"),
    case(f"init {MODULE}:nope", "nope", "init-missing-factory"),
    case("init no_such_module_xyz:f", "no_such_module_xyz", "init-missing-module"),
    case(f"init {MODULE}", MODULE, "init-no-colon"),
    case(f"init {M} --scheme nope", ("--scheme", "nope"), "init-unknown-scheme"),
    case(["init", M, "--bias", "x("], ("--bias", "bias"), "init-malformed-bias"),
    case(f"init {M} --output nope", ("--output", "output"), "init-unknown-output"),
    case(f"init {M} --seed -1", ("--seed", "seed"), "init-negative-seed"),
    case(f"init {M} --seed {2**70}", ("--seed", "seed"), "init-huge-seed"),
    case(f"init {M} --residual x", "--residual", "init-bad-residual"),
    case(f"init {M} --data afile", ("--data", "afile"), "init-data-plain-file"),
    case(f"init {M} --data missing.npz", "--data", "init-data-missing"),
    case(f"init {M} --data text.npz", "--data", "init-data-text-npz"),
    # lsuv
    case(f"lsuv {M} --input-shape 64,7", "--input-shape", "lsuv-wrong-features"),
    case(f"lsuv {M} --input-shape 64,16 --tokens 100", "--tokens", "lsuv-tokens-to-float-model"),
    case(f"lsuv {M}", "--input-shape", "lsuv-no-inputs"),
    case(f"lsuv {M} --input-shape 0,16", "--input-shape", "lsuv-zero-input-shape"),
    case(f"lsuv {M} --input-shape 64,16 --save afile/x.pt", "--save", "lsuv-save-under-a-file"),
    case(f"lsuv {M} --input-shape 64,16 --save .", "--save", "lsuv-save-to-a-folder"),
    case(f"lsuv {M} --input-shape 64,16 --layers zz --save out.pt", ("--layers", "layers"), "lsuv-unknown-layers"),
    case(f"lsuv {M} --input-shape 64,16 --tol -1", ("--tol", "tol"), "lsuv-negative-tol"),
    case(f"lsuv {M} --input-shape 64,16 --tol nan", ("--tol", "tol"), "lsuv-nan-tol"),
    case(f"lsuv {M} --input-shape 64,16 --target-std 0", ("--target-std", "target_std"), "lsuv-zero-target-std"),
    case(f"lsuv {M} --input-shape 64,16 --max-iter 0", ("--max-iter", "max_iter"), "lsuv-zero-max-iter"),
    case(f"lsuv {M} --input-shape 64,16 --seed -1", ("--seed", "seed"), "lsuv-negative-seed"),
    case(f"lsuv {M} --input-shape 64,16 --residual fixup", "--residual", "lsuv-residual-without-init"),
    case(f"lsuv {M} --input-shape 64,16 --init nope", ("--init", "nope"), "lsuv-unknown-init"),
    case(f"lsuv {M} --data afile", ("--data", "afile"), "lsuv-data-plain-file"),
    case(f"lsuv {MODULE}:boom --input-shape 64,16", f"{MODULE}:boom", "lsuv-factory-raises"),
    # probe
    case("probe --batch 0", "--batch", "probe-zero-batch"),
    case("probe --data gaussian --seed -1", ("--seed", "seed"), "probe-negative-seed"),
    case("probe --data gaussian --depth -1", "--depth", "probe-negative-depth"),
    case("probe --data gaussian --width 0", "--width", "probe-zero-width"),
    case("probe --data gaussian --bins 0", ("--bins", "bins"), "probe-zero-bins"),
    case("probe --data gaussian --init nope", ("--init", "nope"), "probe-unknown-init"),
    case("probe --data gaussian --activation nope", ("--activation", "nope"), "probe-unknown-activation"),
    case("probe --data gaussian --model cnn", "--model", "probe-cnn-on-vectors"),
    case("probe --model x", "--model", "probe-unknown-model"),
    case("probe --data gaussian --out afile/sub", "--out", "probe-out-under-a-file"),
    case("probe --data gaussian --out afile", "--out", "probe-out-is-a-file"),
    case("probe --data nope", ("--data", "nope"), "probe-unknown-data"),
    case("probe --data afile", ("--data", "afile"), "probe-data-plain-file"),
    # doctor
    case(f"doctor {M} --input-shape 64,7", "--input-shape", "doctor-wrong-features"),
    case(f"doctor {M} --input-shape 64,16 --tokens 100", "--tokens", "doctor-tokens-to-float-model"),
    case(f"doctor {M}", "--input-shape", "doctor-no-inputs"),
    case(f"doctor {M} --input-shape 64,16 --html afile/r.html", "--html", "doctor-html-under-a-file"),
    case(f"doctor {M} --input-shape 64,16 --json afile/r.json", "--json", "doctor-json-under-a-file"),
    case(f"doctor {M} --input-shape 64,16 --html .", "--html", "doctor-html-to-a-folder"),
    case(f"doctor {M} --input-shape 64,16 --ignore zz --html r.html", "--ignore", "doctor-unknown-ignore"),
    case(f"doctor {M} --input-shape 64,16 --seed -1", ("--seed", "seed"), "doctor-negative-seed"),
    case(f"doctor {M} --input-shape 64,16 --labels", "--labels", "doctor-labels-without-data"),
    case(f"doctor {M} --input-shape 64,16 --mode x", "--mode", "doctor-bad-mode"),
    case(f"doctor {M} --input-shape 64,16 --data x.npz", ("--data", "--input-shape"), "doctor-two-inputs"),
    case(f"doctor {M} --data afile", ("--data", "afile"), "doctor-data-plain-file"),
    case(f"doctor {MODULE}:boom --input-shape 64,16", f"{MODULE}:boom", "doctor-factory-raises"),
    # theory
    case("theory nope", "nope", "theory-unknown-activation"),
    case("theory tanh --sigma-w2 -1", ("--sigma-w2", "sigma_w2"), "theory-negative-sigma-w2"),
    case("theory tanh --sigma-w2 0", ("--sigma-w2", "sigma_w2"), "theory-zero-sigma-w2"),
    case("theory tanh --sigma-w2 nan", ("--sigma-w2", "sigma_w2"), "theory-nan-sigma-w2"),
    case("theory tanh --sigma-w2 inf", ("--sigma-w2", "sigma_w2"), "theory-inf-sigma-w2"),
    case("theory tanh --sigma-b2 -1", ("--sigma-b2", "sigma_b2"), "theory-negative-sigma-b2"),
    case("theory tanh --depth 0", "--depth", "theory-zero-depth"),
    case("theory tanh --plot afile/p.png", "--plot", "theory-plot-under-a-file"),
    case("theory leaky_relu --param x", "--param", "theory-non-number-param"),
    case("theory leaky_relu --param nan", "--param", "theory-nan-param"),
    # experiment
    case("experiment", "NAME", "experiment-no-name"),
    case("experiment nope", "nope", "experiment-unknown"),
    case("experiment activations --quick --seeds 0", ("--seeds", "seeds"), "experiment-zero-seeds"),
    case("experiment activations --quick --seeds -1", ("--seeds", "seeds"), "experiment-negative-seeds"),
    case("experiment activations --quick --out afile/x", ("--out", "out"), "experiment-out-under-a-file"),
    case("experiment activations --quick --out afile", ("--out", "out"), "experiment-out-is-a-file"),
    # the top level
    case("nocommand", "nocommand", "unknown-command"),
]


def check(capsys, argv: list[str], names: tuple[str, ...], root: Path) -> list[str]:
    """The problems of one failed run (empty when it behaved)."""
    before = tree(root)
    code, out, lines, _ = run(capsys, argv)
    problems = []
    if code != 2:
        problems.append(f"exit status {code}, not 2")
    if len(lines) != 1 or not lines[0].strip():
        problems.append(f"stderr is {len(lines)} lines, not one: {lines[:4]}")
    text = "\n".join(lines)
    if "Traceback" in out or "Traceback" in text:
        problems.append("a traceback was printed")
    if out:
        problems.append(f"stdout is not empty (work done or verdicts printed before the error): {out[:200]!r}")
    if lines and not names_culprit(text, names):
        problems.append(f"stderr does not name {' or '.join(names)}: {text[:300]}")
    created = tree(root) - before
    if created:
        problems.append(f"left behind: {sorted(created)}")
    return problems


@pytest.mark.parametrize("argv, names", CASES)
def test_bad_arguments(argv, names, cli, capsys):
    problems = check(capsys, argv, names, cli)
    assert not problems, f"initlab {' '.join(argv)}:\n" + "\n".join(problems)


# a minimal VALID command line for each command, so an unknown option is the only thing wrong
MINIMAL = {
    "list": [],
    "show": ["he_normal", "--shape", "4", "4"],
    "init": [M],
    "lsuv": [M, "--input-shape", "8,16"],
    "probe": ["--data", "gaussian"],
    "doctor": [M, "--input-shape", "8,16"],
    "theory": ["tanh"],
    "experiment": ["activations", "--quick"],
}


def test_every_command_is_covered():
    assert set(commands()) <= set(MINIMAL), f"add a minimal command line for {sorted(set(commands()) - set(MINIMAL))}"
    with_cases = {p.values[0][0] for p in CASES}
    assert set(commands()) <= with_cases, f"add bad-value cases for {sorted(set(commands()) - with_cases)}"


@pytest.mark.parametrize("command", commands())
@pytest.mark.parametrize("where", ["first", "last"])
def test_unknown_option(command, where, cli, capsys):
    argv = [command, "--no-such-option", *MINIMAL[command]] if where == "first" else \
        [command, *MINIMAL[command], "--no-such-option"]
    problems = check(capsys, argv, ("--no-such-option",), cli)
    assert not problems, f"initlab {' '.join(argv)}:\n" + "\n".join(problems)


def test_show_refuses_a_huge_shape_before_allocating(cli, capsys):
    code, out, lines, seconds = run(capsys, ["show", "he_normal", "--shape", "100000", "100000"])
    assert code == 2 and not out and len(lines) == 1
    assert "GiB" in lines[0]
    assert seconds < 1.0  # refused from the arithmetic: 37 GiB were never asked for


def test_doctor_checks_its_outputs_before_any_verdict(cli, capsys):
    # a run that would probe and print its verdicts: the unwritable --html is refused before any of that
    code, out, lines, _ = run(capsys, ["doctor", M, "--input-shape", "64,16", "--json", "ok.json", "--html",
                                       "afile/report.html"])
    assert code == 2 and out == "" and len(lines) == 1 and "--html" in lines[0]
    assert not (cli / "ok.json").exists()
    code, out, _, _ = run(capsys, ["doctor", M, "--input-shape", "64,16"])
    assert code in (0, 1) and ("healthy" in out or "fix:" in out)  # the same run, writable: it does the work
