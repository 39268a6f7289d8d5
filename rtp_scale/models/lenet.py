"""The DC codebase's LeNet: conv5x5(6) -> ReLU -> pool -> conv5x5(16) -> ReLU -> pool -> 120 -> 84 -> classes.

Adapted to the project's input shapes the way the reference adapts MNIST: an input smaller than 32 px gets
padding 2 on the first conv (28x28 then ends at the reference's 16x5x5 features), the second conv is padded
by 2 only when its map is smaller than 5 px (8x8 digits), and a pool is skipped below 2 px. No normalisation.
"""
from __future__ import annotations

from torch import Tensor, nn

from rtp_scale.models.layers import check_shape, conv_out, pool_out


class LeNet(nn.Module):
    """LeNet-5 as the DC benchmarks train it (ReLU, max pooling, no dropout)."""

    def __init__(self, *, channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        height, width_px = check_shape("LeNet", channels=channels, num_classes=num_classes, image_size=image_size)
        layers: list[nn.Module] = []
        in_ch = channels
        for out_ch, needs_pad in ((6, min(height, width_px) < 32), (16, None)):
            if needs_pad is None:  # second conv: pad only if a 5x5 kernel would not fit
                needs_pad = min(height, width_px) < 5
            pad = 2 if needs_pad else 0
            layers += [nn.Conv2d(in_ch, out_ch, kernel_size=5, padding=pad), nn.ReLU()]
            height, width_px = conv_out(height, kernel=5, padding=pad), conv_out(width_px, kernel=5, padding=pad)
            if min(height, width_px) >= 2:
                layers.append(nn.MaxPool2d(2, 2))
                height, width_px = pool_out(height), pool_out(width_px)
            in_ch = out_ch
        self.conv = nn.Sequential(*layers)
        self.feature_shape = (in_ch, height, width_px)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(in_ch * height * width_px, 120), nn.ReLU(),
                                nn.Linear(120, 84), nn.ReLU())
        self.num_features = 84
        self.classifier = nn.Linear(84, num_classes)

    def features(self, x_NCHW: Tensor) -> Tensor:
        """[N, 84] output of the last hidden layer."""
        return self.fc(self.conv(x_NCHW))

    def forward(self, x_NCHW: Tensor) -> Tensor:
        return self.classifier(self.features(x_NCHW))


def lenet(*, channels: int, num_classes: int, image_size: tuple[int, int]) -> LeNet:
    """``model.name=lenet`` (no options)."""
    return LeNet(channels=channels, num_classes=num_classes, image_size=image_size)
