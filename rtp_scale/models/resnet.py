"""ResNet-18 as the DC codebase builds it for small images: a stride-1 conv3x3 stem, four stages of two basic
blocks (widths w, 2w, 4w, 8w; strides 1, 2, 2, 2), global average pooling and one linear classifier.

``width`` is the stem's channels (64 in the reference). Convolutions have no bias, as there. The reference
average-pools the last 4x4 map (28 and 32 px inputs both end at 4x4); a global average pool is the same there
and also fits 8x8 inputs (which end at 1x1). ``resnet18`` uses instance norm (GroupNorm(C, C)),
``resnet18_bn`` batch norm on batch statistics.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from rtp_scale.errors import UserError
from rtp_scale.models.layers import NORMS, check_shape, norm_layer


class BasicBlock(nn.Module):
    """conv3x3 -> norm -> ReLU -> conv3x3 -> norm, plus the (projected when the shape changes) input, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, *, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)
        self.norm1 = norm_layer(norm, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, kernel_size=3, stride=1, padding=1, bias=False)
        self.norm2 = norm_layer(norm, out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False),
                                          norm_layer(norm, out_ch))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A basic-block ResNet with ``blocks[i]`` blocks in stage i."""

    def __init__(self, *, channels: int, num_classes: int, image_size: tuple[int, int], blocks: tuple[int, ...],
                 width: int = 64, norm: str = "instance") -> None:
        super().__init__()
        if norm not in NORMS:
            raise UserError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
        check_shape("ResNet", channels=channels, num_classes=num_classes, image_size=image_size, width=width)
        self.stem = nn.Sequential(nn.Conv2d(channels, width, kernel_size=3, stride=1, padding=1, bias=False),
                                  norm_layer(norm, width), nn.ReLU())
        stages: list[nn.Module] = []
        in_ch = width
        for i, count in enumerate(blocks):
            out_ch = width * 2**i
            stage = [BasicBlock(in_ch if b == 0 else out_ch, out_ch, stride=(1 if i == 0 or b > 0 else 2), norm=norm)
                     for b in range(count)]
            stages.append(nn.Sequential(*stage))
            in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.num_features = in_ch
        self.classifier = nn.Linear(in_ch, num_classes)

    def features(self, x_NCHW: Tensor) -> Tensor:
        """[N, 8w] globally average-pooled last stage."""
        return self.stages(self.stem(x_NCHW)).mean(dim=(2, 3))

    def forward(self, x_NCHW: Tensor) -> Tensor:
        return self.classifier(self.features(x_NCHW))


def resnet18(*, channels: int, num_classes: int, image_size: tuple[int, int], width: int = 64) -> ResNet:
    """``model.name=resnet18``: instance norm."""
    return ResNet(channels=channels, num_classes=num_classes, image_size=image_size, blocks=(2, 2, 2, 2),
                  width=width, norm="instance")


def resnet18_bn(*, channels: int, num_classes: int, image_size: tuple[int, int], width: int = 64) -> ResNet:
    """``model.name=resnet18_bn``: batch norm (batch statistics in training and evaluation)."""
    return ResNet(channels=channels, num_classes=num_classes, image_size=image_size, blocks=(2, 2, 2, 2),
                  width=width, norm="batch")
