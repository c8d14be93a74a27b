"""initlab.lsuv against the ``lsuv`` package (0.3.0), side by side, on deep tanh MLPs.

Both start from the same model (same weights) and the same batch; both orthogonalise first. The ``lsuv``
package re-runs the whole model for every layer and every rescaling step (quadratic in depth);
initlab.lsuv runs the model once and re-runs only the layer being rescaled (linear in depth).

The ``lsuv`` package must live in the benchmark's OWN directory, never in the project's .venv, and must
not pull torch from the index (its only requirement is ``torch``, which the project's venv provides)::

    .venv/bin/python -m pip install --no-deps --target build/lsuv-bench lsuv==0.3.0
    .venv/bin/python benchmarks/lsuv_speed.py                # depths 25 50 100, width 512, batch 256

``--lsuv-path`` (or ``$LSUV_BENCH_PATH``) points elsewhere. Output: the CPU time of each (``process_time``:
other jobs on a shared machine do not inflate it; best of ``--repeat`` runs) with the wall time alongside,
the ratio, and a summary (min / median / max and the count within 0.1 of the target) of the final
per-layer output std of both, on the batch they were fitted on and on a fresh batch.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATH = os.environ.get("LSUV_BENCH_PATH", str(ROOT / "build" / "lsuv-bench"))


def mlp(depth: int, width: int, generator: torch.Generator) -> nn.Sequential:
    """``depth`` Linear(width, width) layers, tanh after every one but the last; torch-default weights."""
    import initlab

    layers: list[nn.Module] = []
    for i in range(depth):
        layer = nn.Linear(width, width)
        initlab.get("fan_in_uniform").init_(layer.weight, generator=generator)
        nn.init.zeros_(layer.bias)
        layers.append(layer)
        if i < depth - 1:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def layer_stds(model: nn.Module, x: torch.Tensor) -> list[float]:
    """Output std of every Linear layer on ``x``."""
    stds: list[float] = []
    handles = [m.register_forward_hook(lambda _m, _i, out: stds.append(float(out.std())))
               for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return stds


def summary(stds: list[float], target: float, within: float) -> str:
    ok = sum(abs(s - target) <= within for s in stds)
    return (f"min {min(stds):.3f} med {statistics.median(stds):.3f} max {max(stds):.3f} "
            f"({ok}/{len(stds)} within {within:g})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", default=[25, 50, 100])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="time each side this many times, keep the best")
    parser.add_argument("--lsuv-path", default=DEFAULT_PATH, help="directory holding the lsuv package")
    parser.add_argument("--skip-package", action="store_true", help="time initlab.lsuv only")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    import initlab

    lsuv_pkg = None
    if not args.skip_package:
        sys.path.insert(0, args.lsuv_path)
        try:
            import lsuv as lsuv_pkg  # noqa: I001 - found on --lsuv-path
            from importlib.metadata import version

            pkg_version = version("lsuv")
        except ImportError:
            print(f"the lsuv package is not in {args.lsuv_path}; install it there with\n"
                  f"  .venv/bin/python -m pip install --no-deps --target {args.lsuv_path} lsuv==0.3.0\n"
                  "or pass --skip-package", file=sys.stderr)
            return 2
        where = Path(lsuv_pkg.__file__).resolve().parent
        print(f"lsuv package {pkg_version} from {where}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); tanh MLPs, width {args.width}, "
          f"batch {args.batch}; CPU time, best of {args.repeat} run(s) each;\ninitlab tol 0.02 (relative, on the std), "
          "lsuv package std_tol 0.1 (its default)\n")

    # warm-up: first-call costs (imports, fx, kernel selection) are not part of either timing
    warm = mlp(2, args.width, torch.Generator().manual_seed(1))
    warm_x = torch.randn(args.batch, args.width, generator=torch.Generator().manual_seed(1))
    initlab.lsuv(copy.deepcopy(warm), warm_x, seed=0)
    if lsuv_pkg is not None:
        lsuv_pkg.lsuv_with_singlebatch(copy.deepcopy(warm), warm_x, verbose=False)

    rows = []
    for depth in args.depths:
        gen = torch.Generator().manual_seed(args.seed)
        base = mlp(depth, args.width, gen)
        x = torch.randn(args.batch, args.width, generator=gen)
        fresh = torch.randn(args.batch, args.width, generator=gen)

        # CPU time of this process (time.process_time: other jobs on a shared machine do not inflate it),
        # best of --repeat runs for BOTH; wall-clock time shown alongside
        best_ours = None
        for _ in range(args.repeat):
            model = copy.deepcopy(base)
            w0, c0 = time.perf_counter(), time.process_time()
            rep = initlab.lsuv(model, x, seed=args.seed)
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            if best_ours is None or cpu < best_ours[0]:
                best_ours = (cpu, wall, model, rep)
        t_ours, wall_ours, ours, report = best_ours
        row = {"depth": depth, "initlab": t_ours, "passes": report.forward_passes,
               "ours_fit": layer_stds(ours, x), "ours_fresh": layer_stds(ours, fresh)}
        print(f"depth {depth:4d}: initlab.lsuv {t_ours:8.2f} s CPU ({wall_ours:6.2f} s wall)  "
              f"({report.forward_passes} forward pass, {report.layer_evaluations} layer evaluations)", flush=True)
        if lsuv_pkg is not None:
            best_theirs = None
            for _ in range(args.repeat):
                model = copy.deepcopy(base)
                passes: list[int] = []
                counter = model.register_forward_hook(lambda *a, seen=passes: seen.append(1))
                w0, c0 = time.perf_counter(), time.process_time()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    lsuv_pkg.lsuv_with_singlebatch(model, x, verbose=False)
                cpu, wall = time.process_time() - c0, time.perf_counter() - w0
                counter.remove()
                if best_theirs is None or cpu < best_theirs[0]:
                    best_theirs = (cpu, wall, model, len(passes))
            t_theirs, wall_theirs, theirs, n_passes = best_theirs
            row.update(lsuv=t_theirs, theirs_fit=layer_stds(theirs, x), theirs_fresh=layer_stds(theirs, fresh))
            print(f"            lsuv package {t_theirs:8.2f} s CPU ({wall_theirs:6.2f} s wall)  ({n_passes} forward "
                  f"passes)  -> initlab is {t_theirs / t_ours:.1f}x faster", flush=True)
        rows.append(row)

    print("\nsummary")
    head = f"{'depth':>5}  {'initlab s':>9}  {'lsuv s':>8}  {'ratio':>7}   (CPU seconds)"
    print(head)
    for r in rows:
        t = r.get("lsuv")
        print(f"{r['depth']:>5}  {r['initlab']:>9.2f}  {t if t is not None else float('nan'):>8.2f}  "
              f"{(t / r['initlab']) if t else float('nan'):>6.1f}x")
    print("\nfinal per-layer output std (target 1.0)")
    for r in rows:
        print(f"depth {r['depth']}")
        print(f"  initlab  fit batch   {summary(r['ours_fit'], 1.0, 0.1)}")
        print(f"  initlab  fresh batch {summary(r['ours_fresh'], 1.0, 0.1)}")
        if "lsuv" in r:
            print(f"  lsuv pkg fit batch   {summary(r['theirs_fit'], 1.0, 0.1)}")
            print(f"  lsuv pkg fresh batch {summary(r['theirs_fresh'], 1.0, 0.1)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
