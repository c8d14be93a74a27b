"""``initlab experiment NAME``: run one of the classic demonstrations of initialization."""

from __future__ import annotations

import argparse

ORDER = 80

EPILOG = """examples:
  initlab experiment --list
  initlab experiment activations
  initlab experiment depth --quick --seeds 2 --out results/

Each run prints a progress bar (stderr), a results table and a one-line verdict, and writes NAME.json,
NAME.csv and NAME*.png into --out. Default runs take up to about 3 minutes on 2 CPU cores; --quick up to
about 30 seconds. Exit status: 0 when the run reproduced the expected shape, 1 when it did not, 2 on bad arguments.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiment", help="run a classic initialization experiment (activations, depth, glorot, ...)",
        description="Reproduce a published demonstration of initialization on this machine: print its results "
                    "table and a verdict (expected shape, and whether this run reproduced it); write the JSON, "
                    "CSV and figures.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", metavar="NAME", help="experiment name (see --list)")
    p.add_argument("--list", action="store_true", help="list the experiments with one line each and exit")
    p.add_argument("--quick", action="store_true", help="small version (up to about 30 s), as the test suite runs it")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="number of seeds (0..N-1); default: the experiment's own")
    p.add_argument("--out", default="initlab-results", metavar="DIR",
                   help="output folder for NAME.json, NAME.csv, NAME*.png (default: ./initlab-results)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from initlab import experiments

    if args.list:
        from initlab.report.table import render

        rows = [{"name": e.name, "seeds": e.seeds, "what it shows": e.summary}
                for e in experiments.REGISTRY.values()]
        print(render(rows, ["name", "seeds", "what it shows"], title="initlab experiments"))
        return 0
    if not args.name:
        raise ValueError(f"NAME is required: one of {', '.join(experiments.NAMES)} (or --list)")
    if args.name not in experiments.REGISTRY:
        raise ValueError(f"unknown experiment {args.name!r}; choose one of {', '.join(experiments.NAMES)}")
    result = experiments.run(args.name, quick=args.quick, seeds=args.seeds, out=args.out,
                             progress=not args.no_progress)
    return 0 if result["verdict"]["reproduced"] else 1
