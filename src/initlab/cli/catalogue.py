"""``initlab list`` and ``initlab show``: the catalogue, and one initializer sampled on a shape."""

from __future__ import annotations

import argparse

SHOW_LIMIT = 2**30  # bytes `initlab show` may allocate

ORDER = 10


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "list", help="print the catalogue of initializers (name, formula, reference)",
        description="Print every initializer of the registry with its formula and reference.",
        epilog="example:\n  initlab list\n  initlab list --aliases",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--aliases", action="store_true", help="also list the aliases each name accepts")
    p.set_defaults(func=run_list)

    s = sub.add_parser(
        "show", help="sample an initializer on a shape; print fans, expected and measured statistics",
        description="Sample SPEC (a registry name or a call such as \"normal(std=0.01)\") on a weight of the "
                    "given shape and print its fans, the expected std (and bound), and the measured mean, "
                    "std, min and max.",
        epilog="examples:\n  initlab show he_normal --shape 256 512\n"
               "  initlab show \"orthogonal(gain='relu')\" --shape 64 3 3 3\n"
               "  initlab show glorot_uniform --shape 3 3 64 128 --layout keras",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("spec", help="initializer spec: name, name(args...), as `initlab list` shows")
    s.add_argument("--shape", type=int, nargs="+", required=True, help="weight shape, e.g. 256 512")
    s.add_argument("--layout", default=None, help="fan layout: torch, torch_transposed, keras, jax, "
                                                  "lasagne_dense, c01b (default: the spec's own)")
    s.add_argument("--groups", type=int, default=None, help="conv groups (fan-based initializers)")
    s.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    s.add_argument("--dtype", default="float32", choices=["float16", "bfloat16", "float32", "float64"])
    s.set_defaults(func=run_show)


def run_list(args: argparse.Namespace) -> int:
    from initlab.initializers.registry import aliases, available, entry
    from initlab.report.table import render

    by_name: dict[str, list[str]] = {}
    for alias, name in aliases().items():
        if alias.islower() or "_" in alias:
            by_name.setdefault(name, []).append(alias)
    rows = []
    for name in available():
        e = entry(name)
        row = {"name": name, "formula": e.formula, "reference": e.reference}
        if args.aliases:
            row["aliases"] = ", ".join(sorted(by_name.get(name, [])))
        rows.append(row)
    columns = ["name", "formula", "reference"] + (["aliases"] if args.aliases else [])
    print(render(rows, columns, title=f"initlab catalogue: {len(rows)} initializers"))
    return 0


def run_show(args: argparse.Namespace) -> int:
    import math

    import torch

    import initlab
    from initlab.initializers.basic import TruncatedNormal, Uniform
    from initlab.initializers.variance import VarianceScaling

    ini = initlab.get(args.spec)
    changes = {k: v for k, v in (("layout", args.layout), ("groups", args.groups)) if v is not None}
    if changes:
        ini = ini.replace(**changes)
    from initlab.validate import check_seed

    check_seed(args.seed, "--seed", optional=False)
    shape = tuple(args.shape)
    if any(d < 1 for d in shape):
        raise ValueError(f"--shape must be positive sizes, e.g. --shape 256 512; got {' '.join(map(str, shape))}")
    nbytes = math.prod(shape) * torch.empty((), dtype=getattr(torch, args.dtype)).element_size()
    if nbytes > SHOW_LIMIT:
        raise ValueError(f"--shape {' '.join(map(str, shape))} would need {nbytes / 2**30:.3g} GiB; `initlab show` "
                         f"samples at most {SHOW_LIMIT / 2**30:g} GiB (the statistics need far less)")
    w = ini.sample(shape, dtype=getattr(torch, args.dtype), generator=torch.Generator().manual_seed(args.seed))
    f = ini.fans_of(shape)
    expected = ini.expected_std(shape)
    lines = [f"initializer  {ini!r}", f"shape        {shape}  ({args.dtype}, seed {args.seed})"]
    if f is not None:
        lines.append(f"fans         fan_in={f.fan_in:g}  fan_out={f.fan_out:g}  receptive_field={f.receptive_field}")
    if expected is not None:
        lines.append(f"expected     std={expected:.6g}")
    if isinstance(ini, VarianceScaling) and ini.distribution == "uniform":
        lines[-1] += f"  bound=+-{math.sqrt(3.0) * ini.std_for(shape):.6g}"
    elif isinstance(ini, Uniform):
        lines[-1] += f"  bounds=[{ini.bounds[0]:.6g}, {ini.bounds[1]:.6g}]"
    elif isinstance(ini, TruncatedNormal):
        lines[-1] += f"  bounds=[{ini.limits[0]:.6g}, {ini.limits[1]:.6g}]"
    v = w.double()
    lines.append(f"measured     mean={v.mean():.6g}  std={v.std(unbiased=False):.6g}  min={v.min():.6g}  "
                 f"max={v.max():.6g}  zeros={(v == 0).double().mean():.1%}")
    print("\n".join(lines))
    return 0
