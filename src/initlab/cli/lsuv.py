"""``initlab lsuv``: build a model from an importable factory, run LSUV on a batch and print the report."""

from __future__ import annotations

import argparse

from initlab._io import atomic_write, writable
from initlab.cli._inputs import add_input_options, load_factory, model_inputs, on_inputs

ORDER = 60

EPILOG = """examples:
  initlab lsuv mypkg.models:make_net --input-shape 256,784
  initlab lsuv mypkg.models:make_cnn --data mnist --batch 512 --center --save cnn_lsuv.pt
  initlab lsuv mypkg.models:make_resnet --input-shape 64,3,32,32 --init auto --residual fixup --seed 0
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lsuv", help="LSUV-initialize a model from MODULE:FACTORY on a batch and print what was done",
        description="Import FACTORY from MODULE (as `initlab init` does), optionally initialize it with "
                    "init_model first (--init), then run initlab.lsuv on one batch: random N(0, 1) inputs of "
                    "--input-shape (first dimension = batch size), or the first --batch training examples "
                    "of a bundled dataset (--data, standardized). Prints one row per rescaled weight: "
                    "iterations, output std before and after, the scale applied.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="MODULE:FACTORY", help="e.g. mypkg.models:make_net")
    add_input_options(p, required=True, data_batch=256)
    p.add_argument("--target-std", type=float, default=1.0, help="output std to reach (default 1)")
    p.add_argument("--tol", type=float, default=0.02, help="relative tolerance on the std (default 0.02)")
    p.add_argument("--max-iter", type=int, default=20, help="rescalings per layer (default 20)")
    p.add_argument("--no-orthogonal", action="store_true", help="skip the orthogonal pre-initialization")
    p.add_argument("--center", action="store_true", help="also remove each channel's output mean via the bias")
    p.add_argument("--layers", nargs="+", default=None, help="only these modules (qualified names)")
    p.add_argument("--init", default=None, metavar="SCHEME",
                   help="run init_model(SCHEME) first, e.g. auto (so its zero-init rules are kept)")
    p.add_argument("--residual", default=None, choices=["zero_last", "gpt2", "fixup"],
                   help="residual rule for --init (default: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random batch and draws (default 0)")
    p.add_argument("--save", default=None, metavar="PATH", help="save the resulting state_dict (torch.save)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    import torch

    from initlab.datainit.lsuv import lsuv

    if args.save:
        writable(args.save, "--save")
    model = load_factory(args.target)
    x, _ = model_inputs(args, args.seed, data_batch=256)
    if args.init is not None:
        from initlab.model_init import init_model

        init_model(model, args.init, example_inputs=x[:2], seed=args.seed, residual=args.residual)
    elif args.residual is not None:
        raise ValueError("--residual needs --init SCHEME (it is a rule of init_model)")
    report = on_inputs(args, lsuv, model, x, target_std=args.target_std, tol=args.tol, max_iter=args.max_iter,
                  orthogonal=not args.no_orthogonal, center=args.center, layers=args.layers, seed=args.seed)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())
    if args.save:
        atomic_write(args.save, lambda t: torch.save(model.state_dict(), t), "--save")
        print(f"saved state_dict to {args.save}")
    return 0
