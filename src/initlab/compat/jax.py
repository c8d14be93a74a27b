"""``jax.nn.initializers`` on initlab's catalogue: same names, arguments and defaults, callable both ways.

Every function here returns an initlab ``Initializer`` (``.sample``, ``.init_``, ``.array``, ``repr`` and
config as before) that is ALSO a JAX initializer: ``init(key, shape, dtype)`` returns a ``jax.Array`` drawn
with ``jax.random`` from ``key``, so it can be a Flax ``kernel_init``. :func:`initializer` turns any initlab
initializer or spec into such a twin; :func:`for_activation` is what JAX lacks: He's rule for any
activation, with initlab's quadrature gain.

Conventions. JAX lays kernels out as ``(*k, in, out)`` (``in_axis=-2, out_axis=-1``); ``variance_scaling``
with ``"truncated_normal"`` corrects the variance (``/ 0.8796...``); ``truncated_normal(stddev, lower, upper)``
takes its bounds in std units and does not; ``uniform(scale)`` is ``U[0, scale)``; ``delta_orthogonal``
puts the orthogonal matrix at ``(k - 1) // 2``. ``groups=G`` (an initlab addition) reads a grouped
convolution's kernel ``(*k, in/G, out)`` (``feature_group_count=G``): fan_in ``in/G * rf`` as JAX,
fan_out ``out/G * rf`` where JAX counts ``out * rf``. jax is imported only when a twin is called with a key.

>>> import jax
>>> w = he_normal()(jax.random.key(0), (256, 128))
>>> w.shape, w.dtype.name
((256, 128), 'float32')
>>> for_activation("gelu")  # He with the gain of GELU: var = 2.3517 / fan_in
VarianceScaling(scale=2.351715614073373, layout='jax', in_axis=-2, out_axis=-1)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from initlab.compat._recipes import Recipe, activation_scale, host_sample, recipe, with_layout
from initlab.initializers import Constant, DeltaOrthogonal, Initializer, Normal, Orthogonal, TruncatedNormal, Uniform
from initlab.initializers import VarianceScaling as _VarianceScaling
from initlab.initializers import get as _get
from initlab.shapes import shape_of

__all__ = [
    "constant", "zeros", "ones", "normal", "uniform", "truncated_normal", "variance_scaling", "glorot_normal",
    "glorot_uniform", "he_normal", "he_uniform", "lecun_normal", "lecun_uniform", "xavier_normal",
    "xavier_uniform", "kaiming_normal", "kaiming_uniform", "orthogonal", "delta_orthogonal", "initializer",
    "for_activation", "JaxCallable", "key_seed",
]

Axes = int | Sequence[int]


class JaxCallable:
    """Mixed into an initlab initializer class: ``obj(key, shape, dtype=None)`` is JAX's initializer call
    (``jax.nn.initializers.Initializer``); ``obj(target)`` with one argument stays initlab's (a tensor, an
    array or a shape, drawn by torch). The twin equals, hashes and reprs as the plain initlab initializer.

    The draw: the initializer's numbers (std from its fans and gain, bounds, ...) with ``jax.random`` and
    ``key``; jit-able, as JAX's own. Initializers without a JAX recipe (``sparse``, ``identity``, ...) are
    drawn by initlab's sampler on the host from a torch generator seeded with the key's bits
    (:func:`key_seed`, through ``jax.pure_callback``): the same key gives the same values, under ``jit`` too.
    """

    _initlab_class: type[Initializer]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) >= 2 or "shape" in kwargs or "key" in kwargs:
            return _draw(self, *args, **kwargs)
        return super().__call__(*args, **kwargs)  # type: ignore[misc]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Initializer):
            return NotImplemented
        same = _plain_class(type(self)) is _plain_class(type(other))
        return same and self.to_config() == other.to_config()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((_plain_class(type(self)), self.name))  # type: ignore[attr-defined]

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _from_config, (self.to_config(),)  # type: ignore[attr-defined]


def _plain_class(cls: type) -> type:
    return getattr(cls, "_initlab_class", cls)


@functools.cache
def _twin_class(cls: type[Initializer]) -> type[Initializer]:
    attrs = {"__module__": __name__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__, "_initlab_class": cls}
    return type(cls.__name__, (JaxCallable, cls), attrs)


def _twin(cls: type[Initializer], *args: Any, **kwargs: Any) -> Initializer:
    return _twin_class(cls)(*args, **kwargs)


def initializer(spec: Any = "he_normal") -> Initializer:
    """Any initlab initializer or spec (``"orthogonal"``, ``"he_normal(gain='tanh')"``, a config) as a JAX
    initializer that is still the initlab one. Where its layout is torch's (the default) it reads JAX's
    ``(*k, in, out)`` kernels instead: ``initializer("he_normal")`` is ``HeNormal(layout='jax')``; explicit
    ``in_axis``/``out_axis`` and other layouts are kept. A twin (every preset here) is returned as is.

    >>> import jax
    >>> ini = initializer("he_uniform(gain='tanh')")
    >>> ini
    HeUniform(gain='tanh', layout='jax')
    >>> float(abs(ini(jax.random.key(1), (300, 20))).max()) <= 5 / 3 * (3 / 300) ** 0.5
    True
    """
    if isinstance(spec, JaxCallable):
        return spec
    return _as_twin(with_layout(_get(spec), "jax"))


def _as_twin(ini: Initializer) -> Initializer:
    return _twin(type(ini), **ini._args)


def _from_config(config: dict[str, Any]) -> Initializer:
    return _as_twin(_get(config))


def for_activation(activation: str = "relu", param: float | None = None, *, mode: str = "fan_in",
                   distribution: str = "truncated_normal", in_axis: Axes = -2, out_axis: Axes = -1,
                   groups: int = 1) -> Initializer:
    """``var = gain(activation)^2 / n(mode)`` with initlab's quadrature gain ``1 / sqrt(E[f(z)^2])``
    (:mod:`initlab.gains`): He et al. 2015's rule for any activation (``"gelu"``, ``"silu"``, ``"mish"``,
    ``"elu"``, ...), where ``jax.nn.initializers.he_normal`` assumes ReLU's gain ``sqrt(2)``. ``param``:
    leaky_relu's slope, elu's alpha, ...; ``groups``: see the module docstring.

    >>> round(for_activation("relu").scale, 12), round(for_activation("tanh").scale, 4)
    (2.0, 2.5362)
    """
    return variance_scaling(activation_scale(activation, param), mode, distribution, in_axis, out_axis,
                            groups=groups)


# --- jax.nn.initializers' names ---------------------------------------------------------------------


def constant(value: float) -> Initializer:
    return _twin(Constant, value)


zeros = _twin(Constant, 0.0)
ones = _twin(Constant, 1.0)


def normal(stddev: float = 1e-2) -> Initializer:
    return _twin(Normal, std=stddev)


def uniform(scale: float = 1e-2) -> Initializer:
    return _twin(Uniform, range=(0.0, scale))


def truncated_normal(stddev: float = 1e-2, lower: float = -2.0, upper: float = 2.0) -> Initializer:
    return _twin(TruncatedNormal, std=stddev, bounds=(lower, upper))


def variance_scaling(scale: float, mode: str, distribution: str, in_axis: Axes = -2,
                     out_axis: Axes = -1, *, groups: int = 1) -> Initializer:
    fan = {} if groups == 1 else {"groups": groups}
    return _twin(_VarianceScaling, scale, mode, distribution, layout="jax", in_axis=in_axis, out_axis=out_axis,
                 **fan)


def glorot_normal(in_axis: Axes = -2, out_axis: Axes = -1, *, groups: int = 1) -> Initializer:
    return variance_scaling(1.0, "fan_avg", "truncated_normal", in_axis, out_axis, groups=groups)


def glorot_uniform(in_axis: Axes = -2, out_axis: Axes = -1, *, groups: int = 1) -> Initializer:
    return variance_scaling(1.0, "fan_avg", "uniform", in_axis, out_axis, groups=groups)


def he_normal(in_axis: Axes = -2, out_axis: Axes = -1, *, groups: int = 1) -> Initializer:
    return variance_scaling(2.0, "fan_in", "truncated_normal", in_axis, out_axis, groups=groups)


def he_uniform(in_axis: Axes = -2, out_axis: Axes = -1, *, groups: int = 1) -> Initializer:
    return variance_scaling(2.0, "fan_in", "uniform", in_axis, out_axis, groups=groups)


def lecun_normal(in_axis: Axes = -2, out_axis: Axes = -1, *, groups: int = 1) -> Initializer:
    return variance_scaling(1.0, "fan_in", "truncated_normal", in_axis, out_axis, groups=groups)


def lecun_uniform(in_axis: Axes = -2, out_axis: Axes = -1, *, groups: int = 1) -> Initializer:
    return variance_scaling(1.0, "fan_in", "uniform", in_axis, out_axis, groups=groups)


xavier_normal, xavier_uniform = glorot_normal, glorot_uniform
kaiming_normal, kaiming_uniform = he_normal, he_uniform


def orthogonal(scale: float = 1.0, column_axis: int = -1) -> Initializer:
    if column_axis not in (-1, 0):
        raise ValueError(f"column_axis must be -1 (JAX's default) or 0; got {column_axis!r}")
    return _twin(Orthogonal, gain=scale, layout="jax" if column_axis == -1 else "torch")


def delta_orthogonal(scale: float = 1.0, column_axis: int = -1) -> Initializer:
    if column_axis != -1:
        raise ValueError(f"column_axis must be -1 (JAX's default); got {column_axis!r}")
    return _twin(DeltaOrthogonal, gain=scale, center="jax", layout="jax")


# --- the draw ---------------------------------------------------------------------------------------

def _draw(ini: Initializer, key: Any, shape: Any, dtype: Any = None, out_sharding: Any = None) -> Any:
    """JAX's ``init(key, shape, dtype, out_sharding)``: every check before anything is drawn."""
    import jax.numpy as jnp

    dims = shape_of(shape)
    jdtype = _float_dtype(dtype)
    key = _check_key(key)
    ini._check_shape(dims)
    if math.prod(dims) == 0:
        return jnp.zeros(dims, jdtype)
    rec = recipe(ini, dims)
    if rec is not None:
        return _native(rec, key, dims, jdtype, out_sharding)
    if out_sharding is not None:
        raise ValueError(f"out_sharding is not supported for {ini!r}, which JAX cannot draw itself; "
                         "draw it unsharded and place it with jax.device_put")
    return _host(ini, key, dims, jdtype)


def _float_dtype(dtype: Any) -> Any:
    import jax.numpy as jnp

    accepted = "a floating-point dtype (jnp.float32, jnp.bfloat16, jnp.float16, jnp.float64) or None"
    if dtype is None:
        return jnp.asarray(0.0).dtype  # JAX's default float: float32, float64 under jax_enable_x64
    try:
        dt = jnp.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be {accepted}; got {dtype!r}") from None
    if not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(f"dtype must be {accepted}: initlab initializers draw real weights; got {dt}")
    return dt


def _check_key(key: Any) -> Any:
    import jax
    import jax.numpy as jnp

    ok = isinstance(key, jax.Array) and (jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
                                         or (key.dtype == jnp.uint32 and key.ndim == 1))
    if not ok:
        raise TypeError(f"key must be a JAX PRNG key (jax.random.key(0) or jax.random.PRNGKey(0)); got "
                        f"{key!r} ({type(key).__name__})")
    return key


def _native(rec: Recipe, key: Any, dims: tuple[int, ...], dtype: Any, out_sharding: Any) -> Any:
    import jax
    import jax.numpy as jnp

    kw = {} if out_sharding is None else {"out_sharding": out_sharding}
    if rec.kind == "constant":
        return jnp.full(dims, rec.mean, dtype, **kw)
    if rec.kind == "uniform":
        return jax.random.uniform(key, dims, dtype, rec.low, rec.high, **kw)
    if rec.kind == "orthogonal":
        return jax.nn.initializers.orthogonal(rec.gain, rec.column_axis)(key, dims, dtype, **kw)
    if rec.kind == "delta_orthogonal":
        return jax.nn.initializers.delta_orthogonal(rec.gain)(key, dims, dtype, **kw)
    if rec.kind == "normal":
        unit = jax.random.normal(key, dims, dtype, **kw)
    else:
        unit = jax.random.truncated_normal(key, rec.low, rec.high, dims, dtype, **kw)
    return unit * rec.std if rec.mean == 0 else unit * rec.std + rec.mean


def key_seed(bits: Any) -> int:
    """The torch seed of a key's bits (``jax.random.key_data``): ``numpy.random.SeedSequence`` mixes every
    word into 32 bits (torch's CPU generator keeps only the low 32 bits of a seed)."""
    words = [int(w) for w in np.asarray(bits, dtype=np.uint32).ravel()]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def _host(ini: Initializer, key: Any, dims: tuple[int, ...], dtype: Any) -> Any:
    """initlab's own sampler on the host, seeded with the key's bits: a pure function of ``key``."""
    import jax
    import jax.numpy as jnp

    bits = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    np_dtype = np.dtype(dtype)

    def draw(raw: np.ndarray) -> np.ndarray:
        return host_sample(ini, dims, np_dtype.name, key_seed(raw)).astype(np_dtype)

    return jax.pure_callback(draw, jax.ShapeDtypeStruct(dims, dtype), bits)
