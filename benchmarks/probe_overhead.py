"""Overhead of ``initlab.probe``: time and peak memory of a probed forward+backward pass against a plain one.

For each model, in the same process and interleaved (plain, probed, probed, plain, ...):

* plain: ``loss = cross_entropy(model(x), y); loss.backward()`` (``.grad`` cleared before each run);
* probe: ``initlab.probe(model, x, y, graph=g)`` with the graph traced once (as ``Monitor`` does);
* probe+trace: ``initlab.probe(model, x, y)``, tracing included (what a one-off call costs).

Time is the median over the timed runs of the CPU time of this process (``time.process_time``, so other
processes on a shared machine do not inflate it) with ``--threads`` intra-op threads (default 1). Each variant
runs at least ``--repeats`` times, and a fast model as often as fits in about half a second (at most 60 runs),
so the medians of small models are as stable as those of large ones.
Peak memory is measured with the torch profiler (``profile_memory=True``): the CPU allocator reports the
running total of tensor bytes allocated during the profiled pass ("Total Allocated" of each ``[memory]``
event); the peak is its maximum minus its value before the pass's first allocation. It counts every
tensor (activations saved for backward, gradients, the probe's temporaries), not Python objects.

Targets (issue 4): time ratio <= 1.3 and memory ratio <= 1.2 at batch 256; the last column says PASS or
FAIL (and which target failed) for each model.

    python benchmarks/probe_overhead.py            # full table (about a minute on one core)
    python benchmarks/probe_overhead.py --quick    # fewer repeats, smaller models
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

import initlab
from initlab import zoo
from initlab.report.table import Column, render


def peak_bytes(fn) -> int:
    """Peak tensor bytes allocated during ``fn()`` (torch profiler memory events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    finally:
        os.remove(path)
    mem = sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"])
    if not mem:
        return 0
    before = mem[0]["args"]["Total Allocated"] - mem[0]["args"]["Bytes"]
    return max(e["args"]["Total Allocated"] for e in mem) - before


TIME_TARGET, MEM_TARGET = 1.3, 1.2


def verdict(time_ratio: float, mem_ratio: float) -> str:
    """PASS, or FAIL with the targets missed."""
    missed = [what for what, ok in (("time", time_ratio <= TIME_TARGET), ("mem", mem_ratio <= MEM_TARGET)) if not ok]
    return "PASS" if not missed else f"FAIL ({', '.join(missed)})"


def measure(name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> dict:
    graph = initlab.trace(model, x[:2])

    def plain() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    def probed() -> None:
        model.zero_grad(set_to_none=True)
        initlab.probe(model, x, y, graph=graph)

    def probed_trace() -> None:
        model.zero_grad(set_to_none=True)
        initlab.probe(model, x, y)

    runs = {"plain": plain, "probe": probed, "probe+trace": probed_trace}
    for fn in runs.values():  # warm-up: allocator, lazy imports, first-call caches
        fn()
    t0 = time.process_time()
    plain()
    repeats = min(60, max(repeats, int(0.5 / max(time.process_time() - t0, 1e-6))))
    times: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(repeats):
        order = list(runs) if i % 2 == 0 else list(reversed(runs))
        for key in order:
            t0 = time.process_time()
            runs[key]()
            times[key].append(time.process_time() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    model.zero_grad(set_to_none=True)
    mem_plain = peak_bytes(plain)
    model.zero_grad(set_to_none=True)
    mem_probe = peak_bytes(probed)
    model.zero_grad(set_to_none=True)
    time_ratio, mem_ratio = med["probe"] / med["plain"], mem_probe / max(mem_plain, 1)
    return {
        "model": name, "batch": x.shape[0], "params": sum(p.numel() for p in model.parameters()), "runs": repeats,
        "points": len(initlab.probe(model, x, y, graph=graph).layers),
        "plain_ms": 1e3 * med["plain"], "probe_ms": 1e3 * med["probe"], "trace_ms": 1e3 * med["probe+trace"],
        "time_ratio": time_ratio, "time_ratio_trace": med["probe+trace"] / med["plain"],
        "plain_mb": mem_plain / 2**20, "probe_mb": mem_probe / 2**20, "mem_ratio": mem_ratio,
        "verdict": verdict(time_ratio, mem_ratio),
    }


def configs(quick: bool) -> list[tuple[str, torch.nn.Module, torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    batch = 256
    out = []
    widths = (256,) if quick else (1024, 256)
    for width in widths:
        net = zoo.mlp(6, width, "relu", in_features=784)
        initlab.init_model(net, seed=0)
        out.append((f"MLP 784-6x{width}-10 ReLU", net, torch.randn(batch, 784, generator=gen),
                    torch.randint(0, 10, (batch,), generator=gen)))
    shapes = ((128, 512, 16),) if quick else ((256, 1024, 16), (128, 512, 32))
    for d, ffn, seq in shapes:
        net = zoo.transformer(in_features=32, seq_len=seq, d_model=d, nhead=4, num_layers=2, dim_feedforward=ffn)
        out.append((f"Transformer d={d} ffn={ffn} 2 layers, seq {seq}", net,
                    torch.randn(batch, seq * 32, generator=gen), torch.randint(0, 10, (batch,), generator=gen)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller models, 3 repeats")
    parser.add_argument("--repeats", type=int, default=None,
                        help="least timed runs per variant (default 7, quick 3; fast models run more)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--json", default=None, help="also write the rows as JSON to this path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 7)
    rows = [measure(name, m, x, y, repeats) for name, m, x, y in configs(args.quick)]
    cols = [
        Column("model"), Column("batch"), Column("points", "points"), Column("runs"),
        Column("plain_ms", "plain ms", fmt=".1f"), Column("probe_ms", "probe ms", fmt=".1f"),
        Column("time_ratio", "time x", fmt=".2f"), Column("trace_ms", "+trace ms", fmt=".1f"),
        Column("time_ratio_trace", "+trace x", fmt=".2f"),
        Column("plain_mb", "plain MiB", fmt=".1f"), Column("probe_mb", "probe MiB", fmt=".1f"),
        Column("mem_ratio", "mem x", fmt=".2f"), Column("verdict"),
    ]
    title = (f"initlab.probe overhead on CPU (torch {torch.__version__}, {args.threads} thread(s), median of the "
             "timed runs (column runs), process CPU time; peak tensor memory by the torch profiler)")
    print(render(rows, cols, title=title, color=False))
    print(f"targets: time x <= {TIME_TARGET}, mem x <= {MEM_TARGET} (probe with the graph traced once; +trace includes "
          "tracing, not a target)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
