"""Memories, storage budget and the safetensors artifact."""
from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from rtp_scale.errors import UserError
from rtp_scale.memory import (AddressableMemory, PixelMemory, addressable_images_per_class, build_memory,
                              pixel_images_per_class)
from rtp_scale.memory.artifact import load_artifact, save_artifact


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _addr(**kw) -> AddressableMemory:
    opts = dict(num_classes=4, image_shape=(3, 8, 8), num_bases=5, images_per_class=3, downsample=2,
                generator=_gen())
    opts.update(kw)
    return AddressableMemory(**opts)


# ---------------------------------------------------------------- budget

def test_budget_reference_numbers():
    assert addressable_images_per_class(ipc=1, num_classes=10, pixels_per_image=3072, num_bases=16,
                                        downsample=2) == 115
    assert addressable_images_per_class(ipc=1, num_classes=10, pixels_per_image=784, num_bases=16,
                                        downsample=2) == 29


def test_budget_too_small_is_user_error():
    with pytest.raises(UserError, match="too small for K=64"):
        addressable_images_per_class(ipc=1, num_classes=10, pixels_per_image=784, num_bases=64, downsample=1)
    with pytest.raises(UserError):
        addressable_images_per_class(ipc=0, num_classes=10, pixels_per_image=784, num_bases=4, downsample=1)


@pytest.mark.parametrize("image_shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8), (3, 64, 64), (1, 7, 9)])
def test_storage_formula_and_within_budget(image_shape):
    c, h, w = image_shape
    num_classes = 10
    checked = 0
    for ipc in (1, 10, 50):
        for K in (4, 16, 64):
            for ds in (1, 2, 4):
                try:
                    r = addressable_images_per_class(ipc=ipc, num_classes=num_classes, pixels_per_image=c * h * w,
                                                     num_bases=K, downsample=ds)
                except UserError:
                    assert K * c * h * w / ds**2 + num_classes * K > ipc * num_classes * c * h * w
                    continue
                mem = AddressableMemory(num_classes=num_classes, image_shape=image_shape, num_bases=K,
                                        images_per_class=r, downsample=ds, generator=_gen())
                report = mem.storage(budget_ipc=ipc)
                floats = K * c * (h // ds) * (w // ds) + num_classes * r * K
                assert report.floats == floats == sum(p.numel() for p in mem.parameters())
                assert report.floats <= ipc * num_classes * c * h * w
                assert report.ipc_equivalent == floats / (num_classes * c * h * w) <= ipc
                assert report.as_dict()["budget_ipc"] == ipc
                # r is the largest that fits when ds divides the image (D/ds^2 is then the exact base size)
                if h % ds == 0 and w % ds == 0:
                    assert floats + num_classes * K > ipc * num_classes * c * h * w
                checked += 1
    assert checked >= 5


# ---------------------------------------------------------------- addressable memory

@pytest.mark.parametrize("ds", [1, 2])
def test_recall_shapes_and_class_images(ds):
    mem = _addr(downsample=ds)
    assert mem.bases.shape == (5, 3, 8 // ds, 8 // ds) and mem.addressing.shape == (4, 3, 5)
    assert mem.recall(torch.rand(6, 4)).shape == (6, 3, 3, 8, 8)
    x, y = mem.class_images()
    assert x.shape == (12, 3, 8, 8) and y.dtype == torch.int64
    assert y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    one_hot = torch.nn.functional.one_hot(torch.tensor([2]), 4).float()
    assert torch.allclose(x[6:9], mem.recall(one_hot)[0])
    assert torch.equal(mem.targets(), torch.nn.functional.one_hot(y, 4).float())


@pytest.mark.parametrize("kind", ["addressable", "pixel"])
def test_recall_is_linear_in_the_query(kind):
    mem = (_addr() if kind == "addressable" else PixelMemory(num_classes=4, image_shape=(3, 8, 8),
                                                             images_per_class=2, generator=_gen())).double()
    g = _gen(5)
    soft1 = torch.softmax(torch.randn(3, 4, generator=g, dtype=torch.float64), 1)
    soft2 = torch.softmax(torch.randn(3, 4, generator=g, dtype=torch.float64), 1)
    mixed = torch.randn(3, 4, generator=g, dtype=torch.float64)  # negative and >1 entries too
    for q1, q2 in ((soft1, soft2), (soft1, mixed)):
        a, b = 0.7, -1.3
        lhs = mem.recall(a * q1 + b * q2)
        rhs = a * mem.recall(q1) + b * mem.recall(q2)
        assert torch.allclose(lhs, rhs, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(mem.recall(soft1), mem.recall(soft2))


def test_gradients_reach_bases_and_addressing():
    mem = _addr()
    loss = mem.recall(torch.rand(2, 4)).square().sum() + mem.coefficient_l2()
    loss.backward()
    assert mem.bases.grad is not None and mem.bases.grad.abs().sum() > 0
    assert mem.addressing.grad is not None and mem.addressing.grad.abs().sum() > 0
    assert torch.allclose(mem.coefficient_l2(), mem.addressing.detach().pow(2).mean())


def test_init_reproducible_and_no_global_rng():
    state = torch.random.get_rng_state()
    a, b, c = _addr(generator=_gen(1)), _addr(generator=_gen(1)), _addr(generator=_gen(2))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.bases, b.bases) and torch.equal(a.addressing, b.addressing)
    assert not torch.equal(a.bases, c.bases)


def test_init_from_labelled_real_images_recalls_images_of_the_right_class():
    real = torch.randn(8, 3, 8, 8, generator=_gen(3))
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    mem = _addr(num_bases=8, downsample=1, init_images_NCHW=real, init_labels=labels)
    assert torch.equal(mem.bases.detach(), real)
    x, y = mem.class_images()
    nearest = torch.cdist(x.detach().flatten(1), real.flatten(1)).argmin(1)
    assert torch.equal(labels[nearest], y)
    mem2 = _addr(num_bases=8, downsample=2, init_images_NCHW=real)
    assert torch.allclose(mem2.bases.detach(), torch.nn.functional.avg_pool2d(real, 2))
    with pytest.raises(UserError):
        _addr(num_bases=8, init_images_NCHW=real[:3])


# ---------------------------------------------------------------- pixel memory and factory

def test_pixel_memory_interface():
    real = torch.randn(6, 1, 8, 8, generator=_gen())
    mem = PixelMemory(num_classes=3, image_shape=(1, 8, 8), images_per_class=2, init_images_NCHW=real)
    x, y = mem.class_images()
    assert torch.equal(x.detach(), real) and y.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(mem.recall(torch.eye(3)).reshape(6, 1, 8, 8).detach(), real)
    assert torch.equal(mem.targets(), torch.nn.functional.one_hot(y, 3).float())
    assert not mem.labels.requires_grad and float(mem.coefficient_l2()) == 0.0
    assert mem.storage(budget_ipc=2).floats == 6 * 64 and mem.storage().ipc_equivalent == 2.0
    learned = PixelMemory(num_classes=3, image_shape=(1, 8, 8), images_per_class=2, learn_labels=True)
    assert learned.labels.requires_grad and learned.storage().floats == 6 * 64 + 6 * 3


def test_downsampled_pixel_memory_stores_pooled_images_and_recalls_them_upsampled():
    real = torch.randn(6, 1, 8, 8, generator=_gen())
    mem = PixelMemory(num_classes=3, image_shape=(1, 8, 8), images_per_class=2, init_images_NCHW=real, downsample=2)
    assert list(mem.images.shape) == [3, 2, 1, 4, 4] and mem.meta["downsample"] == 2
    pooled = torch.nn.functional.avg_pool2d(real, 2)
    assert torch.equal(mem.images.detach().reshape(6, 1, 4, 4), pooled)
    x, y = mem.class_images()
    expected = torch.nn.functional.interpolate(pooled, size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(x.detach(), expected) and y.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.allclose(mem.recall(torch.eye(3)).reshape(6, 1, 8, 8).detach(), expected)
    # a quarter of the floats per image: 6 images of 16 floats, 0.5 images per class of storage
    assert mem.storage().floats == 6 * 16 and mem.storage().ipc_equivalent == 0.5
    x.square().sum().backward()
    assert mem.images.grad is not None and mem.images.grad.abs().sum() > 0
    with pytest.raises(UserError, match="larger than the image"):
        PixelMemory(num_classes=3, image_shape=(1, 8, 8), images_per_class=1, downsample=9)


def test_pixel_images_per_class_fits_the_budget():
    mnist = (1, 28, 28)
    assert pixel_images_per_class(ipc=10, image_shape=mnist, downsample=1) == 10
    assert pixel_images_per_class(ipc=0.5, image_shape=mnist, downsample=2) == 2  # 14x14: 4 per full image
    assert pixel_images_per_class(ipc=0.2, image_shape=mnist, downsample=4) == 3  # 7x7: 16 per full image
    with pytest.raises(UserError, match="whole number"):
        pixel_images_per_class(ipc=0.5, image_shape=mnist, downsample=1)
    with pytest.raises(UserError, match="less than one image per class"):
        pixel_images_per_class(ipc=0.2, image_shape=mnist, downsample=2)
    for ipc in (0.2, 0.5, 1, 3):  # the most images that fit: r fit, r + 1 do not
        for ds in (2, 3, 4):
            stored = 3 * (32 // ds) ** 2
            try:
                r = pixel_images_per_class(ipc=ipc, image_shape=(3, 32, 32), downsample=ds)
            except UserError:
                r = 0
            assert r * stored <= ipc * 3 * 32 * 32 < (r + 1) * stored


def test_build_memory_factory():
    assert isinstance(build_memory("pixel", num_classes=2, image_shape=(1, 4, 4), images_per_class=1), PixelMemory)
    with pytest.raises(UserError, match="addressable, pixel"):
        build_memory("hologram", num_classes=2)
    with pytest.raises(UserError, match="unknown argument"):
        build_memory("pixel", num_classes=2, image_shape=(1, 4, 4), images_per_class=1, num_bases=3)
    with pytest.raises(UserError, match="needs"):
        build_memory("addressable", num_classes=2, image_shape=(1, 4, 4))


# ---------------------------------------------------------------- artifact

DATASET = {"name": "toy", "class_names": ["a", "b", "c", "d"], "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]}


def _trained_pixel() -> PixelMemory:
    mem = PixelMemory(num_classes=4, image_shape=(3, 8, 8), images_per_class=2, generator=_gen(4), learn_labels=True)
    with torch.no_grad():
        mem.labels.add_(torch.randn(mem.labels.shape, generator=_gen(9)))  # labels that are no longer one-hot
    return mem


def _downsampled_pixel() -> PixelMemory:
    return PixelMemory(num_classes=4, image_shape=(3, 8, 8), images_per_class=3, generator=_gen(5), downsample=2)


@pytest.mark.parametrize("make", [_addr, _trained_pixel, _downsampled_pixel],
                         ids=["addressable", "pixel", "downsampled-pixel"])
def test_artifact_roundtrip_bitwise(tmp_path, make):
    mem = make()
    path = tmp_path / "out" / "distilled.safetensors"
    save_artifact(path, mem, dataset_meta=DATASET)
    assert os.listdir(path.parent) == ["distilled.safetensors"]  # no tmp file left behind
    loaded, meta = load_artifact(path)
    assert type(loaded) is type(mem) and loaded.meta == mem.meta
    for (k1, v1), (k2, v2) in zip(mem.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and v1.dtype == v2.dtype and torch.equal(v1, v2)
    assert meta["dataset_name"] == "toy" and meta["class_names"] == DATASET["class_names"]
    assert meta["mean"] == DATASET["mean"] and meta["num_classes"] == 4 and meta["image_shape"] == [3, 8, 8]
    assert meta["storage"]["floats"] == mem.storage().floats

    plain = load_file(str(path))  # what a user without rtp_scale does
    x, y = mem.class_images()
    assert torch.equal(plain["images_NCHW"], x.detach()) and torch.equal(plain["labels_N"], y)
    assert torch.equal(plain["targets_NC"], mem.targets().detach())


def test_artifact_float64_roundtrip(tmp_path):
    mem = _addr().double()
    save_artifact(tmp_path / "a.safetensors", mem, dataset_meta={"dataset": "toy", "budget_ipc": 1})
    loaded, meta = load_artifact(tmp_path / "a.safetensors")
    assert meta["dataset_name"] == "toy" and meta["storage"]["budget_ipc"] == 1
    assert loaded.bases.dtype == torch.float64 and torch.equal(loaded.bases, mem.bases)


def test_artifact_bad_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_artifact(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(torch.randint(0, 256, (4096,), generator=_gen(), dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(UserError, match="not a readable safetensors"):
        load_artifact(junk)

    good = tmp_path / "good.safetensors"
    save_artifact(good, _addr(), dataset_meta=DATASET)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="not a readable safetensors"):
        load_artifact(truncated)

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(UserError, match="not an rtp_scale"):
        load_artifact(foreign)


def _rewrite(src, dst, *, tensors=None, meta_patch=None):
    from safetensors import safe_open
    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
        data = {k: f.get_tensor(k) for k in f.keys()}
    data.update(tensors or {})
    meta.update({k: json.dumps(v) for k, v in (meta_patch or {}).items()})
    save_file(data, str(dst), metadata=meta)


def test_artifact_metadata_disagreements_are_user_errors(tmp_path):
    good = tmp_path / "good.safetensors"
    save_artifact(good, _addr(), dataset_meta=DATASET)

    bad_shape = tmp_path / "shape.safetensors"
    _rewrite(good, bad_shape, tensors={"memory.bases": torch.zeros(6, 3, 4, 4)})
    with pytest.raises(UserError, match="memory.bases"):
        load_artifact(bad_shape)

    bad_meta = tmp_path / "meta.safetensors"  # metadata claims more images per class than stored
    meta = dict(_addr().meta, images_per_class=7)
    _rewrite(good, bad_meta, meta_patch={"memory_meta": meta})
    with pytest.raises(UserError, match="shape"):
        load_artifact(bad_meta)

    future = tmp_path / "future.safetensors"
    _rewrite(good, future, meta_patch={"format_version": 99})
    with pytest.raises(UserError, match="format version 99"):
        load_artifact(future)

    with pytest.raises(UserError, match="class names"):
        save_artifact(tmp_path / "x.safetensors", _addr(), dataset_meta={"name": "t", "class_names": ["a"]})
