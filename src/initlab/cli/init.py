"""``initlab init``: build a model from an importable factory, run ``init_model`` and print the report."""

from __future__ import annotations

import argparse

from initlab.cli._inputs import add_input_options, load_factory, model_inputs, on_inputs, parse_shape

__all__ = ["register", "run", "parse_shape", "load_factory"]

ORDER = 30

EPILOG = """examples:
  initlab init mypkg.models:make_net
  initlab init mypkg.models:resnet18 --input-shape 1,3,32,32 --residual zero_last --seed 0
  initlab init mypkg.models:make_net --scheme "orthogonal(gain='relu')" --json
  initlab init mypkg.models:tiny_llama --input-shape 2,16 --tokens 32000 --check
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init", help="initialize a model from MODULE:FACTORY with init_model and print what was done",
        description="Import FACTORY from MODULE (the current directory is importable), call it with no "
                    "arguments to build an nn.Module (an nn.Module attribute is used as is), initialize it "
                    "with initlab.init_model and print the report: one row per parameter with its "
                    "initializer, fans and resulting std, the untouched parameters and the warnings.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="MODULE:FACTORY", help="e.g. mypkg.models:make_net")
    p.add_argument("--scheme", default="auto", help="'auto' (default) or any initializer spec, e.g. he_normal")
    add_input_options(p, required=False)
    p.add_argument("--residual", default=None, choices=["zero_last", "gpt2", "fixup"],
                   help="residual-branch rule (default: none)")
    p.add_argument("--output", default=None, help="spec for the last layer's weight, e.g. zeros")
    p.add_argument("--bias", default="zeros", help="spec for biases (default zeros)")
    p.add_argument("--seed", type=int, default=None, help="generator seed (default: a fresh one, printed)")
    p.add_argument("--rng", default="philox", choices=["philox", "torch"],
                   help="philox (default): counter-based values, a function of (seed, parameter name, index) only; "
                        "torch: torch's sequential stream")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.add_argument("--check", action="store_true",
                   help="exit with status 1 when a parameter was left untouched (a CI check)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from initlab.model_init import IncompleteInitError, init_model

    model = load_factory(args.target)
    example, _ = model_inputs(args, 0)  # a forward pass shows the dataflow when fx cannot trace the model
    report = on_inputs(args, init_model, model, args.scheme, example_inputs=example, seed=args.seed,
                       residual=args.residual, output=args.output, bias=args.bias, rng=args.rng)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())
    if args.check:
        try:
            report.assert_complete()
        except IncompleteInitError as exc:
            print(f"initlab init: {exc}")
            return 1
    return 0
