"""Sharded initialization of a GPT-2-shaped model built on the meta device, over 1, 2 and 4 local ranks.

    .venv/bin/python benchmarks/sharded_init.py                       # GPT-2-XL shape (~1.56B parameters)
    .venv/bin/python benchmarks/sharded_init.py --size gpt2-medium --worlds 1 2 4 --sharding tp

For each world size it spawns that many processes (gloo, loopback), builds the model on meta, shards it
(FSDP2 ``fully_shard`` per block, or tensor parallelism), and on every rank times
``initlab.init_model(model, seed=0, device="cpu")``, with the peak resident memory it added next to the
size of the rank's shard. Then, on a fresh copy, the anchor: ``to_empty`` + torch's ``reset_parameters``
on the DTensor modules after ``torch.manual_seed(0)``. It prints a table per world size and the
per-parameter checksums (``initlab.distributed.checksums``) of both, compared across world sizes:
initlab's are identical, torch's differ (each rank draws its local shard from its own generator).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import hashlib
import json
import os
import resource
import socket
import sys
import tempfile
import time

import torch
import torch.multiprocessing as mp
from torch import nn

SIZES = {  # (layers, width, heads): GPT-2 family, vocabulary 50257, context 1024
    "gpt2-xl": (48, 1600, 25), "gpt2-large": (36, 1280, 20), "gpt2-medium": (24, 1024, 16),
    "gpt2": (12, 768, 12), "tiny": (2, 128, 4),
}


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.c_fc, self.mlp_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp_proj(torch.nn.functional.gelu(self.c_fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self, layers: int, d: int, heads: int, vocab: int = 50257, ctx: int = 1024) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.h = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for blk in self.h:
            x = blk(x)
        return self.lm_head(self.ln_f(x))


def build(size: str, sharding: str, mesh, dtype: torch.dtype) -> GPT:
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    with torch.device("meta"):
        model = GPT(*SIZES[size]).to(dtype)
    if sharding == "fsdp":
        for blk in model.h:
            fully_shard(blk, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    plan = {"wte": RowwiseParallel(input_layouts=Replicate()), "lm_head": ColwiseParallel()}
    for i in range(len(model.h)):
        plan.update({f"h.{i}.c_attn": ColwiseParallel(), f"h.{i}.c_fc": ColwiseParallel(),
                     f"h.{i}.c_proj": RowwiseParallel(), f"h.{i}.mlp_proj": RowwiseParallel()})
    parallelize_module(model, mesh, plan)
    model.lm_head.weight = model.wte.weight
    return model


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _shard_bytes(model: nn.Module) -> int:
    from initlab import distributed

    return sum((p.to_local() if distributed.is_dtensor(p) else p).numel() * p.element_size()
               for p in model.parameters())


def _torch_reset(model: nn.Module) -> float:
    torch.manual_seed(0)
    start = time.perf_counter()
    model.to_empty(device="cpu")
    with torch.no_grad():
        for mod in model.modules():
            if hasattr(mod, "reset_parameters") and not isinstance(mod, GPT):
                mod.reset_parameters()
    return time.perf_counter() - start


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    import initlab
    from initlab import distributed

    torch.set_num_threads(args.threads)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=3600))
    mesh = init_device_mesh("cpu", (world,))
    dtype = getattr(torch, args.dtype)
    initlab.init_model(nn.Linear(4, 4), seed=0)  # warm up: imports, tracing, the compiled kernels
    distributed.checksum(torch.zeros(4, dtype=dtype))
    model = build(args.size, args.sharding, mesh, dtype)
    dist.barrier()
    rss0 = _rss()
    start = time.perf_counter()
    report = initlab.init_model(model, seed=0, device="cpu")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0
    shard = _shard_bytes(model)
    ours = {e.name: e.checksum for e in report}
    del model, report
    gc.collect()  # FSDP's state and hooks form reference cycles: free the first model before the anchor's
    theirs, torch_seconds = {}, float("nan")
    if args.anchor:
        model = build(args.size, args.sharding, mesh, dtype)
        torch_seconds = _torch_reset(model)
        theirs = distributed.checksums(model)
        del model
    row = dict(rank=rank, seconds=seconds, peak=peak, shard=shard, torch_seconds=torch_seconds, ours=ours,
               theirs=theirs)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(row, f)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _digest(sums: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(sums, sort_keys=True).encode()).hexdigest()[:12]


def run_world(world: int, args: argparse.Namespace) -> list[dict]:
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(_worker, args=(world, _free_port(), args, out), nprocs=world, join=True,
                           start_method="spawn")
        rows = []
        for r in range(world):
            with open(os.path.join(out, f"rank{r}.json")) as f:
                rows.append(json.load(f))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=SIZES, default="gpt2-xl")
    parser.add_argument("--sharding", choices=("fsdp", "tp"), default="fsdp")
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank (the philox kernel follows)")
    parser.add_argument("--no-anchor", dest="anchor", action="store_false", help="skip torch's reset_parameters")
    args = parser.parse_args(argv)
    layers, d, heads = SIZES[args.size]
    n = 50257 * d + 1024 * d + layers * (12 * d * d + 13 * d) + 2 * d
    print(f"{args.size}: {layers} layers, width {d}, {n / 1e9:.3f}B parameters, {args.dtype}, {args.sharding}; "
          f"torch {torch.__version__}, {args.threads} thread(s) per rank, {os.cpu_count()} CPU(s)")
    print(f"{'world':>5} {'rank':>4} {'init s':>8} {'shard MiB':>10} {'peak MiB':>9} {'peak/shard':>10} "
          f"{'torch s':>8} {'initlab digest':>14} {'torch digest':>12}")
    results = {}
    for world in args.worlds:
        rows = run_world(world, args)
        results[world] = rows
        for r in rows:
            print(f"{world:>5} {r['rank']:>4} {r['seconds']:>8.2f} {r['shard'] / 2**20:>10.1f} "
                  f"{r['peak'] / 2**20:>9.1f} {r['peak'] / r['shard']:>10.2f} {r['torch_seconds']:>8.2f} "
                  f"{_digest(r['ours']):>14} {_digest(r['theirs']) if r['theirs'] else '-':>12}")
        sys.stdout.flush()
    _compare(results, args.anchor)


def _compare(results: dict[int, list[dict]], anchor: bool) -> None:
    worlds = sorted(results)
    ours = {w: results[w][0]["ours"] for w in worlds}
    names = list(ours[worlds[0]])
    same = sum(all(ours[w][n] == ours[worlds[0]][n] for w in worlds) for n in names)
    print(f"\ninitlab: {same}/{len(names)} parameters have the same checksum for world sizes {worlds}")
    if anchor:
        theirs = {w: results[w][0]["theirs"] for w in worlds}
        same_t = sum(all(theirs[w][n] == theirs[worlds[0]][n] for w in worlds) for n in names)
        print(f"torch reset_parameters: {same_t}/{len(names)} (the rest change with the world size)")
    shown = [n for n in names if n in ("wte.weight", "wpe.weight", "h.0.c_attn.weight", "h.0.c_proj.weight",
                                       "h.0.c_attn.bias", "h.0.ln_1.weight")]
    print("\nper-parameter checksums (first weights and a bias):")
    print(f"{'parameter':<22} {'lib':<7} " + " ".join(f"{'world ' + str(w):>16}" for w in worlds))
    for n in shown:
        print(f"{n:<22} {'initlab':<7} " + " ".join(f"{ours[w][n]:>16}" for w in worlds))
        if anchor:
            print(f"{'':<22} {'torch':<7} " + " ".join(f"{theirs[w][n]:>16}" for w in worlds))


if __name__ == "__main__":
    main()
