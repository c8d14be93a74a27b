"""``initlab theory``: mean-field numbers for an activation and a weight/bias variance, and whether a
network of a given depth is trainable (Poole et al. 2016, Schoenholz et al. 2017)."""

from __future__ import annotations

import argparse
import json
import math

ORDER = 50

EPILOG = """examples:
  initlab theory relu                              # at its critical point (sigma_w2 = 2: He init)
  initlab theory tanh --sigma-w2 1.0 --depth 50
  initlab theory tanh --sigma-w2 2.5 --sigma-b2 0.05 --depth 200
  initlab theory selu --sigma-w2 1 --json
  initlab theory tanh --plot tanh_phase.png        # chi_1 over (sigma_w2, sigma_b2), critical line

sigma_w2 is the weight variance times fan_in (He = 2, LeCun = 1, Glorot ~ 1 for square layers);
trainable depth = 6 x xi_c (Schoenholz et al. 2017).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "theory", help="mean-field fixed point, chi_1, phase and trainable depth for an activation",
        description="Mean-field theory of a deep random network with weights N(0, sigma_w2 / fan_in) and biases "
                    "N(0, sigma_b2): the fixed point q* of the length map, chi_1 = sigma_w2 E[f'(sqrt(q*) z)^2] "
                    "(ordered < 1 < chaotic), the depth scales xi_q and xi_c, and the depth up to which such a "
                    "network trains (6 xi_c). Without --sigma-w2 the critical point (chi_1 = 1) is used.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("activation", help="activation name (relu, tanh, sigmoid, selu, gelu, leaky_relu, ...)")
    p.add_argument("--param", type=float, default=None,
                   help="the activation's parameter (leaky_relu slope, elu alpha, ...)")
    p.add_argument("--sigma-w2", type=float, default=None,
                   help="weight variance x fan_in (default: the critical point for --sigma-b2)")
    p.add_argument("--sigma-b2", type=float, default=0.0, help="bias variance (default 0)")
    p.add_argument("--depth", type=int, default=None, help="say whether a network this deep is trainable")
    p.add_argument("--plot", metavar="PATH", default=None, help="also draw the phase diagram to PATH (.png, .pdf)")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from initlab.gains import resolve_activation
    from initlab.report.table import Column, render
    from initlab.theory import critical_point, mean_field, phase_diagram

    if args.plot:
        from initlab._io import writable

        writable(args.plot, "--plot")
    try:
        act = resolve_activation(args.activation, args.param)
    except (ValueError, TypeError) as exc:
        what = "--param" if "param" in str(exc) else f"ACTIVATION {args.activation!r}"
        raise ValueError(f"{what}: {exc}") from None
    if args.depth is not None and args.depth < 1:
        raise ValueError(f"--depth must be a positive integer; got {args.depth}")
    critical = None
    sw2 = args.sigma_w2
    note = None
    if sw2 is None:
        try:
            critical = sw2 = critical_point(act, args.sigma_b2)
        except ValueError:  # no chi_1 = 1 crossing (GELU at sigma_b2 = 0): say so, use the variance-preserving one
            sw2 = 1.0 / act.second_moment()
            note = (f"{act} has no critical point at sigma_b2 = {args.sigma_b2:g} (chi_1 never equals 1); shown "
                    f"at the variance-preserving sigma_w2 = 1 / E[f(z)^2] = {sw2:.4g} instead")
    mf = mean_field(act, sw2, args.sigma_b2)
    verdict = None
    if args.depth is not None:
        ok = mf.trainable(args.depth)
        verdict = (f"depth {args.depth}: {'trainable' if ok else 'NOT trainable'} "
                   f"(limit ~{_num(mf.trainable_depth)} layers = 6 x xi_c; {_why(mf)})")
    if args.json:
        data = mf.to_dict()
        data = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}
        data["critical_sigma_w2"] = critical
        data["note"] = note
        if args.depth is not None:
            data["depth"] = args.depth
            data["trainable"] = mf.trainable(args.depth)
        print(json.dumps(data, indent=1))
    else:
        title = f"mean field: {mf.activation}, sigma_w2 = {_num(mf.sigma_w2)}"
        title += " (critical point)" if critical is not None else ""
        title += f", sigma_b2 = {_num(mf.sigma_b2)}"
        print(render([{"quantity": k, "value": v, "meaning": m} for k, v, m in mf.rows()[3:]],
                     [Column("quantity"), Column("value", align=">"), Column("meaning")], title=title))
        if verdict:
            print(verdict)
        if note:
            print(note)
    if args.plot:
        path = phase_diagram(act, args.plot)
        print(f"wrote {path}")
    return 0


def _num(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.4g}"


def _why(mf) -> str:
    if mf.phase == "critical":
        return "critical: signals and gradients keep their size"
    if mf.phase == "ordered":
        return f"ordered: gradients shrink by chi_1 = {mf.chi_1:.3g} per layer"
    return f"chaotic: gradients grow by chi_1 = {mf.chi_1:.3g} per layer"
