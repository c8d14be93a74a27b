"""Sharded initialization: every rank fills only its own shard of a DTensor parameter.

``init_model`` calls into this module when some parameter of the model is a
``torch.distributed.tensor.DTensor`` (FSDP2's ``fully_shard``, tensor parallelism's
``parallelize_module``, or any ``distribute_tensor``), on the meta device or already allocated.
The counter-based stream of :mod:`initlab.rng` makes element ``i`` of a parameter a function of
``(seed, the parameter's name, i)`` only, so a rank that knows which global elements it holds draws
exactly those, and the full tensor is bit-identical to a one-process ``init_model(seed=s,
rng="philox")`` of the same model, whatever the world size, mesh and placements.

Contract
--------
* **Geometry.** For each tensor dim, the global indices a rank holds come from applying, mesh dim by
  mesh dim, the placement's own split (``Shard``: ``torch.chunk`` semantics, uneven last chunks and
  empty chunks included; ``_StridedShard`` from FSDP2 + TP on one dim) to that dim's index vector;
  ``Replicate`` keeps them all; ``Partial`` is refused. The result is checked against the local tensor's
  shape. In row-major global order the local shard is a set of runs ``(global offset, length)``: one
  run for a ``Shard(0)`` weight, one per row for ``Shard(1)``.
* **Element-wise schemes** (constants, normal, uniform, truncated normal and the whole variance-scaling
  family: He, Glorot, LeCun, ...; :func:`pointwise` decides): each run is drawn at its global offset.
  Short runs that are close together (a ``Shard(1)`` slab) are drawn as one covering range and the
  needed columns copied out, since one generator call costs about as much as 50k values. The scale,
  the cast to the parameter's dtype (and its clamp) and the plan's factor are applied to the run by
  the same torch operations as in one process, so the bits agree.
* **Other schemes** (orthogonal, identity, delta-orthogonal, sparse, a plan with a ``post`` step such
  as an embedding's zero ``padding_idx`` row or an LSTM's forget-gate slice, RNN gate blocks): an owner
  rank, chosen round-robin over these parameters in ``named_parameters`` order, computes the whole
  tensor exactly as one process would and ``dist.scatter``-s each rank its shard. The report's
  ``sharding`` field names the owner and the bytes it sent, and a sentence in ``warnings`` sums it up.
* **Report.** Identical on every rank: ``checksum`` (below) and ``std`` come from one ``all_gather`` of
  per-rank partial results combined in rank order; the std is computed in float64 from the shards (its
  last digits may differ from the one-process float32 std), the checksum is exact.
* **Checksum.** ``sum over elements of h(global flat index, the value's bits) mod 2**61 - 1`` with a
  fixed integer hash ``h`` (:func:`checksum`). Integer sums do not depend on the order, so the checksum
  of a parameter is the same for any world size, mesh or placement, and for the one-process tensor; the
  first replica along ``Replicate`` mesh dims is the only one counted. It is a fingerprint for comparing
  runs, not a cryptographic hash.
* **Tracing.** ``init_model`` traces the model with every parameter and buffer temporarily replaced by a
  meta tensor of its GLOBAL shape and every module forward hook (FSDP's all-gathers, TP's input and
  output redistribution) suspended, so the trace sees the one-process model and runs no collective.
  A forward rewritten for local shapes (a TP attention that reads ``n_heads // tp`` from the module)
  cannot be traced with ``example_inputs`` this way; torch.fx tracing needs no forward pass.
* **Requirements.** ``rng="philox"`` (the default for a sharded model; ``rng="torch"`` or a
  ``generator`` is a ``ValueError``); every DTensor's mesh spans the whole default process group; all
  ranks call ``init_model`` with the same arguments. Without a seed, rank 0's fresh seed is broadcast.
  The global RNG is not used.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from initlab import rng as philox
from initlab import sampling
from initlab.initializers import Constant, Initializer, Normal, TruncatedNormal, Uniform, VarianceScaling
from initlab.initializers.basic import TRUNC2_STD, clamp_cast

__all__ = ["is_dtensor", "is_sharded", "geometry", "Geometry", "pointwise", "Pointwise", "checksum", "checksums",
           "global_view", "ShardedInit"]

CHUNK = 1 << 22  # values per generator call (16 MB of float32 scratch at most)
GAP = 1 << 16  # skipped values worth one extra generator call (a call costs ~50 us, a value ~1 ns)
SMALL = 1 << 16  # values per torch statistics step: fresh 32 MB temporaries cost page faults, 512 KB ones do not
_M31 = (1 << 31) - 1
_P61 = (1 << 61) - 1
_K1, _K2, _K3 = 0x5BD1E995, 0x2545F491, 0x1B873593  # odd constants below 2**31 (hash mixing)
_K_FINAL = 0x1E3779B97F4A7C15  # spreads the final sum over all 61 bits


# --------------------------------------------------------------------------------------------------
# Detection (torch.distributed may be missing from a build)


def _dtensor_type() -> type | None:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch built without distributed support
        return None
    return DTensor


def is_dtensor(t: Any) -> bool:
    """Whether ``t`` is a ``torch.distributed.tensor.DTensor`` (False when torch has no distributed support)."""
    cls = _dtensor_type()
    return cls is not None and isinstance(t, cls)


def is_sharded(model: nn.Module) -> bool:
    """Whether some parameter of ``model`` is a DTensor."""
    return any(is_dtensor(p) for p in model.parameters())


# --------------------------------------------------------------------------------------------------
# Geometry: which global elements a rank holds


@dataclass
class Geometry:
    """The shard of a tensor of ``shape`` held at one mesh coordinate: ``index[d]`` are the global indices
    along dim ``d`` (row-major order of the local tensor), ``owner`` is True for the first replica."""

    shape: tuple[int, ...]
    index: list[torch.Tensor]
    owner: bool

    @property
    def local_shape(self) -> tuple[int, ...]:
        return tuple(len(i) for i in self.index)

    def runs(self) -> tuple[np.ndarray, np.ndarray]:
        """``(offsets, lengths)``: the local shard, in its row-major order, as runs of consecutive global
        flat indices."""
        dims = len(self.shape)
        if any(len(i) == 0 for i in self.index):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        partial = [d for d in range(dims) if len(self.index[d]) != self.shape[d]]
        if not partial:
            return np.zeros(1, np.int64), np.full(1, math.prod(self.shape), np.int64)
        k = partial[-1]
        inner = math.prod(self.shape[k + 1:])
        idx = self.index[k].numpy().astype(np.int64)
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        starts = idx[np.concatenate(([0], breaks))]
        lens = np.diff(np.concatenate(([0], breaks, [len(idx)])))
        strides = [math.prod(self.shape[d + 1:]) for d in range(dims)]
        outer = np.zeros(1, np.int64)
        for d in range(k):
            outer = (outer[:, None] + self.index[d].numpy().astype(np.int64)[None, :] * strides[d]).reshape(-1)
        offsets = (outer[:, None] + starts[None, :] * strides[k]).reshape(-1)
        return offsets, np.tile(lens * inner, len(outer))

    def take(self, full: torch.Tensor) -> torch.Tensor:
        """This shard of the whole tensor ``full`` (a new contiguous tensor)."""
        out = full
        for d, idx in enumerate(self.index):
            if len(idx) != self.shape[d]:
                out = out.index_select(d, idx.to(out.device))
        return out.contiguous()


def _coordinate(mesh: Any, rank: int) -> tuple[int, ...]:
    where = (mesh.mesh == rank).nonzero()
    if len(where) == 0:
        raise ValueError(f"rank {rank} is not in the device mesh {mesh.mesh.tolist()}: initlab needs every rank to "
                         "hold a shard or replica of every parameter (no pipeline stages)")
    return tuple(int(c) for c in where[0])


def geometry(shape: tuple[int, ...], mesh: Any, placements: Any, rank: int) -> Geometry:
    """The :class:`Geometry` of ``rank``'s shard of a tensor of global ``shape`` with these placements.

    Each placement's own split (torch's ``_split_tensor``, the one private door used here) is applied to
    the index vector of the dim it shards, so uneven and strided shardings follow torch exactly."""
    coord = _coordinate(mesh, rank)
    index = [torch.arange(n) for n in shape]
    owner = True
    for mdim, pl in enumerate(placements):
        if pl.is_replicate():
            owner = owner and coord[mdim] == 0
            continue
        if not (pl.is_shard() or type(pl).__name__ == "_StridedShard"):
            raise ValueError(f"placement {pl} is not supported for initialization (Shard, _StridedShard and "
                             "Replicate are)")
        d = pl.dim if pl.dim >= 0 else pl.dim + len(shape)
        along = index[d].reshape((1,) * d + (-1,))  # the placement splits its own dim
        pieces, _ = pl._split_tensor(along, mesh.size(mdim), with_padding=False)
        index[d] = pieces[coord[mdim]].reshape(-1) if coord[mdim] < len(pieces) else index[d][:0]
    return Geometry(tuple(shape), [i.contiguous() for i in index], owner)


def _pieces(offsets: np.ndarray, lengths: np.ndarray, chunk: int = CHUNK) -> Iterator[tuple[int, int, int, int, int]]:
    """``(local position, m runs, run length, first global offset, step)``: the runs in pieces of at most
    ``chunk`` values; a piece of ``m > 1`` equal runs at a constant ``step`` is drawn as one covering range."""
    pos, i, count = 0, 0, len(offsets)
    while i < count:
        off, length = int(offsets[i]), int(lengths[i])
        if length >= min(GAP, chunk):
            for s in range(0, length, chunk):
                yield pos + s, 1, min(chunk, length - s), off + s, length
            pos, i = pos + length, i + 1
            continue
        m, step = 1, length
        if i + 1 < count and int(lengths[i + 1]) == length:
            step = int(offsets[i + 1]) - off
            if step < length or step - length > GAP:
                step = length
            else:
                while (i + m < count and int(lengths[i + m]) == length and m * step + length <= chunk
                       and int(offsets[i + m]) - int(offsets[i + m - 1]) == step):
                    m += 1
        yield pos, m, length, off, step
        pos, i = pos + m * length, i + m


# --------------------------------------------------------------------------------------------------
# Element-wise schemes


@dataclass(frozen=True)
class Pointwise:
    """How an element-wise initializer makes its values: ``dist`` (``"constant"``, ``"normal"``,
    ``"uniform"``, ``"truncated_normal"``) with ``params`` in the compute precision, then times ``scale``,
    then the cast to the target dtype (clamped into ``clamp`` when given): the steps of its ``_draw`` and
    ``_finish`` for the GLOBAL shape."""

    dist: str
    params: tuple[float, ...]
    scale: float | None = None
    clamp: tuple[float, float] | None = None

    def generate(self, out: torch.Tensor, key: tuple[int, int], offset: int) -> None:
        if self.dist == "constant":
            out.fill_(self.params[0])
        elif self.dist == "normal":
            philox.fill_normal_(out, key, mean=self.params[0], std=self.params[1], offset=offset)
        elif self.dist == "uniform":
            philox.fill_uniform_(out, key, low=self.params[0], high=self.params[1], offset=offset)
        else:
            mean, std, low, high = self.params
            philox.fill_truncated_normal_(out, key, mean=mean, std=std, low=low, high=high, offset=offset)

    def finish(self, values: torch.Tensor, dtype: torch.dtype, factor: float) -> torch.Tensor:
        if self.scale is not None:
            values.mul_(self.scale)
        values = clamp_cast(values, dtype, *self.clamp) if self.clamp is not None else values.to(dtype)
        return values * factor if factor != 1.0 else values


def _same_steps(ini: Initializer, base: type) -> bool:
    cls = type(ini)
    return isinstance(ini, base) and cls._draw is base._draw and cls._finish is base._finish and \
        cls._values is Initializer._values


def pointwise(ini: Initializer, shape: tuple[int, ...]) -> Pointwise | None:
    """The element-wise recipe of ``ini`` for a tensor of global ``shape``, or None when its values are not
    element-wise (orthogonal, identity, sparse) or it is a class initlab does not know (a subclass that
    overrides ``_draw`` or ``_finish`` included): those take the owner-rank path."""
    if _same_steps(ini, Constant):
        return Pointwise("constant", (ini.value,))
    if _same_steps(ini, Normal):
        return Pointwise("normal", (ini.mean, ini.std))
    if _same_steps(ini, Uniform):
        return Pointwise("uniform", ini.bounds)
    if _same_steps(ini, TruncatedNormal):
        point = ini._point(torch.float32)  # std 0, or limits too close for two float32 values (its own _draw)
        if point is not None:
            return Pointwise("constant", (point,), clamp=ini.limits)
        return Pointwise("truncated_normal", (ini.mean, ini.std, *ini.limits), clamp=ini.limits)
    if _same_steps(ini, VarianceScaling):
        std = ini.std_for(shape)
        if ini.distribution == "normal":
            return Pointwise("normal", (0.0, std))
        if ini.distribution == "uniform":
            bound = math.sqrt(3.0) * std
            return Pointwise("uniform", (-bound, bound))
        limit = 2.0 * std / TRUNC2_STD
        return Pointwise("truncated_normal", (0.0, 1.0, -2.0, 2.0), scale=std / TRUNC2_STD, clamp=(-limit, limit))
    return None


def fill_runs(local: torch.Tensor, recipe: Pointwise, key: tuple[int, int], runs: tuple[np.ndarray, np.ndarray],
              factor: float = 1.0) -> None:
    """Fill the contiguous ``local`` shard (row-major) with the values its global ``runs`` have in the
    whole tensor."""
    flat = local.view(-1)
    compute = sampling.compute_dtype(local.dtype)
    scratch: torch.Tensor | None = None
    for pos, m, length, off, step in _pieces(*runs):
        span = (m - 1) * step + length
        direct = m == 1 and local.dtype == compute
        if direct:
            raw = flat[pos:pos + length]
        else:
            if scratch is None or scratch.numel() < span:
                scratch = torch.empty(min(max(span, 1 << 16), CHUNK), dtype=compute, device=local.device)
            raw = scratch[:span]
        recipe.generate(raw, key, off)
        values = raw if m == 1 else raw.as_strided((m, length), (step, 1)).reshape(-1)
        values = recipe.finish(values, local.dtype, factor)
        target = flat[pos:pos + m * length]
        if values.data_ptr() != target.data_ptr():
            target.copy_(values)


# --------------------------------------------------------------------------------------------------
# Checksum


def _red(x: torch.Tensor) -> torch.Tensor:
    """A value congruent to ``x`` mod 2**31 - 1 and below 2**31 + 4 (for 0 <= x < 2**63)."""
    x = (x & _M31) + (x >> 31)
    return (x & _M31) + (x >> 31)


def _words(values: torch.Tensor) -> torch.Tensor:
    """The bits of each value as a non-negative int64 below 2**32 (64-bit values folded mod 2**31 - 1)."""
    size = values.element_size()
    if size == 8:
        w = values.view(torch.int64)
        return _red(((w >> 32) & 0xFFFFFFFF) * _K3 + (w & 0xFFFFFFFF))
    view = {1: torch.int8, 2: torch.int16, 4: torch.int32}[size]
    return values.view(view).to(torch.int64) & ((1 << (8 * size)) - 1)


def _hash_sum(values: torch.Tensor, index: torch.Tensor) -> int:
    """``sum h(index, bits)`` over a chunk: h mixes the global flat index and the value's bits with squarings
    mod 2**31 - 1 (every product stays below 2**63)."""
    a = _red(index)
    h = _red(a * _K1 + _words(values))
    h = _red(h * h)
    h = _red(h * _K2 + a)
    h = _red(h * h)
    return int(h.sum())


def _partial_checksum(local: torch.Tensor, runs: tuple[np.ndarray, np.ndarray], compiled: bool | None = None) -> int:
    """``sum h`` over the local shard, whose elements sit at the global ``runs``, mod 2**61 - 1 (``compiled``:
    the numba kernel, by default for CPU tensors when numba is installed; else torch operations)."""
    flat = local.detach().reshape(-1)
    if compiled is None:
        compiled = flat.device.type == "cpu" and philox.numba_available()
    if compiled:
        return _numba_checksum(flat, runs)
    total = 0
    for pos, m, length, off, step in _pieces(*runs, chunk=SMALL):  # small chunks: int64 temporaries stay cached
        idx = (torch.arange(m, dtype=torch.int64, device=flat.device)[:, None] * step
               + torch.arange(length, dtype=torch.int64, device=flat.device)[None, :] + off).reshape(-1)
        total += _hash_sum(flat[pos:pos + m * length], idx)
    return total % _P61


def checksum(tensor: torch.Tensor) -> str:
    """A fingerprint of a whole tensor's values and positions: 16 hex digits, the same for any sharding of it.

    >>> checksum(torch.zeros(3)) == checksum(torch.zeros(3))
    True
    >>> checksum(torch.tensor([1.0, 2.0])) == checksum(torch.tensor([2.0, 1.0]))
    False
    """
    n = tensor.numel()
    return _hex(_partial_checksum(tensor, (np.zeros(1, np.int64), np.full(1, n, np.int64))) if n else 0)


def _hex(total: int) -> str:
    return f"{total % _P61 * _K_FINAL % _P61:016x}"


_NUMBA: dict[str, Any] = {}
_prange = range  # numba.prange once compiled


def _nb_red(x):  # _red on one uint64; compiled (inlined) with the kernel by _numba_checksum
    mask, s31 = np.uint64(_M31), np.uint64(31)
    x = (x & mask) + (x >> s31)
    return (x & mask) + (x >> s31)


def _nb_checksum(words, wide, pos, m, length, off, step, out):  # compiled by _numba_checksum
    """:func:`_hash_sum` per piece, element by element (each piece's sum mod 2**61 - 1 in ``out``)."""
    p61, k1, k2, k3 = np.uint64(_P61), np.uint64(_K1), np.uint64(_K2), np.uint64(_K3)
    s32, lo32 = np.uint64(32), np.uint64(0xFFFFFFFF)
    for t in _prange(len(pos)):
        total = np.uint64(0)
        for r in range(m[t]):
            p0 = pos[t] + r * length[t]
            g0 = off[t] + r * step[t]
            for j in range(length[t]):
                w = np.uint64(words[p0 + j])
                if wide:  # _words of a 64-bit value
                    w = _nb_red((w >> s32) * k3 + (w & lo32))
                a = _nb_red(np.uint64(g0 + j))
                h = _nb_red(a * k1 + w)
                h = _nb_red(h * h)
                h = _nb_red(h * k2 + a)
                total += _nb_red(h * h)
        out[t] = total % p61


def _numba_checksum(flat: torch.Tensor, runs: tuple[np.ndarray, np.ndarray]) -> int:
    """The same sum as the torch path (tested), in one compiled pass with no temporaries."""
    if "kernel" not in _NUMBA:
        import numba

        globals()["_prange"] = numba.prange
        globals()["_nb_red"] = numba.njit(inline="always")(_nb_red)
        _NUMBA["numba"] = numba
        _NUMBA["kernel"] = numba.njit(parallel=True, cache=True, nogil=True)(_nb_checksum)
    pieces = np.array(list(_pieces(*runs)), dtype=np.int64).reshape(-1, 5)
    if not len(pieces):
        return 0
    size = flat.element_size()
    view = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[size]
    words = flat.view(view).numpy().view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[size])
    out = np.zeros(len(pieces), dtype=np.uint64)
    numba = _NUMBA["numba"]
    previous, threads = numba.get_num_threads(), max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(threads)  # torch's thread count, as initlab.rng's kernel
    try:
        _NUMBA["kernel"](words, size == 8, *(np.ascontiguousarray(pieces[:, i]) for i in range(5)), out)
    finally:
        numba.set_num_threads(previous)
    return sum(int(v) for v in out) % _P61


def _merge(a: tuple[float, float, float], b: tuple[float, float, float]) -> tuple[float, float, float]:
    """Two ``(count, mean, M2)`` triples as one (Chan, Golub & LeVeque 1979)."""
    (n, mean, m2), (k, mu, q) = a, b
    if not k:
        return a
    delta, total = mu - mean, n + k
    return total, mean + delta * k / total, m2 + q + delta * delta * n * k / total


def _moments(local: torch.Tensor, runs: tuple[np.ndarray, np.ndarray]) -> tuple[float, float, float]:
    """``(count, mean, M2)`` in float64, combined over pieces with :func:`_merge`."""
    flat = local.detach().reshape(-1)
    acc = (0.0, 0.0, 0.0)
    for pos, m, length, _, _ in _pieces(*runs, chunk=SMALL):
        x = flat[pos:pos + m * length].double()
        mu = float(x.mean())
        acc = _merge(acc, (float(x.numel()), mu, float(((x - mu) ** 2).sum())))
    return acc


# --------------------------------------------------------------------------------------------------
# Tracing on the global shapes


_HOOK_DICTS = ("_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks", "_forward_hooks_with_kwargs",
               "_forward_hooks_always_called")


@contextmanager
def global_view(model: nn.Module) -> Iterator[None]:
    """Inside, every parameter and buffer of ``model`` is a meta tensor of its global shape (tied ones stay tied)
    and no module forward hook runs; everything is put back on exit."""
    saved: list[tuple[dict, str, Any]] = []
    shadows: dict[int, torch.Tensor] = {}

    def shadow(t: torch.Tensor, param: bool) -> torch.Tensor:
        if id(t) not in shadows:
            meta = torch.empty(tuple(t.shape), dtype=t.dtype, device="meta")
            shadows[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad) if param else meta
        return shadows[id(t)]

    try:
        for mod in model.modules():
            for table, param in ((mod._parameters, True), (mod._buffers, False)):
                for key, t in list(table.items()):
                    if t is not None:
                        saved.append((table, key, t))
                        table[key] = shadow(t, param)
            for attr in _HOOK_DICTS:
                if hasattr(mod, attr):
                    saved.append((mod.__dict__, attr, getattr(mod, attr)))
                    mod.__dict__[attr] = OrderedDict()
        yield
    finally:
        for table, key, t in reversed(saved):
            table[key] = t


# --------------------------------------------------------------------------------------------------
# The sharded path of one init_model call


def _from_local(local: torch.Tensor, like: Any) -> torch.Tensor:
    cls = _dtensor_type()
    return cls.from_local(local, like.device_mesh, like.placements, run_check=False, shape=like.shape,
                          stride=like.stride())


def zeros_like_param(p: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Zeros shaped like ``p`` on ``device``: a DTensor with zero local shards when ``p`` is one."""
    if not is_dtensor(p):
        return torch.zeros(p.shape, dtype=p.dtype, device=device)
    return _from_local(torch.zeros(p.to_local().shape, dtype=p.dtype, device=device), p)


def check_rng(rng: str | None, generator: Any) -> str:
    """The stream of a sharded model: the counter-based one (``rng=None`` picks it)."""
    if generator is not None or rng == "torch":
        what = "generator=" if generator is not None else "rng='torch'"
        raise ValueError(f"the model has sharded (DTensor) parameters, whose shards are drawn from the counter-based "
                         f"stream (rng='philox', keyed by seed= and the parameter names): {what} is torch's "
                         "sequential stream, which cannot be split across ranks; pass seed= instead")
    return "philox"


class ShardedInit:
    """State of one ``init_model`` call on a model with DTensor parameters (see the module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise ValueError("the model has sharded (DTensor) parameters but no default process group is "
                             "initialized: call torch.distributed.init_process_group first")
        self.dist = dist
        self.world, self.rank = dist.get_world_size(), dist.get_rank()
        for name, p in model.named_parameters():
            if is_dtensor(p) and p.device_mesh.ndim > 1 and p.device_mesh.size() != self.world:
                raise ValueError(f"parameter {name} lives on a {p.device_mesh.ndim}-D sub-mesh of "
                                 f"{p.device_mesh.size()} of the {self.world} ranks: initlab supports meshes that "
                                 "span the default process group and 1-D sub-meshes (FSDP's over a 2-D mesh)")
        self.device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" \
            else torch.device("cpu")
        self._turn = 0
        self.owners: dict[str, tuple[int, int, float]] = {}  # name -> (owner rank, bytes scattered, owner's s)

    def agree_seed(self, seed: int) -> int:
        """Rank 0's seed, on every rank."""
        t = torch.tensor([seed & 0xFFFFFFFF, seed >> 32], dtype=torch.int64, device=self.device)
        self.dist.broadcast(t, src=0)
        return int(t[0]) | (int(t[1]) << 32)

    def adopt(self, plans: dict[str, Any], model: nn.Module) -> None:
        """Point the plans made under :func:`global_view` back at the model's real parameters."""
        real = dict(model.named_parameters())
        for pl in plans.values():
            pl.param = real[pl.name]

    def _geometry(self, p: Any, rank: int) -> Geometry:
        return geometry(tuple(p.shape), p.device_mesh, p.placements, rank)

    def _members(self, mesh: Any) -> tuple[Any, list[int]]:
        """The process group of a mesh (None: the default one) and its global ranks in group order."""
        if mesh.size() == self.world:
            return None, list(range(self.world))
        group = mesh.get_group()
        return group, [self.dist.get_global_rank(group, i) for i in range(self.dist.get_world_size(group))]

    def draw(self, pl: Any, device: torch.device, seed: int) -> torch.Tensor:
        """A DTensor like ``pl.param`` holding this rank's shard of the plan's values."""
        p = pl.param
        geo = self._geometry(p, self.rank)
        if geo.local_shape != tuple(p.to_local().shape):
            raise ValueError(f"the local shard of {pl.name} has shape {tuple(p.to_local().shape)}, but its placements "
                             f"{p.placements} give {geo.local_shape}")
        local = torch.empty(geo.local_shape, dtype=p.dtype, device=device)
        recipe = pointwise(pl.ini, tuple(p.shape)) if pl.blocks == 1 and pl.post is None else None
        if recipe is not None:
            if p.numel():  # the range check of Initializer._values (the owner-rank path runs it in sample());
                # Philox values are float32 numbers whatever the target dtype
                sampling.check_reach(pl.ini._reach(tuple(p.shape)), p.dtype, torch.float32, pl.ini._given)
            fill_runs(local, recipe, philox.key_for(seed, pl.name), geo.runs(), pl.factor)
        else:
            self._scatter(pl, local, device, seed)
        return _from_local(local, p)

    def _scatter(self, pl: Any, local: torch.Tensor, device: torch.device, seed: int) -> None:
        """The owner rank (round-robin over the mesh) computes the whole tensor as one process would and
        scatters the shards."""
        p = pl.param
        group, members = self._members(p.device_mesh)
        owner = members[self._turn % len(members)]
        self._turn += 1
        geos = [self._geometry(p, r) for r in members]
        size = max(math.prod(g.local_shape) for g in geos) * local.element_size()
        start = time.perf_counter()
        parts = None
        if self.rank == owner:
            full = pl.draw(device, None, seed)
            parts = []
            for g in geos:
                part = torch.zeros(size, dtype=torch.uint8, device=self.device)
                data = g.take(full).view(-1).view(torch.uint8)
                part[:data.numel()].copy_(data)
                parts.append(part)
            del full
        out = torch.empty(size, dtype=torch.uint8, device=self.device)
        self.dist.scatter(out, parts, src=owner, group=group)
        n = local.numel() * local.element_size()
        local.view(-1).view(torch.uint8).copy_(out[:n])
        self.owners[pl.name] = (owner, size * len(members), time.perf_counter() - start if self.rank == owner else 0.0)

    def _row(self, name: str, p: Any) -> torch.Tensor:
        """This rank's partial results for one parameter: checksum, mesh key (its lowest rank: replicas on other
        sub-meshes are told apart by it), owner, bytes, count, mean, M2, owner's seconds."""
        geo = self._geometry(p, self.rank)
        local = p.to_local()
        c, n, mean, m2 = 0, 0.0, 0.0, 0.0
        if geo.owner and local.numel():
            runs = geo.runs()
            c, (n, mean, m2) = _partial_checksum(local, runs), _moments(local, runs)
        owner, sent, seconds = self.owners.get(name, (-1, 0, 0.0))
        floats = torch.tensor([n, mean, m2, seconds], dtype=torch.float64).view(torch.int64)
        return torch.cat([torch.tensor([c, int(p.device_mesh.mesh.min()), owner, sent], dtype=torch.int64), floats])

    def complete(self, entries: list[Any], model: nn.Module, warnings: list[str]) -> None:
        """Fill ``std``, ``checksum`` and ``sharding`` of the DTensor entries from one all_gather of per-rank
        partial results (combined in rank order, so every rank gets the same report)."""
        params = dict(model.named_parameters())
        sharded = [e for e in entries if is_dtensor(params[e.name])]
        rows = [self._row(e.name, params[e.name]) for e in sharded]
        mine = torch.stack(rows).to(self.device) if rows else torch.zeros((0, 8), dtype=torch.int64,
                                                                         device=self.device)
        gathered = [torch.empty_like(mine) for _ in range(self.world)]
        self.dist.all_gather(gathered, mine)
        per_rank = [g.cpu() for g in gathered]
        scattered: list[tuple[str, int]] = []
        for i, e in enumerate(sharded):
            sent = self._complete_one(e, params[e.name], [g[i] for g in per_rank])
            if sent:
                scattered.append((e.name, sent))
        if scattered:
            total = sum(b for _, b in scattered)
            warnings.append(f"{len(scattered)} sharded parameter(s) are not element-wise, so an owner rank "
                            f"(round-robin) computed each whole and scattered its shards ({total / 2**20:.3g} MiB "
                            f"sent): {', '.join(n for n, _ in scattered)}")

    def _complete_one(self, entry: Any, p: Any, rows: list[torch.Tensor]) -> int:
        key = min(int(r[1]) for r in rows)
        rows = [r for r in rows if int(r[1]) == key]  # one replica group: the sub-mesh holding the lowest rank
        c, acc, seconds = 0, (0.0, 0.0, 0.0), 0.0
        for row in rows:
            f = row[4:].view(torch.float64).tolist()
            c += int(row[0])
            acc = _merge(acc, (f[0], f[1], f[2]))
            seconds += f[3]
        n, _, m2 = acc
        entry.checksum = _hex(c)
        entry.std = math.sqrt(max(m2, 0.0) / (n - 1)) if n > 1 else None
        owner, sent = int(rows[0][2]), int(rows[0][3])
        how = "element-wise: each rank drew its own runs"
        if owner >= 0:
            how = f"owner rank {owner} computed it whole in {seconds:.3g} s and scattered {sent} bytes"
        entry.sharding = f"{list(p.placements)} on a mesh of shape {tuple(p.device_mesh.shape)}: {how}"
        return sent


def checksums(model: nn.Module) -> dict[str, str]:
    """The :func:`checksum` of every parameter of ``model`` by name, DTensor or not (a collective when some
    are DTensors: call it on every rank). Compare runs, world sizes or libraries with it."""
    from types import SimpleNamespace

    entries = [SimpleNamespace(name=n, std=None, checksum=None, sharding=None) for n, _ in model.named_parameters()]
    if is_sharded(model):
        ShardedInit(model).complete(entries, model, [])
    params = dict(model.named_parameters())
    return {e.name: e.checksum or checksum(params[e.name].detach()) for e in entries}
