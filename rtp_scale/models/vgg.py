"""VGG-11 as the DC codebase builds it for small images: eight conv3x3 -> norm -> ReLU blocks with five max
pools, then one linear classifier on the (1x1 at 32 px) feature map.

``width`` is the first stage's channels (64 in the reference); the stages have width x (1, 2, 4, 4, 8, 8, 8, 8).
As in the reference a 28x28 input gets padding 3 on the first conv (continuing as 32x32); a pool is skipped
below 2 px. ``vgg11`` uses instance norm (GroupNorm(C, C)), ``vgg11_bn`` batch norm on batch statistics.
"""
from __future__ import annotations

from torch import nn

from rtp_scale.errors import UserError
from rtp_scale.models.layers import FlatFeatureClassifier, NORMS, check_shape, conv_out, norm_layer, pool_out

# channel multiples of ``width``, 0 = max pool: the reference's 'VGG11' list [64, M, 128, M, 256, 256, M, ...]
_VGG11 = (1, 0, 2, 0, 4, 4, 0, 8, 8, 0, 8, 8, 0)


class VGG(FlatFeatureClassifier):
    """A VGG stack from a layer list of channel multiples (0 = pool)."""

    def __init__(self, *, channels: int, num_classes: int, image_size: tuple[int, int], layout: tuple[int, ...],
                 width: int = 64, norm: str = "instance") -> None:
        super().__init__()
        if norm not in NORMS:
            raise UserError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
        height, width_px = check_shape("VGG", channels=channels, num_classes=num_classes, image_size=image_size,
                                       width=width)
        layers: list[nn.Module] = []
        in_ch = channels
        for i, multiple in enumerate(layout):
            if multiple == 0:
                if min(height, width_px) >= 2:
                    layers.append(nn.MaxPool2d(2, 2))
                    height, width_px = pool_out(height), pool_out(width_px)
                continue
            pad = 3 if i == 0 and (height, width_px) == (28, 28) else 1
            out_ch = width * multiple
            layers += [nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=pad), norm_layer(norm, out_ch), nn.ReLU()]
            height, width_px = conv_out(height, kernel=3, padding=pad), conv_out(width_px, kernel=3, padding=pad)
            in_ch = out_ch
        self._attach_classifier(layers, (in_ch, height, width_px), num_classes)


def vgg11(*, channels: int, num_classes: int, image_size: tuple[int, int], width: int = 64) -> VGG:
    """``model.name=vgg11``: instance norm."""
    return VGG(channels=channels, num_classes=num_classes, image_size=image_size, layout=_VGG11, width=width,
               norm="instance")


def vgg11_bn(*, channels: int, num_classes: int, image_size: tuple[int, int], width: int = 64) -> VGG:
    """``model.name=vgg11_bn``: batch norm (batch statistics in training and evaluation)."""
    return VGG(channels=channels, num_classes=num_classes, image_size=image_size, layout=_VGG11, width=width,
               norm="batch")
