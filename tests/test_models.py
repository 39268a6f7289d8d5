"""ConvNet + registry: shapes, pure functional calls, reproducible generator-only init, double backward."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from rtp_scale.errors import UserError
from rtp_scale.models import ConvNet, build_model, init_params, load_params_, model_names
from rtp_scale.models.convnet import ill_conditioned_norm_warning


def _small(**kw) -> ConvNet:
    opts = dict(channels=3, num_classes=10, image_size=(16, 16), width=8, depth=2)
    opts.update(kw)
    return build_model("convnet", **opts)


@pytest.mark.parametrize("shape,depth,feature_hw", [
    ((1, 28, 28), 3, 4),   # reference pads 28 -> 32 on the first conv: 32 -> 16 -> 8 -> 4
    ((3, 32, 32), 3, 4),
    ((1, 8, 8), 3, 1),     # 8 -> 4 -> 2 -> 1
    ((3, 64, 64), 4, 4),
])
def test_output_and_feature_shapes(shape, depth, feature_hw):
    c, h, w = shape
    model = build_model("convnet", channels=c, num_classes=10, image_size=(h, w), depth=depth, width=16)
    x = torch.randn(2, c, h, w)
    assert model(x).shape == (2, 10)
    assert model.features(x).shape == (2, 16 * feature_hw * feature_hw)


def test_tiny_images_stop_pooling_at_one_pixel():
    model = build_model("convnet", channels=1, num_classes=10, image_size=(8, 8), depth=5, width=4)
    assert model.feature_shape == (4, 1, 1)
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
@pytest.mark.parametrize("pooling", ["avg", "max", "none"])
def test_norm_and_pooling_variants(norm, pooling):
    model = _small(norm=norm, pooling=pooling)
    x = torch.randn(4, 3, 16, 16)
    assert model(x).shape == (4, 10)
    expected_hw = 16 if pooling == "none" else 4
    assert model.features(x).shape == (4, 8 * expected_hw * expected_hw)
    assert list(model.buffers()) == []  # nothing a functional call could mutate


def test_feature_width_multiplier_doubles_per_block():
    model = _small(width_multiplier=2, depth=3)
    assert model.feature_shape == (8 * 4, 2, 2)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_functional_call_equals_module_exactly_with_equal_gradients():
    model = _small()
    params = init_params(model, torch.Generator().manual_seed(3))
    load_params_(model, params)
    x = torch.randn(5, 3, 16, 16)
    y = torch.randint(0, 10, (5,))
    leaf = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    out_f = functional_call(model, leaf, (x,))
    out_m = model(x)
    assert torch.equal(out_f, out_m)
    g_f = torch.autograd.grad(F.cross_entropy(out_f, y), list(leaf.values()))
    g_m = torch.autograd.grad(F.cross_entropy(out_m, y), [dict(model.named_parameters())[k] for k in leaf])
    for a, b in zip(g_f, g_m):
        assert torch.equal(a, b)


def test_init_reproducible_and_seed_dependent_and_global_rng_untouched():
    model = _small()
    rng_before = torch.random.get_rng_state()
    a = init_params(model, torch.Generator().manual_seed(7))
    b = init_params(model, torch.Generator().manual_seed(7))
    c = init_params(model, torch.Generator().manual_seed(8))
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert set(a) == {k for k, _ in model.named_parameters()}
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])
    assert all(not v.requires_grad for v in a.values())


def test_init_follows_torch_default_laws():
    model = _small(depth=1, width=64)
    p = init_params(model, torch.Generator().manual_seed(0))
    conv_bound = 1 / math.sqrt(3 * 9)
    w = p["layers.0.weight"]
    assert w.abs().max() <= conv_bound and w.abs().max() > 0.9 * conv_bound
    assert abs(w.std().item() - conv_bound / math.sqrt(3)) < 0.1 * conv_bound  # uniform std = bound/sqrt(3)
    fc_bound = 1 / math.sqrt(model.num_features)
    assert p["classifier.bias"].abs().max() <= fc_bound
    assert torch.equal(p["layers.1.weight"], torch.ones(64)) and torch.equal(p["layers.1.bias"], torch.zeros(64))


def test_double_backward_through_functional_call():
    """Meta-gradient shape of the engine: d/dx of a function of dL/dparams."""
    model = _small(norm="instance", pooling="avg")
    params = {k: v.requires_grad_(True) for k, v in init_params(model, torch.Generator().manual_seed(1)).items()}
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    y = torch.randint(0, 10, (4,))
    loss = F.cross_entropy(functional_call(model, params, (x,)), y)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    meta = sum(g.square().sum() for g in grads)
    (gx,) = torch.autograd.grad(meta, x)
    assert gx.shape == x.shape and torch.isfinite(gx).all() and gx.abs().sum() > 0


def test_bad_names_and_options_are_user_errors():
    assert model_names() == ["alexnet", "convnet", "lenet", "mlp", "resnet18", "resnet18_bn", "vgg11", "vgg11_bn"]
    with pytest.raises(UserError, match="convnet"):
        build_model("resnet", channels=3, num_classes=10, image_size=(32, 32))
    with pytest.raises(UserError, match="valid: .*width"):
        build_model("convnet", channels=3, num_classes=10, image_size=(32, 32), widht=64)
    with pytest.raises(UserError, match="norm"):
        _small(norm="layer")
    with pytest.raises(UserError, match="pooling"):
        _small(pooling="mean")
    with pytest.raises(UserError):
        _small(depth=0)


@pytest.mark.parametrize("image_size, depth, norm, flagged", [
    ((8, 8), 3, "instance", (3, "2x2", "model.depth=2")),  # digits under the default job's network
    ((8, 8), 4, "instance", (3, "2x2", "model.depth=2")),  # the first block that is too small is named
    ((32, 32), 5, "instance", (5, "2x2", "model.depth=4")),
    ((8, 8), 2, "instance", None),  # its last norm sees 4x4
    ((28, 28), 3, "instance", None),  # MNIST: padded to 32, the last norm sees 8x8
    ((8, 8), 3, "batch", None),  # statistics over the batch, not one image's 4 positions
    ((8, 8), 3, "none", None),
])
def test_instance_norm_on_too_small_a_map_is_flagged_with_the_depth_that_avoids_it(image_size, depth, norm, flagged):
    net = ConvNet(channels=1, num_classes=10, image_size=image_size, depth=depth, norm=norm, width=4)
    warning = ill_conditioned_norm_warning(net, image_size)
    if flagged is None:
        assert warning is None
    else:
        block, size, advice = flagged
        assert f"block {block}'s instance norm normalises a {size} map" in warning and warning.endswith(advice)
