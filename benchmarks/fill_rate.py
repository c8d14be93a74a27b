"""Fill rate of initlab's counter-based generator (Philox4x32-10) against torch.nn.init, on the same tensors.

    .venv/bin/python benchmarks/fill_rate.py [--max-mb 1024] [--threads 1 2] [--repeat 3] [--passes 1]

For float32 and bfloat16 tensors of 1 MB to 1 GB, at each thread count, prints the GB/s (bytes written per
second, best of ``--repeat`` calls, and best over ``--passes`` passes of the whole table) of

* ``fill``: ``Tensor.fill_`` -- the machine's memory-fill rate, the limit any generator can reach;
* ``U``: ``initlab.rng.fill_uniform_`` vs ``torch.nn.init.uniform_`` (``Tensor.uniform_``), and the ratio;
* ``N``: ``initlab.rng.fill_normal_`` vs ``torch.nn.init.normal_``, and the ratio;
* ``TN``: ``initlab.rng.fill_truncated_normal_`` vs ``torch.nn.init.trunc_normal_`` (both on [-2, 2]; torch's
  side only up to ``--tn-max-mb``, it runs at ~0.05 GB/s);

then the scaling of the philox fills from the first thread count to the last. The philox kernel uses
``torch.get_num_threads()`` threads, so both sides run at the same thread count (torch's CPU ``uniform_``
and ``normal_`` are single-threaded whatever the count). On a machine shared with other jobs a busy core
stalls a 2-thread run badly: use ``--passes 3`` (each cell keeps its best pass). The numbers quoted in
docs/rng.md come from this script.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from initlab import rng

SIZES_MB = [1, 16, 256, 1024]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
KINDS = ("U", "N", "TN")
KEY = rng.key_for(0, "benchmark.weight")


def rate(fn, nbytes: int, repeat: int) -> float:
    """Best-of-``repeat`` throughput in GB/s (small tensors get an untimed call first)."""
    if nbytes <= 16 * 2**20:
        fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return nbytes / best / 1e9


def measure(args, backend: str, results: dict) -> None:
    """One pass over the table; each cell of ``results`` keeps the best GB/s seen."""
    ours = {
        "U": lambda t: rng.fill_uniform_(t, KEY, backend=backend),
        "N": lambda t: rng.fill_normal_(t, KEY, backend=backend),
        "TN": lambda t: rng.fill_truncated_normal_(t, KEY, low=-2.0, high=2.0, backend=backend),
    }
    theirs = {
        "U": lambda t: torch.nn.init.uniform_(t),
        "N": lambda t: torch.nn.init.normal_(t),
        "TN": lambda t: torch.nn.init.trunc_normal_(t, a=-2.0, b=2.0),
    }
    for dname in args.dtypes:
        for mb in [m for m in SIZES_MB if m <= args.max_mb]:
            nbytes = mb * 2**20
            t = torch.empty(nbytes // torch.tensor([], dtype=DTYPES[dname]).element_size(), dtype=DTYPES[dname])
            t.zero_()  # touch every page before timing
            for threads in args.threads:
                torch.set_num_threads(threads)
                cell = results.setdefault((dname, mb, threads), {})

                def keep(name, value, cell=cell):
                    cell[name] = max(cell.get(name, 0.0), value)

                keep("fill", rate(lambda t=t: t.fill_(0.5), nbytes, args.repeat))
                for k in KINDS:
                    keep(k, rate(lambda f=ours[k], t=t: f(t), nbytes, args.repeat))
                    if k != "TN" or mb <= args.tn_max_mb:
                        keep("torch " + k, rate(lambda f=theirs[k], t=t: f(t), nbytes, args.repeat))
            del t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-mb", type=int, default=1024, help="largest tensor, in MB (default 1024)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per cell (best is kept)")
    parser.add_argument("--passes", type=int, default=1, help="passes over the whole table (best is kept)")
    parser.add_argument("--tn-max-mb", type=int, default=256, help="largest tensor for torch's trunc_normal_")
    parser.add_argument("--backend", choices=rng.BACKENDS, default="auto")
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    args = parser.parse_args()

    backend = args.backend if args.backend != "auto" else ("numba" if rng.numba_available() else "torch")
    versions = f"torch {torch.__version__}"
    if backend == "numba":
        import numba

        versions += f", numba {numba.__version__}"
    print(f"{platform.machine()}, {torch.get_num_threads()} threads available; {versions}; philox backend: {backend}")
    rng.fill_normal_(torch.empty(64), KEY, backend=backend)  # compile / load the kernel before timing

    results: dict = {}
    previous_threads = torch.get_num_threads()
    try:
        for _ in range(args.passes):
            measure(args, backend, results)
    finally:
        torch.set_num_threads(previous_threads)

    print(f"GB/s (best of {args.repeat} calls x {args.passes} pass(es)); ratio = philox / torch at the same "
          f"thread count")
    header = (f"{'dtype':5s} {'size':>7s} {'thr':>3s} {'fill':>6s} | {'U philox':>8s} {'torch':>6s} {'ratio':>6s} | "
              f"{'N philox':>8s} {'torch':>6s} {'ratio':>6s} | {'TN philox':>9s} {'torch':>6s} {'ratio':>6s}")
    print(header)
    print("-" * len(header))
    for (dname, mb, threads), cell in results.items():
        parts = []
        for k, width in (("U", 8), ("N", 8), ("TN", 9)):
            if "torch " + k in cell:
                parts.append(f"{cell[k]:{width}.2f} {cell['torch ' + k]:6.2f} {cell[k] / cell['torch ' + k]:6.2f}")
            else:
                parts.append(f"{cell[k]:{width}.2f} {'-':>6s} {'-':>6s}")
        print(f"{dname:5s} {mb:>4d} MB {threads:>3d} {cell['fill']:6.2f} | " + " | ".join(parts))
    lo, hi = min(args.threads), max(args.threads)
    if lo != hi:
        print(f"\nphilox scaling, {hi} threads / {lo} thread(s)")
        print(f"{'dtype':5s} {'size':>7s} {'U':>5s} {'N':>5s} {'TN':>5s}")
        for (dname, mb, threads), cell in results.items():
            if threads == hi:
                base = results[(dname, mb, lo)]
                print(f"{dname:5s} {mb:>4d} MB " + " ".join(f"{cell[k] / base[k]:5.2f}" for k in KINDS))


if __name__ == "__main__":
    main()
