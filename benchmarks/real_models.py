"""Default init vs anyinit 0.4.0 vs initlab.init_model on the small real models of tests/realmodels.py.

For every model (tiny transformers configs and plain-torch timm/torchvision patterns, random weights, no
download), three columns side by side, each on a freshly built copy of the model:

* ``default``: the model as constructed (its own initialization);
* ``anyinit``: ``anyinit.initialize(model, "analytic", inputs, seed=0)``, the call its README recommends,
  given the example inputs as positional arguments (a keyword dict is turned into positional arguments by
  the order of ``model.forward``'s parameters, ``None`` in the gaps);
* ``initlab``: ``initlab.init_model(model, example_inputs=inputs, seed=0)`` (plus the family's
  ``RealModel.init_kwargs``: ``residual="zero_last"`` for the BatchNorm ResNet).

Each column reports how many parameter tensors (tied ones counted once) were initialized / left untouched,
according to the library's own report, the number whose bytes actually changed, and the std of the main
output in eval mode (logits, or the last hidden state). A column that raises prints ``error: ...`` and the
script goes on.

anyinit is the anchor, so it lives in the benchmark's OWN directory, never in the project's .venv; its only
requirement is numpy, which the venv has::

    .venv/bin/python -m pip install --no-deps --target build/anyinit-bench anyinit==0.4.0
    .venv/bin/python benchmarks/real_models.py                      # all models, ~10 s
    .venv/bin/python benchmarks/real_models.py --models gpt2 t5 --json /tmp/real.json

``--anyinit-path`` (or ``$ANYINIT_BENCH_PATH``) points elsewhere.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATH = os.environ.get("ANYINIT_BENCH_PATH", str(ROOT / "build" / "anyinit-bench"))
sys.path.insert(0, str(ROOT / "tests"))

import realmodels  # noqa: E402 - found on tests/, added just above

COLUMNS = ("default", "anyinit", "initlab")


def snapshot(model: nn.Module) -> dict[str, bytes]:
    """The bytes of every parameter tensor (tied tensors once, under their first name)."""
    return {n: p.detach().cpu().contiguous().numpy().tobytes() for n, p in model.named_parameters()}


def changed(model: nn.Module, before: dict[str, bytes]) -> int:
    """How many parameter tensors differ, byte for byte, from ``before``."""
    return sum(before.get(n) != b for n, b in snapshot(model).items())


def output_std(rm: realmodels.RealModel, model: nn.Module) -> float:
    """Std of the main output of ``model`` (eval mode, no grad) on the record's inputs."""
    model.eval()
    with torch.no_grad():
        return float(rm.run(model).float().std())


def positional(model: nn.Module, inputs: Any) -> Any:
    """``inputs`` as anyinit takes a batch: a tensor, or a list of positional arguments.

    anyinit calls ``model(*batch)`` and cannot take keyword inputs, so a dict is laid out along the
    parameters of ``model.forward`` (``None`` for the ones skipped); returned unchanged if that fails.
    """
    if isinstance(inputs, torch.Tensor):
        return inputs
    if isinstance(inputs, (tuple, list)):
        return list(inputs)
    params = list(inspect.signature(model.forward).parameters.values())
    order = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not set(inputs) <= set(order):
        return inputs
    last = max(order.index(k) for k in inputs)
    args = [inputs.get(name) for name in order[: last + 1]]
    return args[0] if len(args) == 1 else args


def load_anyinit(path: str) -> Any:
    """Import anyinit from ``path`` (it must not come from the project's venv)."""
    sys.path.insert(0, path)
    import anyinit  # noqa: I001 - found on --anyinit-path

    return anyinit


def anyinit_params(model: nn.Module, report: Any) -> tuple[set[str], list[str]]:
    """Parameter names anyinit's report says it wrote (weight + bias of each listed layer), and layer names
    that name no module."""
    modules = dict(model.named_modules())
    ids = {id(p): n for n, p in model.named_parameters()}
    done: set[str] = set()
    unresolved: list[str] = []
    for layer in report.layers:
        module = modules.get(layer.name) or modules.get(layer.name.replace("_", "."))
        if module is None:
            unresolved.append(layer.name)
            continue
        for attr in ("weight", "bias"):
            p = getattr(module, attr, None)
            if isinstance(p, nn.Parameter) and id(p) in ids:
                done.add(ids[id(p)])
    return done, unresolved


def run_default(rm: realmodels.RealModel, **_: Any) -> dict[str, Any]:
    n = len(dict(rm.model.named_parameters()))
    return {"initialized": n, "untouched": 0, "changed": n, "notes": []}  # everything, by the constructor


def run_anyinit(rm: realmodels.RealModel, anyinit: Any, mode: str, seed: int) -> dict[str, Any]:
    model = rm.model
    spec = positional(model, rm.inputs)
    before = snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = anyinit.initialize(model, mode, spec, seed=seed)
    done, unresolved = anyinit_params(model, report)
    names = list(dict(model.named_parameters()))
    notes = [f"graph={report.graph_fidelity}, {len(report.layers)} layers scaled"]
    notes += [f"not scaled: {n} ({why})" for n, why in report.unscaled]
    notes += [f"report layer {n!r} names no module" for n in unresolved]
    notes += [w for w in report.warnings if w.startswith(("validation skipped", "torch.fx could not trace"))]
    return {"initialized": len(done), "untouched": len(names) - len(done), "changed": changed(model, before),
            "notes": notes, "untouched_names": [n for n in names if n not in done]}


def run_initlab(rm: realmodels.RealModel, seed: int, **_: Any) -> dict[str, Any]:
    import initlab

    model = rm.model
    before = snapshot(model)
    report = initlab.init_model(model, example_inputs=rm.inputs, seed=seed, **rm.init_kwargs)
    notes = [f"untouched: {u.name} ({u.reason.split(';')[0]})" for u in report.untouched]
    return {"initialized": len(report.entries), "untouched": len(report.untouched), "changed": changed(model, before),
            "notes": notes, "untouched_names": [u.name for u in report.untouched]}


def cell(name: str, fn: Callable[..., dict[str, Any]], **kw: Any) -> dict[str, Any]:
    """Build the model fresh, run ``fn`` on it, measure the output std; never raises."""
    try:
        rm = realmodels.build(name)
        t0 = time.perf_counter()
        out = fn(rm, **kw)
        out["seconds"] = time.perf_counter() - t0
        out["std"] = output_std(rm, rm.model)
        out["tensors"] = len(dict(rm.model.named_parameters()))
    except Exception as exc:  # one column's failure must not stop the table
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        out = {"error": f"{type(exc).__name__}: {msg}"[:160], "traceback": traceback.format_exc()}
    return out


def fmt_counts(c: dict[str, Any]) -> str:
    if "error" in c:
        return "error: " + c["error"][:60]
    return f"{c['initialized']}/{c['untouched']} ({c['changed']})"


def fmt_std(c: dict[str, Any]) -> str:
    if "error" in c:
        return "-"
    s = c["std"]
    return f"{s:.3g}" if math.isfinite(s) else str(s)


def as_good(ours: dict[str, Any], theirs: dict[str, Any] | None) -> str:
    """``yes`` when initlab leaves no more tensors untouched than anyinit and its output std is in [0.5, 2] or
    no farther from 1 (in log scale) than anyinit's; a failed anyinit cell counts as worse."""
    if theirs is None:
        return "-"
    if "error" in ours:
        return "no"
    if "error" in theirs:
        return "yes"
    fewer = ours["untouched"] <= theirs["untouched"]
    dist = [abs(math.log(c["std"])) if c["std"] > 0 and math.isfinite(c["std"]) else math.inf for c in (ours, theirs)]
    scale = dist[0] <= math.log(2) or dist[0] <= dist[1]
    return "yes" if fewer and scale else "no"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(realmodels.ALL), choices=list(realmodels.ALL),
                        metavar="NAME", help=f"subset of: {' '.join(realmodels.ALL)} (default all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of anyinit and initlab (default 0)")
    parser.add_argument("--anyinit-path", default=DEFAULT_PATH, help="directory holding the anyinit package")
    parser.add_argument("--anyinit-mode", default="analytic", choices=["analytic", "empirical"],
                        help="anyinit mode (default analytic, its default; empirical measures the inputs)")
    parser.add_argument("--skip-anyinit", action="store_true", help="leave the anyinit column out")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--json", metavar="PATH", help="also write every cell (with notes and tracebacks) here")
    parser.add_argument("--verbose", action="store_true", help="print the tracebacks of failed cells")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    import transformers

    import initlab

    anyinit = None
    if not args.skip_anyinit:
        try:
            anyinit = load_anyinit(args.anyinit_path)
        except ImportError:
            print(f"anyinit is not in {args.anyinit_path}; install it there with\n"
                  f"  .venv/bin/python -m pip install --no-deps --target {args.anyinit_path} anyinit==0.4.0\n"
                  "or pass --skip-anyinit", file=sys.stderr)
            return 2
        print(f"anyinit {anyinit.__version__} from {Path(anyinit.__file__).resolve().parent} "
              f"(mode {args.anyinit_mode!r})")
    print(f"initlab {initlab.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.get_num_threads()} thread(s), seed {args.seed}\n")

    results: dict[str, dict[str, Any]] = {}
    for name in args.models:
        row = {"default": cell(name, run_default)}
        if anyinit is not None:
            row["anyinit"] = cell(name, run_anyinit, anyinit=anyinit, mode=args.anyinit_mode, seed=args.seed)
        row["initlab"] = cell(name, run_initlab, seed=args.seed)
        results[name] = row
        if sys.stderr.isatty():
            print(f"  {name:<11} done", file=sys.stderr, flush=True)

    cols = [c for c in COLUMNS if c != "anyinit" or anyinit is not None]
    head = ["model", "tensors", "default std"]
    for c in cols[1:]:
        head += [f"{c} init/untouched (changed)", f"{c} std"]
    if anyinit is not None:
        head.append("initlab >= anyinit")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in results.items():
        d = row["default"]
        cells = [name, str(d.get("tensors", "-")) if "error" not in d else "error: " + d["error"][:60], fmt_std(d)]
        for c in cols[1:]:
            cells += [fmt_counts(row[c]), fmt_std(row[c])]
        if anyinit is not None:
            cells.append(as_good(row["initlab"], row["anyinit"]))
        lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines))
    print("\ninit/untouched: parameter tensors (tied ones once) the library's report says it initialized / left "
          "alone;\n(N): how many tensors' bytes changed. std: of the logits (LM and classification heads) or the last "
          "hidden state,\nin eval mode, on the model's example inputs. initlab >= anyinit: no more tensors untouched, "
          "and an output std in [0.5, 2] or no farther from 1.")

    print("\nnotes")
    for name, row in results.items():
        for c in cols:
            cellv = row[c]
            notes = [f"error: {cellv['error']}"] if "error" in cellv else cellv.get("notes", [])
            for note in notes:
                print(f"  {name:<11} {c:<8} {note[:150]}")
            if args.verbose and "traceback" in cellv:
                print(cellv["traceback"])

    if args.json:
        Path(args.json).write_text(json.dumps({"seed": args.seed, "anyinit_mode": args.anyinit_mode,
                                               "results": results}, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
