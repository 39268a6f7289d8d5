"""Storage accounting: methods are compared at equal storage, counted in images per class (DESIGN §1).

An addressable memory stores K bases of ``D/ds^2`` floats plus ``C*r*K`` addressing coefficients, so for a
budget of ``ipc`` images per class the number of addressed images per class is
``r = floor((ipc*C*D - K*D/ds^2) / (C*K))``. A pixel memory stores each image at ``1/ds^2`` of its floats,
so it holds ``floor(ipc * ds^2)`` images per class (:func:`pixel_images_per_class`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction

from rtp_scale.errors import UserError


def _exact(value: float) -> Fraction:
    # Decimal-exact (0.1 -> 1/10), so a budget that fits exactly is not lost to binary rounding.
    return Fraction(repr(float(value))) if not isinstance(value, int) else Fraction(value)


def addressable_images_per_class(*, ipc: float, num_classes: int, pixels_per_image: int, num_bases: int,
                                 downsample: int) -> int:
    """The largest r whose memory (bases + coefficients) fits in ``ipc`` images per class.

    The base size is taken as ``D/ds^2`` (exact when ds divides H and W; an upper bound on
    ``C*(H//ds)*(W//ds)`` otherwise, so the memory never exceeds the budget).
    """
    if not ipc > 0 or not math.isfinite(ipc):
        raise UserError(f"ipc must be a positive number, got {ipc!r}")
    for name, value in (("num_classes", num_classes), ("pixels_per_image", pixels_per_image),
                        ("num_bases", num_bases), ("downsample", downsample)):
        if int(value) != value or value < 1:
            raise UserError(f"{name} must be a positive integer, got {value!r}")
    C, D, K, ds = int(num_classes), int(pixels_per_image), int(num_bases), int(downsample)
    base_size = Fraction(D, ds * ds)
    r = math.floor((_exact(ipc) * C * D - K * base_size) / (C * K))
    if r < 1:
        need = float(K * base_size / (C * D))
        raise UserError(f"budget of ipc={ipc} is too small for K={K} bases at downsample {ds}; "
                        f"the bases alone need {need:.3g} images per class")
    return r


def pixel_images_per_class(*, ipc: float, image_shape: tuple[int, int, int], downsample: int) -> int:
    """The most images per class a pixel memory stored at 1/``downsample`` resolution fits in ``ipc``.

    At full resolution (``downsample`` 1) ``ipc`` must be whole: a pixel set has no fraction of an image.
    """
    if not ipc > 0 or not math.isfinite(ipc):
        raise UserError(f"ipc must be a positive number, got {ipc!r}")
    channels, height, width = (int(s) for s in image_shape)
    ds = int(downsample)
    if ds == 1:
        if ipc != int(ipc):
            raise UserError(f"memory.ipc={ipc} must be a whole number of images for memory.kind=pixel at full "
                            f"resolution; set memory.pixel_downsample > 1 to store smaller images")
        return int(ipc)
    stored = channels * (height // ds) * (width // ds)
    r = math.floor(_exact(ipc) * channels * height * width / stored)
    if r < 1:
        raise UserError(f"memory.ipc={ipc} holds less than one image per class at memory.pixel_downsample={ds} "
                        f"(each stored image is {stored / (channels * height * width):.3g} images of storage); raise "
                        f"memory.ipc or memory.pixel_downsample")
    return r


@dataclass(frozen=True)
class StorageReport:
    """Floats a memory actually stores, in absolute terms and as images per class of the real data."""

    floats: int
    ipc_equivalent: float
    budget_ipc: float | None = None

    def as_dict(self) -> dict[str, int | float | None]:
        return asdict(self)


def storage_report(floats: int, *, num_classes: int, pixels_per_image: int,
                   budget_ipc: float | None = None) -> StorageReport:
    """Build a :class:`StorageReport`; shared by every memory kind so the IPC conversion is in one place."""
    return StorageReport(floats=int(floats), ipc_equivalent=floats / (num_classes * pixels_per_image),
                         budget_ipc=None if budget_ipc is None else float(budget_ipc))
