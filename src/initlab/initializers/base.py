"""The base class every initializer derives from, and the argument checks they share."""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from initlab import sampling
from initlab.gains import resolve_gain
from initlab.shapes import LAYOUTS, Fans, check_positive_int, fans, shape_of
from initlab.validate import _is_int, check_choice, check_flag

_NO_DEFAULT = inspect.Parameter.empty


class Initializer:
    """A small immutable object that fills weights.

    Subclasses set ``name`` (the registry name), validate their arguments in ``__init__`` (raising a
    ``ValueError`` that names the argument), call ``self._record(...)`` with the arguments exactly as the
    user gave them (for ``repr``/``to_config``), and implement ``_draw(shape, dtype, device, generator)``
    returning a new tensor of ``shape`` in the sampling precision ``dtype``.

    Public methods:

    * ``init_(tensor, *, generator=None)`` fills ``tensor`` in place (no autograd) and returns it;
    * ``sample(shape, *, dtype=torch.float32, device=None, generator=None)`` returns a new tensor;
    * ``array(shape, *, rng=None, dtype=numpy.float32)`` returns a numpy array;
    * ``obj(x)``: ``init_`` for a tensor, fills a numpy array in place, ``sample`` for a shape.

    Values are drawn in float32 (float64 for float64 targets) and then cast, so fp16/bf16 targets get the
    same distribution. Meta and empty tensors are left alone; integer, bool and complex tensors raise
    ``TypeError``. Every check runs before the target is touched.
    """

    name: ClassVar[str] = ""
    formula: ClassVar[str] = ""  # the formula, stated once: the registry, `initlab list` and docs read it
    reference: ClassVar[str] = ""
    _frozen: bool = False

    # -- construction and identity -------------------------------------------------------------------
    def _record(self, **args: Any) -> None:
        if "_args" not in self.__dict__:  # the most derived class records first and wins
            gain = args.get("gain")
            if gain is not None and not isinstance(gain, (str, int, float)):  # a module or function
                args["gain"] = resolve_gain(gain)  # recorded as its number, so repr/config round-trip
            object.__setattr__(self, "_args", dict(args))

    def __setattr__(self, key: str, value: Any) -> None:
        if self._frozen:
            raise AttributeError(f"{type(self).__name__} is immutable; use .replace({key}=...)")
        object.__setattr__(self, key, value)

    def _freeze(self) -> None:
        object.__setattr__(self, "_frozen", True)

    @classmethod
    def _defaults(cls) -> dict[str, Any]:
        sig = inspect.signature(cls.__init__)
        return {p.name: p.default for p in list(sig.parameters.values())[1:]
                if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}

    def to_config(self) -> dict[str, Any]:
        """``{"name": <registry name>, **arguments}``; ``initlab.get(config)`` rebuilds the initializer."""
        return {"name": self.name, **{k: _plain(v) for k, v in self._args.items()}}

    def replace(self, **changes: Any) -> Initializer:
        """A copy with some constructor arguments changed (validated again)."""
        unknown = set(changes) - set(self._defaults())
        if unknown:
            raise ValueError(f"{type(self).__name__} has no argument(s) {sorted(unknown)}; "
                             f"accepted: {sorted(self._defaults())}")
        return type(self)(**{**self._args, **changes})

    def __repr__(self) -> str:
        defaults = self._defaults()
        shown = [f"{k}={_plain(v)!r}" for k, v in self._args.items()
                 if defaults.get(k, _NO_DEFAULT) is _NO_DEFAULT or not _same(defaults[k], v)]
        return f"{type(self).__name__}({', '.join(shown)})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_config() == other.to_config()  # type: ignore[union-attr]

    def __hash__(self) -> int:  # equal objects (Normal(2) == Normal(2.0)) must hash equal
        return hash((type(self), self.name))

    # -- properties that tools (init_model, reports) read --------------------------------------------
    @property
    def symmetric(self) -> bool:
        """True when every unit gets identical incoming weights (a constant): symmetry is never broken."""
        return False

    def fans_of(self, shape: Any) -> Fans | None:
        """The fans this initializer uses for ``shape`` (None when it uses none)."""
        return None

    def expected_std(self, shape: Any) -> float | None:
        """The standard deviation of the values produced for a weight of ``shape``."""
        return None

    # -- drawing -------------------------------------------------------------------------------------
    def _check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` when ``shape`` is not one this initializer can fill."""

    def _draw(self, shape: tuple[int, ...], dtype: torch.dtype, device: Any,
              generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def _reach(self, shape: tuple[int, ...]) -> sampling.Reach | None:
        """How far the values for ``shape`` can go (:class:`initlab.sampling.Reach`), from the arguments alone;
        every initializer of the registry says (a test checks it); None skips the dtype-range check."""
        return None

    def _given(self, keys: tuple[str, ...]) -> str:
        """``"std=1000000.0, mean=5.0"``: the arguments among ``keys`` the user set to something else than the
        default (all of those recorded, if none was), as the user wrote them: what an error message names.
        Keys the initializer did not record (a preset's derived ``scale``) show the attribute's value."""
        defaults = self._defaults()
        recorded = [k for k in keys if k in self._args]
        changed = [k for k in recorded if not _same(defaults.get(k, _NO_DEFAULT), self._args[k])]
        shown = [f"{k}={self._args[k]!r}" for k in changed or recorded]
        return ", ".join(shown or [f"{k}={getattr(self, k, '?')!r}" for k in keys])

    def _finish(self, values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Cast the sampled values to the target dtype (subclasses keep bounds exact here)."""
        return values.to(dtype)

    def sample(self, shape: Any, *, dtype: torch.dtype = torch.float32, device: Any = None,
               generator: torch.Generator | None = None, rng: str | None = None, seed: int | None = None,
               key: str | tuple[int, int] | None = None, offset: int = 0) -> torch.Tensor:
        """A new tensor of ``shape`` and ``dtype`` filled by this initializer.

        ``rng=None`` or ``"torch"`` draws from torch's stream (``generator=``, or the global one);
        ``rng="philox"`` from the counter-based generator of :mod:`initlab.rng`, where element ``i`` is a
        function of (``seed``, ``key``, ``offset + i``) only: ``key`` is the parameter's qualified name
        (hashed with ``seed``, default 0) or an explicit ``(k0, k1)`` Philox key.

        >>> from initlab import get
        >>> w = get("he_normal").sample((4, 4), rng="philox", seed=0, key="fc.weight")
        >>> torch.equal(w, get("he_normal").sample((4, 4), rng="philox", seed=0, key="fc.weight"))
        True
        """
        dims = shape_of(shape)
        _check_float_dtype(dtype, "dtype")
        self._check_shape(dims)
        source = random_source(generator, rng, seed, key, offset)
        if device is not None:
            try:
                torch.device(device)
            except (RuntimeError, TypeError) as exc:
                raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0'; got {device!r}") from exc
        return self._values(dims, dtype, device, source)

    def _values(self, dims: tuple[int, ...], dtype: torch.dtype, device: Any,
                generator: torch.Generator | None) -> torch.Tensor:
        """Draw (in the sampling precision), finish (cast) and place; the checks are the caller's."""
        if math.prod(dims) == 0:
            return torch.empty(dims, dtype=dtype, device=device)
        # the values must be finite in the target dtype: checked on the arguments, before anything is drawn
        sampling.check_reach(self._reach(dims), dtype, sampling.draw_precision(dtype, generator), self._given)
        values = self._finish(self._draw(dims, sampling.compute_dtype(dtype), device, generator), dtype)
        return values.to(torch.device(device) if device is not None else values.device)

    def init_(self, tensor: torch.Tensor, *, generator: torch.Generator | None = None, rng: str | None = None,
              seed: int | None = None, key: str | tuple[int, int] | None = None, offset: int = 0) -> torch.Tensor:
        """Fill ``tensor`` in place and return it. Meta and empty tensors are returned unchanged.
        ``rng``, ``seed``, ``key``, ``offset``: as in :meth:`sample`."""
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"tensor must be a torch.Tensor; got {type(tensor).__name__}")
        _check_float_dtype(tensor.dtype, "tensor")
        dims = tuple(tensor.shape)
        self._check_shape(dims)
        source = random_source(generator, rng, seed, key, offset)
        if tensor.is_meta or tensor.numel() == 0:
            return tensor
        _check_writable(tensor)  # before any draw: a failed write must not have moved the generator
        values = self._values(dims, tensor.dtype, tensor.device, source)
        with torch.no_grad():
            tensor.copy_(values)
        return tensor

    def array(self, shape: Any, *, rng: int | np.random.Generator | None = None,
              dtype: Any = np.float32) -> np.ndarray:
        """A numpy array of ``shape`` (for any framework). ``rng``: a seed or a numpy Generator."""
        return self._array(shape, sampling.generator_from(rng), dtype)

    def _array(self, shape: Any, generator: torch.Generator | None, dtype: Any) -> np.ndarray:
        np_dtype = np.dtype(dtype)
        if np_dtype.kind != "f":
            raise TypeError(f"dtype must be a floating-point numpy dtype; got {np_dtype}")
        # float16 goes through torch's float16 path so that bounds survive the cast (clamp_cast)
        torch_dtype = {np.dtype(np.float64): torch.float64, np.dtype(np.float16): torch.float16}.get(
            np_dtype, torch.float32)
        values = self.sample(shape, dtype=torch_dtype, generator=generator)
        return values.numpy().astype(np_dtype, copy=False)

    def __call__(self, target: Any, *, generator: torch.Generator | None = None, rng: Any = None) -> Any:
        if generator is None:
            generator = sampling.generator_from(rng)
        elif rng is not None:
            raise ValueError("pass generator= or rng=, not both")
        if isinstance(target, torch.Tensor):
            return self.init_(target, generator=generator)
        if isinstance(target, np.ndarray):
            target[...] = self._array(target.shape, generator, target.dtype)
            return target
        return self.sample(target, generator=generator)


class FanBased(Initializer):
    """An initializer whose scale depends on the fans (layout, groups, chunks, axes)."""

    def _set_fan_options(self, layout: str, groups: int, chunks: int, in_axis: Any, out_axis: Any,
                         torch_compatible: bool) -> None:
        check_choice(layout, "layout", LAYOUTS)
        check_positive_int(groups, "groups")
        check_positive_int(chunks, "chunks")
        in_axis, out_axis = _check_axes(in_axis, "in_axis"), _check_axes(out_axis, "out_axis")
        if (in_axis is None) != (out_axis is None):
            raise ValueError("in_axis and out_axis must be given together")
        check_flag(torch_compatible, "torch_compatible")
        self._fan_options = dict(layout=layout, groups=groups, chunks=chunks, in_axis=in_axis,
                                 out_axis=out_axis, torch_compatible=torch_compatible)

    def fans_of(self, shape: Any) -> Fans:
        return fans(shape, **self._fan_options)

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        self.fans_of(shape)


def _check_axes(value: Any, name: str) -> int | tuple[int, ...] | None:
    """None, an int, or a sequence of distinct ints (axes of the weight; their range is checked against the shape
    when it is known). An empty sequence is JAX's convention for "no axis": the fan is the receptive field alone
    (a depthwise kernel's fan_in)."""
    accepted = "None, an int or a sequence of distinct ints (axes of the weight)"
    if value is None:
        return None
    if _is_int(value):
        return int(value)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not all(map(_is_int, value)):
        raise TypeError(f"{name} must be {accepted}; got {value!r} ({type(value).__name__})")
    if len(set(map(int, value))) != len(value):
        raise ValueError(f"{name} must be {accepted}; got {value!r}")
    return tuple(int(a) for a in value)


RNG_KINDS = ("torch", "philox")


def random_source(generator: torch.Generator | None, rng: str | None, seed: int | None,
                  key: str | tuple[int, int] | None, offset: int) -> Any:
    """What the draws of one ``sample``/``init_`` call come from: ``generator`` (torch's stream) for
    ``rng=None``/``"torch"``, a fresh :class:`initlab.rng.Philox` stream for ``rng="philox"``."""
    if generator is not None and not isinstance(generator, torch.Generator):  # checked even when nothing draws
        raise TypeError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
    if rng is not None:
        check_choice(rng, "rng", RNG_KINDS)
    if rng != "philox":
        if seed is not None or key is not None or offset != 0:
            raise ValueError("seed=, key= and offset= select a counter-based stream: pass rng='philox' with them")
        return generator
    if generator is not None:
        raise ValueError("generator= is torch's sequential stream; with rng='philox' pass seed= and key= instead")
    from initlab import rng as philox

    if key is None or isinstance(key, str):
        return philox.Philox.from_seed(0 if seed is None else seed, key or "", offset=offset)
    if seed is not None:
        raise ValueError("seed= goes with a parameter-name key (key='layer.weight'); a (k0, k1) key stands alone")
    return philox.Philox(key, offset=offset)


def _check_writable(tensor: torch.Tensor) -> None:
    """``tensor`` can be filled in place: not an inference tensor (outside inference mode), and no two of its
    elements share memory (an ``expand``-ed view)."""
    if tensor.is_inference() and not torch.is_inference_mode_enabled():
        raise ValueError("tensor is an inference tensor (made under torch.inference_mode()): it cannot be filled "
                         "in place outside inference mode; clone it first")
    if tensor.dim() and any(st == 0 and n > 1 for st, n in zip(tensor.stride(), tensor.shape)):
        raise ValueError(f"tensor shares memory between its elements (an expanded view, strides {tensor.stride()}): "
                         "fill the tensor it was expanded from, or a .clone()")


def _check_float_dtype(dtype: torch.dtype, name: str = "dtype") -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        what = f"{name} dtype" if name == "tensor" else name
        raise TypeError(f"{what} must be a floating-point dtype (float16, bfloat16, float32, float64): initlab "
                        f"initializers fill floating-point tensors; got {dtype}")


def _plain(value: Any) -> Any:
    """Tuples become lists so configs are JSON-friendly; numbers stay numbers."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _same(a: Any, b: Any) -> bool:
    return _plain(a) == _plain(b)
