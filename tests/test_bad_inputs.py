"""Bad input across the API: never a traceback of ours, never the wrong culprit, never a changed model or RNG.

Every case calls one public function with one bad argument and checks three things:

* the exception type follows the vocabulary of ``initlab.validate`` (a wrong *type* is a ``TypeError``, a
  value of the right type out of range a ``ValueError``; a missing file a ``FileNotFoundError``, as
  ``initlab.data.load`` documents);
* the message names the culprit: the argument (as a whole word, so ``example_inputs`` does not count
  for ``inputs``), or for a spec string the offending name inside it;
* the target is bit-identical afterwards (:func:`assert_untouched`): every parameter's and buffer's bytes
  (BatchNorm running statistics and ``num_batches_tracked`` included), every ``.grad``, every module's
  ``training`` flag, the hooks registered on every module (and globally), the tensor given to ``init_`` (bytes and
  version counter), and torch's, numpy's and Python's global RNG states.

A case that finds a bug of the library stays here, marked ``xfail(strict=True, reason="BUG: ...")``.
"""

from __future__ import annotations

import math
import random
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import initlab
from initlab import data as idata
from initlab import theory, zoo
from initlab.initializers import (
    Constant,
    DeltaOrthogonal,
    FanInUniform,
    Glorot,
    GlorotNormal,
    GlorotUniform,
    GlorotUniformSigmoid,
    He,
    HeNormal,
    HeUniform,
    Identity,
    LeCunNormal,
    LeCunUniform,
    Normal,
    Orthogonal,
    RBMNormal,
    Sparse,
    TruncatedNormal,
    Uniform,
    VarianceScaling,
)

# --------------------------------------------------------------------------------------------------
# The snapshot: everything a call might change behind the caller's back

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called")
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks")


def _raw(t: torch.Tensor | None) -> Any:
    """A tensor as (dtype, shape, stride, bytes); meta tensors have no bytes."""
    if t is None:
        return None
    t = t.detach()
    if t.is_meta:
        return (t.dtype, tuple(t.shape), "meta")
    flat = t.cpu().contiguous().reshape(-1)
    return (t.dtype, tuple(t.shape), tuple(t.stride()), bytes(flat.view(torch.uint8).numpy().tobytes()))


def snapshot(model: nn.Module | None = None, tensor: torch.Tensor | None = None) -> dict[str, Any]:
    """Everything about ``model`` / ``tensor`` and the global RNGs that a bad call must leave alone."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch.get_rng_state": bytes(torch.get_rng_state().numpy().tobytes()),
        "torch.random.get_rng_state": bytes(torch.random.get_rng_state().numpy().tobytes()),
        "numpy global RNG": (np_state[0], np_state[1].tobytes(), *np_state[2:]),
        "python random": random.getstate(),
        "global module hooks": tuple(tuple(getattr(nn.modules.module, h, {})) for h in _GLOBAL_HOOKS),
    }
    if model is not None:
        params = model.named_parameters(remove_duplicate=False)
        state["parameters"] = [(n, id(p), _raw(p), p.requires_grad) for n, p in params]
        state["grads"] = [(n, None if p.grad is None else (id(p.grad), _raw(p.grad)))
                          for n, p in model.named_parameters(remove_duplicate=False)]
        state["buffers"] = [(n, id(b), _raw(b)) for n, b in model.named_buffers(remove_duplicate=False)]
        state["training flags"] = [(n, m.training) for n, m in model.named_modules()]
        # the handles' ids, not only their number: a hook of ours left behind and one of the user's removed show
        state["hooks"] = [(n, tuple(tuple(getattr(m, h, {})) for h in _HOOK_DICTS)) for n, m in model.named_modules()]
    if tensor is not None:
        # inference tensors have no version counter: their bytes are compared all the same
        version = None if tensor.is_meta or tensor.is_inference() else tensor._version
        state["tensor"] = (_raw(tensor), version, tensor.requires_grad)
    return state


def assert_untouched(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Every item of two snapshots is identical (bit for bit for tensors)."""
    assert before.keys() == after.keys()
    changed = [key for key in before if before[key] != after[key]]
    details = []
    for key in changed:
        if isinstance(before[key], list):
            diff = [b[0] for b, a in zip(before[key], after[key]) if b != a] or ["(added or removed entries)"]
            details.append(f"{key}: {diff}")
        else:
            details.append(key)
    assert not changed, "changed by a call that failed: " + "; ".join(details)


def names_culprit(message: str, names: tuple[str, ...]) -> bool:
    """One of ``names`` appears in ``message`` as a whole word (``inputs`` is not in ``example_inputs``)."""
    return any(re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", message) for n in names)


# --------------------------------------------------------------------------------------------------
# Small models and inputs, built fresh for every case (fixed seeds, the global RNG never consumed)


def _seeded(build: Callable[[], nn.Module], example: torch.Tensor) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build()
        model(example).square().mean().backward()  # .grad everywhere, BatchNorm stats moved, batches tracked 1
    return model


def make_mlp() -> nn.Module:
    model = _seeded(lambda: nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4)),
                    torch.randn(8, 16, generator=torch.Generator().manual_seed(5)))
    model[2].eval()  # mixed training flags: a blanket model.train()/eval() afterwards would show
    model[0].register_forward_hook(lambda mod, args, out: None)  # a user's hook, which must stay
    return model


def make_cnn() -> nn.Module:
    return _seeded(lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                         nn.Conv2d(8, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)),
                   torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(6)))


def make_sigmoid_mlp() -> nn.Module:
    return _seeded(lambda: nn.Sequential(nn.Linear(16, 12), nn.Sigmoid(), nn.Linear(12, 8), nn.Sigmoid(),
                                         nn.Linear(8, 4)),
                   torch.rand(8, 16, generator=torch.Generator().manual_seed(7)))


def make_dead_relu_mlp() -> nn.Module:
    model = make_mlp()
    with torch.no_grad():
        model[0].bias.fill_(-1e3)  # every pre-activation negative: the ReLU outputs zeros, layer 3 sees none
    return model


class Branchy(nn.Module):
    """A residual block torch.fx cannot trace (control flow on data)."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.fc1 = nn.Linear(16, 16)
            self.fc2 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = x + torch.relu(self.fc1(x))
        return self.fc2(x)


class DictOut(nn.Module):
    """A model whose output is a dict: jacobian_spectrum needs a tensor (its error is about the model)."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"y": x * 2}


def _loader(x: torch.Tensor) -> DataLoader:
    return DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=16, shuffle=True)


class Ctx:
    """What a case needs: models, batches and files, all made before the snapshot is taken."""

    def __init__(self, tmp_path) -> None:
        g = torch.Generator().manual_seed(1)
        self.tmp = tmp_path
        self.mlp = make_mlp()
        self.cnn = make_cnn()
        self.sig = make_sigmoid_mlp()
        self.dead = make_dead_relu_mlp()
        self.branchy = Branchy()
        self.x = torch.randn(64, 16, generator=g)
        self.x01 = torch.rand(64, 16, generator=g)
        self.img = torch.randn(16, 3, 8, 8, generator=g)
        self.x7 = torch.randn(64, 7, generator=g)
        self.x3d = torch.randn(4, 5, 16, generator=g)
        self.nan = self.x.clone()
        self.nan[3, 5] = math.nan
        self.all_nan = torch.full_like(self.x, math.nan)
        self.inf = self.x01.clone()
        self.inf[0, 0] = math.inf
        self.ints = torch.ones(64, 16, dtype=torch.long)
        self.labels = torch.zeros(64, dtype=torch.long)
        self.weight = torch.arange(32, dtype=torch.float32).reshape(8, 4) / 7
        self.gen = torch.Generator().manual_seed(0)
        self.half = self.weight.half()
        self.bf16 = self.weight.bfloat16()
        self.half_mlp = make_mlp().half()
        with torch.inference_mode():
            self.inference_tensor = torch.zeros(8, 4)

    def target(self, which: str | None) -> dict[str, Any]:
        if which is None:
            return {}
        if which == "tensor":
            return {"tensor": self.weight}
        if which.startswith("tensor:"):
            return {"tensor": getattr(self, which.split(":", 1)[1])}
        return {"model": getattr(self, which)}

    # files for initlab.data.load
    def npz(self, name: str, **arrays: Any) -> str:
        path = self.tmp / name
        np.savez(path, **arrays)
        return str(path)

    def text_file(self, name: str) -> str:
        path = self.tmp / name
        path.write_text("this is not an archive of arrays\n")
        return str(path)


@dataclass(frozen=True)
class Case:
    call: Callable[[Ctx], Any]
    exc: type[BaseException]
    names: tuple[str, ...]  # the culprit: any one of these must appear in the message as a word
    target: str | None = None  # what must stay bit-identical besides the RNGs: "mlp", "cnn", "sig", "tensor"...
    prepare: Callable[[Ctx], Any] | None = None  # set up the target before the snapshot (e.g. model.eval())


def bug(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=f"BUG: {reason}")


def case(id: str, call: Callable[[Ctx], Any], exc: type[BaseException], names: str | tuple[str, ...],
         target: str | None = None, marks: Any = (), prepare: Callable[[Ctx], Any] | None = None) -> Any:
    names = (names,) if isinstance(names, str) else names
    return pytest.param(Case(call, exc, names, target, prepare), id=id, marks=marks)


V, T = ValueError, TypeError

# --------------------------------------------------------------------------------------------------
# initlab.get and the constructors of every registry class

SPEC_CASES = [
    case("get-unclosed", lambda c: initlab.get("normal(std="), V, "spec"),
    case("get-empty", lambda c: initlab.get(""), V, "spec"),
    case("get-blank", lambda c: initlab.get("   "), V, "spec"),
    case("get-name-not-literal", lambda c: initlab.get("normal(std=x)"), V, "spec"),
    case("get-nan-not-literal", lambda c: initlab.get("normal(std=nan)"), V, "spec"),
    case("get-attribute", lambda c: initlab.get("normal.std"), V, "spec"),
    case("get-expression", lambda c: initlab.get("1 + 2"), V, "spec"),
    case("get-call-of-call", lambda c: initlab.get("normal(std=0.1)(1)"), V, "spec"),
    case("get-star-args", lambda c: initlab.get("normal(*[1])"), V, "spec"),
    case("get-double-star", lambda c: initlab.get("normal(**{'std': 5})"), V, "spec"),
    case("get-repeated-keyword", lambda c: initlab.get("normal(std=1, std=2)"), V, "std"),
    case("get-repeated-keyword-he", lambda c: initlab.get("he_normal(mode='fan_in', mode='fan_out')"), V, "mode"),
    case("get-unknown-keyword", lambda c: initlab.get("normal(foo=1)"), V, "foo"),
    case("get-too-many-positionals", lambda c: initlab.get("normal(0.1, 0.0, 3)"), V, "spec"),
    case("get-negative-std", lambda c: initlab.get("normal(std=-1)"), V, "std"),
    case("get-overflowing-literal", lambda c: initlab.get("normal(std=1e400)"), V, "std"),
    case("get-huge-int-literal", lambda c: initlab.get("normal(std=" + "9" * 400 + ")"), V, "std"),
    case("get-unknown-name", lambda c: initlab.get("nope"), V, "nope"),
    case("get-unknown-name-call", lambda c: initlab.get("nope(std=1)"), V, "nope"),
    case("get-bad-gain-name", lambda c: initlab.get("orthogonal(gain='foo')"), V, ("gain", "foo")),
    case("get-int", lambda c: initlab.get(3), T, "spec"),
    case("get-none", lambda c: initlab.get(None), T, "spec"),
    case("get-list", lambda c: initlab.get(["normal"]), T, "spec"),
    case("get-module-class", lambda c: initlab.get(nn.Linear), T, "spec"),
    case("get-config-without-name", lambda c: initlab.get({"std": 0.1}), V, "name"),
    case("get-config-unknown-key", lambda c: initlab.get({"name": "normal", "foo": 1}), V, "foo"),
    case("get-config-bad-value", lambda c: initlab.get({"name": "normal", "std": -1}), V, "std"),
    case("replace-unknown", lambda c: Normal(0.1).replace(foo=1), V, "foo"),
    case("replace-bad-value", lambda c: HeNormal().replace(layout="tf"), V, "layout"),
]

CONSTRUCTOR_CASES = [
    case("constant-nan", lambda c: Constant(math.nan), V, "value"),
    case("constant-str", lambda c: Constant("0.1"), T, "value"),
    case("normal-negative-std", lambda c: Normal(std=-1.0), V, "std"),
    case("normal-inf-mean", lambda c: Normal(mean=math.inf), V, "mean"),
    case("normal-str-std", lambda c: Normal(std="0.1"), T, "std"),
    case("normal-none-std", lambda c: Normal(std=None), T, "std"),
    case("uniform-negative-range", lambda c: Uniform(range=-1.0), V, "range"),
    case("uniform-reversed-range", lambda c: Uniform(range=(1.0, 0.0)), V, "range"),
    case("uniform-triple-range", lambda c: Uniform(range=(1.0, 2.0, 3.0)), V, "range"),
    case("uniform-negative-std", lambda c: Uniform(std=-2.0), V, "std"),
    case("uniform-str-range", lambda c: Uniform(range="x"), T, "range"),
    case("truncated-negative-std", lambda c: TruncatedNormal(std=-0.1), V, "std"),
    case("truncated-reversed-bounds", lambda c: TruncatedNormal(bounds=(2.0, -2.0)), V, "bounds"),
    case("truncated-scalar-bounds", lambda c: TruncatedNormal(bounds=3.0), T, "bounds"),
    case("truncated-str-absolute", lambda c: TruncatedNormal(absolute="yes"), T, "absolute"),
    case("vs-negative-scale", lambda c: VarianceScaling(scale=-1.0), V, "scale"),
    case("vs-inf-scale", lambda c: VarianceScaling(scale=math.inf), V, "scale"),
    case("vs-bad-mode", lambda c: VarianceScaling(mode="fan_sum"), V, "mode"),
    case("vs-int-mode", lambda c: VarianceScaling(mode=3), T, "mode"),
    case("vs-bad-distribution", lambda c: VarianceScaling(distribution="gaussian"), V, "distribution"),
    case("vs-bad-layout", lambda c: VarianceScaling(layout="tf"), V, "layout"),
    case("vs-zero-groups", lambda c: VarianceScaling(groups=0), V, "groups"),
    case("vs-str-groups", lambda c: VarianceScaling(groups="2"), T, "groups"),
    case("vs-negative-chunks", lambda c: VarianceScaling(chunks=-3), V, "chunks"),
    case("vs-in-axis-alone", lambda c: VarianceScaling(in_axis=0), V, "in_axis"),
    case("vs-float-axis", lambda c: VarianceScaling(in_axis=1.5, out_axis=0), T, "in_axis"),
    case("vs-repeated-axes", lambda c: VarianceScaling(in_axis=(0, 0), out_axis=1), V, "in_axis"),
    case("vs-repeated-out-axes", lambda c: VarianceScaling(in_axis=0, out_axis=[1, 1]), V, "out_axis"),
    case("vs-int-torch-compatible", lambda c: VarianceScaling(torch_compatible=1), T, "torch_compatible"),
    case("normal-400-digit-std", lambda c: Normal(std=10**400), V, "std"),
    case("constant-400-digit-value", lambda c: Constant(-(10**400)), V, "value"),
    case("he-400-digit-gain", lambda c: He(gain=10**400), V, "gain"),
    case("glorot-gain-squared-overflows", lambda c: GlorotNormal(gain=2e154), V, "gain"),
    case("vs-str-axes", lambda c: VarianceScaling(in_axis="a", out_axis="b"), T, "in_axis"),
    case("vs-str-torch-compatible", lambda c: VarianceScaling(torch_compatible="no"), T, "torch_compatible"),
    case("glorot-bad-distribution", lambda c: Glorot(distribution="laplace"), V, "distribution"),
    case("glorot-negative-gain", lambda c: Glorot(gain=-1.0), V, "gain"),
    case("glorot-list-gain", lambda c: Glorot(gain=[1.0]), T, "gain"),
    case("glorot-normal-negative-gain", lambda c: GlorotNormal(gain=-1.0), V, "gain"),
    case("glorot-normal-no-torch-gain", lambda c: GlorotNormal(gain="hardswish"), V, ("gain", "hardswish")),
    case("glorot-uniform-unknown-option", lambda c: GlorotUniform(foo=1), T, "foo"),
    case("glorot-sigmoid-zero-groups", lambda c: GlorotUniformSigmoid(groups=0), V, "groups"),
    case("he-unknown-gain-name", lambda c: He(gain="rectifier"), V, "gain"),
    case("he-huge-gain", lambda c: He(gain=1e300), V, "gain"),
    case("he-bad-mode", lambda c: He(mode="fan_in_out"), V, "mode"),
    case("he-normal-bad-mode", lambda c: HeNormal(mode="in"), V, "mode"),
    case("he-normal-zero-groups", lambda c: HeNormal(groups=0), V, "groups"),
    case("he-uniform-bad-layout", lambda c: HeUniform(layout="nchw"), V, "layout"),
    case("lecun-normal-negative-chunks", lambda c: LeCunNormal(chunks=-3), V, "chunks"),
    case("lecun-uniform-unknown-option", lambda c: LeCunUniform(gain=2.0), T, "gain"),
    case("fan-in-uniform-float-groups", lambda c: FanInUniform(groups=1.5), T, "groups"),
    case("rbm-negative-std", lambda c: RBMNormal(std=-1.0), V, "std"),
    case("orthogonal-negative-gain", lambda c: Orthogonal(gain=-2.0), V, "gain"),
    case("orthogonal-bad-layout", lambda c: Orthogonal(layout="tf"), V, "layout"),
    case("orthogonal-unknown-gain", lambda c: Orthogonal(gain="foo"), V, "gain"),
    case("delta-orthogonal-bad-center", lambda c: DeltaOrthogonal(center="middle"), V, "center"),
    case("delta-orthogonal-bad-layout", lambda c: DeltaOrthogonal(layout="c01b"), V, "layout"),
    case("identity-zero-groups", lambda c: Identity(groups=0), V, "groups"),
    case("identity-nan-gain", lambda c: Identity(gain=math.nan), V, "gain"),
    case("sparse-sparsity-above-one", lambda c: Sparse(sparsity=1.5), V, "sparsity"),
    case("sparse-negative-std", lambda c: Sparse(std=-0.01), V, "std"),
    case("sparse-bad-meaning", lambda c: Sparse(meaning="dense"), V, "meaning"),
    case("sparse-bad-layout", lambda c: Sparse(layout="c01b"), V, "layout"),
]

# --------------------------------------------------------------------------------------------------
# init_, sample, array, __call__: the target tensor must be exactly as it was

FILL_CASES = [
    case("init-int-tensor", lambda c: Normal().init_(torch.ones(8, 4, dtype=torch.int64)), T, "tensor"),
    case("init-numpy", lambda c: Normal().init_(np.ones((8, 4), np.float32)), T, "tensor"),
    case("init-list", lambda c: HeNormal().init_([[1.0, 2.0]]), T, "tensor"),
    case("init-expanded-view", lambda c: Normal().init_(c.weight[:1].expand(8, 4), generator=c.gen), V, "tensor",
         "tensor"),
    case("init-inference-tensor", lambda c: Normal().init_(c.inference_tensor, generator=c.gen), V, "tensor",
         "tensor:inference_tensor"),
    case("init-str-generator", lambda c: Normal().init_(c.weight, generator="abc"), T, "generator", "tensor"),
    case("init-int-generator", lambda c: HeNormal().init_(c.weight, generator=0), T, "generator", "tensor"),
    case("init-numpy-generator", lambda c: Orthogonal().init_(c.weight, generator=np.random.default_rng(0)), T,
         "generator", "tensor"),
    case("init-str-generator-constant", lambda c: Constant(0.5).init_(c.weight, generator="abc"), T, "generator",
         "tensor"),
    case("init-1d-for-fans", lambda c: HeNormal().init_(c.weight[0], generator=c.gen), V, "shape", "tensor"),
    case("init-groups-do-not-divide", lambda c: HeNormal(groups=3).init_(c.weight, generator=c.gen), V, "groups",
         "tensor"),
    case("init-orthogonal-1d", lambda c: Orthogonal().init_(c.weight[0], generator=c.gen), V, "shape", "tensor"),
    case("init-delta-orthogonal-2d", lambda c: DeltaOrthogonal().init_(c.weight, generator=c.gen), V, "shape",
         "tensor"),
    case("init-sparse-3d", lambda c: Sparse().init_(c.weight.reshape(2, 4, 4), generator=c.gen), V, "shape",
         "tensor"),
    case("init-identity-groups-2d", lambda c: Identity(groups=2).init_(c.weight), V, "groups", "tensor"),
    # values beyond the target dtype's finite range: refused before anything is drawn (the global RNG too)
    case("init-normal-beyond-float16", lambda c: Normal(std=1e6).init_(c.half, generator=c.gen), V, "std",
         "tensor:half"),
    case("init-normal-beyond-float16-global-rng", lambda c: Normal(std=1e6).init_(c.half), V, "std",
         "tensor:half"),
    case("init-mean-beyond-float16", lambda c: Normal(mean=-7e4, std=0.0).init_(c.half), V, "mean", "tensor:half"),
    case("init-he-beyond-float16", lambda c: HeNormal(gain=1e5).init_(c.half), V, "gain", "tensor:half"),
    case("init-orthogonal-beyond-bfloat16", lambda c: Orthogonal(gain=1e39).init_(c.bf16), V, "gain",
         "tensor:bf16"),
    case("init-constant-beyond-float32", lambda c: Constant(1e39).init_(c.weight), V, "value", "tensor"),
    case("init-uniform-width-beyond-float32", lambda c: Uniform(range=2e38).init_(c.weight), V, "range", "tensor"),
    case("init-sparse-beyond-float32", lambda c: Sparse(std=1e300).init_(c.weight), V, "std", "tensor"),
    case("init-identity-beyond-float16", lambda c: Identity(gain=1e5).init_(c.half), V, "gain", "tensor:half"),
    case("init-philox-beyond-float16", lambda c: Normal(std=1e6).init_(c.half, rng="philox", seed=0), V, "std",
         "tensor:half"),
    case("sample-philox-float64-beyond-float32", lambda c: Normal(std=1e300).sample((3,), dtype=torch.float64,
                                                                                  rng="philox"), V, "std"),
    case("array-beyond-float16", lambda c: Normal(std=1e6).array((3,), dtype=np.float16), V, "std"),
    case("compat-normal-beyond-float16", lambda c: initlab.compat.torch.normal_(c.half, std=1e6), V, "std",
         "tensor:half"),
    case("truncated-far-tail", lambda c: TruncatedNormal(std=1e-300, bounds=(5.0, 6.0), absolute=True).init_(
        c.weight, generator=c.gen), V, "bounds", "tensor"),
    case("sample-negative-size", lambda c: Normal().sample((-1, 3), generator=c.gen), V, "shape"),
    case("sample-negative-int", lambda c: Normal().sample(-3, generator=c.gen), V, "shape"),
    case("sample-float-size", lambda c: Normal().sample((2.5, 3), generator=c.gen), T, "shape"),
    case("sample-str-shape", lambda c: Normal().sample("ab", generator=c.gen), T, "shape"),
    case("sample-none-shape", lambda c: Normal().sample(None, generator=c.gen), T, "shape"),
    case("sample-bool-size", lambda c: Normal().sample((True, 3), generator=c.gen), T, "shape"),
    case("sample-1d-for-fans", lambda c: GlorotUniform().sample((5,), generator=c.gen), V, "shape"),
    case("sample-0d-for-orthogonal", lambda c: Orthogonal().sample((), generator=c.gen), V, "shape"),
    case("sample-int-dtype", lambda c: Normal().sample((3,), dtype=torch.int64), T, "dtype"),
    case("sample-str-dtype", lambda c: Normal().sample((3,), dtype="float32"), T, "dtype"),
    case("sample-bad-device", lambda c: Normal().sample((3,), device="nope"), V, "device"),
    case("sample-str-generator", lambda c: Normal().sample((3,), generator="abc"), T, "generator"),
    case("array-bad-rng", lambda c: Normal().array((3,), rng="x"), T, "rng"),
    case("array-int-dtype", lambda c: Normal().array((3,), dtype=np.int32), T, "dtype"),
    case("call-generator-and-rng", lambda c: Normal()(c.weight, generator=c.gen, rng=1), V, ("generator", "rng"),
         "tensor"),
    case("call-bad-rng", lambda c: Normal()(c.weight, rng="x"), T, "rng", "tensor"),
]

# --------------------------------------------------------------------------------------------------
# fans and gain

FANS_GAIN_CASES = [
    case("fans-str-shape", lambda c: initlab.fans("ab"), T, "shape"),
    case("fans-none-shape", lambda c: initlab.fans(None), T, "shape"),
    case("fans-negative-size", lambda c: initlab.fans((3, -1)), V, "shape"),
    case("fans-1d", lambda c: initlab.fans((3,)), V, "shape"),
    case("fans-bad-layout", lambda c: initlab.fans((3, 3), layout="tf"), V, "layout"),
    case("fans-zero-groups", lambda c: initlab.fans((3, 3), groups=0), V, "groups"),
    case("fans-float-groups", lambda c: initlab.fans((3, 3), groups=1.5), T, "groups"),
    case("fans-chunks-do-not-divide", lambda c: initlab.fans((4, 4), chunks=3), V, "chunks"),
    case("fans-in-axis-alone", lambda c: initlab.fans((4, 4), in_axis=0), V, "in_axis"),
    case("fans-axis-out-of-range", lambda c: initlab.fans((3, 4, 5), in_axis=0, out_axis=3), V, "out_axis"),
    case("fans-c01b-3d", lambda c: initlab.fans((8, 3, 16), layout="c01b"), V, "shape"),
    case("gain-unknown", lambda c: initlab.gain("nope"), V, "nonlinearity"),
    case("gain-int", lambda c: initlab.gain(5), T, "nonlinearity"),
    case("gain-module-class", lambda c: initlab.gain(nn.Linear), V, "nonlinearity"),
    case("gain-bad-rule", lambda c: initlab.gain("relu", rule="x"), V, "rule"),
    case("gain-no-torch-rule", lambda c: initlab.gain("hardswish"), V, "nonlinearity"),
    case("gain-str-param", lambda c: initlab.gain("leaky_relu", "x"), T, "param"),
    case("gain-nan-param", lambda c: initlab.gain("leaky_relu", math.nan), V, "param"),
    case("gain-inf-param", lambda c: initlab.gain("elu", math.inf), V, "param"),
]

# --------------------------------------------------------------------------------------------------
# init_model: every argument checked before tracing; a failure while drawing leaves the model as it was

INIT_MODEL_CASES = [
    case("init-model-not-a-module", lambda c: initlab.init_model("x"), T, "model"),
    case("init-model-unknown-scheme", lambda c: initlab.init_model(c.mlp, "nope"), V, "scheme", "mlp"),
    case("init-model-beyond-float16", lambda c: initlab.init_model(c.half_mlp, "normal(std=1e6)", seed=0), V, "std",
         "half_mlp"),
    case("init-model-int-scheme", lambda c: initlab.init_model(c.mlp, 5), T, "scheme", "mlp"),
    case("init-model-malformed-scheme", lambda c: initlab.init_model(c.mlp, "normal(std="), V, "scheme", "mlp"),
    case("init-model-repeated-keyword", lambda c: initlab.init_model(c.mlp, "normal(std=1, std=2)"), V, "std",
         "mlp"),
    case("init-model-symmetric-scheme", lambda c: initlab.init_model(c.mlp, "zeros"), V, "allow_symmetric", "mlp"),
    case("init-model-unknown-bias", lambda c: initlab.init_model(c.mlp, bias="nope"), V, "bias", "mlp"),
    case("init-model-int-bias", lambda c: initlab.init_model(c.mlp, bias=3), T, "bias", "mlp"),
    case("init-model-bad-output", lambda c: initlab.init_model(c.mlp, output="x("), V, "output", "mlp"),
    case("init-model-unknown-residual", lambda c: initlab.init_model(c.mlp, residual="nope"), V, "residual", "mlp"),
    case("init-model-int-residual", lambda c: initlab.init_model(c.mlp, residual=5), T, "residual", "mlp"),
    case("init-model-residual-untraceable", lambda c: initlab.init_model(c.branchy, residual="zero_last"), V,
         ("residual", "example_inputs"), "branchy"),
    case("init-model-str-rules", lambda c: initlab.init_model(c.mlp, rules="x"), T, "rules", "mlp"),
    case("init-model-short-rule", lambda c: initlab.init_model(c.mlp, rules=[("a",)]), V, "rules", "mlp"),
    case("init-model-int-pattern", lambda c: initlab.init_model(c.mlp, rules=[(5, "zeros")]), T, "rules", "mlp"),
    case("init-model-bad-rule-spec", lambda c: initlab.init_model(c.mlp, rules=[("*", "nope")]), V, "rules", "mlp"),
    case("init-model-rule-cannot-fill", lambda c: initlab.init_model(c.mlp, rules=[("0.bias", "orthogonal")],
                                                                      seed=0), V, "0.bias", "mlp"),
    case("init-model-class-rule-cannot-fill", lambda c: initlab.init_model(c.mlp, rules=[(nn.BatchNorm1d,
                                                                                           "he_normal")], seed=0),
         V, "1.weight", "mlp"),
    case("init-model-scheme-cannot-fill", lambda c: initlab.init_model(c.cnn, "delta_orthogonal", seed=0), V,
         "shape", "cnn"),
    case("init-model-negative-seed", lambda c: initlab.init_model(c.mlp, seed=-1), V, "seed", "mlp"),
    case("init-model-float-seed", lambda c: initlab.init_model(c.mlp, seed=1.5), T, "seed", "mlp"),
    case("init-model-str-seed", lambda c: initlab.init_model(c.mlp, seed="1"), T, "seed", "mlp"),
    case("init-model-huge-seed", lambda c: initlab.init_model(c.mlp, seed=2**70), V, "seed", "mlp"),
    case("init-model-seed-and-generator", lambda c: initlab.init_model(c.mlp, seed=1, generator=c.gen), V,
         ("seed", "generator"), "mlp"),
    case("init-model-str-generator", lambda c: initlab.init_model(c.mlp, generator="x"), T, "generator", "mlp"),
    case("init-model-bad-device", lambda c: initlab.init_model(c.mlp, device="nope"), V, "device", "mlp"),
    case("init-model-list-device", lambda c: initlab.init_model(c.mlp, device=[1]), T, "device", "mlp"),
    case("init-model-meta-device", lambda c: initlab.init_model(c.mlp, device="meta"), V, "device", "mlp"),
    case("init-model-str-allow-symmetric", lambda c: initlab.init_model(c.mlp, allow_symmetric="yes"), T,
         "allow_symmetric", "mlp"),
    case("init-model-example-wrong-shape", lambda c: initlab.init_model(c.mlp, example_inputs=c.x7), V,
         "example_inputs", "mlp"),
    case("init-model-example-wrong-dtype", lambda c: initlab.init_model(c.mlp, example_inputs=c.ints), V,
         "example_inputs", "mlp"),
    case("init-model-example-str", lambda c: initlab.init_model(c.mlp, example_inputs="abc"), V, "example_inputs",
         "mlp"),
    case("init-model-cnn-example-wrong-shape", lambda c: initlab.init_model(c.cnn, example_inputs=c.x), V,
         "example_inputs", "cnn"),
]

# --------------------------------------------------------------------------------------------------
# lsuv: checked before anything runs, restored exactly when a layer turns out dead


LSUV_CASES = [
    case("lsuv-not-a-module", lambda c: initlab.lsuv("x", c.x), T, "model"),
    case("lsuv-zero-target", lambda c: initlab.lsuv(c.mlp, c.x, target_std=0), V, "target_std", "mlp"),
    case("lsuv-str-target", lambda c: initlab.lsuv(c.mlp, c.x, target_std="1"), T, "target_std", "mlp"),
    case("lsuv-negative-tol", lambda c: initlab.lsuv(c.mlp, c.x, tol=-1), V, "tol", "mlp"),
    case("lsuv-nan-tol", lambda c: initlab.lsuv(c.mlp, c.x, tol=math.nan), V, "tol", "mlp"),
    case("lsuv-zero-max-iter", lambda c: initlab.lsuv(c.mlp, c.x, max_iter=0), V, "max_iter", "mlp"),
    case("lsuv-float-max-iter", lambda c: initlab.lsuv(c.mlp, c.x, max_iter=2.0), T, "max_iter", "mlp"),
    case("lsuv-str-orthogonal", lambda c: initlab.lsuv(c.mlp, c.x, orthogonal="y"), T, "orthogonal", "mlp"),
    case("lsuv-int-center", lambda c: initlab.lsuv(c.mlp, c.x, center=1), T, "center", "mlp"),
    case("lsuv-none-progress", lambda c: initlab.lsuv(c.mlp, c.x, progress=None), T, "progress", "mlp"),
    case("lsuv-str-layers", lambda c: initlab.lsuv(c.mlp, c.x, layers="0"), T, "layers", "mlp"),
    case("lsuv-unknown-layers", lambda c: initlab.lsuv(c.mlp, c.x, layers=["zz"]), V, "layers", "mlp"),
    case("lsuv-negative-seed", lambda c: initlab.lsuv(c.mlp, c.x, seed=-1), V, "seed", "mlp"),
    case("lsuv-float-seed", lambda c: initlab.lsuv(c.mlp, c.x, seed=0.5), T, "seed", "mlp"),
    case("lsuv-empty-batch", lambda c: initlab.lsuv(c.mlp, c.x[:0], seed=0), V, "inputs", "mlp"),
    case("lsuv-nan-batch", lambda c: initlab.lsuv(c.mlp, c.nan, seed=0), V, "inputs", "mlp"),
    case("lsuv-str-inputs", lambda c: initlab.lsuv(c.mlp, "abc", seed=0), T, "inputs", "mlp"),
    case("lsuv-none-inputs", lambda c: initlab.lsuv(c.mlp, None, seed=0), T, "inputs", "mlp"),
    case("lsuv-empty-list", lambda c: initlab.lsuv(c.mlp, [], seed=0), V, "inputs", "mlp"),
    case("lsuv-empty-dict", lambda c: initlab.lsuv(c.mlp, {}, seed=0), V, "inputs", "mlp"),
    case("lsuv-wrong-features", lambda c: initlab.lsuv(c.mlp, c.x7, seed=0), V, "inputs", "mlp"),
    case("lsuv-wrong-dtype", lambda c: initlab.lsuv(c.mlp, c.ints, seed=0), V, "inputs", "mlp"),
    case("lsuv-wrong-rank", lambda c: initlab.lsuv(c.mlp, c.x3d, seed=0), V, "inputs", "mlp"),
    case("lsuv-cnn-flat-inputs", lambda c: initlab.lsuv(c.cnn, c.x, seed=0), V, "inputs", "cnn"),
    case("lsuv-loader-wrong-features", lambda c: initlab.lsuv(c.mlp, _loader(c.x7), seed=0), V, "inputs", "mlp"),
    case("lsuv-loader-nan", lambda c: initlab.lsuv(c.mlp, _loader(c.all_nan), seed=0), V, "inputs", "mlp"),
    case("lsuv-loader-empty", lambda c: initlab.lsuv(c.mlp, DataLoader(TensorDataset(c.x[:0]), batch_size=4),
                                                      seed=0), V, "inputs", "mlp"),
    case("lsuv-dead-layer-restored", lambda c: initlab.lsuv(c.dead, c.x, orthogonal=False, seed=0), V, "'3'",
         "dead"),
]

# --------------------------------------------------------------------------------------------------
# probe and Monitor

PROBE_CASES = [
    case("probe-not-a-module", lambda c: initlab.probe("x", c.x), T, "model"),
    case("probe-zero-bins", lambda c: initlab.probe(c.mlp, c.x, bins=0), V, "bins", "mlp"),
    case("probe-float-bins", lambda c: initlab.probe(c.mlp, c.x, bins=2.0), T, "bins", "mlp"),
    case("probe-none-seed", lambda c: initlab.probe(c.mlp, c.x, seed=None), T, "seed", "mlp"),
    case("probe-negative-seed", lambda c: initlab.probe(c.mlp, c.x, seed=-1), V, "seed", "mlp"),
    case("probe-str-train", lambda c: initlab.probe(c.mlp, c.x, train="yes"), T, "train", "mlp"),
    case("probe-reversed-hist-range", lambda c: initlab.probe(c.mlp, c.x, hist_range=(1, 0)), V, "hist_range",
         "mlp"),
    case("probe-nan-hist-range", lambda c: initlab.probe(c.mlp, c.x, hist_range=(math.nan, 1)), V, "hist_range",
         "mlp"),
    case("probe-str-hist-range", lambda c: initlab.probe(c.mlp, c.x, hist_range="x"), T, "hist_range", "mlp"),
    case("probe-int-loss", lambda c: initlab.probe(c.mlp, c.x, loss=5), T, "loss", "mlp"),
    case("probe-list-targets", lambda c: initlab.probe(c.mlp, c.x, targets=[1, 2]), T, "targets", "mlp"),
    case("probe-short-targets", lambda c: initlab.probe(c.mlp, c.x, targets=c.labels[:3]), V, "targets", "mlp"),
    case("probe-out-of-range-targets", lambda c: initlab.probe(c.mlp, c.x, targets=c.labels + 99), V, "targets",
         "mlp"),
    case("probe-non-scalar-loss", lambda c: initlab.probe(c.mlp, c.x, loss=lambda out: out), V, "loss", "mlp"),
    case("probe-unknown-layers", lambda c: initlab.probe(c.mlp, c.x, layers=["zz"]), V, "layers", "mlp"),
    case("probe-bad-layers-word", lambda c: initlab.probe(c.mlp, c.x, layers="nope"), V, "layers", "mlp"),
    case("probe-int-layers", lambda c: initlab.probe(c.mlp, c.x, layers=5), T, "layers", "mlp"),
    case("probe-unknown-threshold", lambda c: initlab.probe(c.mlp, c.x, thresholds={"zz": 1}), V, "thresholds",
         "mlp"),
    case("probe-int-thresholds", lambda c: initlab.probe(c.mlp, c.x, thresholds=5), T, "thresholds", "mlp"),
    case("probe-str-graph", lambda c: initlab.probe(c.mlp, c.x, graph="x"), T, "graph", "mlp"),
    case("probe-empty-batch", lambda c: initlab.probe(c.mlp, c.x[:0]), V, "inputs", "mlp"),
    case("probe-nan-batch", lambda c: initlab.probe(c.mlp, c.nan), V, "inputs", "mlp"),
    case("probe-str-inputs", lambda c: initlab.probe(c.mlp, "abc"), T, "inputs", "mlp"),
    case("probe-empty-dict", lambda c: initlab.probe(c.mlp, {}), V, "inputs", "mlp"),
    case("probe-loader-inputs", lambda c: initlab.probe(c.mlp, _loader(c.x)), T, "inputs", "mlp"),
    case("probe-wrong-features", lambda c: initlab.probe(c.mlp, c.x7), V, "inputs", "mlp"),
    case("probe-cnn-flat-inputs", lambda c: initlab.probe(c.cnn, c.x), V, "inputs", "cnn"),
    case("monitor-not-a-module", lambda c: initlab.Monitor("x"), T, "model"),
    case("monitor-zero-every", lambda c: initlab.Monitor(c.mlp, every=0), V, "every", "mlp"),
    case("monitor-float-every", lambda c: initlab.Monitor(c.mlp, every=1.5), T, "every", "mlp"),
    case("monitor-too-many-bins", lambda c: initlab.Monitor(c.mlp, bins=10**6), V, "bins", "mlp"),
    case("monitor-unknown-layers", lambda c: initlab.Monitor(c.mlp, layers=["zz"]), V, "layers", "mlp"),
    case("monitor-reversed-hist-range", lambda c: initlab.Monitor(c.mlp, hist_range=(2, 1)), V, "hist_range",
         "mlp"),
    case("monitor-example-wrong-shape", lambda c: initlab.Monitor(c.mlp, example_inputs=c.x7), V, "example_inputs",
         "mlp"),
    case("monitor-str-grads", lambda c: initlab.Monitor(c.mlp, grads="x"), T, "grads", "mlp"),
]

# --------------------------------------------------------------------------------------------------
# pretrain

P = dict(epochs=1, progress=False, seed=0)

PRETRAIN_CASES = [
    case("pretrain-not-a-module", lambda c: initlab.pretrain("x", c.x01, **P), T, "model"),
    case("pretrain-cnn", lambda c: initlab.pretrain(c.cnn, c.img, **P), V, ("model", "MLP"), "cnn"),
    case("pretrain-bad-method", lambda c: initlab.pretrain(c.sig, c.x01, method="x", **P), V, "method", "sig"),
    case("pretrain-int-method", lambda c: initlab.pretrain(c.sig, c.x01, method=5, **P), T, "method", "sig"),
    case("pretrain-zero-epochs", lambda c: initlab.pretrain(c.sig, c.x01, **{**P, "epochs": 0}), V, "epochs",
         "sig"),
    case("pretrain-float-epochs", lambda c: initlab.pretrain(c.sig, c.x01, **{**P, "epochs": 1.5}), T, "epochs",
         "sig"),
    case("pretrain-negative-lr", lambda c: initlab.pretrain(c.sig, c.x01, lr=-1, **P), V, "lr", "sig"),
    case("pretrain-nan-lr", lambda c: initlab.pretrain(c.sig, c.x01, lr=math.nan, **P), V, "lr", "sig"),
    case("pretrain-str-lr", lambda c: initlab.pretrain(c.sig, c.x01, lr="x", **P), T, "lr", "sig"),
    case("pretrain-zero-batch-size", lambda c: initlab.pretrain(c.sig, c.x01, batch_size=0, **P), V, "batch_size",
         "sig"),
    case("pretrain-zero-k", lambda c: initlab.pretrain(c.sig, c.x01, k=0, **P), V, "k", "sig"),
    case("pretrain-corruption-one", lambda c: initlab.pretrain(c.sig, c.x01, corruption=1.0, **P), V, "corruption",
         "sig"),
    case("pretrain-str-corruption", lambda c: initlab.pretrain(c.sig, c.x01, corruption="x", **P), T,
         "corruption", "sig"),
    case("pretrain-bad-visible", lambda c: initlab.pretrain(c.sig, c.x01, visible="x", **P), V, "visible", "sig"),
    case("pretrain-negative-seed", lambda c: initlab.pretrain(c.sig, c.x01, **{**P, "seed": -1}), V, "seed", "sig"),
    case("pretrain-str-seed", lambda c: initlab.pretrain(c.sig, c.x01, **{**P, "seed": "x"}), T, "seed", "sig"),
    case("pretrain-str-progress", lambda c: initlab.pretrain(c.sig, c.x01, **{**P, "progress": "x"}), T,
         "progress", "sig"),
    case("pretrain-diverging-rbm", lambda c: initlab.pretrain(c.sig, c.x01, lr=1e6, **P), V, "lr", "sig"),
    case("pretrain-diverging-dae", lambda c: initlab.pretrain(c.sig, c.x01, method="dae", lr=1e4, **P), V, "lr",
         "sig"),
    case("pretrain-empty-data", lambda c: initlab.pretrain(c.sig, c.x01[:0], **P), V, "data", "sig"),
    case("pretrain-nan-data", lambda c: initlab.pretrain(c.sig, c.nan, **P), V, "data", "sig"),
    case("pretrain-inf-data", lambda c: initlab.pretrain(c.sig, c.inf, **P), V, "data", "sig"),
    case("pretrain-wrong-features", lambda c: initlab.pretrain(c.sig, c.x7, **P), V, "data", "sig"),
    case("pretrain-int-data", lambda c: initlab.pretrain(c.sig, c.ints, **P), T, "data", "sig"),
    case("pretrain-1d-data", lambda c: initlab.pretrain(c.sig, c.x01[0], **P), V, "data", "sig"),
    case("pretrain-str-data", lambda c: initlab.pretrain(c.sig, "abc", **P), T, "data", "sig"),
    case("pretrain-loader-nan", lambda c: initlab.pretrain(c.sig, _loader(c.all_nan), **P), V, "data", "sig"),
    case("pretrain-loader-wrong-features", lambda c: initlab.pretrain(c.sig, _loader(c.x7), **P), V, "data", "sig"),
    case("pretrain-loader-empty", lambda c: initlab.pretrain(c.sig, DataLoader(TensorDataset(c.x[:0]),
                                                                                batch_size=4), **P), V, "data",
         "sig"),
]

# --------------------------------------------------------------------------------------------------
# theory


def _train(c: Ctx) -> None:
    c.mlp.train()


def _eval(c: Ctx) -> None:
    c.mlp.eval()


def _jacobian(c: Ctx, inputs: Any, **kw: Any) -> Any:
    return theory.jacobian_spectrum(c.mlp, inputs, **kw)


THEORY_CASES = [
    case("propagate-not-a-module", lambda c: theory.propagate("x"), T, "model"),
    case("propagate-negative-input-var", lambda c: theory.propagate(c.mlp, input_var=-1), V, "input_var", "mlp"),
    case("propagate-nan-input-var", lambda c: theory.propagate(c.mlp, input_var=math.nan), V, "input_var", "mlp"),
    case("propagate-str-input-var", lambda c: theory.propagate(c.mlp, input_var="1"), T, "input_var", "mlp"),
    case("propagate-inf-input-mean", lambda c: theory.propagate(c.mlp, input_mean=math.inf), V, "input_mean", "mlp"),
    case("propagate-none-input-mean", lambda c: theory.propagate(c.mlp, input_mean=None), T, "input_mean", "mlp"),
    case("propagate-vector-input-var", lambda c: theory.propagate(c.mlp, input_var=torch.ones(3)), T, "input_var",
         "mlp"),
    case("propagate-example-wrong-shape", lambda c: theory.propagate(c.mlp, c.x7), V, "example_inputs", "mlp"),
    case("mean-field-unknown-activation", lambda c: theory.mean_field("nope", 1.0), V, ("activation", "nope")),
    case("mean-field-int-activation", lambda c: theory.mean_field(5, 1.0), T, "activation"),
    case("mean-field-zero-sigma-w2", lambda c: theory.mean_field("tanh", 0), V, "sigma_w2"),
    case("mean-field-inf-sigma-w2", lambda c: theory.mean_field("tanh", math.inf), V, "sigma_w2"),
    case("mean-field-str-sigma-w2", lambda c: theory.mean_field("tanh", "1"), T, "sigma_w2"),
    case("mean-field-negative-sigma-b2", lambda c: theory.mean_field("tanh", 1.0, -1), V, "sigma_b2"),
    case("mean-field-zero-q0", lambda c: theory.mean_field("tanh", 1.0, q0=0), V, "q0"),
    case("critical-point-negative-sigma-b2", lambda c: theory.critical_point("tanh", -1), V, "sigma_b2"),
    case("critical-point-str-sigma-b2", lambda c: theory.critical_point("tanh", "x"), T, "sigma_b2"),
    case("critical-point-nan-q0", lambda c: theory.critical_point("tanh", q0=math.nan), V, "q0"),
    case("critical-point-none", lambda c: theory.critical_point("tanh", 1e300), V, "sigma_b2"),
    case("jacobian-training-batchnorm", lambda c: theory.jacobian_spectrum(c.mlp, c.x[:4]), V, "BatchNorm",
         "mlp", prepare=_train),
    case("jacobian-not-a-module", lambda c: theory.jacobian_spectrum("x", c.x[:4]), T, "model"),
    case("jacobian-int-inputs", lambda c: _jacobian(c, c.ints[:4]), T, "inputs", "mlp", prepare=_eval),
    case("jacobian-1d-inputs", lambda c: _jacobian(c, c.x[0]), V, "inputs", "mlp", prepare=_eval),
    case("jacobian-empty-inputs", lambda c: _jacobian(c, c.x[:0]), V, "inputs", "mlp", prepare=_eval),
    case("jacobian-wrong-features", lambda c: _jacobian(c, c.x7[:4]), V, "inputs", "mlp", prepare=_eval),
    case("jacobian-dict-output", lambda c: theory.jacobian_spectrum(DictOut(), c.x[:4]), T, "model"),
    case("jacobian-3d-inputs-to-mlp", lambda c: _jacobian(c, c.x3d[:2, :, :7]), V, "inputs", "mlp", prepare=_eval),
    case("jacobian-zero-k", lambda c: _jacobian(c, c.x[:4], k=0), V, "k", "mlp", prepare=_eval),
    case("jacobian-float-k", lambda c: _jacobian(c, c.x[:4], k=1.5), T, "k", "mlp", prepare=_eval),
    case("jacobian-str-generator", lambda c: _jacobian(c, c.x[:4], k=2, generator="x"), T, "generator", "mlp",
         prepare=_eval),
    case("phase-diagram-bad-resolution", lambda c: theory.phase_diagram("tanh", c.tmp / "p.png", resolution=(1, 1)),
         V, "resolution"),
]

# --------------------------------------------------------------------------------------------------
# initlab.zoo builders and initlab.data.load

ZOO_DATA_CASES = [
    case("mlp-negative-depth", lambda c: zoo.mlp(-1, 8), V, "depth"),
    case("mlp-zero-width", lambda c: zoo.mlp(2, 0), V, "width"),
    case("mlp-float-width", lambda c: zoo.mlp(2, 8.0), T, "width"),
    case("mlp-zero-in-features", lambda c: zoo.mlp(2, 8, in_features=0), V, "in_features"),
    case("mlp-zero-out-features", lambda c: zoo.mlp(2, 8, out_features=0), V, "out_features"),
    case("mlp-negative-seed", lambda c: zoo.mlp(2, 8, seed=-1), V, "seed"),
    case("mlp-str-seed", lambda c: zoo.mlp(2, 8, seed="x"), T, "seed"),
    case("mlp-activation-list-length", lambda c: zoo.mlp(2, 8, ["relu"]), V, "activation"),
    case("mlp-unknown-activation", lambda c: zoo.mlp(2, 8, "nope"), V, ("activation", "nope")),
    case("mlp-int-activation", lambda c: zoo.mlp(2, 8, 5), T, "activation"),
    case("cnn-no-channels", lambda c: zoo.cnn([]), V, "channels"),
    case("cnn-zero-channels", lambda c: zoo.cnn((0,)), V, "channels"),
    case("cnn-int-channels", lambda c: zoo.cnn(5), T, "channels"),
    case("cnn-short-input-shape", lambda c: zoo.cnn(input_shape=(1,)), V, "input_shape"),
    case("cnn-zero-input-shape", lambda c: zoo.cnn(input_shape=(0, 8, 8)), V, "input_shape"),
    case("cnn-str-input-shape", lambda c: zoo.cnn(input_shape=(1, "a", 3)), T, "input_shape"),
    case("cnn-int-input-shape", lambda c: zoo.cnn(input_shape=5), T, "input_shape"),
    case("cnn-zero-in-channels", lambda c: zoo.cnn(in_channels=0), V, "in_channels"),
    case("resnet-negative-blocks", lambda c: zoo.resnet(-1), V, "blocks"),
    case("resnet-zero-width", lambda c: zoo.resnet(width=0), V, "width"),
    case("resnet-bad-input-shape", lambda c: zoo.resnet(input_shape=(1, 0)), V, "input_shape"),
    case("transformer-indivisible-heads", lambda c: zoo.transformer(d_model=30, nhead=4), V, ("d_model", "nhead")),
    case("transformer-zero-d-model", lambda c: zoo.transformer(d_model=0), V, "d_model"),
    case("transformer-float-seq-len", lambda c: zoo.transformer(seq_len=2.0), T, "seq_len"),
    case("load-unknown-name", lambda c: idata.load("nope"), V, "name"),
    case("load-int-name", lambda c: idata.load(5), T, "name"),
    case("load-limit-one", lambda c: idata.load("gaussian", limit=1), V, "limit"),
    case("load-float-limit", lambda c: idata.load("gaussian", limit=2.5), T, "limit"),
    case("load-negative-seed", lambda c: idata.load("gaussian", seed=-1), V, "seed"),
    case("load-none-seed", lambda c: idata.load("gaussian", seed=None), T, "seed"),
    case("load-missing-npz", lambda c: idata.load(str(c.tmp / "missing.npz")), FileNotFoundError, "missing.npz"),
    case("load-npz-without-y", lambda c: idata.load(c.npz("noy.npz", x=np.zeros((4, 3)))), V, "y"),
    case("load-negative-labels", lambda c: idata.load(c.npz("neg.npz", x=np.zeros((4, 3)), y=np.array([-1, 1, 2, 3]))),
         V, "labels"),
    case("load-fractional-labels", lambda c: idata.load(c.npz("frac.npz", x=np.zeros((4, 3)),
                                                                y=np.array([0.5, 1, 2, 3]))), V, "labels"),
    case("load-1d-x", lambda c: idata.load(c.npz("x1d.npz", x=np.zeros(4), y=np.arange(4))), V, "x"),
    case("load-text-file-as-npz", lambda c: idata.load(c.text_file("text.npz")), V, "text.npz"),
    case("load-object-array", lambda c: idata.load(c.npz("obj.npz", x=np.array([{}, None], dtype=object),
                                                           y=np.zeros(2))), V, "obj.npz"),
    case("load-string-array", lambda c: idata.load(c.npz("str.npz", x=np.array([["a", "b"], ["c", "d"]]),
                                                           y=np.arange(2))), V, "str.npz"),
    case("load-single-example", lambda c: idata.load(c.npz("one.npz", x=np.zeros((1, 3)), y=np.zeros(1, int))), V,
         "one.npz"),
]


ALL_CASES = (SPEC_CASES + CONSTRUCTOR_CASES + FILL_CASES + FANS_GAIN_CASES + INIT_MODEL_CASES + LSUV_CASES
             + PROBE_CASES + PRETRAIN_CASES + THEORY_CASES + ZOO_DATA_CASES)


@pytest.mark.parametrize("bad", ALL_CASES)
def test_bad_input(bad: Case, tmp_path):
    ctx = Ctx(tmp_path)
    if bad.prepare is not None:
        bad.prepare(ctx)
    target = ctx.target(bad.target)
    before = snapshot(**target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            bad.call(ctx)
        except Exception as exc:  # noqa: BLE001 - what was raised is the subject of the test
            raised = exc
        else:
            raised = None
    after = snapshot(**target)
    problems = []
    if raised is None:
        problems.append(f"accepted: no {bad.exc.__name__} raised")
    else:
        message = str(raised)
        if not isinstance(raised, bad.exc):
            problems.append(f"raised {type(raised).__name__} instead of {bad.exc.__name__}: {message[:300]}")
        if not names_culprit(message, bad.names):
            problems.append(f"message does not name {' or '.join(map(repr, bad.names))}: {message[:300]}")
    try:
        assert_untouched(before, after)
    except AssertionError as exc:
        problems.append(str(exc))
    assert not problems, "\n".join(problems)


def test_enough_cases():
    assert len(ALL_CASES) >= 130


# --------------------------------------------------------------------------------------------------
# Not errors, but promises about odd inputs: meta is a no-op, small batches are not judged, loaders forked


@pytest.mark.parametrize("name", initlab.available())
def test_meta_tensor_is_a_no_op(name):
    ini = initlab.get(name)
    shape = (8, 4, 3, 3) if name == "delta_orthogonal" else (8, 4)
    t = torch.empty(shape, device="meta")
    before = snapshot(tensor=t)
    assert ini.init_(t, generator=torch.Generator().manual_seed(0)) is t
    assert ini.init_(t) is t  # no generator: the global RNG is still not consumed
    assert_untouched(before, snapshot(tensor=t))


def test_probe_leaves_the_model_exactly_as_it_was(tmp_path):
    ctx = Ctx(tmp_path)
    before = snapshot(ctx.mlp)
    result = initlab.probe(ctx.mlp, ctx.x, ctx.labels % 4, train=True)
    assert_untouched(before, snapshot(ctx.mlp))
    assert result.batch_size == 64


def test_small_batch_is_not_judged_for_dead_units(tmp_path):
    ctx = Ctx(tmp_path)
    before = snapshot(ctx.mlp)
    result = initlab.probe(ctx.mlp, ctx.x[:4])
    assert_untouched(before, snapshot(ctx.mlp))
    assert not [v for v in result.verdicts if v.code in ("dead_units", "symmetric_units")]
    assert any("too small to judge dead units" in n for n in result.notes)


@pytest.mark.parametrize("tool", ["lsuv", "pretrain"])
def test_dataloader_batches_are_read_under_a_forked_rng(tool, tmp_path):
    ctx = Ctx(tmp_path)
    before = snapshot()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if tool == "lsuv":
            initlab.lsuv(ctx.mlp, _loader(ctx.x), seed=0)
        else:
            initlab.pretrain(ctx.sig, _loader(ctx.x01), epochs=1, progress=False, seed=0)
    assert_untouched(before, snapshot())  # the weights changed, as asked; the global RNG did not move
