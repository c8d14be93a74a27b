"""Sharded initialization (initlab.distributed): each rank fills its own shard, bit-identical to one process.

The multi-process tests spawn 2 and 4 local processes (gloo, loopback) once each; every worker runs all
the cases in one process group and writes what it saw to a JSON file, which the tests below read.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import initlab
from initlab import distributed
from initlab.initializers import registry

SEED = 1234
JOB_TIMEOUT = 240  # seconds for one spawned job (2 cores shared: start-up alone is several seconds a rank)


# --------------------------------------------------------------------------------------------------
# Models (global shapes chosen so that 2 and 4 ranks shard them unevenly, some ranks get empty shards)


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, 12), nn.ReLU(), nn.Linear(12, 7), nn.Tanh(), nn.Linear(7, 5))

    def forward(self, x):
        return self.net(x)


class Block(nn.Module):
    def __init__(self, d: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x):
        b, t, d = x.shape
        h = self.ln1(x)
        q, k, v = (f(h).view(b, t, self.heads, d // self.heads).transpose(1, 2) for f in (self.q, self.k, self.v))
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(x))))


class Transformer(nn.Module):
    """A GPT-like model: token + learned position embeddings, pre-LN blocks, tied head."""

    def __init__(self, vocab: int = 37, d: int = 12, heads: int = 2, hidden: int = 30, layers: int = 2,
                 ctx: int = 9) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(ctx, d))
        self.blocks = nn.ModuleList(Block(d, heads, hidden) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, idx):
        x = self.emb(idx) + self.pos[: idx.shape[1]]
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))


class TiedEmbedding(nn.Module):
    """An embedding with a tied head, and one with a padding row (not element-wise: an owner rank computes it)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(23, 6)
        self.extra = nn.Embedding(13, 6, padding_idx=3)
        self.proj = nn.Linear(6, 6)
        self.head = nn.Linear(6, 23, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, idx):
        return self.head(torch.tanh(self.proj(self.emb(idx) + self.extra(idx % 13))))


BUILDERS = {"mlp": MLP, "transformer": Transformer, "tied": TiedEmbedding}
INPUTS = {"mlp": lambda: torch.zeros(2, 10), "transformer": lambda: torch.zeros(2, 5, dtype=torch.long),
          "tied": lambda: torch.zeros(2, 4, dtype=torch.long)}
# non-element-wise schemes on sharded parameters: computed whole by an owner rank and scattered
RULES = {"mlp": [("net.2.weight", "orthogonal")], "transformer": [("blocks.0.q.weight", "orthogonal"),
                                                                  ("blocks.1.o.weight", "identity")], "tied": None}


def _meta(name: str) -> nn.Module:
    with torch.device("meta"):
        return BUILDERS[name]()


def _fsdp(model: nn.Module, mesh) -> nn.Module:
    from torch.distributed.fsdp import fully_shard

    units = {MLP: lambda m: [m.net[0], m.net[2], m.net[4]], Transformer: lambda m: list(m.blocks),
             TiedEmbedding: lambda m: [m.proj]}[type(model)](model)  # the tied head stays with the root
    for unit in units:
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def _tp(model: nn.Module, mesh) -> nn.Module:
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    if isinstance(model, MLP):
        plan = {"net.0": ColwiseParallel(), "net.2": RowwiseParallel(), "net.4": ColwiseParallel()}
    else:
        plan = {"emb": RowwiseParallel(input_layouts=Replicate()), "head": ColwiseParallel()}
        if isinstance(model, Transformer):
            for i in range(len(model.blocks)):
                plan.update({f"blocks.{i}.{n}": ColwiseParallel() for n in ("q", "k", "v", "fc1")})
                plan.update({f"blocks.{i}.{n}": RowwiseParallel() for n in ("o", "fc2")})
        else:
            plan.update({"proj": RowwiseParallel(), "extra": RowwiseParallel(input_layouts=Replicate())})
    parallelize_module(model, mesh, plan)
    if not isinstance(model, MLP):
        model.head.weight = model.emb.weight  # re-tie: both are Shard(0) of (vocab, d)
    return model


def _tp_fsdp(model: nn.Module, mesh2d) -> nn.Module:
    """2-D: tensor parallel over the "tp" mesh dim, then FSDP over "dp" (a _StridedShard on dim 0)."""
    from torch.distributed.fsdp import fully_shard

    _tp(model, mesh2d["tp"])
    fully_shard(model, mesh=mesh2d["dp"])
    return model


# --------------------------------------------------------------------------------------------------
# The worker: every case in one process group


_REFERENCES: dict = {}


def _reference(name: str, seed: int = SEED) -> tuple[dict[str, torch.Tensor], dict[str, str | None]]:
    """One process, no torch.distributed: what every sharded run must reproduce."""
    if (name, seed) not in _REFERENCES:
        model = BUILDERS[name]()
        report = initlab.init_model(model, seed=seed, rng="philox", example_inputs=INPUTS[name](), rules=RULES[name],
                                    checksum=True)
        _REFERENCES[name, seed] = ({n: p.detach().clone() for n, p in model.named_parameters()},
                                   {e.name: e.checksum for e in report})
    return _REFERENCES[name, seed]


def _case(name: str, how: str, mesh, world: int, seed: int = SEED, materialize: bool = False) -> dict:
    import torch.distributed as dist

    model = _meta(name)
    model = {"fsdp": _fsdp, "tp": _tp, "2d": _tp_fsdp}[how](model, mesh)
    device = "cpu"
    if materialize:  # the other recipe: allocate first (to_empty), then fill in place
        model.to_empty(device="cpu")
        device = None
    before = torch.get_rng_state()
    report = initlab.init_model(model, seed=seed, example_inputs=INPUTS[name](), rules=RULES[name], device=device)
    rng_untouched = torch.equal(before, torch.get_rng_state())
    ref, ref_sums = _reference(name)
    other, other_sums = _reference(name, SEED + 1)  # the negative control: the comparison can fail
    out: dict = {"rng_untouched": rng_untouched, "params": {}}
    for pname, p in model.named_parameters():
        full = p.full_tensor() if distributed.is_dtensor(p) else p.detach()
        out["params"][pname] = {"dtensor": distributed.is_dtensor(p), "equal": bool(torch.equal(full, ref[pname])),
                                "equal_other_seed": bool(torch.equal(full, other[pname])),
                                "seeded": not torch.equal(ref[pname], other[pname]),  # not a constant/identity
                                "local_numel": p.to_local().numel() if distributed.is_dtensor(p) else -1}
    d = report.to_dict()
    entries = {e["name"]: e for e in d["entries"]}
    out["checksums_match_reference"] = {n: entries[n]["checksum"] == ref_sums[n] for n in ref_sums}
    # a sharded std is merged from per-shard float64 moments: it equals the float64 std of the whole tensor up to
    # summation order (~1e-15 relative); a wrong merge is off by far more than the 1e-9 allowed
    out["std_matches_reference"] = {
        n: math.isclose(entries[n]["std"], float(ref[n].double().std()), rel_tol=1e-9, abs_tol=1e-12)
        for n, p in model.named_parameters() if distributed.is_dtensor(p) and n in entries and p.numel() > 1}
    out["sharding"] = {n: e["sharding"] for n, e in entries.items()}
    out["warnings"] = d["warnings"]
    gathered = [None] * world
    dist.all_gather_object(gathered, json.dumps(d, sort_keys=True))
    out["report_same_on_every_rank"] = all(g == gathered[0] for g in gathered)
    if name == "mlp" and how == "fsdp":  # the model trains: FSDP accepts the new shards (forward + backward)
        x = torch.linspace(-1, 1, 20).reshape(2, 10)
        y = model(x)
        y.sum().backward()
        ref_model = MLP()
        ref_model.load_state_dict(ref)
        out["forward_matches"] = bool(torch.allclose(y, ref_model(x), atol=1e-6))
    return out


def _worker(rank: int, world: int, port: int, outdir: str) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=__import__("datetime").timedelta(seconds=120))
    try:
        torch.manual_seed(1000 + rank)  # a different global RNG state on every rank: init_model must not use it
        mesh = init_device_mesh("cpu", (world,))
        results = {}
        for name in BUILDERS:
            for how in ("fsdp", "tp"):
                results[f"{name}/{how}"] = _case(name, how, mesh, world)
        results["mlp/fsdp/materialized"] = _case("mlp", "fsdp", mesh, world, materialize=True)
        if world == 4:
            mesh2d = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
            results["transformer/2d"] = _case("transformer", "2d", mesh2d, world)
        results["errors"] = _errors(mesh)
        with open(os.path.join(outdir, f"rank{rank}.json"), "w") as f:
            json.dump(results, f)
    finally:
        dist.destroy_process_group()


def _errors(mesh) -> dict:
    """Bad input on a sharded model: a clear ValueError, parameters and global RNG untouched."""
    model = _fsdp(_meta("mlp"), mesh)
    before = {n: (id(p), p.is_meta) for n, p in model.named_parameters()}
    rng_state = torch.get_rng_state()
    out = {}
    overflow = {"seed": 0, "rules": [("net.0.weight", "normal(1e38)")]}  # |values| up to 9e38 > float32's max
    for label, kwargs in (("rng_torch", {"rng": "torch", "seed": 0}), ("generator", {"generator": torch.Generator()}),
                          ("overflow", overflow)):
        try:
            initlab.init_model(model, device="cpu", **kwargs)
            out[label] = "no error"
        except ValueError as exc:
            out[label] = str(exc)
    out["unchanged"] = before == {n: (id(p), p.is_meta) for n, p in model.named_parameters()}
    out["rng_untouched"] = torch.equal(rng_state, torch.get_rng_state())
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(world: int, outdir: str) -> list[dict]:
    ctx = mp.start_processes(_worker, args=(world, _free_port(), outdir), nprocs=world, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + JOB_TIMEOUT
    try:
        while not ctx.join(timeout=5):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {world}-process job did not finish in {JOB_TIMEOUT} s")
    finally:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.kill()
    results = []
    for rank in range(world):
        with open(os.path.join(outdir, f"rank{rank}.json")) as f:
            results.append(json.load(f))
    return results


@pytest.fixture(scope="module", params=[2, 4], ids=["world2", "world4"])
def job(request, tmp_path_factory) -> tuple[int, list[dict]]:
    world = request.param
    return world, _launch(world, str(tmp_path_factory.mktemp(f"world{world}")))


# --------------------------------------------------------------------------------------------------
# Multi-process checks


CASES = [f"{n}/{h}" for n in BUILDERS for h in ("fsdp", "tp")] + ["mlp/fsdp/materialized"]


def test_gathered_tensors_equal_one_process_bit_for_bit(job):
    world, results = job
    cases = CASES + (["transformer/2d"] if world == 4 else [])
    for rank, res in enumerate(results):
        for case in cases:
            params = res[case]["params"]
            assert params, case
            assert sum(p["dtensor"] for p in params.values()) >= 3, case  # the model really was sharded
            bad = [n for n, p in params.items() if not p["equal"]]
            assert not bad, f"rank {rank}, {case}: {bad} differ from init_model(seed={SEED}, rng='philox')"


def test_uneven_and_empty_shards_were_exercised(job):
    world, results = job
    # net.4 is Linear(7, 5): under FSDP its 5 rows split 3/2 over 2 ranks and 2/2/1/0 over 4
    numels = [res["mlp/fsdp"]["params"]["net.4.weight"]["local_numel"] for res in results]
    assert numels == ([21, 14] if world == 2 else [14, 14, 7, 0])


def test_global_rng_untouched_on_every_rank(job):
    _, results = job
    for res in results:
        for case in CASES:
            assert res[case]["rng_untouched"], case


def test_report_same_on_every_rank_and_checksums_match_one_process(job):
    _, results = job
    for res in results:
        for case in CASES:
            assert res[case]["report_same_on_every_rank"], case
            sums = res[case]["checksums_match_reference"]
            assert sums and all(sums.values()), (case, sums)
            stds = res[case]["std_matches_reference"]
            assert len(stds) >= 3 and all(stds.values()), (case, stds)


def test_owner_rank_path_is_reported(job):
    world, results = job
    sharding = results[0]["transformer/fsdp"]["sharding"]
    assert "element-wise" in sharding["blocks.0.k.weight"]
    for name in ("blocks.0.q.weight", "blocks.1.o.weight"):  # orthogonal, identity
        assert "owner rank" in sharding[name] and "scattered" in sharding[name], sharding[name]
    owners = {int(sharding[n].split("owner rank ")[1].split()[0]) for n in ("blocks.0.q.weight", "blocks.1.o.weight")}
    assert owners == {0, 1}  # round-robin
    assert "element-wise" in results[0]["tied/tp"]["sharding"]["emb.weight"]
    assert "owner rank" in results[0]["tied/tp"]["sharding"]["extra.weight"]  # padding row: not element-wise
    assert any("not element-wise" in w for w in results[0]["transformer/fsdp"]["warnings"])


def test_fsdp_model_runs_after_init(job):
    _, results = job
    assert all(res["mlp/fsdp"]["forward_matches"] for res in results)


def test_negative_control_other_seed_differs(job):
    _, results = job
    for res in results:
        for case in CASES:
            weights = {n: p["equal_other_seed"] for n, p in res[case]["params"].items() if p["seeded"]}
            assert len(weights) >= 3 and not any(weights.values()), (case, weights)


def test_torch_stream_refused_on_sharded_model(job):
    _, results = job
    for res in results:
        err = res["errors"]
        assert "rng='torch'" in err["rng_torch"] and "seed=" in err["rng_torch"]
        assert "generator=" in err["generator"]
        # the element-wise path runs the range check of one process: an error naming the argument, not infs
        assert "net.0.weight" in err["overflow"] and "std=1e+38" in err["overflow"], err["overflow"]
        assert "finite range" in err["overflow"], err["overflow"]
        assert err["unchanged"] and err["rng_untouched"]


# --------------------------------------------------------------------------------------------------
# One-process checks of the pieces


class _FakeMesh:
    """The two things geometry() reads from a DeviceMesh."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.mesh = torch.arange(math.prod(shape)).reshape(shape)

    def size(self, dim: int) -> int:
        return self.mesh.shape[dim]


def _placements(*specs):
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.placement_types import _StridedShard

    return [Replicate() if s is None else _StridedShard(0, split_factor=2) if s == "strided" else Shard(s)
            for s in specs]


@pytest.mark.parametrize("shape,mesh,specs", [((10, 7), (4,), (0,)), ((10, 7), (4,), (1,)), ((5, 6, 7), (2, 2), (1, 2)),
                                              ((9, 4), (2, 3), (None, 0)), ((3,), (4,), (0,)),
                                              ((11, 3), (2, 2), ("strided", 0))])
def test_geometry_runs_cover_exactly_the_local_shard(shape, mesh, specs):
    m = _FakeMesh(mesh)
    full = torch.arange(math.prod(shape)).reshape(shape)
    seen = torch.zeros(math.prod(shape), dtype=torch.long)
    for rank in range(math.prod(mesh)):
        geo = distributed.geometry(shape, m, _placements(*specs), rank)
        local = geo.take(full)
        offsets, lengths = geo.runs()
        flat = np.concatenate([np.arange(o, o + n) for o, n in zip(offsets, lengths)]) if len(offsets) else []
        assert local.reshape(-1).tolist() == list(flat)  # the runs, in local row-major order, are the shard
        if geo.owner:
            seen[local.reshape(-1)] += 1
    assert seen.tolist() == [1] * full.numel()  # owners (first replicas) partition the tensor


def test_geometry_refuses_partial_placements_and_ranks_outside_the_mesh():
    from torch.distributed.tensor import Partial

    with pytest.raises(ValueError, match=r"placement P\(sum\) is not supported"):
        distributed.geometry((4, 4), _FakeMesh((2,)), [Partial()], 0)
    with pytest.raises(ValueError, match="rank 5 is not in the device mesh"):
        distributed.geometry((4, 4), _FakeMesh((2,)), _placements(0), 5)
    assert distributed.geometry((4, 4), _FakeMesh((2,)), _placements(0), 1).local_shape == (2, 4)


SPECS = [s for s in registry.available() if s not in ("sparse",)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_pointwise_runs_equal_slices_of_the_whole(dtype):
    """Every registry initializer that pointwise() accepts, drawn run by run at global offsets (short runs with
    a gap, as a Shard(1) slab, and one long run), equals the same elements of sample() on the whole tensor."""
    shape = (300, 300)  # runs: a Shard(1)-like slab (one covering call), a short run, a run longer than GAP
    offsets = np.array([5 * 300 + 40 + 300 * r for r in range(20)] + [30 * 300, 60 * 300])
    lengths = np.array([70] * 20 + [7 * 300, 240 * 300])
    assert [p[1] for p in distributed._pieces(offsets, lengths)] == [20, 1, 1]
    accepted = 0
    for spec in SPECS + ["normal(0.3, 2.0)", "truncated_normal(0.5, bounds=(-1, 3))", "uniform((-2, 5))",
                         "variance_scaling(3.0, 'fan_avg', 'truncated_normal')", "he_uniform", "constant(0.7)",
                         "truncated_normal(1.0, 1e20)"]:  # limits too close for two float32 values: a constant
        ini = initlab.get(spec)
        recipe = distributed.pointwise(ini, shape)
        if recipe is None:
            continue
        accepted += 1
        whole = ini.sample(shape, dtype=dtype, rng="philox", seed=7, key="w").reshape(-1) * 0.5
        local = torch.empty(int(lengths.sum()), dtype=dtype)
        distributed.fill_runs(local, recipe, initlab.rng.key_for(7, "w"), (offsets, lengths), factor=0.5)
        expect = torch.cat([whole[o:o + n] for o, n in zip(offsets, lengths)])
        assert torch.equal(local, expect), spec
    assert accepted >= 15


def test_pointwise_refuses_whole_tensor_schemes():
    for spec in ("orthogonal", "identity", "delta_orthogonal", "sparse"):
        assert distributed.pointwise(initlab.get(spec), (4, 4, 3)) is None, spec

    class Doubled(initlab.initializers.Normal):  # a subclass with its own _draw: not trusted to be element-wise
        def _draw(self, shape, dtype, device, generator):
            return super()._draw(shape, dtype, device, generator) * 2

    assert distributed.pointwise(Doubled(), (4, 4)) is None
    assert distributed.pointwise(initlab.initializers.Normal(), (4, 4)) is not None


def test_checksum_depends_on_values_and_positions_not_on_the_split():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(1000, generator=g)
    whole = distributed._partial_checksum(t, (np.array([0]), np.array([1000])))
    parts = (distributed._partial_checksum(t[:300], (np.array([0]), np.array([300])))
             + distributed._partial_checksum(t[300:], (np.array([300]), np.array([700]))))
    assert whole == parts % distributed._P61
    swapped = t.clone()
    swapped[[3, 4]] = swapped[[4, 3]]
    bumped = t.clone()
    bumped[10] = torch.nextafter(bumped[10], torch.tensor(math.inf))
    sums = {distributed.checksum(x) for x in (t, swapped, bumped, t.double(), t.bfloat16())}
    assert len(sums) == 5
    assert distributed.checksum(t) == distributed.checksum(t.clone())
    assert len(distributed.checksum(t)) == 16


@pytest.mark.skipif(not initlab.rng.numba_available(), reason="the compiled checksum needs numba")
def test_compiled_checksum_equals_the_torch_one():
    g = torch.Generator().manual_seed(1)
    runs = (np.array([3, 200, 260, 320, 5000]), np.array([50, 40, 40, 40, 70000]))  # a slab and a long run
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        x = torch.randn(int(runs[1].sum()), generator=g).to(dtype)
        assert distributed._partial_checksum(x, runs, True) == distributed._partial_checksum(x, runs, False), dtype


def test_single_process_report_carries_checksums():
    model = MLP()
    # by default a one-process report skips them (one more pass over the weights); checksum=True asks
    assert all(e.checksum is None for e in initlab.init_model(model, seed=SEED))
    with pytest.raises(TypeError, match="checksum"):
        initlab.init_model(model, seed=SEED, checksum="yes")
    report = initlab.init_model(model, seed=SEED, rng="philox", checksum=True)
    for name, p in model.named_parameters():
        assert report[name].checksum == distributed.checksum(p.detach())
        assert report[name].sharding is None
    assert report.to_dict()["entries"][0]["checksum"] == report.entries[0].checksum


def test_global_view_swaps_and_restores():
    model = Transformer()
    hook = model.blocks[0].register_forward_pre_hook(lambda m, a: (_ for _ in ()).throw(RuntimeError("hook ran")))
    params = dict(model.named_parameters())
    buffers_before = {n: b for n, b in model.named_buffers()}
    with distributed.global_view(model):
        inside = dict(model.named_parameters())
        assert all(p.is_meta for p in inside.values())
        assert model.head.weight is model.emb.weight  # still tied
        model(torch.zeros(1, 3, dtype=torch.long))  # the hook is suspended
    assert all(p is params[n] for n, p in model.named_parameters())
    assert {n: b for n, b in model.named_buffers()} == buffers_before
    with pytest.raises(RuntimeError, match="hook ran"):
        model(torch.zeros(1, 3, dtype=torch.long))
    hook.remove()


def test_check_rng():
    assert distributed.check_rng(None, None) == "philox"
    assert distributed.check_rng("philox", None) == "philox"
    with pytest.raises(ValueError, match="rng='torch'"):
        distributed.check_rng("torch", None)
    with pytest.raises(ValueError, match="generator="):
        distributed.check_rng(None, torch.Generator())


if __name__ == "__main__":  # a manual run: python tests/test_distributed.py [world]
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        start = time.perf_counter()
        out = _launch(int(sys.argv[1]) if len(sys.argv) > 1 else 2, d)
        print(json.dumps(out[0], indent=1)[:3000], f"\n{time.perf_counter() - start:.1f} s")
