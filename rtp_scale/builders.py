"""Build a run's memory, outer optimiser and learned learning rates from its config."""
from __future__ import annotations

import torch
from torch import nn

from rtp_scale.config import Config
from rtp_scale.data import SplitDataset
from rtp_scale.data.sampler import ClassBalancedSampler, random_subset_per_class
from rtp_scale.data.sources import MemorySource, RealSource
from rtp_scale.memory import AddressableMemory, addressable_images_per_class, build_memory, pixel_images_per_class
from rtp_scale.memory.init import PCA_IMAGES_PER_CLASS, principal_bases
from rtp_scale.optim import Lamb, cosine_lr
from rtp_scale.seeding import make_generator


def build_run_memory(cfg: Config, source: RealSource | SplitDataset) -> nn.Module:
    """The memory at its storage budget, initialised (``memory.init``) from real images drawn from
    (seed, 'memory-init'): as bases with one-hot addressing, or with every slot projected from its own image.

    ``source`` is the run's real data (in memory or streamed from FFCV): only the chosen images are read.
    """
    if isinstance(source, SplitDataset):
        source = MemorySource(source, per_class=cfg.data.real_per_class)
    info = source.info
    labels = source.train_labels
    mem = cfg.memory
    generator = make_generator(cfg.run.seed, "memory-init")
    if mem.kind == "pixel":
        ipc = pixel_images_per_class(ipc=mem.ipc, image_shape=info.image_shape, downsample=mem.pixel_downsample)
        init = None
        if mem.init == "real":
            idx = random_subset_per_class(labels, info.num_classes, ipc, generator)
            init = source.take(idx)[0].cpu()
        memory = build_memory("pixel", num_classes=info.num_classes, image_shape=info.image_shape,
                              images_per_class=ipc, generator=generator, init_images_NCHW=init,
                              learn_labels=mem.learn_labels, downsample=mem.pixel_downsample)
    else:
        r = addressable_images_per_class(ipc=mem.ipc, num_classes=info.num_classes,
                                         pixels_per_image=info.pixels_per_image, num_bases=mem.num_bases,
                                         downsample=mem.downsample)
        init_images = init_labels = None
        if mem.init in ("real", "real_project"):
            # K real images, classes taken in turn so that every class owns at least one base when K >= C
            per_class = -(-mem.num_bases // info.num_classes)
            idx = random_subset_per_class(labels, info.num_classes, per_class, generator)
            idx = idx.reshape(info.num_classes, per_class).T.reshape(-1)[: mem.num_bases]
            init_images, init_labels = (t.cpu() for t in source.take(idx))
        memory = build_memory("addressable", num_classes=info.num_classes, image_shape=info.image_shape,
                              num_bases=mem.num_bases, images_per_class=r, downsample=mem.downsample,
                              generator=generator, init_images_NCHW=init_images, init_labels=init_labels)
        if mem.init in ("pca", "real_project"):
            _project_real_images(memory, source, generator, pca=mem.init == "pca")
    return memory.to(source.device)


def _project_real_images(memory: AddressableMemory, source: RealSource, generator: torch.Generator, *,
                         pca: bool) -> None:
    """Principal-component bases (``pca``), then every slot the projection of its own real image (memory/init.py)."""
    info, labels = source.info, source.train_labels
    if pca:
        sizes = torch.bincount(labels, minlength=info.num_classes)
        per_class = int(min(PCA_IMAGES_PER_CLASS, int(sizes.min())))
        images = source.take(random_subset_per_class(labels, info.num_classes, per_class, generator))[0].cpu()
        with torch.no_grad():
            memory.bases.copy_(principal_bases(images, num_bases=memory.num_bases, downsample=memory.downsample))
    r = memory.images_per_class
    # r distinct images per class where the class has them (the same draw as random_subset_per_class), with
    # repeats in a class smaller than r: a tiny dataset still gets a memory, with some slots starting alike
    slots = source.take(ClassBalancedSampler(labels, info.num_classes, r).sample(generator))[0].cpu()
    memory.fit_rows(list(range(info.num_classes)), slots.reshape(info.num_classes, r, *info.image_shape))


def build_outer_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    meta = cfg.meta
    if meta.optimizer == "adam":
        return torch.optim.Adam(params, lr=meta.lr)
    if meta.optimizer == "lamb":
        return Lamb(params, lr=meta.lr)
    return torch.optim.SGD(params, lr=meta.lr, momentum=meta.momentum)


def outer_lr(cfg: Config, step: int) -> float:
    """The outer lr of outer step ``step`` (0-based): a pure function of the step, so a resumed run is exact."""
    meta = cfg.meta
    if meta.schedule == "cosine":
        return cosine_lr(meta.lr, step, meta.steps, meta.lr_floor)
    return meta.lr


def build_inner_lrs(cfg: Config, device: torch.device) -> tuple[torch.Tensor, torch.optim.Optimizer | None]:
    """Per-step inner learning rates: a constant, or a learned parameter with its own Adam."""
    lrs = torch.full((cfg.inner.steps,), cfg.inner.lr, device=device)
    if not cfg.inner.learn_lr:
        return lrs, None
    lrs.requires_grad_(True)
    return lrs, torch.optim.Adam([lrs], lr=cfg.meta.lr_lr)
