"""The ``initlab`` command.

Each sub-command lives in its own module of this package and exposes ``register(subparsers)``, which
adds its parser and sets ``func`` (called with the parsed arguments, returns an exit code). Modules are
discovered, so adding a command never touches this file. Heavy imports belong inside ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import os
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


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is ONE line on stderr (and exit 2), like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="initlab",
        description="Neural-network weight initialization: catalogue, whole-model init, diagnostics, experiments.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from initlab import __version__

    parser.add_argument("--version", action="version", version=f"initlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    modules = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        modules.append(importlib.import_module(f"{__name__}.{info.name}"))
    for module in sorted(modules, key=lambda m: (getattr(m, "ORDER", 50), m.__name__)):
        module.register(sub)
    return parser


# what a user can cause: bad options or files, a factory or a model that raises on the inputs given,
# an output path that cannot be written, a size beyond memory
USER_ERRORS = (ValueError, TypeError, LookupError, OSError, ImportError, RuntimeError, MemoryError, ArithmeticError)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 600 else text[:597] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command: 0 success, 1 "unhealthy" (doctor, probe --check, init --check), 2 a user error (one
    line on stderr), 3 an internal error (one line; ``INITLAB_TRACEBACK=1`` shows the traceback), 130 on
    Ctrl-C. A traceback is never printed otherwise."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `initlab ... | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"initlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if os.environ.get("INITLAB_TRACEBACK"):
            raise
        print(f"initlab {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug of ours: still one line, and how to see more
        if os.environ.get("INITLAB_TRACEBACK"):
            raise
        print(f"initlab {args.command}: internal error ({type(exc).__name__}: {_one_line(exc)}); please report "
              "it, with INITLAB_TRACEBACK=1 to show the traceback", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
