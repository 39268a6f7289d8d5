"""The field's standard ConvNet (DC / RtP / FRePo reference architecture).

``depth`` blocks of ``conv3x3 -> norm -> ReLU -> pool2x2`` and one linear classifier. Everything here is
stateless under ``torch.func.functional_call`` (batch norm keeps no running statistics), because the
distillation engine differentiates through many inner training steps with parameters held outside the
module.
"""
from __future__ import annotations

from torch import Tensor, nn

from rtp_scale.errors import UserError
from rtp_scale.models.fused_block import can_fuse, norm_relu_pool
from rtp_scale.models.layers import NORMS, check_shape, norm_layer

POOLINGS = ("avg", "max", "none")


class ConvNet(nn.Module):
    """The field's standard ConvNet: depth x [conv3x3(width) -> norm -> ReLU -> pool2x2], then a linear classifier.

    Like the reference, a 28x28 input (MNIST-shaped) gets padding 3 on the first conv so the feature map is
    32x32 afterwards (``pad_28=False`` turns that off). Pooling stops once the map is smaller than 2x2, so
    tiny inputs (8x8 digits) work at any depth. The default width 32 sizes the CPU default job; the
    field's reference ConvNet is width 128.

    ``fused`` (``model.fused``, set by the config after building): with instance norm and average (or no)
    pooling, each block after its convolution runs as one fused function with hand-written first and second
    derivatives (:mod:`rtp_scale.models.fused_block`): the same network, faster to differentiate twice.
    """

    fused: bool = False

    def __init__(
        self,
        *,
        channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        width: int = 32,
        depth: int = 3,
        norm: str = "instance",
        pooling: str = "avg",
        feature_width_multiplier: int = 1,
        pad_28: bool = True,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise UserError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
        if pooling not in POOLINGS:
            raise UserError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
        height, width_px = check_shape("ConvNet", channels=channels, num_classes=num_classes, image_size=image_size,
                                       width=width, depth=depth, feature_width_multiplier=feature_width_multiplier)

        layers: list[nn.Module] = []
        in_ch = channels
        self.norm_kind = norm
        self.norm_map_sizes: list[tuple[int, int]] = []  # (H, W) each norm layer normalises over, first block first
        for d in range(depth):
            out_ch = width * feature_width_multiplier**d
            pad = 3 if (d == 0 and pad_28 and (height, width_px) == (28, 28)) else 1
            layers.append(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=pad))
            height, width_px = height + 2 * pad - 2, width_px + 2 * pad - 2
            layers.append(norm_layer(norm, out_ch))
            if norm != "none":
                self.norm_map_sizes.append((height, width_px))
            layers.append(nn.ReLU())
            if pooling != "none" and height >= 2 and width_px >= 2:
                pool = nn.AvgPool2d(2, 2) if pooling == "avg" else nn.MaxPool2d(2, 2)
                layers.append(pool)
                height, width_px = height // 2, width_px // 2
            in_ch = out_ch
        self.layers = nn.Sequential(*layers)
        self.blocks_fusable = norm == "instance" and pooling in ("avg", "none")
        self.num_features = in_ch * height * width_px
        self.feature_shape = (in_ch, height, width_px)
        self.classifier = nn.Linear(self.num_features, num_classes)

    def features(self, x_NCHW: Tensor) -> Tensor:
        """[N, F] flattened last-block features (before the classifier); FRePo regresses on these."""
        if not (self.fused and self.blocks_fusable and can_fuse(x_NCHW, self.layers[0].weight)):
            return self.layers(x_NCHW).flatten(1)
        h, layers, i = x_NCHW, self.layers, 0
        while i < len(layers):  # conv, GroupNorm, ReLU and, where the map is still >= 2x2, AvgPool2d
            conv, norm = layers[i], layers[i + 1]
            pool = i + 3 < len(layers) and isinstance(layers[i + 3], nn.AvgPool2d)
            h = norm_relu_pool(conv(h), norm.weight, norm.bias, eps=norm.eps, pool=pool)
            i += 4 if pool else 3
        return h.flatten(1)

    def forward(self, x_NCHW: Tensor) -> Tensor:
        return self.classifier(self.features(x_NCHW))


def convnet(*, channels: int, num_classes: int, image_size: tuple[int, int], width: int = 32, depth: int = 3,
            norm: str = "instance", pooling: str = "avg", width_multiplier: int = 1) -> ConvNet:
    """``model.name=convnet``: the ConvNet with the config's option names."""
    return ConvNet(channels=channels, num_classes=num_classes, image_size=image_size, width=width, depth=depth,
                   norm=norm, pooling=pooling, feature_width_multiplier=width_multiplier)


SMALLEST_SAFE_INSTANCE_NORM_MAP = 9
"""Positions per channel below which an instance norm makes the meta-gradient ill-conditioned. On a 2x2 map (4
positions) the four values are often equal (a ReLU'd map of zeros plus the conv's bias), so the norm's scale is
eps^-1/2 and a second derivative through it grows as eps^-3/2: measured, the meta-gradient's norm on digits (8x8)
with depth 3 is 2e4-1e19 against 0.05 with depth 2, whose last norm sees 4x4 (configs/sweeps/digits_depth2_probe.py).
A 3x3 map (9 positions) was not measured; it is let through."""


def ill_conditioned_norm_warning(net: nn.Module, image_size: tuple[int, int]) -> str | None:
    """One line naming the ConvNet block whose instance norm sees too small a map to differentiate twice, or None."""
    if not isinstance(net, ConvNet) or net.norm_kind != "instance":
        return None  # per-instance statistics only: batch norm pools over the batch, "none" has no statistics
    depth = len(net.norm_map_sizes)
    small = [(i + 1, h, w) for i, (h, w) in enumerate(net.norm_map_sizes) if h * w < SMALLEST_SAFE_INSTANCE_NORM_MAP]
    if not small:
        return None
    block, height, width = small[0]
    safe_depth = block - 1
    advice = f"use model.depth={safe_depth}" if safe_depth >= 1 else "use model.norm=batch or none"
    return (f"model.depth={depth} on {image_size[0]}x{image_size[1]} images: block {block}'s instance norm normalises a "
            f"{height}x{width} map, which makes the meta-gradient ill-conditioned (on digits its norm reaches 1e12, "
            f"against 0.05 at depth 2); {advice}")
