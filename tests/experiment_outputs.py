"""Shared checks of the experiments' tests (tests/test_experiment*.py).

Not a test module (nothing here is collected): tests import it as ``experiment_outputs`` (pytest puts
``tests/`` on ``sys.path``). ``quick_run`` runs one experiment in --quick mode and checks what every run
writes; ``printed_verdict`` puts a verdict through the shared ``finish`` and returns the line it prints.
"""

import csv
import json

import pytest

from initlab import experiments
from initlab.experiments._common import Context, finish


def check_outputs(name, tmp_path, result):
    """The files of a finished run: strict JSON equal to the returned payload, the CSV table, one non-empty
    ``NAME.png``, and a verdict line whose flag agrees with its checks. Returns the CSV rows."""
    on_disk = json.loads((tmp_path / f"{name}.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert on_disk == result
    with open(tmp_path / f"{name}.csv") as f:
        table = list(csv.reader(f))
    assert table[0] == result["columns"] and len(table) == len(result["rows"]) + 1
    assert result["figures"] == [f"{name}.png"] and (tmp_path / f"{name}.png").stat().st_size > 1000
    verdict = result["verdict"]
    assert verdict["text"].startswith(f"{name}: expected ") and verdict["checks"]
    assert verdict["reproduced"] == all(verdict["checks"].values())
    assert result["quick"] is True and result["seeds"]
    return table


def quick_run(name, tmp_path, **kw):
    """``experiments.run(name, quick=True)`` into ``tmp_path``, its outputs checked by :func:`check_outputs`."""
    result = experiments.run(name, quick=True, out=tmp_path, progress=False, **kw)
    check_outputs(name, tmp_path, result)
    return result


def printed_verdict(tmp_path, capsys, name, verdict):
    """The verdict line the shared ``finish`` prints (as every experiment's ``run`` calls it) for ``verdict``:
    a dict with ``checks`` and, optionally, ``reproduced`` (default: all checks hold), ``expected`` and
    ``measured``."""
    checks = verdict["checks"]
    ctx = Context(name=name, quick=True, seeds=[0], out=tmp_path, progress=False)
    finish(ctx, settings={}, columns=["x"], rows=[[1]], expected=verdict.get("expected", "the effect"),
           measured=verdict.get("measured", "fabricated"),
           reproduced=verdict.get("reproduced", all(checks.values())), results={}, checks=checks)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(f"{name}: expected ")]
    assert len(lines) == 1
    return lines[0]
