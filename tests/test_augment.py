"""Differentiable siamese augmentation: gradients, determinism, reuse of a draw, and each op's meaning."""
from __future__ import annotations

import math

import pytest
import torch

from rtp_scale.data.augment import OPS, AugmentDraw, Augmenter
from rtp_scale.errors import UserError


def images(n=2, c=3, h=6, w=6, dtype=torch.float64, seed=0) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# Fixed draws chosen so that every op actually changes the image (non-zero shifts, mixed flips, ...).
FIXED_DRAWS = {
    "color": AugmentDraw("color", 2, {"brightness": torch.tensor([0.3, -0.2]), "saturation": torch.tensor([1.7, 0.4]),
                                      "contrast": torch.tensor([0.6, 1.4])}),
    "crop": AugmentDraw("crop", 2, {"u_row": torch.tensor([0.9, 0.1]), "u_col": torch.tensor([0.05, 0.7])}),
    "cutout": AugmentDraw("cutout", 2, {"u_row": torch.tensor([0.5, 0.05]), "u_col": torch.tensor([0.3, 0.95])}),
    "flip": AugmentDraw("flip", 2, {"flip": torch.tensor([True, False])}),
    "scale": AugmentDraw("scale", 2, {"sx": torch.tensor([1.13, 0.87]), "sy": torch.tensor([0.9, 1.19])}),
    "rotate": AugmentDraw("rotate", 2, {"angle": torch.tensor([0.21, -0.17])}),
}


@pytest.mark.parametrize("op", OPS)
def test_gradcheck_each_op_float64(op):
    draw = FIXED_DRAWS[op]
    x = images(dtype=torch.float64).requires_grad_(True)
    aug = Augmenter(op)
    assert torch.autograd.gradcheck(lambda t: aug.apply(t, draw), (x,), eps=1e-6, atol=1e-6)
    out = aug.apply(x, draw)
    assert out.shape == x.shape and out.dtype == torch.float64
    assert not torch.allclose(out, x)  # the fixed draw really transforms


@pytest.mark.parametrize("op", OPS)
def test_drawn_params_shape_preserved_float32_and_float64(op):
    aug = Augmenter(op)
    for dtype in (torch.float32, torch.float64):
        x = images(n=5, h=8, w=12, dtype=dtype)
        draw = aug.draw(5, torch.Generator().manual_seed(7), dtype=dtype)
        assert draw.op == op and draw.n == 5 and all(v.shape == (5,) for v in draw.params.values())
        out = aug.apply(x, draw)
        assert out.shape == x.shape and out.dtype == dtype and torch.isfinite(out).all()


def test_same_seed_same_bits_and_different_seeds_differ():
    aug = Augmenter()
    x = images(n=8, h=16, w=16, dtype=torch.float32)
    g1, g2, g3 = (torch.Generator().manual_seed(s) for s in (11, 11, 12))
    outs1 = [aug(x, g1) for _ in range(6)]
    outs2 = [aug(x, g2) for _ in range(6)]
    outs3 = [aug(x, g3) for _ in range(6)]
    assert all(torch.equal(a, b) for a, b in zip(outs1, outs2))
    assert any(not torch.equal(a, c) for a, c in zip(outs1, outs3))


def test_float32_and_float64_draws_agree():
    aug = Augmenter()
    d32 = aug.draw(4, torch.Generator().manual_seed(3), dtype=torch.float32)
    d64 = aug.draw(4, torch.Generator().manual_seed(3), dtype=torch.float64)
    assert d32.op == d64.op
    for k in d32.params:
        assert torch.equal(d32.params[k].to(d64.params[k].dtype), d64.params[k])


def test_every_op_gets_chosen():
    aug = Augmenter()
    g = torch.Generator().manual_seed(0)
    chosen = {aug.draw(1, g).op for _ in range(200)}
    assert chosen == set(OPS)
    assert {Augmenter("flip_rotate").draw(1, g).op for _ in range(50)} == {"flip", "rotate"}


def test_none_is_identity_and_draws_nothing():
    x = images()
    for spec in ("none", "", "None"):
        aug = Augmenter(spec)
        assert not aug.enabled
        g = torch.Generator().manual_seed(1)
        state = g.get_state()
        assert aug(x, g) is x
        assert aug.apply(x, aug.draw(2, g)) is x
        assert torch.equal(g.get_state(), state)
    assert Augmenter().enabled


def test_unknown_op_is_user_error():
    with pytest.raises(UserError, match="unknown augmentation op 'blur'"):
        Augmenter("color_blur")


def test_draw_reused_across_a_larger_batch():
    """A draw for n images applies image i's params to rows i, i+n, ... (siamese real/synthetic use)."""
    aug = Augmenter()
    x = images(n=6, h=10, w=10)
    g = torch.Generator().manual_seed(4)
    for _ in range(12):  # several draws, so several ops are covered
        draw = aug.draw(2, g, dtype=torch.float64)
        whole = aug.apply(x, draw)
        for k in range(3):
            assert torch.equal(whole[2 * k : 2 * k + 2], aug.apply(x[2 * k : 2 * k + 2], draw))
    with pytest.raises(ValueError, match="multiple"):
        aug.apply(images(n=3), AugmentDraw("flip", 2, {"flip": torch.tensor([True, False])}))


def test_op_semantics():
    x = images(n=2, c=3, h=8, w=8)
    aug = Augmenter()
    # flip: mirror along width for the flagged image only
    flipped = aug.apply(x, FIXED_DRAWS["flip"])
    assert torch.equal(flipped[0], x[0].flip(2)) and torch.equal(flipped[1], x[1])
    # crop: shift = round(0.125 * 8) = 1; u=0.9 -> +1 row, u=0.05 -> -1 col (zero fill at the edges)
    draw = AugmentDraw("crop", 1, {"u_row": torch.tensor([0.9]), "u_col": torch.tensor([0.05])})
    out = aug.apply(x[:1], draw)
    assert torch.equal(out[0, :, :-1, 1:], x[0, :, 1:, :-1])
    assert (out[0, :, -1, :] == 0).all() and (out[0, :, :, 0] == 0).all()
    # cutout: a 4x4 zero square, everything else untouched
    draw = AugmentDraw("cutout", 1, {"u_row": torch.tensor([0.5]), "u_col": torch.tensor([0.5])})
    out = aug.apply(x[:1], draw)
    zeroed = (out == 0) & (x[:1] != 0)
    assert int(zeroed[0, 0].sum()) == 16 and torch.equal(out[~zeroed], x[:1][~zeroed])
    # neutral parameters are the identity
    ones, zeros = torch.ones(2), torch.zeros(2)
    neutral = {
        "color": {"brightness": zeros, "saturation": ones, "contrast": ones},
        "scale": {"sx": ones, "sy": ones},
        "rotate": {"angle": zeros},
    }
    for op, params in neutral.items():
        assert torch.allclose(aug.apply(x, AugmentDraw(op, 2, params)), x, atol=1e-12)
    # rotate by 90 degrees on a square image with align_corners=True is an exact transpose + flip
    quarter_turn = torch.full((2,), math.pi / 2, dtype=torch.float64)
    rot = aug.apply(x, AugmentDraw("rotate", 2, {"angle": quarter_turn}))
    assert torch.allclose(rot, x.transpose(2, 3).flip(2), atol=1e-10)


def test_parameter_ranges_match_dsa():
    g = torch.Generator().manual_seed(0)
    n = 4000
    aug = {op: Augmenter(op) for op in OPS}
    color = aug["color"].draw(n, g).params
    assert -0.5 <= float(color["brightness"].min()) and float(color["brightness"].max()) < 0.5
    assert 0 <= float(color["saturation"].min()) and float(color["saturation"].max()) < 2.0
    assert 0.5 <= float(color["contrast"].min()) and float(color["contrast"].max()) < 1.5
    scale = aug["scale"].draw(n, g).params
    assert 1 / 1.2 - 1e-6 <= float(scale["sx"].min()) and float(scale["sy"].max()) < 1.2
    angle = aug["rotate"].draw(n, g).params["angle"]
    assert float(angle.abs().max()) <= math.radians(15) + 1e-6 and float(angle.abs().max()) > math.radians(14)
    flip = aug["flip"].draw(n, g).params["flip"]
    assert 0.45 < float(flip.float().mean()) < 0.55


def test_gradient_flows_through_call():
    x = images(n=4, dtype=torch.float32).requires_grad_(True)
    g = torch.Generator().manual_seed(9)
    aug = Augmenter("color_crop_scale")
    aug(x, g).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
