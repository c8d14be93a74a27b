"""The ``initlab`` command.

Each sub-command lives in its own module of this package and exposes ``register(subparsers)``, which
adds its parser and sets ``func`` (called with the parsed arguments, returns an exit code). Modules are
discovered, so adding a command never touches this file. Heavy imports belong inside ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

EPILOG = """examples:
  initlab list
  initlab show he_normal --shape 256 512
  initlab init mypkg.models:make_net --input-shape 1,3,32,32
  initlab probe --model mlp --depth 5 --width 100 --init "normal(std=0.1)" --out out/
  initlab theory tanh --sigma-w2 1.0 --depth 50
  initlab experiment activations

every command has --help with an example.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="initlab",
        description="Neural-network weight initialization: catalogue, whole-model init, diagnostics, experiments.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from initlab import __version__

    parser.add_argument("--version", action="version", version=f"initlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        modules.append(importlib.import_module(f"{__name__}.{info.name}"))
    for module in sorted(modules, key=lambda m: (getattr(m, "ORDER", 50), m.__name__)):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as exc:
        print(f"initlab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `initlab ... | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
