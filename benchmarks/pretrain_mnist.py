"""Greedy unsupervised pretraining vs random initialization with few labels (the Erhan et al. 2010 setting).

A 784-500-500-10 sigmoid MLP on the bundled MNIST subset (``initlab.data.load("mnist")``: 4000 train,
1000 test images, pixels in [0, 1]). For every seed:

* random: the network with torch's default init U(+-1/sqrt(fan_in)) (and, for reference, the 4x Glorot
  rule for sigmoid units), trained with labels only;
* rbm / dae / ae: the SAME network (same seed, same output layer), hidden layers pretrained with
  ``initlab.pretrain`` on all 4000 training images (no labels), then trained with labels;

every network gets the same supervised budget (Adam, lr 1e-3, batch 32, the same minibatch sequence) on a
small labelled subset, and the test error on the 1000 held-out images is reported, with the margin
(random error - pretrained error) per seed.

    .venv/bin/python benchmarks/pretrain_mnist.py                    # 5 seeds, 300 and 1000 labels
    .venv/bin/python benchmarks/pretrain_mnist.py --seeds 0 1 --epochs 3 --labels 300   # quick
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


def sigmoid_mlp(sizes: list[int], seed: int, init: str) -> nn.Sequential:
    import initlab

    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layer = nn.Linear(a, b)
        initlab.get(init).init_(layer.weight, generator=g)
        nn.init.zeros_(layer.bias)
        layers.append(layer)
        if i < len(sizes) - 2:
            layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def finetune(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed + 1000)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) != y).float().mean().item()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--labels", type=int, nargs="+", default=[300, 1000], help="labelled examples")
    parser.add_argument("--epochs", type=int, default=10, help="pretraining epochs per layer")
    parser.add_argument("--steps", type=int, default=500, help="supervised Adam steps (batch 32)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    import initlab

    ds = initlab.data.load("mnist", standardize=False)
    sizes = [784, 500, 500, 10]
    print(f"MNIST subset: {len(ds.x_train)} unlabelled train images for pretraining, {len(ds.x_test)} test; "
          f"{sizes} sigmoid MLP; pretraining {args.epochs} epochs/layer; {args.steps} Adam steps on "
          f"{args.labels} labelled images; seeds {args.seeds}\n", flush=True)
    inits = {"random": "fan_in_uniform", "random (glorot x4)": "glorot_uniform_sigmoid"}
    methods = ["rbm", "dae", "ae"]
    errors: dict[tuple[str, int], list[float]] = {}
    for seed in args.seeds:
        start = time.perf_counter()
        nets = {name: sigmoid_mlp(sizes, seed, spec) for name, spec in inits.items()}
        for method in methods:
            net = sigmoid_mlp(sizes, seed, "fan_in_uniform")
            report = initlab.pretrain(net, ds.x_train, method=method, epochs=args.epochs, progress=False, seed=seed)
            nets[method] = net
            if seed == args.seeds[0]:
                print(report.table(color=False), "\n", flush=True)
        for n_labels in args.labels:
            x, y = ds.x_train[:n_labels], ds.y_train[:n_labels]
            for name, net in nets.items():
                model = copy.deepcopy(net)
                finetune(model, x, y, args.steps, seed)
                errors.setdefault((name, n_labels), []).append(test_error(model, ds.x_test, ds.y_test))
        line = ", ".join(f"{name}@{n}: {errors[(name, n)][-1]:.3f}" for n in args.labels for name in nets)
        print(f"seed {seed} ({time.perf_counter() - start:.0f} s): {line}", flush=True)

    print("\ntest error % (mean +- std over seeds); margin = random - pretrained, in points")
    print(f"{'labels':>6}  {'init':<18}  {'test error %':>14}  {'margin mean':>11}  {'margin min':>10}  wins")
    for n_labels in args.labels:
        base = errors[("random", n_labels)]
        for name in [*inits, *methods]:
            errs = errors[(name, n_labels)]
            sd = statistics.stdev(errs) if len(errs) > 1 else 0.0
            text = f"{n_labels:>6}  {name:<18}  {100 * statistics.mean(errs):>7.2f} +- {100 * sd:4.2f}"
            if name in methods:
                margins = [100 * (b - e) for b, e in zip(base, errs)]
                wins = sum(m > 0 for m in margins)
                text += f"  {statistics.mean(margins):>11.2f}  {min(margins):>10.2f}  {wins}/{len(margins)}"
            print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
