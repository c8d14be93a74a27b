import random

import numpy as np
import pytest
import torch

from initlab import data


@pytest.mark.parametrize(
    "name, n_train, n_test, n_features",
    [("mnist", 4000, 1000, 784), ("digits", 1438, 359, 64), ("mnist1d", 4000, 1000, 40), ("gaussian", 2400, 600, 32)],
)
def test_shapes_and_dtypes(name, n_train, n_test, n_features):
    ds = data.load(name)
    assert ds.x_train.shape == (n_train, n_features) and ds.x_test.shape == (n_test, n_features)
    assert ds.y_train.shape == (n_train,) and ds.y_test.shape == (n_test,)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.n_features == n_features and ds.n_classes == 10
    # every class present in the training split (the raw MNIST arrays are sorted by class)
    assert set(ds.y_train.tolist()) == set(range(10))


def test_split_is_deterministic_and_seeded():
    a, b = data.load("digits", seed=3), data.load("digits", seed=3)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    c = data.load("digits", seed=4)
    assert not torch.equal(a.y_train, c.y_train)
    # train and test are disjoint pieces of the same 1797 digits
    raw = data.load("digits", standardize=False, seed=3)
    rows = {tuple(r) for r in raw.x_train.numpy().round(4)}
    overlap = sum(tuple(r) in rows for r in raw.x_test.numpy().round(4))
    # load_digits holds a few exact duplicate images, so allow a handful, not a leaked split
    assert overlap <= 5


def test_standardization_uses_training_statistics():
    ds = data.load("mnist")
    mean, std = ds.x_train.mean(0), ds.x_train.std(0, unbiased=False)
    assert mean.abs().max() < 1e-4
    varying = std > 0
    # border pixels are constant zero in the training set: centred but not scaled
    assert torch.allclose(std[varying], torch.ones(int(varying.sum())), atol=1e-3)
    assert int((~varying).sum()) > 0 and ds.x_train[:, ~varying].abs().max() == 0


def test_unstandardized_mnist_is_pixels_over_255():
    ds = data.load("mnist", standardize=False)
    assert ds.x_train.min() == 0 and ds.x_train.max() == 1
    # 255 * x is an integer pixel value
    scaled = ds.x_train[:50] * 255
    assert torch.allclose(scaled, scaled.round(), atol=1e-3)
    assert ds.image_shape == (1, 28, 28)


def test_limit_keeps_proportions_and_mnist1d_split():
    ds = data.load("mnist", limit=500)
    assert (len(ds.x_train), len(ds.x_test)) == (400, 100)
    m1 = data.load("mnist1d", limit=250)
    assert (len(m1.x_train), len(m1.x_test)) == (200, 50)
    with pytest.raises(ValueError, match="limit"):
        data.load("mnist", limit=0)


def test_load_returns_fresh_tensors():
    a = data.load("gaussian")
    a.x_train.zero_()
    assert data.load("gaussian").x_train.abs().sum() > 0


def test_mnist1d_leaves_global_rngs_alone():
    data._raw.cache_clear()
    py, npy = random.getstate(), np.random.get_state()
    data.load("mnist1d")
    assert random.getstate() == py
    assert np.array_equal(np.random.get_state()[1], npy[1])


def test_npz(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(3.0, 2.0, size=(50, 6)), rng.integers(0, 3, size=50)
    path = tmp_path / "mine.npz"
    np.savez(path, x=x, y=y)
    ds = data.load(str(path))
    assert ds.x_train.shape == (40, 6) and ds.x_test.shape == (10, 6) and ds.n_classes == 3
    assert ds.x_train.mean(0).abs().max() < 1e-5
    raw = data.load(path, standardize=False)
    # the un-standardized rows are the user's rows
    got = {tuple(r) for r in raw.x_train.numpy().round(4)} | {tuple(r) for r in raw.x_test.numpy().round(4)}
    assert got == {tuple(r) for r in x.astype(np.float32).round(4)}
    # explicit test arrays are used as given
    np.savez(path, x=x, y=y, x_test=x[:7], y_test=y[:7])
    ds = data.load(str(path), standardize=False)
    assert len(ds.x_train) == 50 and np.allclose(ds.x_test.numpy(), x[:7].astype(np.float32))


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        data.load(str(tmp_path / "missing.npz"))
    with pytest.raises(ValueError, match="mnist, digits"):
        data.load("cifar")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="'y'"):
        data.load(str(bad))
    np.savez(bad, x=np.zeros((4, 2)), y=np.array([0.5, 1, 2, 0]))
    with pytest.raises(ValueError, match="integer"):
        data.load(str(bad))
    with pytest.raises(TypeError, match="name"):
        data.load(3)


def test_npz_test_arrays_are_checked(tmp_path):
    bad = tmp_path / "bad.npz"
    x, y = np.zeros((6, 3)), np.array([0, 1, 2, 0, 1, 2])
    np.savez(bad, x=x, y=y, x_test=np.zeros((2, 4)), y_test=np.array([0, 1]))
    with pytest.raises(ValueError, match="'x_test' must be"):
        data.load(str(bad), standardize=False)
    np.savez(bad, x=x, y=y, x_test=np.zeros((2, 3)), y_test=np.array([0, -1]))
    with pytest.raises(ValueError, match=">= 0"):
        data.load(str(bad))
    np.savez(bad, x=x, y=y, x_test=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="go together"):
        data.load(str(bad))


def test_missing_optional_package_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    data._raw.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    monkeypatch.delitem(__import__("sys").modules, "sklearn.datasets", raising=False)
    try:
        with pytest.raises(ImportError, match=r"scikit-learn.*pip install 'initlab\[data\]'"):
            data.load("digits")
    finally:
        monkeypatch.undo()
        data._raw.cache_clear()
