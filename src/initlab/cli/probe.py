"""``initlab probe``: probe a reference model from ``initlab.zoo`` on a bundled dataset under one or more
initializations, and write the table, JSON, figures and HTML report of each."""

from __future__ import annotations

import argparse
import re

ORDER = 40

EPILOG = """examples:
  # the seed figure: MNIST pixels / 255, a linear Dense(100) then 5 x Dense(100, ReLU), three N(0, std)
  initlab probe --model mlp --depth 5 --width 100 --activation relu --data mnist \\
      --init "normal(std=0.1)" --init "normal(std=0.14)" --init "normal(std=0.28)" --out probe-out/
  initlab probe --model mlp --depth 10 --width 256 --activation tanh --data digits --standardize \\
      --init glorot_normal --init "normal(std=0.01)" --out out/
  initlab probe --model resnet --data mnist --standardize --init auto --out out/

writes, in --out: <init>.txt (table and verdicts), <init>.json, <init>.html (self-contained report),
activations.png (one column per --init, one row per layer), profile.png (std per layer, forward and
backward) and report.html (all inits side by side).

with --tensorboard DIR, each init is also a TensorBoard run DIR/<init> (per-layer scalars and activation
histograms at step 0, verdict counts, the depth profile as profile/act_std): tensorboard --logdir DIR
"""

MODELS = ("mlp", "cnn", "resnet", "transformer")


def register(sub: argparse._SubParsersAction) -> None:
    from initlab.report.columns import legend_text  # the column meanings the HTML report's legend prints

    p = sub.add_parser(
        "probe", help="measure activations and gradients layer by layer under one or more initializations",
        description="Build a reference model (initlab.zoo), initialize it with each --init (initlab.init_model; "
                    "biases zero), run initlab.probe on one batch of a bundled dataset and write the per-layer "
                    "table, the health verdicts, JSON, the activation-histogram and profile figures and an "
                    "HTML report. For --model mlp the network is the seed figure's: a linear Dense(WIDTH) on "
                    "the inputs (unless --no-linear-first), then DEPTH x Dense(WIDTH, ACTIVATION), then the "
                    "classifier.",
        epilog=EPILOG + "\n" + legend_text(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mlp", choices=MODELS, help="reference model from initlab.zoo (default mlp)")
    p.add_argument("--depth", type=int, default=5, help="hidden layers with the activation (mlp; default 5)")
    p.add_argument("--width", type=int, default=100, help="units per hidden layer / channels (default 100)")
    p.add_argument("--activation", default="relu", help="hidden activation name (default relu)")
    p.add_argument("--batchnorm", action="store_true", help="BatchNorm after each hidden layer (mlp, cnn)")
    p.add_argument("--linear-first", action=argparse.BooleanOptionalAction, default=True,
                   help="mlp: start with a linear Dense(WIDTH) as the seed figure does (default: yes)")
    p.add_argument("--data", default="mnist",
                   help="mnist, digits, mnist1d, gaussian or a FILE.npz with arrays x, y (default mnist)")
    p.add_argument("--standardize", action="store_true",
                   help="z-score every feature (default: pixels scaled to [0, 1], as in the seed figure)")
    p.add_argument("--batch", type=int, default=1000, help="examples in the probed batch (default 1000)")
    p.add_argument("--init", action="append", default=None, metavar="SPEC",
                   help="an initializer spec for every weight ('normal(std=0.1)', 'he_normal', 'auto'); repeat "
                        "to compare; default: torch's own initialization")
    p.add_argument("--cotangent", action="store_true",
                   help="back-propagate a random Gaussian cotangent instead of the cross-entropy of the labels")
    p.add_argument("--bins", type=int, default=64, help="histogram bins (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the model, the init and the data split (default 0)")
    p.add_argument("--out", default="initlab-probe", help="output folder (default ./initlab-probe)")
    p.add_argument("--no-html", action="store_true", help="skip the HTML reports")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also write each init as a TensorBoard run DIR/<init> (needs the tensorboard package)")
    p.add_argument("--check", action="store_true", help="exit with status 1 when any init is unhealthy")
    p.add_argument("--theory", action="store_true",
                   help="add the predicted per-layer std (initlab.theory.propagate) next to the measured one")
    p.set_defaults(func=run)


def slug(spec: str) -> str:
    """A file-name-safe label for an init spec: ``normal(std=0.1)`` -> ``normal_std_0.1``."""
    s = re.sub(r"[^A-Za-z0-9.+-]+", "_", spec).strip("_")
    return s or "init"


def build_model(args: argparse.Namespace, ds) -> object:
    """The zoo model for ``args`` sized for dataset ``ds``."""
    from initlab import zoo

    if args.depth < 0 or args.width < 1:
        raise ValueError(f"--depth must be >= 0 and --width >= 1; got {args.depth} and {args.width}")
    if args.model == "mlp":
        acts = (["linear"] if args.linear_first else []) + [args.activation] * args.depth
        return zoo.mlp(len(acts), args.width, acts, batchnorm=args.batchnorm, in_features=ds.n_features,
                       out_features=ds.n_classes, seed=args.seed)
    if args.model in ("cnn", "resnet"):
        if ds.image_shape is None:
            raise ValueError(f"--model {args.model} needs image data (mnist, digits); {ds.name} is not")
        if args.model == "cnn":
            return zoo.cnn((args.width,) * max(args.depth, 1), args.activation, args.batchnorm,
                           input_shape=ds.image_shape, out_features=ds.n_classes, seed=args.seed)
        return zoo.resnet(max(args.depth, 0), args.width, input_shape=ds.image_shape, out_features=ds.n_classes,
                          seed=args.seed)
    if ds.image_shape is not None:
        c, h, w = ds.image_shape
        seq, feat = h, c * w
    else:
        seq, feat = ds.n_features, 1
    return zoo.transformer(feat, seq, num_layers=max(args.depth, 1), out_features=ds.n_classes, seed=args.seed)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import matplotlib.pyplot as plt

    import initlab
    from initlab._io import atomic_text, output_dir
    from initlab.data import load
    from initlab.model_init import init_model
    from initlab.report.figures import plot_activations, plot_profile
    from initlab.report.html import to_html
    from initlab.validate import check_int

    check_int(args.batch, "--batch", 1)
    ds = load(args.data, standardize=args.standardize, seed=args.seed)
    x, y = ds.x_train[: args.batch], ds.y_train[: args.batch]
    specs = args.init or ["default"]
    # every option checked before the output folder is made: a refused run leaves nothing behind
    build_model(args, ds)
    check_int(args.bins, "--bins", 1, 100_000)
    for spec in specs:
        if spec != "default":
            try:
                initlab.get(spec)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"--init {spec!r}: {exc}") from None
    if args.tensorboard is not None:  # before any work: a missing package or a bad folder refuses the run
        from initlab.integrations.tensorboard import check_logdir

        check_logdir(args.tensorboard, "--tensorboard")
    out = output_dir(args.out, "--out")
    results = {}
    predictions = {}
    written: list[Path] = []
    for spec in specs:
        model = build_model(args, ds)
        if spec != "default":
            init_model(model, spec, seed=args.seed, allow_symmetric=True, example_inputs=x[:2])
        result = initlab.probe(model, x, None if args.cotangent else y, bins=args.bins, seed=args.seed)
        label = "torch default" if spec == "default" else spec
        results[label] = result
        name = slug(spec)
        if args.theory:
            from initlab.theory import propagate

            predictions[label] = propagate(model, x, input_var=float(x.var()), input_mean=float(x.mean()))
        text = result.table(color=False, theory=predictions.get(label))
        print(f"== init {label} ==")
        print(result.table(theory=predictions.get(label)))
        print()
        atomic_text(out / f"{name}.txt", text + "\n", "--out")
        result.to_json(out / f"{name}.json")
        written += [out / f"{name}.txt", out / f"{name}.json"]
        if not args.no_html:
            written.append(to_html(result, out / f"{name}.html", title=f"initlab probe: {args.model}, init {label}"))
        if args.tensorboard is not None:
            from initlab.integrations.tensorboard import write_run

            written.append(write_run(args.tensorboard, name, result.layers, result.verdicts))
    what = f"{args.model}, {args.activation}" if args.model != "resnet" else "resnet"
    data_desc = f"{args.data}{' standardized' if args.standardize else ''}"
    fig = plot_activations(results, out / "activations.png",
                           title=f"activations per layer: {what} on {data_desc} (batch {len(x)})")
    plt.close(fig)
    fig = plot_profile(results, out / "profile.png", title=f"signal propagation: {what} on {data_desc}",
                       theory=predictions or None)
    plt.close(fig)
    written += [out / "activations.png", out / "profile.png"]
    if not args.no_html and len(results) > 1:
        written.append(to_html(results, out / "report.html", title=f"initlab probe: {what} on {data_desc}"))
    print("wrote " + ", ".join(str(p) for p in written))
    unhealthy = [label for label, r in results.items() if not r.healthy]
    if args.check and unhealthy:
        print(f"initlab probe: unhealthy: {', '.join(unhealthy)}")
        return 1
    return 0
