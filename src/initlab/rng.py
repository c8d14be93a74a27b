"""Counter-based random numbers: Philox4x32-10, where a value is a pure function of its index.

``torch.Generator`` is a sequential stream: what a tensor receives depends on every draw made before it, on
the device and on how the work is split. Here the value of element ``i`` of a parameter is a function of
``(key, i)`` only, so a shard, a slice, another thread count, another device or another order of
parameters is just another range of indices.

Contract
--------
* **Generator**: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
  SC 2011), the generator of cuRAND and of torch on CUDA: a 128-bit counter ``(c0, c1, c2, c3)`` and a
  64-bit key ``(k0, k1)`` give four 32-bit words (:func:`philox4x32`).
* **Key**: :func:`key_for` ``(seed, name)`` = the first 8 bytes of
  ``SHA-256(b"initlab.philox4x32-10.v1\\0" + seed as 8 bytes little-endian + name in UTF-8)``, read as two
  little-endian 32-bit words. ``name`` is the parameter's fully qualified name (``"encoder.0.weight"``).
  Stable across releases, platforms and Python versions (no ``hash()``).
* **Counter layout**: element ``i`` (row-major flat index, plus ``offset``) lies in block ``b = i // 4``
  and uses word ``i % 4`` of ``philox4x32((b mod 2**32, b // 2**32, draw, 0), key)``. ``draw`` numbers the
  separate draws of one initializer call (0: the values; 1: a sparse mask, ...); the last word is 0.
* **Distributions** (float32 arithmetic, no rejection loop, so any range of indices can be made alone):

  - uniform: ``u = (word >> 8) * 2**-24`` (24-bit grid on ``[0, 1)``), ``x = min(low + (high - low) * u,
    high)``: ``low`` is reached (``u = 0``), ``high`` only by rounding; both as float32.
  - normal: Box-Muller on the word pairs ``(w0, w1)`` -> elements ``4b, 4b+1`` and ``(w2, w3)`` ->
    ``4b+2, 4b+3``: ``r = sqrt(-2 ln u1)`` with ``u1 = ((w0 >> 8) + 1) * 2**-24`` in ``(0, 1]``, angle
    ``2 pi (w1 >> 8) / 2**24``; ``z = (r cos, r sin)``. |z| <= sqrt(48 ln 2) = 5.77 (as torch's CPU
    ``normal_``). log, sin and cos are polynomials after exact range reduction (see ``docs/rng.md``);
    each normal is within 4e-7 relative of the exact Box-Muller value for the same words (tested).
  - truncated normal: inverse CDF, ``x = Phi^-1(Phi(a) + u (Phi(b) - Phi(a)))`` with
    ``u = ((word >> 9) + 1/2) * 2**-23`` and Wichura's AS241 (PPND7) ``Phi^-1``; the upper tail is computed
    from ``1 - Phi`` so both tails keep float32 precision; the result is clamped into ``[low, high]``.
  - bits: the raw 32-bit words (as int64), for masks and permutations.

  float16 / bfloat16 outputs are the float32 values rounded to nearest even (what ``.to(dtype)`` gives);
  float64 outputs hold the float32 values exactly.
* **Backends**, bit-identical (tested): ``"numba"``, a compiled kernel over all cores (``pip install
  initlab[fast]``; it uses ``torch.get_num_threads()`` threads) and ``"torch"``, integer and IEEE float32
  tensor ops that run on any device (CUDA included) and are the fallback. ``"auto"`` (the default) takes
  numba for CPU outputs when it imports. Results never depend on the backend, the thread count or the
  chunking.

>>> key = key_for(0, "fc.weight")
>>> w = normal((2, 3), key, backend="torch")
>>> torch.equal(normal(6, key, backend="torch")[2:5], normal(3, key, offset=2, backend="torch"))
True
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
import torch

from initlab.shapes import shape_of
from initlab.validate import check_choice, check_int, check_number, check_seed

Backend = Literal["auto", "numba", "torch"]
BACKENDS: tuple[str, ...] = get_args(Backend)
Key = tuple[int, int]
KEY_DOMAIN = b"initlab.philox4x32-10.v1\x00"

PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57  # round multipliers
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85  # key increments (Weyl sequence)
PHILOX_ROUNDS = 10
_MASK32 = 0xFFFFFFFF

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

# -- the pieces both backends share --------------------------------------------------------------------
# Every float constant is a float32 value, so the numba kernel (float32 constants) and the torch path
# (Python floats that float32 tensor ops round to themselves) compute with the same numbers.


def _f32(x: float) -> float:
    return float(np.float32(x))


_C = {
    "two_m24": 2.0**-24,
    "one": 1.0, "two": 2.0, "half": 0.5, "mtwo": -2.0, "two24": 16777216.0,
    # ln: fdlibm-style reduction to [sqrt(1/2), sqrt(2)); ln(1+f) = f - f^2/2 + s (f^2/2 + R(s^2)), s = f/(2+f)
    # R(z) = 2z/3 + 2z^2/5 + 2z^3/7 + 2z^4/9 (Taylor; the next term, 2z^5/11 <= 4e-9, is far below an ulp)
    "ln2_hi": 6.9313812256e-01,  # 0x3f317180: trailing zeros, so k * ln2_hi is exact for |k| < 128
    "ln2_lo": 9.0580006145e-06,  # ln 2 - ln2_hi
    "l1": 2 / 3, "l2": 2 / 5, "l3": 2 / 7, "l4": 2 / 9,
    # sin, cos on |x| <= pi/4 (Taylor to x^11 / x^10; remainders 2e-9 and 1e-10 relative)
    "s1": -1 / 6, "s2": 1 / 120, "s3": -1 / 5040, "s4": 1 / 362880,
    "c1": 1 / 24, "c2": -1 / 720, "c3": 1 / 40320, "c4": -1 / 3628800,
    "ang": math.pi * 2.0**-21 / 4,  # (pi/2) / 2**22: one step of the 24-bit angle, in radians
    # Wichura 1988, AS241 PPND7 (about 1e-7 relative)
    "a0": 3.3871327179, "a1": 50.434271938, "a2": 159.29113202, "a3": 59.109374720,
    "b1": 17.895169469, "b2": 78.757757664, "b3": 67.187563600,
    "c0p": 1.4234372777, "c1p": 2.7568153900, "c2p": 1.3067284816, "c3p": 0.17023821103,
    "d1": 0.73700164250, "d2": 0.12021132975,
    "e0": 6.6579051150, "e1": 3.0812263860, "e2": 0.42868294337, "e3": 0.017337203997,
    "f1": 0.24197894225, "f2": 0.012258202635,
    "split": 0.180625, "central": -0.425, "r_split": 5.0, "r_c": 1.6,
    "flt_min": float(np.finfo(np.float32).tiny),
}
_C = {k: _f32(v) for k, v in _C.items()}

_DIST = {"uniform": 0, "normal": 1, "truncated_normal": 2, "bits": 3}
_KIND = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2, torch.float64: 3}
_BLOCKS_PER_CHUNK = 1024  # numba: 4096 elements per task (16 KB of float32, stays in L1)


# -- keys and the reference generator --------------------------------------------------------------------
def key_for(seed: int, name: str) -> Key:
    """The Philox key of parameter ``name`` under ``seed``: stable, documented, independent of order.

    ``SHA-256(KEY_DOMAIN + seed.to_bytes(8, "little") + name.encode("utf-8"))``, first 8 bytes as two
    little-endian 32-bit words. ``seed`` is an int in ``[0, 2**64)``.

    >>> key_for(0, "fc.weight") == key_for(0, "fc.weight") != key_for(1, "fc.weight")
    True
    """
    seed = check_seed(seed, "seed", optional=False)
    if not isinstance(name, str):
        raise TypeError(f"name must be a str (the parameter's qualified name); got {type(name).__name__}")
    digest = hashlib.sha256(KEY_DOMAIN + seed.to_bytes(8, "little") + name.encode("utf-8")).digest()
    return int.from_bytes(digest[0:4], "little"), int.from_bytes(digest[4:8], "little")


def philox4x32(counter: Sequence[int], key: Sequence[int], rounds: int = PHILOX_ROUNDS) -> tuple[int, ...]:
    """Philox4x32 of one 128-bit ``counter`` (four 32-bit words) under ``key`` (two words), in plain Python.

    The reference both backends are tested against (Random123's known-answer vectors):

    >>> [f"{w:08x}" for w in philox4x32((0, 0, 0, 0), (0, 0))]
    ['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']
    """
    c0, c1, c2, c3 = (int(c) & _MASK32 for c in counter)
    k0, k1 = (int(k) & _MASK32 for k in key)
    for _ in range(rounds):
        p0, p1 = PHILOX_M0 * c0, PHILOX_M1 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> 32) ^ c3 ^ k1, p0 & _MASK32
        k0, k1 = (k0 + PHILOX_W0) & _MASK32, (k1 + PHILOX_W1) & _MASK32
    return c0, c1, c2, c3


def check_key(key: Any) -> Key:
    """``key`` as a pair of ints in ``[0, 2**32)``: ``TypeError`` for another type, ``ValueError`` out of range."""
    if not isinstance(key, (tuple, list)) or len(key) != 2:
        raise TypeError(f"key must be a pair (k0, k1) of ints in [0, 2**32) (see initlab.rng.key_for); got {key!r}")
    return check_int(key[0], "key[0]", 0, _MASK32), check_int(key[1], "key[1]", 0, _MASK32)


# -- backend selection --------------------------------------------------------------------------------------
_default_backend: str = "auto"
_numba_state: dict[str, Any] = {}  # "available", and once compiled: "kernel", "numba", "empty"


def set_backend(backend: Backend) -> None:
    """Set the backend used when a call passes none: ``"auto"`` (default), ``"numba"`` or ``"torch"``."""
    global _default_backend
    _check_backend(backend)
    _default_backend = backend


def get_backend() -> str:
    """The backend used when a call passes none."""
    return _default_backend


def numba_available() -> bool:
    """Whether the compiled CPU kernel can be used (numba imports)."""
    if "available" not in _numba_state:
        try:
            import numba  # noqa: F401
        except ImportError:
            _numba_state["available"] = False
        else:
            _numba_state["available"] = True
    return _numba_state["available"]


def _check_backend(backend: Any) -> str:
    return check_choice(backend, "backend", BACKENDS)


def _resolve_backend(backend: str | None, device: torch.device) -> str:
    backend = _check_backend(_default_backend if backend is None else backend)
    if backend == "auto":
        return "numba" if device.type == "cpu" and numba_available() else "torch"
    if backend == "numba" and not numba_available():
        raise ImportError("backend='numba' needs numba: pip install 'initlab[fast]' (or use backend='torch')")
    return backend


# -- the stream an initializer call draws from ---------------------------------------------------------
class Philox:
    """The counter-based source for one initializer call: a key, an element ``offset`` and a draw number.

    Passed where a ``torch.Generator`` would go; ``initlab.sampling`` recognizes it. Each sampling call
    takes the next ``draw`` (counter word 2), so an initializer that draws twice (values, then a mask) gets
    independent numbers, and the whole result depends only on (key, initializer, shape, offset).

    >>> s = Philox(key_for(0, "w"), offset=8)
    >>> (s.next_draw(), s.next_draw())
    (0, 1)
    """

    is_philox = True  # what initlab.sampling checks

    def __init__(self, key: Key, *, offset: int = 0, backend: Backend | None = None) -> None:
        self.key = check_key(key)
        self.offset = check_offset(offset)
        self.backend = None if backend is None else _check_backend(backend)
        self._draws = 0

    @classmethod
    def from_seed(cls, seed: int, name: str = "", **kwargs: Any) -> Philox:
        """The stream of parameter ``name`` under ``seed`` (see :func:`key_for`)."""
        return cls(key_for(seed, name), **kwargs)

    def next_draw(self) -> int:
        draw = self._draws
        self._draws += 1
        return draw

    def __repr__(self) -> str:
        return f"Philox(key=({self.key[0]:#010x}, {self.key[1]:#010x}), offset={self.offset})"


_QR_LOCK = threading.Lock()


def haar_q(a: torch.Tensor) -> torch.Tensor:
    """The Q factor of ``a`` (tall, ``rows >= cols``) with the signs of R's diagonal moved into it (Mezzadri
    2007), computed the same way wherever it is called: in float64, on the CPU, with LAPACK on one thread
    (a blocked QR over several threads may round differently). So an orthogonal matrix made from a
    counter-based Gaussian does not depend on the caller's thread count or device; it is bit-identical for
    one torch build on one CPU type (LAPACK's kernels may differ between CPU generations). Returned as
    float64 on the CPU; the caller casts and moves it.

    >>> q = haar_q(torch.randn(5, 3, generator=torch.Generator().manual_seed(0)))
    >>> bool(torch.allclose(q.T @ q, torch.eye(3, dtype=torch.float64)))
    True
    """
    a64 = a.detach().to(device="cpu", dtype=torch.float64)
    with _QR_LOCK:  # torch's thread count is process-wide: no other haar_q may change it meanwhile
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            q, r = torch.linalg.qr(a64)
        finally:
            torch.set_num_threads(threads)
    return q * torch.diagonal(r).sign()


def check_offset(offset: Any) -> int:
    """The flat index of the first element: an int in ``[0, 2**62]``."""
    return check_int(offset, "offset", 0, 2**62)


def _check_range(offset: int, n: int) -> None:
    if offset + n > 2**62:
        raise ValueError(f"offset + numel must be at most 2**62; got offset={offset}, numel={n}")


def _check_draw(draw: Any) -> int:
    return check_int(draw, "draw", 0, _MASK32)


# -- public sampling functions ---------------------------------------------------------------------------
def uniform(shape: int | Sequence[int], key: Key, *, low: float = 0.0, high: float = 1.0, offset: int = 0,
            draw: int = 0, dtype: torch.dtype = torch.float32, device: Any = None,
            backend: Backend | None = None) -> torch.Tensor:
    """``U(low, high)`` on a 24-bit grid: ``min(low + (high - low) * (word >> 8) * 2**-24, high)`` in float32.

    >>> x = uniform(1000, key_for(0, "b"), low=-1.0, high=1.0, backend="torch")
    >>> bool(x.min() >= -1 and x.max() < 1)
    True
    """
    return _sample("uniform", shape, key, _uniform_params(low, high), offset, draw, dtype, device, backend)


def normal(shape: int | Sequence[int], key: Key, *, mean: float = 0.0, std: float = 1.0, offset: int = 0,
           draw: int = 0, dtype: torch.dtype = torch.float32, device: Any = None,
           backend: Backend | None = None) -> torch.Tensor:
    """``N(mean, std^2)`` by Box-Muller on counter pairs: ``mean + std * z`` in float32.

    >>> z = normal(10000, key_for(0, "w"), backend="torch")
    >>> abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1) < 0.05
    True
    """
    return _sample("normal", shape, key, _normal_params(mean, std), offset, draw, dtype, device, backend)


def truncated_normal(shape: int | Sequence[int], key: Key, *, mean: float = 0.0, std: float = 1.0,
                     low: float = -2.0, high: float = 2.0, offset: int = 0, draw: int = 0,
                     dtype: torch.dtype = torch.float32, device: Any = None,
                     backend: Backend | None = None) -> torch.Tensor:
    """``N(mean, std^2)`` restricted to the ABSOLUTE interval ``[low, high]``, by inverse CDF (no rejection).

    >>> t = truncated_normal(1000, key_for(0, "w"), std=0.5, low=-1.0, high=1.0, backend="torch")
    >>> bool(t.abs().max() <= 1.0)
    True
    """
    return _sample("truncated_normal", shape, key, _truncated_params(mean, std, low, high), offset, draw,
                   dtype, device, backend)


def bits(shape: int | Sequence[int], key: Key, *, offset: int = 0, draw: int = 0, device: Any = None,
         backend: Backend | None = None) -> torch.Tensor:
    """The raw 32-bit Philox words of the elements, as an int64 tensor (values in ``[0, 2**32)``).

    >>> bits(4, (0, 0), backend="torch").tolist() == list(philox4x32((0, 0, 0, 0), (0, 0)))
    True
    """
    return _sample("bits", shape, key, (), offset, draw, torch.int64, device, backend)


def fill_uniform_(tensor: torch.Tensor, key: Key, *, low: float = 0.0, high: float = 1.0, offset: int = 0,
                  draw: int = 0, backend: Backend | None = None) -> torch.Tensor:
    """Fill ``tensor`` in place with :func:`uniform` values (row-major element order) and return it."""
    return _fill("uniform", tensor, key, _uniform_params(low, high), offset, draw, backend)


def fill_normal_(tensor: torch.Tensor, key: Key, *, mean: float = 0.0, std: float = 1.0, offset: int = 0,
                 draw: int = 0, backend: Backend | None = None) -> torch.Tensor:
    """Fill ``tensor`` in place with :func:`normal` values and return it.

    >>> t = fill_normal_(torch.empty(2, 2, dtype=torch.bfloat16), (1, 2), backend="torch")
    >>> bool(t.isfinite().all())
    True
    """
    return _fill("normal", tensor, key, _normal_params(mean, std), offset, draw, backend)


def fill_truncated_normal_(tensor: torch.Tensor, key: Key, *, mean: float = 0.0, std: float = 1.0,
                           low: float = -2.0, high: float = 2.0, offset: int = 0, draw: int = 0,
                           backend: Backend | None = None) -> torch.Tensor:
    """Fill ``tensor`` in place with :func:`truncated_normal` values and return it."""
    return _fill("truncated_normal", tensor, key, _truncated_params(mean, std, low, high), offset, draw, backend)


# -- parameters (host side, float64 -> float32) -------------------------------------------------------------
def _inner_f32(low: float, high: float) -> tuple[float, float]:
    """The float32 values closest to ``[low, high]`` from inside (float32 rounding can step outside)."""
    lo, hi = np.float32(low), np.float32(high)
    if float(lo) < low:
        lo = np.nextafter(lo, np.float32(np.inf))
    if float(hi) > high:
        hi = np.nextafter(hi, np.float32(-np.inf))
    return float(lo), float(hi)


def _uniform_params(low: Any, high: Any) -> tuple[float, ...]:
    low, high = check_number(low, "low"), check_number(high, "high")
    if high < low:
        raise ValueError(f"low must be <= high; got low={low!r}, high={high!r}")
    if not abs(high - low) < float(np.finfo(np.float32).max):
        raise ValueError(f"high - low must fit in float32; got low={low!r}, high={high!r}")
    return _f32(low), _f32(high - low), _f32(high)


def _normal_params(mean: Any, std: Any) -> tuple[float, ...]:
    mean, std = check_number(mean, "mean"), check_number(std, "std", minimum=0.0)
    return _f32(mean), _f32(std)


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _truncated_params(mean: Any, std: Any, low: Any, high: Any) -> tuple[float, ...]:
    mean, std = _normal_params(mean, std)  # validates
    mean64, std64 = float(mean), float(std)
    low, high = check_number(low, "low"), check_number(high, "high")
    if not low < high:
        raise ValueError(f"low must be < high; got low={low!r}, high={high!r}")
    lo32, hi32 = _inner_f32(low, high)
    if lo32 > hi32:
        raise ValueError(f"[low, high] = [{low!r}, {high!r}] holds no float32 value")
    if std64 == 0:
        if not low <= mean64 <= high:
            raise ValueError(f"[low, high] = [{low!r}, {high!r}] excludes the mean {mean64!r} while std is 0")
        return mean, 0.0, 0.0, 0.0, 0.0, 0.0, lo32, hi32  # pa = qb = width = 0: z = ndtri(FLT_MIN), times 0
    alpha, beta = (low - mean64) / std64, (high - mean64) / std64
    pa, qb = _phi(alpha), _phi(-beta)
    width = (_phi(-alpha) - qb) if alpha > 0 else (_phi(beta) - pa)  # subtract in the tail that keeps digits
    return mean, std, _f32(pa), _f32(qb), _f32(width), 0.0, lo32, hi32


# -- the driver -----------------------------------------------------------------------------------------------
def _check_dtype(dtype: Any) -> torch.dtype:
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be one of float32, float64, float16, bfloat16; got {dtype}")
    return dtype


def _sample(dist: str, shape, key, params, offset, draw, dtype, device, backend) -> torch.Tensor:
    dims = shape_of(shape)
    n = math.prod(dims)
    key, offset, draw = check_key(key), check_offset(offset), _check_draw(draw)
    if dist != "bits":
        _check_dtype(dtype)
    _check_range(offset, n)
    device = torch.device(device) if device is not None else torch.device("cpu")
    backend = _resolve_backend(backend, device)
    out = torch.empty(dims, dtype=dtype, device=device)
    if n:
        _generate(dist, out.view(-1), key, params, offset, draw, backend)
    return out


def _fill(dist: str, tensor: torch.Tensor, key, params, offset, draw, backend) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor; got {type(tensor).__name__}")
    _check_dtype(tensor.dtype)
    key, offset, draw = check_key(key), check_offset(offset), _check_draw(draw)
    _check_range(offset, tensor.numel())
    backend = _resolve_backend(backend, tensor.device)
    if tensor.is_meta or tensor.numel() == 0:
        return tensor
    if tensor.is_contiguous() and backend == "numba" and tensor.device.type == "cpu":
        _generate_numba(dist, tensor.view(-1), key, params, offset, draw)  # writes memory, autograd not involved
        return tensor
    with torch.no_grad():
        if tensor.is_contiguous():
            _generate(dist, tensor.view(-1), key, params, offset, draw, backend)
        else:
            flat = torch.empty(tensor.numel(), dtype=tensor.dtype, device=tensor.device)
            _generate(dist, flat, key, params, offset, draw, backend)
            tensor.copy_(flat.view(tensor.shape))
    return tensor


def _generate(dist: str, out: torch.Tensor, key: Key, params, offset: int, draw: int, backend: str) -> None:
    """Write elements ``offset .. offset + out.numel() - 1`` of the stream into the flat tensor ``out``."""
    if backend == "numba":
        if out.device.type != "cpu":
            cpu = torch.empty(out.shape, dtype=out.dtype)
            _generate_numba(dist, cpu, key, params, offset, draw)
            out.copy_(cpu)
        else:
            _generate_numba(dist, out, key, params, offset, draw)
    else:
        _generate_torch(dist, out, key, params, offset, draw)


# -- torch backend ----------------------------------------------------------------------------------------
def _t_philox(blocks: torch.Tensor, key: Key, draw: int) -> list[torch.Tensor]:
    """Philox4x32-10 of the counters ``(b mod 2**32, b // 2**32, draw, 0)`` for int64 ``blocks``."""
    return _t_philox_counters(blocks & _MASK32, blocks >> 32, torch.full_like(blocks, draw),
                              torch.zeros_like(blocks), key)


def _t_philox_counters(c0: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, c3: torch.Tensor,
                       key: Key) -> list[torch.Tensor]:
    """Philox4x32-10 of int64 tensors holding 32-bit counter words. A 32x32-bit product fits in 64 bits
    (read as two's complement when it passes 2**63: the low and high words come out right either way)."""
    k0, k1 = key
    for _ in range(PHILOX_ROUNDS):
        p0 = c0 * PHILOX_M0
        p1 = c2 * PHILOX_M1
        c0, c1, c2, c3 = ((p1 >> 32) & _MASK32) ^ c1 ^ k0, p1 & _MASK32, ((p0 >> 32) & _MASK32) ^ c3 ^ k1, \
            p0 & _MASK32
        k0, k1 = (k0 + PHILOX_W0) & _MASK32, (k1 + PHILOX_W1) & _MASK32
    return [c0, c1, c2, c3]


def _t_sqrt(x: torch.Tensor) -> torch.Tensor:
    """Correctly rounded float32 square root. torch's float32 ``sqrt`` on CPU is not (it differs from IEEE
    in the last bit for ~15% of inputs); the float64 root rounded to float32 is (53 >= 2 * 24 + 2)."""
    return torch.sqrt(x.to(torch.float64)).to(torch.float32)


def _t_ln(x: torch.Tensor) -> torch.Tensor:
    """ln of positive normal float32 values; the same operations, in the same order, as ``_nb_ln``."""
    c = _C
    ix = x.view(torch.int32).to(torch.int64) + (0x3F800000 - 0x3F3504F3)
    k = (ix >> 23) - 127
    m = ((ix & 0x007FFFFF) + 0x3F3504F3).to(torch.int32).view(torch.float32)
    f = m - c["one"]
    s = f / (f + c["two"])
    z = s * s
    r = z * (((z * c["l4"] + c["l3"]) * z + c["l2"]) * z + c["l1"])
    hfsq = f * c["half"] * f
    dk = k.to(torch.float32)
    return (((s * (hfsq + r) + dk * c["ln2_lo"]) - hfsq) + f) + dk * c["ln2_hi"]


def _t_sincos(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of ``2 pi (w >> 8) / 2**24``: exact quadrant reduction in integers, then polynomials."""
    c = _C
    v = ((w >> 8) + (1 << 21)) & 0xFFFFFF
    q = v >> 22
    x = ((v & 0x3FFFFF) - (1 << 21)).to(torch.float32) * c["ang"]
    z = x * x
    sx = x + (x * z) * (((z * c["s4"] + c["s3"]) * z + c["s2"]) * z + c["s1"])
    cx = (c["one"] - c["half"] * z) + (z * z) * (((z * c["c4"] + c["c3"]) * z + c["c2"]) * z + c["c1"])
    odd = (q & 1) == 1
    cos = torch.where(odd, sx, cx)
    sin = torch.where(odd, cx, sx)
    cos = torch.where((q == 1) | (q == 2), -cos, cos)
    sin = torch.where(q >= 2, -sin, sin)
    return cos, sin


def _t_ndtri_lower(p: torch.Tensor) -> torch.Tensor:
    """Wichura's PPND7 for p in (0, 0.5], evaluated as ``_nb_ndtri_lower`` (both branches, then a select)."""
    c = _C
    q = p - c["half"]
    r = c["split"] - q * q
    num = ((c["a3"] * r + c["a2"]) * r + c["a1"]) * r + c["a0"]
    den = ((c["b3"] * r + c["b2"]) * r + c["b1"]) * r + c["one"]
    xc = (q * num) / den
    t = _t_sqrt(_t_ln(p) * -c["one"])
    r1 = t - c["r_c"]
    x1 = (((c["c3p"] * r1 + c["c2p"]) * r1 + c["c1p"]) * r1 + c["c0p"]) / ((c["d2"] * r1 + c["d1"]) * r1 + c["one"])
    r2 = t - c["r_split"]
    x2 = (((c["e3"] * r2 + c["e2"]) * r2 + c["e1"]) * r2 + c["e0"]) / ((c["f2"] * r2 + c["f1"]) * r2 + c["one"])
    xt = torch.where(t <= c["r_split"], x1, x2)
    return torch.where(q >= c["central"], xc, -xt)


def _t_values(dist: str, words: list[torch.Tensor], params) -> torch.Tensor:
    """The float32 values of whole blocks, shape ``(blocks, 4)`` (``(blocks, 4)`` int64 words for bits)."""
    c = _C
    if dist == "bits":
        return torch.stack(words, dim=1)
    if dist == "uniform":
        lo, span, hi = params
        out = [torch.clamp_max((w >> 8).to(torch.float32) * c["two_m24"] * span + lo, hi) for w in words]
        return torch.stack(out, dim=1)
    if dist == "normal":
        mean, std = params
        out = []
        for wr, wa in ((words[0], words[1]), (words[2], words[3])):
            u = ((wr >> 8) + 1).to(torch.float32) * c["two_m24"]
            r = _t_sqrt(_t_ln(u) * c["mtwo"])
            cos, sin = _t_sincos(wa)
            out += [(r * cos) * std + mean, (r * sin) * std + mean]
        return torch.stack(out, dim=1)
    mean, std, pa, qb, width, _, lo, hi = params
    out = []
    for w in words:
        k2 = ((w >> 9) * 2 + 1).to(torch.float32)
        u = k2 * c["two_m24"]
        v = (c["two24"] - k2) * c["two_m24"]
        pl = u * width + pa
        pu = v * width + qb
        lower = pl <= c["half"]
        p = torch.clamp_min(torch.where(lower, pl, pu), c["flt_min"])
        x = _t_ndtri_lower(p)
        z = torch.where(lower, x, -x)
        out.append(torch.clamp(z * std + mean, lo, hi))
    return torch.stack(out, dim=1)


def _generate_torch(dist: str, out: torch.Tensor, key: Key, params, offset: int, draw: int) -> None:
    n = out.numel()
    first, last = offset // 4, (offset + n - 1) // 4
    per_chunk = 1 << (16 if out.device.type == "cpu" else 22)  # blocks per chunk: bounded temporaries
    for b0 in range(first, last + 1, per_chunk):
        b1 = min(b0 + per_chunk, last + 1)
        blocks = torch.arange(b0, b1, dtype=torch.int64, device=out.device)
        vals = _t_values(dist, _t_philox(blocks, key, draw), params).reshape(-1)
        g_lo, g_hi = max(4 * b0, offset), min(4 * b1, offset + n)
        out[g_lo - offset:g_hi - offset].copy_(vals[g_lo - 4 * b0:g_hi - 4 * b0])


# -- numba backend ------------------------------------------------------------------------------------------
# The kernel functions below are plain Python until `_numba_kernel()` compiles them (numba is imported only
# then, so `import initlab.rng` stays light). They are module-level so numba can cache the machine code
# (cache=True: the first call compiles for a few seconds, later processes load it). Integer types are pinned
# by explicit casts after every operation (numba widens to 64 bits; the Philox words stay in 64-bit lanes, see
# _nb_philox), indices are unsigned, and divisions use the numpy error model (no zero check): all three keep
# the loops vectorizable. No fastmath: every float32 operation is rounded as in the torch path, so the two
# agree bit for bit (LLVM does not contract a*b+c into an FMA without fast-math flags).
_U32 = np.uint32
_U64 = np.uint64
_I32 = np.int32
_F32 = np.float32
_prange = range
_f2i: Any = None  # float32 -> uint32 bitcast (an LLVM intrinsic, defined with numba)
_i2f: Any = None  # uint32 -> float32 bitcast
_M0, _M1 = _U64(PHILOX_M0), _U64(PHILOX_M1)
_W0, _W1 = _U64(PHILOX_W0), _U64(PHILOX_W1)
_S32 = _U64(32)
_MASK64 = _U64(_MASK32)
_K = {k: _F32(v) for k, v in _C.items()}
_TWO_M24, _ONE, _TWO, _HALF, _MTWO, _TWO24 = (_K[k] for k in ("two_m24", "one", "two", "half", "mtwo", "two24"))
_LN2_HI, _LN2_LO, _L1, _L2, _L3, _L4 = (_K[k] for k in ("ln2_hi", "ln2_lo", "l1", "l2", "l3", "l4"))
_S1, _S2, _S3, _S4, _C1, _C2, _C3, _C4, _ANG = (_K[k] for k in ("s1", "s2", "s3", "s4", "c1", "c2", "c3", "c4",
                                                                 "ang"))
_A0, _A1, _A2, _A3, _B1, _B2, _B3 = (_K[k] for k in ("a0", "a1", "a2", "a3", "b1", "b2", "b3"))
_CP0, _CP1, _CP2, _CP3, _D1, _D2 = (_K[k] for k in ("c0p", "c1p", "c2p", "c3p", "d1", "d2"))
_E0, _E1, _E2, _E3, _FF1, _FF2 = (_K[k] for k in ("e0", "e1", "e2", "e3", "f1", "f2"))
_SPLIT, _CENTRAL, _RSPLIT, _RC, _FLT_MIN = (_K[k] for k in ("split", "central", "r_split", "r_c", "flt_min"))


def _nb_philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 with each 32-bit word held in a 64-bit lane: the 32x32 -> 64 products map to one
    ``vpmuludq`` each and no lane is narrowed or widened inside the rounds (twice as fast as uint32 words)."""
    c0, c1, c2, c3, k0, k1 = _U64(c0), _U64(c1), _U64(c2), _U64(c3), _U64(k0), _U64(k1)
    for _ in range(10):
        p0 = c0 * _M0
        p1 = c2 * _M1
        c0, c1, c2, c3 = (p1 >> _S32) ^ c1 ^ k0, p1 & _MASK64, (p0 >> _S32) ^ c3 ^ k1, p0 & _MASK64
        k0 = (k0 + _W0) & _MASK64
        k1 = (k1 + _W1) & _MASK64
    return _U32(c0), _U32(c1), _U32(c2), _U32(c3)


def _nb_ln(x):
    ix = _U32(_f2i(x) + _U32(0x3F800000 - 0x3F3504F3))
    k = _I32(ix >> _U32(23)) - _I32(127)
    m = _i2f(_U32((ix & _U32(0x007FFFFF)) + _U32(0x3F3504F3)))
    f = m - _ONE
    s = f / (f + _TWO)
    z = s * s
    r = z * (((z * _L4 + _L3) * z + _L2) * z + _L1)
    hfsq = f * _HALF * f
    dk = _F32(k)
    return (((s * (hfsq + r) + dk * _LN2_LO) - hfsq) + f) + dk * _LN2_HI


def _nb_sincos(w):
    v = _U32(_U32(_U32(w >> _U32(8)) + _U32(1 << 21)) & _U32(0xFFFFFF))
    q = _U32(v >> _U32(22))
    x = _F32(_I32(v & _U32(0x3FFFFF)) - _I32(1 << 21)) * _ANG
    z = x * x
    sx = x + (x * z) * (((z * _S4 + _S3) * z + _S2) * z + _S1)
    cx = (_ONE - _HALF * z) + (z * z) * (((z * _C4 + _C3) * z + _C2) * z + _C1)
    odd = (q & _U32(1)) == _U32(1)
    cos = sx if odd else cx
    sin = cx if odd else sx
    cos = -cos if (q == _U32(1)) | (q == _U32(2)) else cos
    sin = -sin if q >= _U32(2) else sin
    return cos, sin


def _nb_normal_pair(wr, wa, mean, std):
    u = _F32(_U32(_U32(wr >> _U32(8)) + _U32(1))) * _TWO_M24
    r = np.sqrt(_nb_ln(u) * _MTWO)
    cos, sin = _nb_sincos(wa)
    return (r * cos) * std + mean, (r * sin) * std + mean


def _nb_uniform_one(w, lo, span, hi):
    x = (_F32(_U32(w >> _U32(8))) * _TWO_M24) * span + lo
    return hi if x > hi else x


def _nb_ndtri_lower(p):
    q = p - _HALF
    r = _SPLIT - q * q
    num = ((_A3 * r + _A2) * r + _A1) * r + _A0
    den = ((_B3 * r + _B2) * r + _B1) * r + _ONE
    xc = (q * num) / den
    t = np.sqrt(_nb_ln(p) * -_ONE)
    r1 = t - _RC
    x1 = (((_CP3 * r1 + _CP2) * r1 + _CP1) * r1 + _CP0) / ((_D2 * r1 + _D1) * r1 + _ONE)
    r2 = t - _RSPLIT
    x2 = (((_E3 * r2 + _E2) * r2 + _E1) * r2 + _E0) / ((_FF2 * r2 + _FF1) * r2 + _ONE)
    xt = x1 if t <= _RSPLIT else x2
    return xc if q >= _CENTRAL else -xt


def _nb_truncated_one(w, mean, std, pa, qb, width, lo, hi):
    k2 = _F32(_U32(_U32(w >> _U32(9)) * _U32(2) + _U32(1)))
    u = k2 * _TWO_M24
    v = (_TWO24 - k2) * _TWO_M24
    pl = u * width + pa
    pu = v * width + qb
    lower = pl <= _HALF
    p = pl if lower else pu
    p = p if p > _FLT_MIN else _FLT_MIN
    x = _nb_ndtri_lower(p)
    z = x if lower else -x
    y = z * std + mean
    y = lo if y < lo else y
    return hi if y > hi else y


def _nb_blocks(dist, dst, base, b_lo, b_hi, draw, k0, k1, prm):
    """Whole blocks ``b_lo <= b < b_hi`` into ``dst[4 b + base + lane]`` (unsigned, wrapping index arithmetic).

    One loop per distribution, each branch-free so that LLVM vectorizes it across blocks."""
    p0, p1, p2, p3, p4, p6, p7 = prm[0], prm[1], prm[2], prm[3], prm[4], prm[6], prm[7]
    four = _U64(4)
    b = b_lo
    if dist == 0:
        while b < b_hi:
            w0, w1, w2, w3 = _nb_philox(b & _MASK64, b >> _S32, draw, _U64(0), k0, k1)
            i = four * b + base
            dst[i] = _nb_uniform_one(w0, p0, p1, p2)
            dst[i + _U64(1)] = _nb_uniform_one(w1, p0, p1, p2)
            dst[i + _U64(2)] = _nb_uniform_one(w2, p0, p1, p2)
            dst[i + _U64(3)] = _nb_uniform_one(w3, p0, p1, p2)
            b += _U64(1)
    elif dist == 1:
        while b < b_hi:
            w0, w1, w2, w3 = _nb_philox(b & _MASK64, b >> _S32, draw, _U64(0), k0, k1)
            x0, x1 = _nb_normal_pair(w0, w1, p0, p1)
            x2, x3 = _nb_normal_pair(w2, w3, p0, p1)
            i = four * b + base
            dst[i] = x0
            dst[i + _U64(1)] = x1
            dst[i + _U64(2)] = x2
            dst[i + _U64(3)] = x3
            b += _U64(1)
    elif dist == 2:
        while b < b_hi:
            w0, w1, w2, w3 = _nb_philox(b & _MASK64, b >> _S32, draw, _U64(0), k0, k1)
            i = four * b + base
            dst[i] = _nb_truncated_one(w0, p0, p1, p2, p3, p4, p6, p7)
            dst[i + _U64(1)] = _nb_truncated_one(w1, p0, p1, p2, p3, p4, p6, p7)
            dst[i + _U64(2)] = _nb_truncated_one(w2, p0, p1, p2, p3, p4, p6, p7)
            dst[i + _U64(3)] = _nb_truncated_one(w3, p0, p1, p2, p3, p4, p6, p7)
            b += _U64(1)
    else:  # the raw words (bits), into a uint32 dst
        while b < b_hi:
            w0, w1, w2, w3 = _nb_philox(b & _MASK64, b >> _S32, draw, _U64(0), k0, k1)
            i = four * b + base
            dst[i] = w0
            dst[i + _U64(1)] = w1
            dst[i + _U64(2)] = w2
            dst[i + _U64(3)] = w3
            b += _U64(1)


def _nb_run(dist, dst, pos, g_lo, g_hi, draw, k0, k1, prm):
    """Elements ``g_lo <= g < g_hi`` into ``dst[pos + g - g_lo]``: whole blocks in place, a ragged first or
    last block through a 4-element buffer (the same loop, so the same values)."""
    full_lo = (g_lo + _U64(3)) >> _U64(2)
    full_hi = g_hi >> _U64(2)
    base = pos - g_lo
    if full_lo < full_hi:
        _nb_blocks(dist, dst, base, full_lo, full_hi, draw, k0, k1, prm)
    tmp = np.empty(4, dtype=dst.dtype)
    first, last = g_lo >> _U64(2), (g_hi - _U64(1)) >> _U64(2)
    for j in range(2):
        b = first if j == 0 else last
        if (b >= full_lo and b < full_hi) or (j == 1 and last == first):
            continue
        _nb_blocks(dist, tmp, _U64(0) - _U64(4) * b, b, b + _U64(1), draw, k0, k1, prm)
        for lane in range(4):
            g = _U64(4) * b + _U64(lane)
            if g >= g_lo and g < g_hi:
                dst[g + base] = tmp[lane]


def _nb_f16_bits(x):
    """float32 -> IEEE half bits, round to nearest even (subnormals, overflow to inf), as ``.to(float16)``."""
    bb = _f2i(x)
    sign = _U32(_U32(bb >> _U32(16)) & _U32(0x8000))
    a = _U32(bb & _U32(0x7FFFFFFF))
    hn = _U32(_U32(_U32(a + _U32(0xFFF) + _U32(_U32(a >> _U32(13)) & _U32(1))) >> _U32(13)) - _U32(0x1C000))
    hn = _U32(0x7C00) if a >= _U32(0x477FF000) else hn
    shift = _U32(_U32(126) - _U32(a >> _U32(23)))
    sh = shift if shift < _U32(31) else _U32(31)
    sh = sh if sh > _U32(0) else _U32(1)  # shifts stay in [1, 31] even in lanes whose result is not selected
    mant = _U32(_U32(a & _U32(0x7FFFFF)) | _U32(0x800000))
    m = _U32(mant >> sh)
    rem = _U32(mant & _U32(_U32(_U32(1) << sh) - _U32(1)))
    half = _U32(_U32(1) << _U32(sh - _U32(1)))
    up = _U32(_U32(rem > half) | _U32(_U32(rem == half) & _U32(m & _U32(1))))
    hs = _U32(m + up) if shift < _U32(25) else _U32(0)
    h = hn if a >= _U32(0x38800000) else hs
    return np.uint16(sign | h)


def _nb_bf16_bits(x):
    bb = _f2i(x)
    return np.uint16(_U32(bb + _U32(0x7FFF) + _U32(_U32(bb >> _U32(16)) & _U32(1))) >> _U32(16))


def _nb_generate(dist, kind, out32, out16, out64, outbits, iprm, prm):
    """Elements ``g0 .. g0 + n - 1`` into the output of ``kind`` (0 f32, 1 f16, 2 bf16, 3 f64; bits: outbits).
    ``iprm`` = (g0, n, draw, k0, k1) as uint64, ``prm`` the float32 parameters (arrays: cheaper to pass)."""
    g0, n, draw, k0, k1 = iprm[0], iprm[1], iprm[2], iprm[3], iprm[4]
    first = g0 >> _U64(2)
    nblocks = ((g0 + n - _U64(1)) >> _U64(2)) - first + _U64(1)
    chunk = _U64(_BLOCKS_PER_CHUNK)
    tasks = (nblocks + chunk - _U64(1)) // chunk
    for t in _prange(tasks):
        b_lo = first + _U64(t) * chunk
        g_lo = max(b_lo << _U64(2), g0)
        g_hi = min((b_lo + chunk) << _U64(2), g0 + n)
        pos = g_lo - g0
        if dist == 3:
            _nb_run(dist, outbits, pos, g_lo, g_hi, draw, k0, k1, prm)
        elif kind == 0:
            _nb_run(dist, out32, pos, g_lo, g_hi, draw, k0, k1, prm)
        else:
            buf = np.empty(4 * _BLOCKS_PER_CHUNK, dtype=np.float32)
            _nb_run(dist, buf, _U64(0), g_lo, g_hi, draw, k0, k1, prm)
            _nb_convert(kind, buf, g_hi - g_lo, out16, out64, pos)


def _nb_convert(kind, buf, cnt, out16, out64, pos):
    """``buf[:cnt]`` (float32) into ``out16`` (kind 1: float16 bits, 2: bfloat16 bits) or ``out64`` (3) from
    ``pos`` on. (Slices and a plain ``range`` let LLVM vectorize the loops.)"""
    n, p = np.int64(cnt), np.int64(pos)
    src = buf[:n]
    if kind == 1:
        dst16 = out16[p:p + n]
        for j in range(src.size):
            dst16[j] = _nb_f16_bits(src[j])
    elif kind == 2:
        dst16 = out16[p:p + n]
        for j in range(src.size):
            dst16[j] = _nb_bf16_bits(src[j])
    else:
        dst64 = out64[p:p + n]
        for j in range(src.size):
            dst64[j] = np.float64(src[j])


_numba_lock = threading.Lock()


def _numba_kernel():
    """Compile (or load from numba's cache) the kernel, once per process."""
    if "kernel" in _numba_state:
        return _numba_state["kernel"]
    with _numba_lock:
        if "kernel" in _numba_state:
            return _numba_state["kernel"]
        import numba
        from llvmlite import ir
        from numba.core import types
        from numba.extending import intrinsic

        @intrinsic
        def f2i(typingctx, x):
            def codegen(context, builder, signature, args):
                return builder.bitcast(args[0], ir.IntType(32))
            return types.uint32(types.float32), codegen

        @intrinsic
        def i2f(typingctx, x):
            def codegen(context, builder, signature, args):
                return builder.bitcast(args[0], ir.FloatType())
            return types.float32(types.uint32), codegen

        g = globals()
        g["_f2i"], g["_i2f"], g["_prange"] = f2i, i2f, numba.prange
        for name in ("_nb_philox", "_nb_ln", "_nb_sincos", "_nb_normal_pair", "_nb_uniform_one", "_nb_ndtri_lower",
                     "_nb_truncated_one", "_nb_f16_bits", "_nb_bf16_bits"):
            g[name] = numba.njit(inline="always", error_model="numpy")(g[name])
        for name in ("_nb_blocks", "_nb_run", "_nb_convert"):
            g[name] = numba.njit(cache=True, nogil=True, error_model="numpy")(g[name])
        kernel = numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")(_nb_generate)
        # numba's OpenMP layer starts its threads with omp_set_num_threads(NUMBA_NUM_THREADS), which is also
        # torch's thread count: start them now and give torch its setting back
        torch_threads = torch.get_num_threads()
        numba.get_num_threads()
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)
        _numba_state["kernel"] = kernel
        _numba_state["numba"] = numba
        _numba_state["empty"] = (np.empty(0, np.float32), np.empty(0, np.uint16), np.empty(0, np.float64),
                                 np.empty(0, np.uint32))
        return kernel


def _generate_numba(dist: str, out: torch.Tensor, key: Key, params, offset: int, draw: int) -> None:
    kernel = _numba_kernel()
    numba = _numba_state["numba"]
    out32, out16, out64, outbits = _numba_state["empty"]
    if dist == "bits":
        outbits = np.empty(out.numel(), dtype=np.uint32)
        kind = 0
    else:
        kind = _KIND[out.dtype]
        flat = out.detach()
        if kind == 0:
            out32 = flat.numpy()
        elif kind == 3:
            out64 = flat.numpy()
        else:
            out16 = flat.view(torch.int16).numpy().view(np.uint16)
    prm = np.array(tuple(params) + (0.0,) * (8 - len(params)), dtype=np.float32)
    iprm = np.array((offset, out.numel(), draw, key[0], key[1]), dtype=np.uint64)
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    previous = numba.get_num_threads()
    if previous != threads:
        numba.set_num_threads(threads)
    try:
        kernel(_DIST[dist], kind, out32, out16, out64, outbits, iprm, prm)
    finally:
        if previous != threads:
            numba.set_num_threads(previous)
    if dist == "bits":
        out.copy_(torch.from_numpy(outbits.astype(np.int64)))
