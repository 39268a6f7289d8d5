"""Learned synthetic-data memories (addressable bases + coefficients, or plain pixels) and their storage."""
from __future__ import annotations

import inspect

from torch import nn

from rtp_scale.errors import UserError
from rtp_scale.memory.addressable import AddressableMemory
from rtp_scale.memory.budget import StorageReport, addressable_images_per_class, pixel_images_per_class
from rtp_scale.memory.pixel import PixelMemory

MEMORY_KINDS: dict[str, type[nn.Module]] = {"addressable": AddressableMemory, "pixel": PixelMemory}


def build_memory(kind: str, **kwargs: object) -> nn.Module:
    """Build a memory by kind; an unknown kind or argument is a :class:`UserError` listing the valid ones."""
    if kind not in MEMORY_KINDS:
        raise UserError(f"unknown memory kind {kind!r}; valid: {', '.join(sorted(MEMORY_KINDS))}")
    cls = MEMORY_KINDS[kind]
    params = {n: p for n, p in inspect.signature(cls.__init__).parameters.items() if n != "self"}
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise UserError(f"unknown argument(s) {', '.join(unknown)} for memory {kind!r}; valid: {', '.join(params)}")
    missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in kwargs]
    if missing:
        raise UserError(f"memory {kind!r} needs argument(s) {', '.join(missing)}")
    return cls(**kwargs)


__all__ = ["AddressableMemory", "PixelMemory", "StorageReport", "MEMORY_KINDS", "addressable_images_per_class",
           "build_memory", "pixel_images_per_class"]
