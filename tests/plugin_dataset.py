"""A dataset defined outside the package: ``data.name=tests.plugin_dataset:load_bars``.

Ten classes of 8x8 grey images; class ``c`` is a bright bar at row ``c % 8`` (classes 0-7) or column 1 / 6
(classes 8, 9), on Gaussian noise. Generated from a fixed seed, so every load is the same set.
"""
from __future__ import annotations

import torch

from rtp_scale.data.split import SplitDataset, build_split

CLASSES = tuple(f"bar{c}" for c in range(10))


def _images(per_class: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x_NCHW = (0.3 + 0.1 * torch.randn(10 * per_class, 1, 8, 8, generator=generator)).clamp(0, 1)
    y = torch.arange(10).repeat_interleave(per_class)
    for c in range(10):
        rows = slice(c * per_class, (c + 1) * per_class)
        if c < 8:
            x_NCHW[rows, :, c, :] = 0.9
        else:
            x_NCHW[rows, :, :, 1 if c == 8 else 6] = 0.9
    return x_NCHW, y


def load_bars(*, root: str | None, resolution: int | None, download: bool) -> SplitDataset:
    """The loader protocol of rtp_scale.data.registry: keyword-only root / resolution / download."""
    generator = torch.Generator().manual_seed(1234)
    train_x, train_y = _images(20, generator)
    test_x, test_y = _images(10, generator)
    return build_split(name="bars", class_names=CLASSES, train_x_NCHW=train_x, train_y=train_y,
                       test_x_NCHW=test_x, test_y=test_y, resolution=resolution)


def not_a_split(*, root: str | None, resolution: int | None, download: bool) -> dict:
    """A loader that returns the wrong type (for the error message test)."""
    return {"train": []}
