"""The field's standard ConvNet (DC / RtP / FRePo reference architecture).

``depth`` blocks of ``conv3x3 -> norm -> ReLU -> pool2x2`` and one linear classifier. Everything here is
stateless under ``torch.func.functional_call`` (batch norm keeps no running statistics), because the
distillation engine differentiates through many inner training steps with parameters held outside the
module.
"""
from __future__ import annotations

from torch import Tensor, nn

from rtp_scale.errors import UserError

NORMS = ("instance", "batch", "none")
POOLINGS = ("avg", "max", "none")


def _norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        # GroupNorm with one group per channel == instance norm with affine, as in the DC/RtP reference.
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batch":
        # No running stats: a functional call must not mutate buffers, and eval uses batch statistics too.
        return nn.BatchNorm2d(channels, track_running_stats=False)
    return nn.Identity()


class ConvNet(nn.Module):
    """The field's standard ConvNet: depth x [conv3x3(width) -> norm -> ReLU -> pool2x2], then a linear classifier.

    Like the reference, a 28x28 input (MNIST-shaped) gets padding 3 on the first conv so the feature map is
    32x32 afterwards (``pad_28=False`` turns that off). Pooling stops once the map is smaller than 2x2, so
    tiny inputs (8x8 digits) work at any depth.
    """

    def __init__(
        self,
        *,
        channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        width: int = 128,
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
        for name, value in (("channels", channels), ("num_classes", num_classes), ("width", width),
                            ("depth", depth), ("feature_width_multiplier", feature_width_multiplier)):
            if int(value) != value or value < 1:
                raise UserError(f"ConvNet {name} must be a positive integer, got {value!r}")
        height, width_px = (int(s) for s in image_size)
        if height < 1 or width_px < 1:
            raise UserError(f"ConvNet image_size must be positive, got {tuple(image_size)}")

        layers: list[nn.Module] = []
        in_ch = channels
        for d in range(depth):
            out_ch = width * feature_width_multiplier**d
            pad = 3 if (d == 0 and pad_28 and (height, width_px) == (28, 28)) else 1
            layers.append(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=pad))
            height, width_px = height + 2 * pad - 2, width_px + 2 * pad - 2
            layers.append(_norm_layer(norm, out_ch))
            layers.append(nn.ReLU())
            if pooling != "none" and height >= 2 and width_px >= 2:
                pool = nn.AvgPool2d(2, 2) if pooling == "avg" else nn.MaxPool2d(2, 2)
                layers.append(pool)
                height, width_px = height // 2, width_px // 2
            in_ch = out_ch
        self.layers = nn.Sequential(*layers)
        self.num_features = in_ch * height * width_px
        self.feature_shape = (in_ch, height, width_px)
        self.classifier = nn.Linear(self.num_features, num_classes)

    def features(self, x_NCHW: Tensor) -> Tensor:
        """[N, F] flattened last-block features (before the classifier); FRePo regresses on these."""
        return self.layers(x_NCHW).flatten(1)

    def forward(self, x_NCHW: Tensor) -> Tensor:
        return self.classifier(self.features(x_NCHW))
