"""Plain pixel memory: learned images per class (the DD / FRePo parametrisation).

Same interface as :class:`~rtp_scale.memory.addressable.AddressableMemory` so methods and the artifact
code never branch on the memory kind. Recall of a query ``y`` is ``sum_c y_c * images[c]``, which is what
the one-hot lookup becomes when written as a linear map.

With ``downsample`` > 1 the images are stored at 1/downsample resolution and upsampled (bilinear, as an
addressable memory's bases) when recalled: the storage per image shrinks by ``downsample**2``, so a budget below
one full image per class can still hold an image of every class -- the plain-pixel counterpart of a factored
memory at the same floats.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtp_scale.errors import UserError
from rtp_scale.memory.addressable import (_check_downsample, _check_positive, _default_generator, check_queries,
                                         upsample_to)
from rtp_scale.memory.budget import StorageReport, storage_report


class PixelMemory(nn.Module):
    """Plain learned images per class (the DD / FRePo parametrisation), same interface.

    ``images`` start as ``init_images_NCHW`` ([C*ipc, C, H, W], class-major) or N(0, 1) from ``generator``.
    ``labels`` ([C*ipc, C]) start one-hot and are trainable only with ``learn_labels`` (FRePo learns them).
    ``downsample``: images are stored at ``(H // downsample, W // downsample)``; full-resolution init images are
    average-pooled to it, and recall upsamples to ``image_shape``.
    """

    def __init__(self, *, num_classes: int, image_shape: tuple[int, int, int], images_per_class: int,
                 generator: torch.Generator | None = None, init_images_NCHW: Tensor | None = None,
                 learn_labels: bool = False, downsample: int = 1) -> None:
        super().__init__()
        if len(image_shape) != 3:
            raise UserError(f"image_shape must be (C, H, W), got {tuple(image_shape)}")
        channels, height, width = (int(s) for s in image_shape)
        _check_positive(num_classes=num_classes, channels=channels, height=height, width=width,
                        images_per_class=images_per_class, downsample=downsample)
        ds = int(downsample)
        _check_downsample(ds, height, width)
        self.num_classes, self.image_shape = int(num_classes), (channels, height, width)
        self.images_per_class, self.learn_labels, self.downsample = int(images_per_class), bool(learn_labels), ds
        C, R = self.num_classes, self.images_per_class
        stored_hw = (height // ds, width // ds)
        if init_images_NCHW is not None:
            if tuple(init_images_NCHW.shape) != (C * R, channels, height, width):
                raise UserError(f"init images must be [{C * R}, {channels}, {height}, {width}] "
                                f"(class-major), got {list(init_images_NCHW.shape)}")
            imgs = init_images_NCHW.detach()
            images = (imgs if imgs.is_floating_point() else imgs.float()).clone()
            if ds > 1:
                images = F.avg_pool2d(images, ds)
        else:
            gen = _default_generator(generator)
            images = torch.randn((C * R, channels, *stored_hw), generator=gen,
                                 dtype=torch.get_default_dtype(), device=gen.device).cpu()
        self.images = nn.Parameter(images.reshape(C, R, channels, *stored_hw).contiguous())
        labels_NC = F.one_hot(torch.arange(C).repeat_interleave(R), C).to(images)
        self.labels = nn.Parameter(labels_NC, requires_grad=self.learn_labels)

    @property
    def meta(self) -> dict:
        return {"kind": "pixel", "num_classes": self.num_classes, "image_shape": list(self.image_shape),
                "images_per_class": self.images_per_class, "learn_labels": self.learn_labels,
                "downsample": self.downsample}

    def full_resolution_images(self) -> Tensor:
        """[C, ipc, C_img, H, W]: the stored images, upsampled (bilinear, align_corners=False) when downsampled."""
        if self.downsample == 1:
            return self.images
        C, R = self.num_classes, self.images_per_class
        return upsample_to(self.images.flatten(0, 1), self.image_shape[1:]).reshape(C, R, *self.image_shape)

    def recall(self, queries_QC: Tensor) -> Tensor:
        """[Q, ipc, C, H, W] = sum_c y_c images[c], for any real-valued query rows."""
        check_queries(queries_QC, self.num_classes)
        return torch.einsum("qc,crxhw->qrxhw", queries_QC.to(self.images), self.full_resolution_images())

    def class_images(self) -> tuple[Tensor, Tensor]:
        """(x [C*ipc, C, H, W], y [C*ipc] int64), class-major."""
        x_NCHW = self.full_resolution_images().reshape(-1, *self.image_shape)
        y_N = torch.arange(self.num_classes, device=x_NCHW.device).repeat_interleave(self.images_per_class)
        return x_NCHW, y_N

    def targets(self) -> Tensor:
        """[C*ipc, C] soft targets: the (possibly learned) label matrix, one-hot unless labels are learned."""
        return self.labels

    def coefficient_l2(self) -> Tensor:
        """No coefficients to regularise: a zero on the images' device, so callers can always add it."""
        return self.images.new_zeros(())

    def storage(self, budget_ipc: float | None = None) -> StorageReport:
        """Images as stored (downsampled), plus the label matrix when it is learned (then part of what is stored)."""
        pixels = math.prod(self.image_shape)
        floats = self.images.numel() + (self.labels.numel() if self.learn_labels else 0)
        return storage_report(floats, num_classes=self.num_classes, pixels_per_image=pixels,
                              budget_ipc=budget_ipc)
