"""initlab.compat.keras adapters: keras.initializers.Initializer subclasses on Keras' torch backend, drawn
with keras.random, serializable; and what Keras lacks (the quadrature gain for any activation, the fans of
grouped and depthwise kernels)."""

import json
import math
import os
import random

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported: these tests run on the torch backend

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from initlab.compat import keras as ik  # noqa: E402
from initlab.gains import gain  # noqa: E402
from initlab.initializers import Sparse  # noqa: E402

# std of n iid draws has relative standard error ~ sqrt((kurtosis - 1) / (4 n)) <= 1 / sqrt(2 n) for the normal,
# uniform and truncated normal; 3 SE: 0.42% at n = 512 * 512, 0.66% at 102400, 1.3% at 25600.


def npy(x) -> np.ndarray:
    """A torch-backend tensor or keras Variable as numpy (keras.ops.convert_to_numpy warns on the torch backend)."""
    return getattr(x, "value", x).detach().cpu().numpy()


def rel_std(w, target: float) -> float:
    return float(np.std(npy(w))) / target - 1.0


def test_backend_and_types():
    assert keras.backend.backend() == "torch"
    ini = ik.ForActivation("gelu", seed=0)
    assert isinstance(ini, keras.initializers.Initializer) and isinstance(ini, ik.KerasInitializer)
    assert keras.initializers.get(ini) is ini
    assert keras.saving.get_registered_object("initlab>ForActivation") is ik.ForActivation
    assert isinstance(ini((4, 4)), torch.Tensor)  # the torch backend's tensors
    assert ini((4, 4)).dtype == torch.float32  # dtype None: keras.config.floatx()
    for dtype, expected in (("bfloat16", torch.bfloat16), ("float64", torch.float64)):
        assert ini((4, 4), dtype=dtype).dtype == expected
        assert ik.KerasInitializer("sparse", seed=0)((4, 4), dtype=dtype).dtype == expected  # the host path


# --- Keras' own RNG ------------------------------------------------------------------------------------

PAIRS = [
    (ik.HeNormal(), keras.initializers.HeNormal), (ik.GlorotUniform(), keras.initializers.GlorotUniform),
    (ik.LeCunNormal(), keras.initializers.LecunNormal), (ik.HeUniform(), keras.initializers.HeUniform),
    (ik.RandomNormal(0.1, 0.3), lambda seed: keras.initializers.RandomNormal(0.1, 0.3, seed=seed)),
    (ik.RandomUniform(-0.2, 0.5), lambda seed: keras.initializers.RandomUniform(-0.2, 0.5, seed=seed)),
    (ik.TruncatedNormal(stddev=0.2), lambda seed: keras.initializers.TruncatedNormal(stddev=0.2, seed=seed)),
    (ik.Orthogonal(1.5), lambda seed: keras.initializers.Orthogonal(1.5, seed=seed)),
]


@pytest.mark.parametrize("preset, theirs", PAIRS, ids=[f"{i}-{type(p).__name__}" for i, (p, _) in enumerate(PAIRS)])
def test_wrapped_presets_draw_what_keras_draws_for_the_same_seed(preset, theirs):
    shape = (3, 3, 16, 32)
    ours = ik.KerasInitializer(preset, seed=11)(shape, dtype="float32")
    # the same keras.random stream; std = sqrt(scale / n) rounds differently in the last bit
    np.testing.assert_allclose(npy(ours), npy(theirs(seed=11)(shape, dtype="float32")), rtol=1e-6, atol=1e-7)
    assert not np.allclose(npy(ik.KerasInitializer(preset, seed=12)(shape)), npy(ours), atol=1e-3)


def test_seeds_behave_as_keras_seeds():
    int_seeded = ik.ForActivation("silu", seed=5)
    np.testing.assert_array_equal(npy(int_seeded((8, 8))), npy(int_seeded((8, 8))))  # an int: same at every call
    unseeded = ik.ForActivation("silu")
    np.testing.assert_array_equal(npy(unseeded((8, 8))), npy(unseeded((8, 8))))
    assert not np.array_equal(npy(unseeded((8, 8))), npy(ik.ForActivation("silu")((8, 8))))
    stream = ik.ForActivation("silu", seed=keras.random.SeedGenerator(0))
    assert not np.array_equal(npy(stream((8, 8))), npy(stream((8, 8))))  # a SeedGenerator: new values each call
    state, torch_state = random.getstate(), torch.get_rng_state()
    ik.ForActivation("gelu")((4, 4))
    ik.KerasInitializer("sparse")((4, 4))
    assert random.getstate() == state and torch.equal(torch.get_rng_state(), torch_state)  # no global RNG used


def test_fallback_uses_initlabs_sampler_seeded_with_seed():
    shape = (40, 10)  # Keras' (in, out): each of the 10 units keeps int(0.25 * 40) = 10 inputs
    w = npy(ik.KerasInitializer("sparse(sparsity=0.25)", seed=7)(shape))
    expected = Sparse(sparsity=0.25, layout="keras").sample(shape, generator=torch.Generator().manual_seed(7))
    np.testing.assert_array_equal(w, expected.numpy())
    assert ((w != 0).sum(0) == 10).all()
    assert not np.array_equal(npy(ik.KerasInitializer("sparse(sparsity=0.25)", seed=8)(shape)), w)


# --- what Keras lacks: any activation's gain, grouped and depthwise fans --------------------------------

def test_dense_kernel_for_any_activation():
    for act in ("silu", "gelu"):
        layer = keras.layers.Dense(512, kernel_initializer=ik.ForActivation(act, seed=0))
        layer.build((None, 512))
        target = gain(act, rule="variance") / math.sqrt(512)
        assert abs(rel_std(layer.kernel, target)) < 0.005  # 3 SE at 262144 draws
        keras_he = keras.layers.Dense(512, kernel_initializer=keras.initializers.HeNormal(seed=0))
        keras_he.build((None, 512))
        assert abs(rel_std(keras_he.kernel, target)) > 0.07  # ReLU's sqrt(2): 16% (silu), 8% (gelu) off


def test_grouped_conv2d_kernel():
    g, c = 16, 256  # Conv2D(groups=16): kernel (5, 5, 256/16, 256); each input feeds 256/16 outputs x 25 taps
    layer = keras.layers.Conv2D(c, 5, groups=g, kernel_initializer=ik.ForActivation("relu", mode="fan_out",
                                                                                      groups=g, seed=0))
    layer.build((None, 16, 16, c))
    assert tuple(layer.kernel.shape) == (5, 5, 16, 256)
    assert abs(rel_std(layer.kernel, math.sqrt(2 / (c // g * 25)))) < 0.01  # 102400 draws: 1% is 4.5 SE
    theirs = keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal", seed=0)((5, 5, 16, 256))
    assert abs(rel_std(theirs, math.sqrt(2 / (c * 25)))) < 0.01  # Keras: fan_out = out * rf, 4x smaller std


def test_depthwise_conv2d_kernel():
    layer = keras.layers.DepthwiseConv2D(5, depth_multiplier=4,
                                         depthwise_initializer=ik.ForActivation("relu", depthwise=True, seed=0))
    layer.build((None, 8, 8, 256))
    kernel = layer.kernel
    assert tuple(kernel.shape) == (5, 5, 256, 4)  # (kh, kw, in, multiplier): each output sees 25 inputs
    assert abs(rel_std(kernel, math.sqrt(2 / 25))) < 0.02  # 25600 draws: 2% is 4.5 SE
    theirs = keras.initializers.HeNormal(seed=0)((5, 5, 256, 4))
    assert abs(rel_std(theirs, math.sqrt(2 / (25 * 256)))) < 0.02  # Keras: fan_in = in * rf, 16x smaller std
    fan_out = ik.ForActivation("relu", mode="fan_out", depthwise=True, seed=0)((5, 5, 256, 4))
    assert abs(rel_std(fan_out, math.sqrt(2 / (4 * 25)))) < 0.02  # each input feeds 4 outputs x 25 taps
    # without depthwise=True the kernel reads as a Conv2D's (*k, in, out): Keras' own numbers
    plain = ik.ForActivation("relu", seed=0)((5, 5, 256, 4))
    assert abs(rel_std(plain, math.sqrt(2 / (25 * 256)))) < 0.02
    # the forward pass keeps the second moment: relu(x) through 25 taps of variance 2/25, E[relu(z)^2] = 1/2
    x = keras.ops.relu(keras.random.normal((8, 12, 12, 256), seed=1))
    y = npy(layer(x))[:, 2:-2, 2:-2, :]
    assert float(np.mean(y**2)) == pytest.approx(1.0, abs=0.06)  # kernel sample variance ~2% SE per channel


# --- configs ---------------------------------------------------------------------------------------------

ADAPTERS = [
    (lambda: ik.ForActivation("gelu", mode="fan_avg", groups=2, seed=3), (3, 3, 8, 16)),
    (lambda: ik.ForActivation("leaky_relu", param=0.2, depthwise=True, seed=3), (3, 3, 8, 2)),
    (lambda: ik.KerasInitializer("orthogonal(gain='tanh')", seed=4), (3, 3, 8, 16)),
    (lambda: ik.KerasInitializer(ik.HeNormal(), seed=5), (3, 3, 8, 16)),
    (lambda: ik.KerasInitializer("sparse", seed=6), (40, 10)),
]


@pytest.mark.parametrize("make, shape", ADAPTERS)
def test_serialize_deserialize_round_trip(make, shape):
    ini = make()
    config = keras.initializers.serialize(ini)
    assert config["registered_name"] in ("initlab>ForActivation", "initlab>KerasInitializer")
    back = keras.initializers.deserialize(json.loads(json.dumps(config)))
    assert type(back) is type(ini) and back.get_config() == ini.get_config()
    np.testing.assert_array_equal(npy(back(shape)), npy(ini(shape)))
    again = type(ini).from_config(ini.get_config())
    np.testing.assert_array_equal(npy(again(shape)), npy(ini(shape)))
    other = type(ini).from_config({**ini.get_config(), "seed": 99})
    assert other.get_config() != ini.get_config() and not np.array_equal(npy(other(shape)), npy(ini(shape)))


def test_layer_config_round_trip_rebuilds_the_same_kernel():
    layer = keras.layers.Dense(32, kernel_initializer=ik.ForActivation("mish", seed=2))
    layer.build((None, 16))
    config = layer.get_config()
    assert config["kernel_initializer"]["config"]["activation"] == "mish"
    clone = keras.layers.Dense.from_config(json.loads(json.dumps(config)))
    clone.build((None, 16))
    np.testing.assert_array_equal(npy(clone.kernel), npy(layer.kernel))


def test_keras_initializer_reads_keras_layout():
    ini = ik.KerasInitializer("he_normal", seed=0)  # initlab's he_normal: torch's (out, in) by default
    assert ini.initializer.expected_std((200, 50)) == pytest.approx(math.sqrt(2 / 200))
    assert ik.KerasInitializer("he_normal(in_axis=-1, out_axis=-2)").initializer.expected_std(
        (200, 50)) == pytest.approx(math.sqrt(2 / 50))  # explicit axes are kept


# --- bad input -------------------------------------------------------------------------------------------

def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match=r"activation must be one of .*silu.*got 'gelux'"):
        ik.ForActivation("gelux")
    with pytest.raises(TypeError, match=r"activation must be an activation name .*\(function\)"):
        ik.ForActivation(keras.activations.gelu)
    with pytest.raises(ValueError, match="mode must be one of"):
        ik.ForActivation("gelu", mode="fan_x")
    with pytest.raises(TypeError, match=r"seed must be an int, a keras.random.SeedGenerator or None; got 'x'"):
        ik.ForActivation("gelu", seed="x")
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        ik.ForActivation("gelu", seed=-1)
    with pytest.raises(TypeError, match="depthwise must be True or False"):
        ik.ForActivation("gelu", depthwise="yes")
    with pytest.raises(ValueError, match="groups must be 1 with depthwise=True"):
        ik.ForActivation("gelu", depthwise=True, groups=2)
    with pytest.raises(ValueError, match=r"shape must be a depthwise kernel .*got \(3, 4\)"):
        ik.ForActivation("gelu", depthwise=True, seed=0)((3, 4))
    with pytest.raises(TypeError, match=r"dtype must be a floating-point dtype .*got int32"):
        ik.ForActivation("gelu", seed=0)((3, 4), dtype="int32")
    with pytest.raises(ValueError, match="groups=3 does not divide the output dimension 16"):
        ik.ForActivation("gelu", groups=3, seed=0)((3, 3, 2, 16))
    with pytest.raises(TypeError, match="shape must contain only ints"):
        ik.ForActivation("gelu", seed=0)((3, "4"))
    with pytest.raises(ValueError, match="unknown initializer|not a known|no initializer"):
        ik.KerasInitializer("nonexistent")
    with pytest.raises(TypeError, match="initializer spec must be"):
        ik.KerasInitializer(3)
