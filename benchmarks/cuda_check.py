"""The checks that need an accelerator, as one prepared script: run it when a GPU is lent.

    .venv/bin/python benchmarks/cuda_check.py [--device cuda] [--quick]

1. **The torch path on the device is the CPU kernel, bit for bit**: ``initlab.rng``'s uniform, normal,
   truncated normal and raw words, for float32 / float16 / bfloat16 / float64, many sizes and offsets
   (counters past ``2**32`` blocks included), drawn with ``backend="torch"`` on ``--device`` and compared
   with the reference CPU backend (numba when installed, else the torch path on the CPU).
2. **A slice drawn alone on the device** equals the same slice of the whole tensor.
3. **``init_model`` on the device**: a model built on meta and materialized with ``device=`` holds the same
   bits as the same model initialized on the CPU (elementwise schemes and orthogonal, whose QR runs on
   the CPU in float64 by design).
4. **Fill rate** on the device: ``initlab.rng`` normal / uniform vs ``Tensor.normal_`` / ``uniform_`` on
   the same tensors (GB/s, best of 5), and ``init_model`` from meta vs ``to_empty`` + ``reset_parameters``.

It prints PASS / FAIL per check and exits 1 if any check fails. ``--device cpu`` runs the same code on the
CPU (the torch path against the numba kernel), which is what this machine can do without a GPU.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import nn

import initlab
from initlab import rng

SIZES = [1, 3, 4, 5, 1000, 4097, 65536 * 4 + 3, 1 << 20]
OFFSETS = [0, 1, 7, 2**34 + 5]  # 2**34 elements = 2**32 blocks: the counter's carry into the second word
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
KEY = rng.key_for(0, "cuda_check.weight")


def reference_backend() -> str:
    return "numba" if rng.numba_available() else "torch"


def check_streams(device: str, quick: bool) -> list[str]:
    failures = []
    sizes = SIZES[:6] if quick else SIZES
    ref = reference_backend()
    for dist, fn, kw in [("uniform", rng.uniform, dict(low=-0.5, high=2.0)), ("normal", rng.normal, dict(std=0.02)),
                         ("truncated", rng.truncated_normal, dict(std=1.0, low=-2.0, high=2.0))]:
        for dtype in DTYPES:
            for n in sizes:
                for offset in OFFSETS:
                    here = fn(n, KEY, offset=offset, dtype=dtype, device=device, backend="torch", **kw)
                    cpu = fn(n, KEY, offset=offset, dtype=dtype, backend=ref, **kw)
                    if not torch.equal(here.cpu().view(torch.uint8), cpu.view(torch.uint8)):
                        failures.append(f"{dist} {dtype} n={n} offset={offset}")
    for n in sizes:
        if not torch.equal(rng.bits(n, KEY, device=device, backend="torch").cpu(), rng.bits(n, KEY, backend=ref)):
            failures.append(f"bits n={n}")
    whole = rng.normal(10_000, KEY, device=device, backend="torch")
    if not torch.equal(whole[1234:5678], rng.normal(5678 - 1234, KEY, offset=1234, device=device, backend="torch")):
        failures.append("a slice drawn alone differs from the slice of the whole")
    return failures


def small_transformer() -> nn.Module:
    layer = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True, dropout=0.0)
    return nn.Sequential(nn.Linear(16, 64), nn.TransformerEncoder(layer, 2, enable_nested_tensor=False),
                         nn.Linear(64, 10))


def check_init_model(device: str) -> list[str]:
    x = torch.randn(2, 8, 16)
    cpu = small_transformer()
    initlab.init_model(cpu, seed=0, example_inputs=x)
    with torch.device("meta"):
        there = small_transformer()
    initlab.init_model(there, seed=0, example_inputs=x, device=device)
    mine = dict(cpu.named_parameters())
    failures = [name for name, p in there.named_parameters() if not torch.equal(p.detach().cpu(), mine[name])]
    ortho = initlab.get("orthogonal").sample((256, 128), rng="philox", seed=0, key="w", device=device)
    if not torch.equal(ortho.cpu(), initlab.get("orthogonal").sample((256, 128), rng="philox", seed=0, key="w")):
        failures.append("orthogonal on the device differs from the CPU")
    return failures


def rate(fn, nbytes: int, device: str, repeat: int = 5) -> float:
    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return nbytes / best / 1e9


def fill_rates(device: str, quick: bool) -> None:
    n = (64 if quick else 256) * 2**20
    t = torch.empty(n, device=device)
    print(f"fill rate on {device}, {n * 4 / 2**30:.2f} GB float32 (GB/s, best of 5):")
    print(f"  fill_          {rate(lambda: t.fill_(1.0), n * 4, device):8.1f}")
    for name, ours, theirs in [("uniform", lambda: rng.fill_uniform_(t, KEY), lambda: t.uniform_()),
                               ("normal", lambda: rng.fill_normal_(t, KEY), lambda: t.normal_())]:
        a, b = rate(ours, n * 4, device), rate(theirs, n * 4, device)
        print(f"  {name:8s} initlab {a:8.1f}  torch {b:8.1f}  ratio {a / b:5.2f}")


def materialize(device: str) -> None:
    def build() -> nn.Module:
        with torch.device("meta"):
            return nn.Sequential(*[nn.Sequential(nn.Linear(2048, 8192), nn.GELU(), nn.Linear(8192, 2048))
                                   for _ in range(4)])

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    initlab.init_model(build(), seed=0, device=device)  # warm up
    model = build()
    start = time.perf_counter()
    initlab.init_model(model, seed=0, device=device)
    sync()
    ours = time.perf_counter() - start
    model = build()
    start = time.perf_counter()
    model.to_empty(device=device)
    for mod in model.modules():
        if hasattr(mod, "reset_parameters"):
            mod.reset_parameters()
    sync()
    theirs = time.perf_counter() - start
    print(f"init_model from meta on {device} (134M parameters): {ours:.3f} s; to_empty + reset_parameters "
          f"{theirs:.3f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="fewer sizes, smaller fills")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: run with --device cpu to exercise the same code on the CPU", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, device {args.device}, reference backend {reference_backend()}")
    failed = False
    for name, failures in [("streams: torch path on the device == CPU reference", check_streams(args.device,
                                                                                                  args.quick)),
                           ("init_model on the device == on the CPU", check_init_model(args.device))]:
        print(f"{'PASS' if not failures else 'FAIL'}  {name}" + "".join(f"\n      {f}" for f in failures[:10]))
        failed |= bool(failures)
    fill_rates(args.device, args.quick)
    materialize(args.device)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
