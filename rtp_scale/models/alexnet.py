"""The DC codebase's AlexNet for small images: five convs (128, 192, 256, 192, 192 channels), three max pools
and one linear classifier, ReLU and no normalisation. ``width`` is the first conv's channels (128 there); the
others keep the reference's proportions, width x (1, 1.5, 2, 1.5, 1.5), rounded.

As in the reference, a 28x28 input gets padding 4 on the first 5x5 conv (so it continues as a 32x32 map and
ends at 192x4x4 features) and every other input padding 2; a pool is skipped below 2 px (8x8 digits end at
192x1x1).
"""
from __future__ import annotations

from torch import nn

from rtp_scale.models.layers import FlatFeatureClassifier, check_shape, conv_out, pool_out

# (out channels / width, kernel, pool after): the reference's layer list at width 128
_LAYERS = ((1.0, 5, True), (1.5, 5, True), (2.0, 3, False), (1.5, 3, False), (1.5, 3, True))


class AlexNet(FlatFeatureClassifier):
    """AlexNet as the DC benchmarks train it on 28-32 px images."""

    def __init__(self, *, channels: int, num_classes: int, image_size: tuple[int, int], width: int = 128) -> None:
        super().__init__()
        height, width_px = check_shape("AlexNet", channels=channels, num_classes=num_classes, image_size=image_size,
                                       width=width)
        layers: list[nn.Module] = []
        in_ch = channels
        for i, (multiple, kernel, pool) in enumerate(_LAYERS):
            out_ch = max(1, round(multiple * width))
            pad = kernel // 2
            if i == 0 and (height, width_px) == (28, 28):
                pad = 4
            layers += [nn.Conv2d(in_ch, out_ch, kernel_size=kernel, padding=pad), nn.ReLU()]
            height = conv_out(height, kernel=kernel, padding=pad)
            width_px = conv_out(width_px, kernel=kernel, padding=pad)
            if pool and min(height, width_px) >= 2:
                layers.append(nn.MaxPool2d(2, 2))
                height, width_px = pool_out(height), pool_out(width_px)
            in_ch = out_ch
        self._attach_classifier(layers, (in_ch, height, width_px), num_classes)


def alexnet(*, channels: int, num_classes: int, image_size: tuple[int, int], width: int = 128) -> AlexNet:
    """``model.name=alexnet``."""
    return AlexNet(channels=channels, num_classes=num_classes, image_size=image_size, width=width)
