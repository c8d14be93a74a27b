"""``initlab doctor``: probe a user's own model and print the health verdicts (exit status 1 when unhealthy)."""

from __future__ import annotations

import argparse

from initlab._io import writable
from initlab.cli._inputs import add_input_options, describe_inputs, load_factory, model_inputs, on_inputs

ORDER = 45

EPILOG = """examples:
  initlab doctor mypkg.models:make_net --input-shape 256,784
  initlab doctor mypkg.models:resnet18 --input-shape 64,3,32,32 --table --html doctor.html
  initlab doctor mypkg.models:gpt --input-shape 8,128 --tokens 50257
  initlab doctor mypkg.models:make_net --data batch.npz --labels --ignore dead_units

exit status: 0 healthy, 1 at least one verdict (not --ignore'd), 2 usage or model error; use it as a CI
check that a model's initialization lets signal and gradients through.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor", help="probe your model on one batch and print what is wrong with its initialization",
        description="Import FACTORY from MODULE (the current directory is importable), call it with no "
                    "arguments to build an nn.Module (an nn.Module attribute is used as is), run initlab.probe on "
                    "a batch of synthetic standardized inputs (N(0, 1), shape --input-shape; integer token ids "
                    "with --tokens) or of your own data (--data FILE.npz), and print the health verdicts with "
                    "their fixes. The backward pass uses a random Gaussian cotangent, or the cross-entropy of "
                    "the labels with --labels.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="MODULE:FACTORY", help="e.g. mypkg.models:make_net")
    add_input_options(p, required=True)
    p.add_argument("--labels", action="store_true", help="--data: back-propagate cross-entropy of 'y'")
    p.add_argument("--mode", choices=("train", "eval", "keep"), default="keep",
                   help="run the model in train or eval mode (default: as the factory built it)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs and the cotangent (default 0)")
    p.add_argument("--ignore", action="append", default=[], metavar="CODE",
                   help="verdict code to ignore for the exit status (repeatable), e.g. dead_units")
    p.add_argument("--table", action="store_true", help="also print the per-layer table")
    p.add_argument("--json", default=None, metavar="PATH", help="write the full result as JSON")
    p.add_argument("--html", default=None, metavar="PATH", help="write a self-contained HTML report")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import initlab
    from initlab.probing.health import CODES

    unknown = [c for c in args.ignore if c not in CODES]
    if unknown:
        raise ValueError(f"--ignore must name verdict codes ({', '.join(CODES)}); got {unknown}")
    if args.labels and args.data is None:
        raise ValueError("--labels needs --data (synthetic inputs have no labels)")
    for path, option in ((args.json, "--json"), (args.html, "--html")):
        if path:
            writable(path, option)  # checked before the probe runs, not after it printed a verdict
    model = load_factory(args.target)
    x, y = model_inputs(args, args.seed)
    if args.labels and y is None:
        raise ValueError(f"--labels: {args.data} has no array 'y'")
    y = y if args.labels else None
    train = {"train": True, "eval": False, "keep": None}[args.mode]
    result = on_inputs(args, initlab.probe, model, x, y, seed=args.seed, train=train)
    if args.table:
        print(result.table(verdicts=False))
    kept = [v for v in result.verdicts if v.code not in set(args.ignore)]
    chain = result.profile()
    print(f"initlab doctor: {args.target}: {len(result.layers)} points probed on a batch of {result.batch_size} "
          f"({describe_inputs(args)}"
          f", backward by {result.backward}; depth chain of {len(chain)} layers)")
    if not result.verdicts:
        print("healthy: no problem found")
    for v in result.verdicts:
        tag = "ignored " if v not in kept else ""
        print(f"{tag}{v.severity.upper()} {v.code}" + (f" [{v.layer}]" if v.layer else "") + f": {v.message}")
        print(f"  fix: {v.suggestion}")
    for note in result.notes:
        print(f"note: {note}")
    if args.json:
        result.to_json(args.json)
        print(f"wrote {args.json}")
    if args.html:
        result.to_html(args.html, title=f"initlab doctor: {args.target}")
        print(f"wrote {args.html}")
    return 1 if kept else 0
