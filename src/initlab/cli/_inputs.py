"""The input options shared by every command that takes a model (``init``, ``doctor``, ``lsuv``).

``--input-shape`` (a synthetic N(0, 1) batch, or integer token ids in ``[0, VOCAB)`` with ``--tokens``),
``--data`` (a bundled dataset name or a ``.npz`` file with ``x`` and optionally ``y``) and ``--batch``:
one set of options, parsed in one place, so the commands accept the same inputs and say the same things
about bad ones.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_input_options", "model_inputs", "describe_inputs", "parse_shape", "load_factory", "on_inputs"]


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(t) for t in text.replace("x", ",").split(",") if t.strip())
    except ValueError:
        raise ValueError(f"--input-shape must be comma-separated positive ints such as 1,3,32,32; got {text!r}") \
            from None
    if not dims or any(d < 1 for d in dims):
        raise ValueError(f"--input-shape must be comma-separated positive ints such as 1,3,32,32; got {text!r}")
    return dims


def load_factory(target: str):
    """``"pkg.mod:name"`` -> the model built by ``pkg.mod.name()`` (or the module attribute itself)."""
    import importlib
    import os
    import sys

    from torch import nn

    if ":" not in target:
        raise ValueError(f"expected MODULE:FACTORY, e.g. mypkg.models:make_net; got {target!r}")
    mod_name, _, attr = target.partition(":")
    if not mod_name or not attr:
        raise ValueError(f"expected MODULE:FACTORY, e.g. mypkg.models:make_net; got {target!r}")
    if os.getcwd() not in sys.path:  # like `python -m`, modules in the current directory are importable
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(mod_name)
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    try:
        model = obj if isinstance(obj, nn.Module) else obj() if callable(obj) else obj
    except Exception as exc:  # noqa: BLE001 - the user's factory: say which one failed, and how
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ValueError(f"{target}: the factory raised {type(exc).__name__}: {first}") from None
    if not isinstance(model, nn.Module):
        raise TypeError(f"{target} must be an nn.Module or a factory returning one; got {type(model).__name__}")
    return model


def add_input_options(p: argparse.ArgumentParser, *, required: bool, data_batch: int = 512) -> None:
    """Add ``--input-shape`` / ``--data`` (mutually exclusive), ``--tokens`` and ``--batch`` to ``p``."""
    src = p.add_mutually_exclusive_group(required=required)
    src.add_argument("--input-shape", default=None,
                     help="comma-separated input shape, batch first, e.g. 256,784, 64,3,32,32 or 8,128 with "
                          "--tokens: a synthetic batch of N(0, 1) values")
    src.add_argument("--data", default=None, metavar="NAME|FILE.npz",
                     help="a bundled dataset (mnist, digits, mnist1d, gaussian; standardized) or a .npz with the "
                          "inputs as 'x' (else the first array) and labels as 'y'")
    p.add_argument("--tokens", type=int, default=None, metavar="VOCAB",
                   help="with --input-shape: integer token ids in [0, VOCAB) instead of N(0, 1) values "
                        "(language models)")
    p.add_argument("--batch", type=int, default=None,
                   help=f"examples taken from --data (default: up to {data_batch}), or the batch size of "
                        "--input-shape (default: its first dimension)")


def _npz(path: str, n: int) -> tuple[Any, Any]:
    """The first ``n`` rows of ``x`` (else the first array) and ``y`` of a .npz; any unreadable file, or an
    array that is not numeric (objects are never unpickled), is a ValueError naming --data."""
    import zipfile

    import numpy as np
    import torch

    try:
        with np.load(path, allow_pickle=False) as f:
            if not f.files:
                xt = None
                raise LookupError
            x = f["x"] if "x" in f.files else f[f.files[0]]
            y = f["y"] if "y" in f.files else None
            xt = torch.from_numpy(np.ascontiguousarray(x[:n]))
            yt = None if y is None else torch.from_numpy(np.ascontiguousarray(y[:n])).long()
    except FileNotFoundError:
        raise ValueError(f"--data {path}: no such file") from None
    except LookupError:
        raise ValueError(f"--data {path}: the file holds no array") from None
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"--data {path}: not a readable .npz file of numeric arrays 'x' (and 'y') "
                         f"({type(exc).__name__})") from None
    xt = xt.float() if xt.is_floating_point() or xt.dtype == torch.bool else xt.long()
    return xt, yt


def model_inputs(args: argparse.Namespace, seed: int = 0, data_batch: int = 512) -> tuple[Any, Any]:
    """``(x, y)`` from the parsed input options; ``y`` (labels) only from ``--data`` (its first ``--batch``
    examples, default ``data_batch``); ``(None, None)`` when no input option was given."""
    import torch

    from initlab.validate import check_int

    for value, option in ((args.batch, "--batch"), (args.tokens, "--tokens")):
        if value is not None:
            check_int(value, option, 1)
    if args.data is not None:
        if args.tokens is not None:
            raise ValueError("--tokens goes with --input-shape (token ids of that shape), not with --data")
        n = args.batch or data_batch
        if str(args.data).endswith(".npz"):
            return _npz(args.data, n)
        from initlab.data import load

        ds = load(args.data, seed=seed)
        return ds.x_train[:n], ds.y_train[:n]
    if args.input_shape is None:
        if args.tokens is not None:
            raise ValueError("--tokens needs --input-shape (the shape of the token-id batch, e.g. 8,128)")
        return None, None
    shape = parse_shape(args.input_shape)
    if args.batch is not None:
        shape = (args.batch, *shape[1:])
    gen = torch.Generator().manual_seed(seed)
    if args.tokens is not None:
        return torch.randint(0, args.tokens, shape, generator=gen), None
    return torch.randn(shape, generator=gen), None


def on_inputs(args: argparse.Namespace, tool: Any, *a: Any, **kw: Any) -> Any:
    """``tool(*a, **kw)`` on the user's model; a model that fails on the inputs the options built (a wrong
    ``--input-shape``, token ids given to a float model ...) is one ValueError naming those options."""
    from initlab.graph import InputsError

    try:
        return tool(*a, **kw)
    except (InputsError, RuntimeError) as exc:
        given = (f"--data {args.data}" if args.data is not None else
                 f"--input-shape {args.input_shape}" + (f" --tokens {args.tokens}" if args.tokens else ""))
        cause = exc.__cause__ if isinstance(exc, InputsError) and exc.__cause__ is not None else exc
        first = (str(cause).strip().splitlines() or [""])[0]
        raise ValueError(f"the model failed on inputs built from {given} ({type(cause).__name__}: {first}); "
                         "check the shape and type the model expects") from None


def describe_inputs(args: argparse.Namespace) -> str:
    """A few words on where the batch came from, for the commands' summaries."""
    if args.data is not None:
        return "your data" if str(args.data).endswith(".npz") else f"the {args.data} dataset"
    return "random tokens" if args.tokens is not None else "synthetic N(0, 1) inputs"
