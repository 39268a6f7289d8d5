"""DD: the learned-lr and image meta-gradients equal plain autograd through the unroll (float64), the per-step
image groups and init modes follow the paper, and a short run on digits lowers the meta-loss."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from rtp_scale.config import build_config
from rtp_scale.distill import run
from rtp_scale.errors import UserError
from rtp_scale.memory import AddressableMemory, PixelMemory
from rtp_scale.methods import build_method
from rtp_scale.methods.dd import DDMethod, step_groups, steps_per_epoch
from rtp_scale.models import ConvNet
from tests.conftest import TINY

C = 3


def _problem(ipc: int, *, steps: int, epochs: int, init: str, mode: str, kind: str = "pixel"):
    cfg = build_config(None, ["method.name=dd", f"memory.kind={kind}", f"inner.steps={steps}", f"dd.epochs={epochs}",
                              f"dd.init={init}", f"unroll.mode={mode}", "memory.coeff_l2=0.3", "run.seed=4"])
    net = ConvNet(channels=1, num_classes=C, image_size=(8, 8), width=4, depth=2).to(torch.float64)
    gen = torch.Generator().manual_seed(1)
    if kind == "pixel":
        memory = PixelMemory(num_classes=C, image_shape=(1, 8, 8), images_per_class=ipc, generator=gen)
    else:
        memory = AddressableMemory(num_classes=C, image_shape=(1, 8, 8), num_bases=4, images_per_class=ipc,
                                   downsample=2, generator=gen)
    memory = memory.to(torch.float64)
    real_x = torch.randn(9, 1, 8, 8, generator=gen, dtype=torch.float64)
    real_y = torch.randint(0, C, (9,), generator=gen)
    lrs = (0.05 + 0.05 * torch.rand(steps, generator=gen, dtype=torch.float64)).requires_grad_(True)
    return cfg, net, memory, real_x, real_y, lrs


def _plain_autograd(cfg, net, memory, real_x, real_y, lrs, params0):
    """DD written out: T plain GD steps with create_graph, step t on group t mod S, one backward at the end."""
    x, y = memory.class_images()
    S = steps_per_epoch(cfg.inner.steps, cfg.dd.epochs)
    groups = step_groups(num_classes=C, images_per_class=len(y) // C, steps=S)
    params = {k: v.clone().requires_grad_(True) for k, v in params0.items()}
    for t in range(cfg.inner.steps):
        idx = groups[t % S]
        loss = F.cross_entropy(functional_call(net, params, (x[idx],)), y[idx])
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        params = {k: p - lrs[t] * g for (k, p), g in zip(params.items(), grads)}
    meta_loss = F.cross_entropy(functional_call(net, params, (real_x,)), real_y)
    meta_loss = meta_loss + cfg.memory.coeff_l2 * memory.coefficient_l2()
    wrt = [p for p in memory.parameters() if p.requires_grad] + [lrs]
    return torch.autograd.grad(meta_loss, wrt)


@pytest.mark.parametrize("ipc, steps, epochs, init, mode, kind", [
    (2, 5, 2, "fixed", "full", "pixel"),        # S = 3 > r = 2: cycling images, last epoch cut short
    (4, 6, 3, "random", "segmented", "pixel"),  # S = 2 <= r = 4: two disjoint groups per class
    (3, 4, 2, "random", "full", "addressable"),  # DD objective on RtP memories
])
def test_dd_meta_gradient_matches_plain_autograd_float64(ipc, steps, epochs, init, mode, kind):
    cfg, net, memory, real_x, real_y, lrs = _problem(ipc, steps=steps, epochs=epochs, init=init, mode=mode, kind=kind)
    method = build_method(cfg, net, augmenter=_NoAugment())
    assert isinstance(method, DDMethod) and cfg.inner.momentum == 0.0 and cfg.inner.learn_lr
    gen = torch.Generator().manual_seed(9)
    params0 = method.initial_params(torch.Generator().manual_seed(9))  # what the method draws from `gen`
    scale = 0.5
    metrics, lr_grad = method.meta_gradient(memory, real_x, real_y, lrs=lrs, generator=gen, scale=scale)
    ref = _plain_autograd(cfg, net, memory, real_x, real_y, lrs, params0)
    got = [p.grad for p in memory.parameters() if p.requires_grad] + [lr_grad]
    for g, r in zip(got, ref):
        assert float(r.norm()) > 0
        assert float((g - scale * r).norm() / (scale * r).norm()) < 1e-10
    assert metrics["inner/steps"] == steps


class _NoAugment:
    enabled = False


def test_step_groups_follow_the_paper():
    groups = step_groups(num_classes=2, images_per_class=4, steps=2)  # r >= S: disjoint, cover everything
    assert [g.tolist() for g in groups] == [[0, 1, 4, 5], [2, 3, 6, 7]]
    groups = step_groups(num_classes=2, images_per_class=2, steps=3)  # r < S: one image per class, cycling
    assert [g.tolist() for g in groups] == [[0, 2], [1, 3], [0, 2]]
    assert steps_per_epoch(10, 3) == 4 and steps_per_epoch(9, 3) == 3


def test_fixed_init_repeats_and_random_init_does_not():
    cfg, net, *_ = _problem(1, steps=2, epochs=1, init="fixed", mode="full")
    fixed = DDMethod(cfg, net, _NoAugment())
    a, b = (fixed.initial_params(torch.Generator().manual_seed(s)) for s in (1, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    cfg, net, *_ = _problem(1, steps=2, epochs=1, init="random", mode="full")
    fresh = DDMethod(cfg, net, _NoAugment())
    a, b = (fresh.initial_params(torch.Generator().manual_seed(s)) for s in (1, 2))
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_config_sets_plain_gd_and_validates_dd_keys():
    cfg = build_config(None, ["method.name=dd", "inner.momentum=0.9"])
    assert cfg.inner.momentum == 0.0 and cfg.inner.learn_lr
    with pytest.raises(UserError, match="dd.epochs=0 must be > 0"):
        build_config(None, ["method.name=dd", "dd.epochs=0"])
    with pytest.raises(UserError, match="dd.init='warm' is not allowed"):
        build_config(None, ["dd.init=warm"])
    with pytest.raises(UserError, match="only used by method.name=frepo"):
        build_config(None, ["method.name=dd", "memory.kind=pixel", "memory.learn_labels=true"])


def test_dd_distills_digits_lowers_meta_loss_and_learns_lrs(tmp_path):
    """Fixed-init DD, so the meta-loss of the memory can be compared before and after on the same network."""
    from rtp_scale.builders import build_run_memory
    from rtp_scale.eval import build_net
    from rtp_scale.memory.artifact import load_artifact
    from rtp_scale.runtime import prepare_data

    out = tmp_path / "dd"
    cfg = build_config(None, [*TINY, "method.name=dd", "memory.kind=pixel", "memory.ipc=2", "inner.steps=4",
                              "dd.epochs=2", "dd.init=fixed", "meta.optimizer=adam", "meta.lr=0.05", "meta.lr_lr=0.01",
                              "inner.lr=0.05", "meta.steps=8", "model.width=16", "data.real_per_class=32",
                              "checkpoint.every=0", "log.image_every=0", f"run.out_dir={out}"])
    results = run(cfg)
    assert results["method"] == "dd" and results["storage"]["ipc_equivalent"] == pytest.approx(2.0)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    learned = ckpt["extra"]["lrs"]
    assert learned.shape == (4,) and not torch.allclose(learned, torch.full((4,), 0.05))

    data = prepare_data(cfg.data)
    info = data.info
    net = build_net(cfg.model, channels=info.channels, num_classes=info.num_classes,
                    image_size=(info.height, info.width))
    method = DDMethod(cfg, net, _NoAugment())

    def probe(memory, lrs) -> float:
        metrics, _ = method.meta_gradient(memory, data.train_x, data.train_y, lrs=lrs, generator=None)
        return metrics["meta/loss"]

    before = probe(build_run_memory(cfg, data), torch.full((4,), 0.05))
    after = probe(load_artifact(out / "memory.safetensors")[0], learned)
    assert after < 0.95 * before, (before, after)
