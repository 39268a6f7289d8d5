"""What a dataset loader returns, and the helpers that build it: the layer below the registry and the loaders.

Every loader returns a :class:`SplitDataset` whose images are float32 ``[N, C, H, W]`` normalised as
``(x - mean) / std`` with per-channel mean/std computed on the *raw training pixels in [0, 1]* (always
computed, never the usual published constants, so that a resized or subset copy is normalised
consistently and the values recorded in ``DatasetInfo`` are the ones actually used). :func:`build_split`
does all of that from raw uint8 or [0, 1] float images; a loader of one's own (``data.name=package.module:fn``)
usually ends with it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import torch
import torch.nn.functional as F

from rtp_scale.errors import UserError


@dataclass(frozen=True, kw_only=True)
class DatasetInfo:
    """Static description of a loaded dataset (after any resize)."""

    name: str
    """Registry name, e.g. ``"mnist5k"``."""
    channels: int
    height: int
    width: int
    num_classes: int
    mean: tuple[float, ...]
    """Per-channel mean of the raw [0, 1] training pixels (what was subtracted)."""
    std: tuple[float, ...]
    """Per-channel population std of the raw [0, 1] training pixels (what was divided by)."""
    class_names: tuple[str, ...]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return (self.channels, self.height, self.width)

    @property
    def pixels_per_image(self) -> int:
        """``C * H * W``, the D of the storage-budget arithmetic."""
        return self.channels * self.height * self.width


@dataclass(kw_only=True)
class SplitDataset:
    """A whole dataset held in memory: distillation samples real batches by index, never via a DataLoader."""

    info: DatasetInfo
    train_x: torch.Tensor
    """float32 ``[N_train, C, H, W]``, normalised with ``info.mean`` / ``info.std``."""
    train_y: torch.Tensor
    """int64 ``[N_train]`` in ``0 .. num_classes-1``."""
    test_x: torch.Tensor
    test_y: torch.Tensor

    def to(self, device: torch.device | str) -> "SplitDataset":
        """A copy with all tensors on ``device`` (the info is shared; it is immutable)."""
        return replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
        )


class DatasetLoader(Protocol):
    """What every registry entry is: keyword-only ``root``, ``resolution``, ``download``."""

    def __call__(self, *, root: str | None, resolution: int | None, download: bool) -> SplitDataset: ...


# --------------------------------------------------------------------------- helpers every loader shares


def channel_stats(x_NCHW: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of pixels in [0, 1] (uint8 input is divided by 255).

    Accumulates sums in float64 over chunks of images, so a 50k-image set neither loses precision nor
    needs a float64 copy of itself.
    """
    if x_NCHW.shape[0] == 0:
        raise UserError("cannot compute normalisation statistics of an empty training set")
    scale = 1.0 / 255.0 if x_NCHW.dtype == torch.uint8 else 1.0
    channels = x_NCHW.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, x_NCHW.shape[0], chunk):
        part = x_NCHW[start : start + chunk].to(device="cpu", dtype=torch.float64) * scale
        total += part.sum(dim=(0, 2, 3))
        total_sq += part.square().sum(dim=(0, 2, 3))
    count = x_NCHW.shape[0] * x_NCHW.shape[2] * x_NCHW.shape[3]
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0.0)
    # A constant channel (std 0) would turn into NaNs; dividing by 1 keeps it finite and invertible.
    std = torch.where(var > 0, var.sqrt(), torch.ones_like(var))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def to_unit_float(x_NCHW: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] -> float32 [0, 1]."""
    if x_NCHW.dtype == torch.uint8:
        return x_NCHW.to(torch.float32).div_(255.0)
    return x_NCHW.to(torch.float32)


def resize_square(x_NCHW: torch.Tensor, resolution: int, chunk: int = 2048) -> torch.Tensor:
    """Resize float images to ``resolution x resolution`` (antialiased bilinear), in chunks to bound memory."""
    if x_NCHW.shape[-2:] == (resolution, resolution):
        return x_NCHW
    parts = [
        F.interpolate(x_NCHW[s : s + chunk], size=(resolution, resolution), mode="bilinear",
                      align_corners=False, antialias=True).clamp_(0.0, 1.0)
        for s in range(0, x_NCHW.shape[0], chunk)
    ]
    return torch.cat(parts) if parts else x_NCHW.new_zeros((0, x_NCHW.shape[1], resolution, resolution))


def check_resolution(resolution: int | None) -> None:
    if resolution is not None and (not isinstance(resolution, int) or resolution < 1):
        raise UserError(f"data.resolution must be a positive integer, got {resolution!r}")


def build_split(
    *,
    name: str,
    class_names: tuple[str, ...],
    train_x_NCHW: torch.Tensor,
    train_y: torch.Tensor,
    test_x_NCHW: torch.Tensor,
    test_y: torch.Tensor,
    resolution: int | None = None,
) -> SplitDataset:
    """Turn raw images (uint8 or float in [0, 1]) into a normalised :class:`SplitDataset`.

    ``resolution`` (optional) resizes square; the statistics are taken *after* resizing, on the pixels
    the networks will actually see.
    """
    check_resolution(resolution)
    train = to_unit_float(train_x_NCHW)
    test = to_unit_float(test_x_NCHW)
    if resolution is not None:
        train, test = resize_square(train, resolution), resize_square(test, resolution)
    mean, std = channel_stats(train)
    mean_C11 = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std_C11 = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    # In place: the float copies above are ours, and CIFAR-sized sets are ~600 MB each.
    train.sub_(mean_C11).div_(std_C11)
    test.sub_(mean_C11).div_(std_C11)
    info = DatasetInfo(
        name=name, channels=train.shape[1], height=train.shape[2], width=train.shape[3],
        num_classes=len(class_names), mean=mean, std=std, class_names=tuple(class_names),
    )
    return SplitDataset(
        info=info,
        train_x=train.contiguous(),
        train_y=torch.as_tensor(train_y, dtype=torch.int64).reshape(-1),
        test_x=test.contiguous(),
        test_y=torch.as_tensor(test_y, dtype=torch.int64).reshape(-1),
    )
