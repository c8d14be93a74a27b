"""Fan tables for every layout (REFERENCE.md section 1), checked against hand-computed values and torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import initlab
from initlab.shapes import LAYOUTS, Fans, fans

# --------------------------------------------------------------------------------------------------
# The reference examples and the table of REFERENCE.md section 1, one row per case:
# (shape, layout, options, (fan_in, fan_out, receptive_field)) computed by hand.
TABLE = [
    # REFERENCE examples
    ((30, 20), "torch", {}, (20, 30, 1)),
    ((16, 8, 3, 3), "torch", {}, (72, 144, 9)),
    # torch: (out, in/g, *k); dense, conv1d/2d/3d
    ((128, 256), "torch", {}, (256, 128, 1)),
    ((16, 8, 5), "torch", {}, (40, 80, 5)),
    ((8, 4, 3, 3, 3), "torch", {}, (108, 216, 27)),
    # grouped and depthwise conv: the right fan_out divides by groups; torch over-counts it
    ((4, 1, 3, 3), "torch", {"groups": 4}, (9, 9, 9)),
    ((4, 1, 3, 3), "torch", {"groups": 4, "torch_compatible": True}, (9, 36, 9)),
    ((64, 16, 3, 3), "torch", {"groups": 4}, (144, 144, 9)),
    ((64, 16, 3, 3), "torch", {"groups": 4, "torch_compatible": True}, (144, 576, 9)),
    # torch_transposed: ConvTranspose weight (in, out/g, *k); fans of the conv it transposes
    ((8, 16, 3, 3), "torch_transposed", {}, (144, 72, 9)),
    ((8, 4, 3, 3), "torch_transposed", {"groups": 4}, (36, 18, 9)),
    ((8, 4, 3, 3), "torch_transposed", {"groups": 4, "torch_compatible": True}, (36, 72, 9)),
    # keras / jax: (*k, in, out); dense (in, out); vectors and scalars as Keras does
    ((3, 3, 8, 16), "keras", {}, (72, 144, 9)),
    ((3, 3, 8, 16), "jax", {}, (72, 144, 9)),
    ((20, 30), "keras", {}, (20, 30, 1)),
    ((5, 8, 16), "jax", {}, (40, 80, 5)),
    ((7,), "keras", {}, (7, 7, 1)),
    ((), "keras", {}, (1, 1, 1)),
    ((3, 3, 2, 8), "keras", {"groups": 2}, (18, 36, 9)),
    # lasagne_dense: (in, out) for dense; conv weights are torch-like (out, in, *k)
    ((20, 30), "lasagne_dense", {}, (20, 30, 1)),
    ((16, 8, 3, 3), "lasagne_dense", {}, (72, 144, 9)),
    # c01b: (in, k0, k1, out)
    ((8, 3, 3, 16), "c01b", {}, (72, 144, 9)),
    ((8, 5, 2, 4), "c01b", {}, (80, 40, 10)),
    # packed attention: (3E, E) in-projection treated as three (E, E) weights
    ((24, 8), "torch", {"chunks": 3}, (8, 8, 1)),
    ((24, 8), "torch", {}, (8, 24, 1)),
    ((8, 24), "keras", {"chunks": 3}, (8, 8, 1)),
    ((96, 16, 3, 3), "torch", {"groups": 2, "chunks": 3}, (144, 144, 9)),
    # explicit axes (JAX style): every other axis is receptive field
    ((5, 3, 4), "torch", {"in_axis": 0, "out_axis": 2}, (15, 12, 3)),
    ((2, 3, 4), "torch", {"in_axis": (0, 1), "out_axis": -1}, (6, 4, 1)),
    ((4, 6, 7), "keras", {"in_axis": -1, "out_axis": 0}, (42, 24, 6)),
    ((2, 3, 4, 5), "keras", {"in_axis": [1], "out_axis": [2, 3]}, (6, 40, 2)),
]


@pytest.mark.parametrize("shape,layout,options,expected", TABLE)
def test_fan_table(shape, layout, options, expected):
    f = fans(shape, layout, **options)
    assert isinstance(f, Fans)
    assert (f.fan_in, f.fan_out, f.receptive_field) == expected


def test_fans_is_exported_and_accepts_tensors_arrays_and_sizes():
    assert initlab.fans is fans
    expected = fans((16, 8, 3, 3))
    assert fans(torch.empty(16, 8, 3, 3)) == expected
    assert fans(np.empty((16, 8, 3, 3))) == expected
    assert fans(torch.Size([16, 8, 3, 3])) == expected
    assert fans([16, 8, 3, 3]) == expected


def test_fans_derived_quantities():
    f = fans((30, 20))
    fan_in, fan_out = f  # unpacks as (fan_in, fan_out)
    assert (fan_in, fan_out) == (20, 30)
    assert f.fan_avg == 25.0
    assert f.fan_geo_avg == pytest.approx(math.sqrt(600), rel=1e-15)
    assert [f.for_mode(m) for m in ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")] == [
        20.0, 30.0, 25.0, pytest.approx(math.sqrt(600), rel=1e-15)]


TORCH_SHAPES = [(30, 20), (1, 1), (7, 3), (16, 8, 5), (16, 8, 3, 3), (4, 1, 3, 3), (8, 4, 3, 2, 5), (3, 2, 1, 1)]


@pytest.mark.parametrize("shape", TORCH_SHAPES)
def test_torch_layout_matches_torch(shape):
    """Without groups, the torch layout is torch's own fan computation."""
    expected = nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert tuple(fans(shape, "torch")) == expected
    assert tuple(fans(shape, "torch_transposed")) == expected  # torch uses one rule for both


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_torch_compatible_reproduces_torch_on_grouped_modules(groups):
    """torch_compatible=True gives torch's numbers on real grouped Conv and ConvTranspose weights;
    the default divides the output side by groups."""
    conv = nn.Conv2d(8, 16, 3, groups=groups)
    tconv = nn.ConvTranspose2d(8, 16, 3, groups=groups)
    for w, layout in ((conv.weight, "torch"), (tconv.weight, "torch_transposed")):
        torch_fans = nn.init._calculate_fan_in_and_fan_out(w)
        assert tuple(fans(w, layout, groups=groups, torch_compatible=True)) == torch_fans
        right = fans(w, layout, groups=groups)
        assert right.fan_in == torch_fans[0]
        assert right.fan_out == torch_fans[1] / groups


def test_depthwise_conv_module():
    w = nn.Conv2d(4, 4, 3, groups=4).weight  # (4, 1, 3, 3): each output sees 9 inputs and feeds 9 outputs
    assert tuple(fans(w, groups=4)) == (9, 9)
    assert tuple(fans(w, groups=4, torch_compatible=True)) == (9, 36)


def test_multihead_attention_packed_weight():
    mha = nn.MultiheadAttention(8, 2)
    w = mha.in_proj_weight  # (3E, E)
    assert tuple(w.shape) == (24, 8)
    assert tuple(fans(w, chunks=3)) == tuple(fans((8, 8)))
    assert tuple(fans(w)) == (8, 24)  # what torch's xavier sees: fan_out 3E


@pytest.mark.parametrize("shape", [(16, 8, 3, 3), (16, 8), (16, 8, 5)])
def test_layouts_agree_on_the_same_weight_laid_out_differently(shape):
    """One conv weight with out=16, in=8 gives the same fans in every layout once laid out that way."""
    out, inp, *k = shape
    expected = fans(shape, "torch")
    assert fans((*k, inp, out), "keras") == expected
    assert fans((inp, out, *k), "torch_transposed") == Fans(out * math.prod(k), inp * math.prod(k),
                                                           math.prod(k))
    if len(shape) == 2:
        assert fans((inp, out), "lasagne_dense") == expected
    if len(shape) == 4:
        assert fans((inp, *k, out), "c01b") == expected
    # the same weight described by explicit axes
    assert fans(shape, in_axis=1, out_axis=0) == expected


def test_every_layout_is_in_the_table():
    assert set(LAYOUTS) == {row[1] for row in TABLE}


# --------------------------------------------------------------------------------------------------
# Bad input: ValueError naming the argument and the accepted values

def test_unknown_layout():
    with pytest.raises(ValueError, match=r"layout must be one of .*torch.*keras.*c01b.*got 'tf'"):
        fans((3, 4), "tf")


@pytest.mark.parametrize("layout", ["torch", "torch_transposed", "lasagne_dense", "c01b"])
@pytest.mark.parametrize("shape", [(5,), ()])
def test_too_few_dims(layout, shape):
    with pytest.raises(ValueError, match="at least 2 dims"):
        fans(shape, layout)


def test_c01b_needs_four_dims():
    with pytest.raises(ValueError, match="c01b.*4-dim"):
        fans((8, 3, 16), "c01b")


@pytest.mark.parametrize("name,value,exc", [("groups", 0, ValueError), ("groups", -2, ValueError),
                                            ("groups", 1.5, TypeError), ("groups", True, TypeError),
                                            ("chunks", 0, ValueError), ("chunks", "3", TypeError)])
def test_groups_and_chunks_must_be_positive_ints(name, value, exc):  # a wrong type is a TypeError
    with pytest.raises(exc, match=f"{name} must be a positive int"):
        fans((12, 4), **{name: value})


def test_groups_and_chunks_must_divide_the_output_dim():
    with pytest.raises(ValueError, match="groups=5 does not divide"):
        fans((12, 4, 3, 3), groups=5)
    with pytest.raises(ValueError, match="chunks=5 does not divide"):
        fans((12, 4), chunks=5)


def test_axes_must_come_together_and_be_in_range():
    with pytest.raises(ValueError, match="in_axis and out_axis must be given together"):
        fans((3, 4, 5), in_axis=0)
    with pytest.raises(ValueError, match="out_axis=3 is out of range"):
        fans((3, 4, 5), in_axis=0, out_axis=3)
    with pytest.raises(ValueError, match="in_axis=-4 is out of range"):
        fans((3, 4, 5), in_axis=-4, out_axis=0)


@pytest.mark.parametrize("shape", [(3, -1), (2.5, 3), ("a", 3)])
def test_bad_shapes(shape):
    with pytest.raises((ValueError, TypeError), match="shape must"):
        fans(shape)


def test_unknown_mode():
    with pytest.raises(ValueError, match="mode must be one of fan_in, fan_out, fan_avg, fan_geo_avg; got 'fan'"):
        fans((3, 4)).for_mode("fan")
