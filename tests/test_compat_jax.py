"""initlab.compat.jax as JAX initializers: init(key, shape, dtype) drawn with jax.random, and what JAX lacks
(the quadrature gain for any activation, grouped-convolution fans).

Flax is not installed (its wheel pulls orbax-checkpoint, tensorstore, protobuf, uvloop, ...): the tests use
JAX's own initializer protocol, which is how flax.linen.Dense and nnx.Linear call a kernel_init
(``kernel_init(key, (in, out), param_dtype)``), under jit and with split keys.
"""

import math
import os
import pickle
import subprocess
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import initlab  # noqa: E402
from initlab.compat import jax as cjax  # noqa: E402
from initlab.gains import gain  # noqa: E402
from initlab.initializers import Sparse, VarianceScaling  # noqa: E402

jinit = jax.nn.initializers
KEY = jax.random.key(0)

# std of n iid draws has relative standard error ~ sqrt((kurtosis - 1) / (4 n)) <= 1 / sqrt(2 n) for the normal,
# uniform and truncated normal (kurtosis <= 3); at n = 512 * 512 that is 0.14%, so 3 SE is 0.42%: RTOL_STD.
RTOL_STD = 0.005


def rel_std(w, target: float) -> float:
    return float(jnp.std(w)) / target - 1.0


# --- the presets are JAX initializers drawn with JAX's own RNG ----------------------------------------

PAIRS = [
    (cjax.he_normal(), jinit.he_normal()), (cjax.glorot_uniform(), jinit.glorot_uniform()),
    (cjax.lecun_normal(), jinit.lecun_normal()),
    (cjax.variance_scaling(0.7, "fan_out", "normal"), jinit.variance_scaling(0.7, "fan_out", "normal")),
    (cjax.normal(0.3), jinit.normal(0.3)), (cjax.uniform(0.2), jinit.uniform(0.2)),
    (cjax.truncated_normal(0.5, -1.0, 3.0), jinit.truncated_normal(0.5, lower=-1.0, upper=3.0)),
    (cjax.orthogonal(1.5), jinit.orthogonal(1.5)), (cjax.orthogonal(column_axis=0), jinit.orthogonal(column_axis=0)),
    (cjax.delta_orthogonal(), jinit.delta_orthogonal()), (cjax.constant(0.25), jinit.constant(0.25)),
]


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=[f"{i}-{type(o).__name__}" for i, (o, _) in enumerate(PAIRS)])
def test_presets_draw_what_jax_draws_from_the_same_key(ours, theirs):
    shape = (3, 3, 16, 32)
    a, b = ours(KEY, shape, jnp.float32), theirs(KEY, shape, jnp.float32)
    assert isinstance(a, jax.Array) and a.shape == shape and a.dtype == jnp.float32
    # the same jax.random stream; std = sqrt(scale / n) is rounded in float64 here, in float32 by JAX: 1 ulp
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    if float(jnp.std(b)) > 0:  # negative control: another key is another draw
        assert not np.allclose(np.asarray(ours(jax.random.key(1), shape)), np.asarray(b), atol=1e-3)


def test_twins_are_still_the_initlab_initializers():
    he = cjax.he_normal()
    plain = VarianceScaling(2.0, "fan_in", "truncated_normal", layout="jax", in_axis=-2, out_axis=-1)
    assert isinstance(he, VarianceScaling) and isinstance(he, jinit.Initializer)
    assert he == plain and plain == he and hash(he) == hash(plain) and len({he, plain}) == 1
    assert he != cjax.he_uniform() and plain != cjax.he_uniform()  # equality looks at the arguments
    assert initlab.get(repr(he)) == he and initlab.get(he.to_config()) == he
    assert repr(he) == repr(plain)
    # one argument: initlab's call (torch), the same values as the plain initializer
    t = he((64, 32), generator=torch.Generator().manual_seed(0))
    assert isinstance(t, torch.Tensor)
    assert torch.equal(t, plain.sample((64, 32), generator=torch.Generator().manual_seed(0)))
    again = pickle.loads(pickle.dumps(he))
    assert again == he and isinstance(again, cjax.JaxCallable)
    assert isinstance(he.replace(scale=1.0), cjax.JaxCallable) and he.replace(scale=1.0).scale == 1.0
    assert isinstance(cjax.zeros, cjax.JaxCallable) and float(jnp.abs(cjax.zeros(KEY, (3, 3))).max()) == 0.0


def test_flax_style_usage_jit_split_keys_and_dtypes():
    init, shape = cjax.for_activation("gelu"), (32, 64)

    @jax.jit
    def make_params(key):  # what flax.linen does: one key per parameter, kernel_init(key, shape, dtype)
        k1, k2 = jax.random.split(key)
        return {"dense1": init(k1, shape, jnp.float32), "dense2": init(k2, shape, jnp.float32)}

    p = make_params(KEY)
    k1, k2 = jax.random.split(KEY)
    np.testing.assert_array_equal(np.asarray(p["dense1"]), np.asarray(init(k1, shape, jnp.float32)))
    assert not np.allclose(np.asarray(p["dense1"]), np.asarray(p["dense2"]))
    # a legacy uint32 key holds the same bits as jax.random.key(0): the same draw
    np.testing.assert_array_equal(np.asarray(init(jax.random.PRNGKey(0), shape)), np.asarray(init(KEY, shape)))
    assert init(KEY, shape).dtype == jnp.float32  # dtype None: JAX's default float
    w = init(KEY, shape, jnp.bfloat16)
    assert w.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(w)))
    assert init(KEY, shape=(0, 4)).shape == (0, 4)
    sharding = jax.sharding.NamedSharding(jax.make_mesh((1,), ("x",)), jax.sharding.PartitionSpec("x", None))
    assert init(KEY, shape, jnp.float32, out_sharding=sharding).sharding == sharding  # the protocol's 4th argument


def test_fallback_draws_on_the_host_from_the_key_bits():
    sparse = cjax.initializer("sparse(sparsity=0.2)")
    assert sparse == Sparse(sparsity=0.2, layout="jax")  # JAX's layout, since the spec named none
    shape = (40, 10)  # (in, out): each of the 10 units keeps int(0.2 * 40) = 8 inputs
    torch_state = torch.get_rng_state()
    w = sparse(KEY, shape)
    assert torch.equal(torch.get_rng_state(), torch_state)  # its own generator: torch's global one untouched
    assert sparse(KEY, shape, jnp.bfloat16).dtype == jnp.bfloat16
    assert isinstance(w, jax.Array) and ((np.asarray(w) != 0).sum(0) == 8).all()
    np.testing.assert_array_equal(np.asarray(w), np.asarray(jax.jit(sparse, static_argnums=1)(KEY, shape)))
    seed = cjax.key_seed(jax.random.key_data(KEY))
    assert len({seed, cjax.key_seed(jax.random.key_data(jax.random.key(1))), cjax.key_seed([1, 0])}) == 3
    expected = Sparse(sparsity=0.2, layout="jax").sample(shape, generator=torch.Generator().manual_seed(seed))
    np.testing.assert_array_equal(np.asarray(w), expected.numpy())
    assert not np.array_equal(np.asarray(sparse(jax.random.key(1), shape)), np.asarray(w))
    np.testing.assert_array_equal(np.asarray(cjax.initializer("identity")(KEY, (4, 4))), np.eye(4))


def test_initializer_reads_jax_layout_unless_the_spec_names_one():
    assert cjax.initializer("he_normal").expected_std((200, 50)) == pytest.approx(math.sqrt(2 / 200))
    assert initlab.get("he_normal").expected_std((200, 50)) == pytest.approx(math.sqrt(2 / 50))  # torch's (out, in)
    axes = cjax.initializer("he_normal(in_axis=-1, out_axis=-2)")  # explicit axes are kept
    assert axes.expected_std((200, 50)) == pytest.approx(math.sqrt(2 / 50))
    assert cjax.initializer("orthogonal(layout='c01b')").layout == "c01b"
    column0 = cjax.orthogonal(column_axis=0)  # a twin is returned as is, and pickles as itself
    assert cjax.initializer(column0) is column0 and pickle.loads(pickle.dumps(column0)).layout == "torch"


# --- what JAX lacks: the gain of any activation, grouped-convolution fans ------------------------------

def test_for_activation_uses_the_quadrature_gain_not_relus():
    shape = (512, 512)
    for act in ("gelu", "silu", "tanh"):
        g = gain(act, rule="variance")
        ini = cjax.for_activation(act)
        assert ini.scale == pytest.approx(g * g, rel=1e-12)
        w = ini(KEY, shape)
        assert abs(rel_std(w, g / math.sqrt(512))) < RTOL_STD
        # JAX's he_normal keeps ReLU's sqrt(2): off by 8% (gelu), 16% (silu), 11% (tanh) in std
        assert abs(rel_std(jinit.he_normal()(KEY, shape), g / math.sqrt(512))) > 0.05
    assert cjax.for_activation("tanh").scale != pytest.approx((5 / 3) ** 2)  # not torch's table value
    assert cjax.for_activation("leaky_relu", 0.2).scale == pytest.approx(2 / 1.04)
    assert cjax.for_activation("relu").scale == pytest.approx(2.0)  # ReLU: He's sqrt(2), as JAX


def test_for_activation_keeps_the_second_moment_through_the_activation():
    # h = gelu(x) @ W with x ~ N(0, 1): E[h^2] = 512 var(W) E[gelu(z)^2] = 1 for the quadrature gain,
    # E[gelu^2] * 2 = 0.85 for JAX's he_normal. 512 columns x 1024 rows of nearly independent terms:
    # the estimate is within 1% (the std of one squared Gaussian is sqrt(2) times its mean; / sqrt(5e5)).
    x = jax.random.normal(jax.random.key(7), (1024, 512))
    act = jax.nn.gelu(x, approximate=False)
    ours = float(jnp.mean((act @ cjax.for_activation("gelu")(KEY, (512, 512))) ** 2))
    theirs = float(jnp.mean((act @ jinit.he_normal()(KEY, (512, 512))) ** 2))
    assert ours == pytest.approx(1.0, abs=0.03)
    assert theirs == pytest.approx(2.0 / cjax.for_activation("gelu").scale, abs=0.03)  # 0.85: it shrinks


def test_grouped_convolution_fans():
    g, shape = 16, (5, 5, 16, 256)  # (*k, in/G, out) of conv_general_dilated(feature_group_count=16)
    fan_in, fan_out = 16 * 25, 256 // 16 * 25  # each output channel sees 16 inputs, each input feeds 16 outputs
    w = cjax.glorot_normal(groups=g)(KEY, shape)
    assert abs(rel_std(w, math.sqrt(2 / (fan_in + fan_out)))) < 0.01  # 102400 draws: SE 0.22%, 4.5 SE
    jax_std = math.sqrt(2 / (fan_in + 256 * 25))  # JAX counts fan_out = out * rf
    assert abs(rel_std(jinit.glorot_normal()(KEY, shape), jax_std)) < 0.01
    assert jax_std < 0.35 * math.sqrt(2 / (fan_in + fan_out))
    # fan_in: JAX's grouped kernel already holds in/G, so He with groups is JAX's He
    np.testing.assert_allclose(np.asarray(cjax.he_normal(groups=g)(KEY, shape)),
                               np.asarray(jinit.he_normal()(KEY, shape)), rtol=1e-6, atol=1e-7)


def test_grouped_fan_out_keeps_the_gradient_variance_of_a_grouped_conv():
    # mode='fan_out' aims at Var(dL/dx) = Var(dL/dy): each input feeds out/G channels x 9 taps
    g, c_in, c_out = 8, 32, 64
    x = jnp.zeros((4, 24, 24, c_in))
    cot = jax.random.normal(jax.random.key(3), (4, 24, 24, c_out))

    @jax.jit
    def grad_second_moment(w):
        conv = lambda inp: jax.lax.conv_general_dilated(  # noqa: E731
            inp, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=g)
        dx = jax.vjp(conv, x)[1](cot)[0]
        return jnp.mean(dx[:, 1:-1, 1:-1, :] ** 2)  # the interior: the border sees fewer taps

    shape = (3, 3, c_in // g, c_out)
    ours = cjax.for_activation("linear", mode="fan_out", distribution="normal", groups=g)(KEY, shape)
    theirs = jinit.variance_scaling(1.0, "fan_out", "normal")(KEY, shape)  # fan_out = 64 * 9: G times too many
    # 61952 interior values, each a sum of 72 products; the kernel's own sample variance (576 draws, ~6% SE)
    # dominates: 15% is 2.5 of its SE, and the control (1/8) is 7 times further away
    assert float(grad_second_moment(ours)) == pytest.approx(1.0, rel=0.15)
    assert float(grad_second_moment(theirs)) == pytest.approx(1 / g, rel=0.15)


# --- bad input -----------------------------------------------------------------------------------------

def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match=r"activation must be one of .*gelu.*got 'gelux'"):
        cjax.for_activation("gelux")
    with pytest.raises(TypeError, match=r"activation must be an activation name .*got 3 \(int\)"):
        cjax.for_activation(3)
    with pytest.raises(ValueError, match="mode must be one of"):
        cjax.for_activation("gelu", mode="fan_x")
    with pytest.raises(ValueError, match="groups must be a positive int"):
        cjax.for_activation("gelu", groups=0)
    with pytest.raises(TypeError, match="groups must be a positive int"):
        cjax.glorot_normal(groups=1.5)
    init = cjax.he_normal()
    with pytest.raises(TypeError, match=r"key must be a JAX PRNG key .*got 0 \(int\)"):
        init(0, (4, 4))
    with pytest.raises(TypeError, match=r"key must be a JAX PRNG key"):
        init(jnp.zeros(2, jnp.float32), (4, 4))
    with pytest.raises(ValueError, match="shape must not contain negative sizes"):
        init(KEY, (4, -1))
    with pytest.raises(TypeError, match="shape must contain only ints"):
        init(KEY, (4, 2.5))
    with pytest.raises(TypeError, match=r"dtype must be a floating-point dtype .*got int32"):
        init(KEY, (4, 4), jnp.int32)
    with pytest.raises(TypeError, match=r"dtype must be a floating-point dtype .*got 'nonsense'"):
        init(KEY, (4, 4), "nonsense")
    with pytest.raises(ValueError, match="groups=3 does not divide the output dimension 32"):
        cjax.glorot_normal(groups=3)(KEY, (3, 3, 4, 32))
    with pytest.raises(ValueError, match="Orthogonal needs a weight of at least 2 dims"):
        cjax.orthogonal()(KEY, (5,))
    with pytest.raises(ValueError, match="out_sharding is not supported"):
        cjax.initializer("sparse")(KEY, (4, 4), None, object())


def test_initlab_imports_without_jax_or_keras():
    code = ("import sys, initlab, initlab.compat.jax as j, initlab.compat.keras as k\n"
            "from initlab.compat.keras import *\n"
            "j.for_activation('gelu'); j.he_normal(); k.HeNormal()\n"
            "assert 'jax' not in sys.modules and 'keras' not in sys.modules, sorted(sys.modules)\n"
            "try:\n    k.Nope\nexcept AttributeError as e:\n    print(e)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(os.path.dirname(__file__), "..", "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "has no attribute 'Nope'" in out.stdout
