"""The DC codebase's MLP: flatten -> [linear(width) -> ReLU] x 2 -> linear classifier (width 128 there)."""
from __future__ import annotations

from torch import Tensor, nn

from rtp_scale.models.layers import check_shape


class MLP(nn.Module):
    """Two hidden layers of ``width`` units on the flattened image, for any input shape (28x28x1, 32x32x3, 8x8)."""

    def __init__(self, *, channels: int, num_classes: int, image_size: tuple[int, int], width: int = 128) -> None:
        super().__init__()
        height, width_px = check_shape("MLP", channels=channels, num_classes=num_classes, image_size=image_size,
                                       width=width)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(channels * height * width_px, width), nn.ReLU(),
                                  nn.Linear(width, width), nn.ReLU())
        self.num_features = width
        self.classifier = nn.Linear(width, num_classes)

    def features(self, x_NCHW: Tensor) -> Tensor:
        """[N, width] last hidden layer (FRePo regresses on these)."""
        return self.body(x_NCHW)

    def forward(self, x_NCHW: Tensor) -> Tensor:
        return self.classifier(self.features(x_NCHW))


def mlp(*, channels: int, num_classes: int, image_size: tuple[int, int], width: int = 128) -> MLP:
    """``model.name=mlp``."""
    return MLP(channels=channels, num_classes=num_classes, image_size=image_size, width=width)
