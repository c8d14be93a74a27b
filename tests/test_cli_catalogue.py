"""`initlab list`, `initlab show`, and the top-level CLI behaviour."""

import math
import subprocess
import sys

import pytest

import initlab
from initlab.cli import main


def test_list_prints_every_registry_name_with_formula(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in initlab.available():
        assert name in out
    assert "He et al. 2015" in out and "U(+-1 / sqrt(fan_in))" in out


def test_list_aliases(capsys):
    assert main(["list", "--aliases"]) == 0
    out = capsys.readouterr().out
    assert "kaiming_normal" in out and "xavier_uniform" in out and "msra" in out


def test_show_reports_fans_expected_and_measured(capsys):
    assert main(["show", "he_normal", "--shape", "256", "512"]) == 0
    out = capsys.readouterr().out
    assert "fan_in=512" in out and "fan_out=256" in out
    assert f"std={math.sqrt(2 / 512):.6g}" in out
    measured = float(out.split("measured")[1].split("std=")[1].split()[0])
    # 131072 samples: relative error of the std estimate ~ 1/sqrt(2n) = 0.2%; allow 2%
    assert measured == pytest.approx(math.sqrt(2 / 512), rel=0.02)


def test_show_uniform_bound_and_layout(capsys):
    assert main(["show", "glorot_uniform", "--shape", "3", "3", "64", "128", "--layout", "keras"]) == 0
    out = capsys.readouterr().out
    assert "fan_in=576" in out and f"bound=+-{math.sqrt(6 / (576 + 1152)):.6g}" in out


def test_show_half_precision_and_spec_call(capsys):
    assert main(["show", "orthogonal(gain='relu')", "--shape", "64", "3", "3", "3", "--dtype", "bfloat16"]) == 0
    assert "bfloat16" in capsys.readouterr().out


def test_show_unknown_spec_is_a_clear_error(capsys):
    assert main(["show", "bogus", "--shape", "3", "3"]) == 2
    err = capsys.readouterr().err
    assert "unknown initializer 'bogus'" in err and "he_normal" in err


def test_show_too_few_dims_is_a_clear_error(capsys):
    assert main(["show", "he_normal", "--shape", "7"]) == 2
    assert "at least 2 dims" in capsys.readouterr().err


COMMANDS = ["list", "show", "init", "probe", "doctor", "theory", "lsuv", "experiment"]


def test_help_lists_every_command_with_one_line_help():
    out = subprocess.run([sys.executable, "-m", "initlab", "--help"], capture_output=True, text=True, check=True).stdout
    listed = out.split("positional arguments:")[1].split("options:")[0]
    for command in COMMANDS:
        assert f"\n    {command} " in listed or f"\n    {command}\n" in listed, command


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out.lower() and f"initlab {command}" in out.split("example")[-1]
