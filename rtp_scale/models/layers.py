"""Pieces shared by the model families: normalisation layers (stateless under ``torch.func.functional_call``),
feature-map arithmetic and argument checks.

Batch norm is built with ``track_running_stats=False``: it keeps no buffers, so a functional call never
mutates module state, and it normalises with the statistics of the batch it is given, in training and in
evaluation alike. Inside an unroll that is the inner minibatch (and the statistics are differentiated
through); in evaluation it is each test batch.
"""
from __future__ import annotations

from torch import Tensor, nn

from rtp_scale.errors import UserError

NORMS = ("instance", "batch", "none")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """``instance``: GroupNorm(C, C) with affine, as the DC/RtP reference; ``batch``: batch statistics only."""
    if kind == "instance":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batch":
        # No running stats: a functional call must not mutate buffers, and eval uses batch statistics too.
        return nn.BatchNorm2d(channels, track_running_stats=False)
    return nn.Identity()


def conv_out(size: int, *, kernel: int, padding: int, stride: int = 1) -> int:
    """Side of a convolution's output map."""
    return (size + 2 * padding - kernel) // stride + 1


def pool_out(size: int) -> int:
    """Side after a 2x2/2 pool, which the families skip once a map is below 2 px (8x8 inputs reach 1x1)."""
    return size // 2 if size >= 2 else size


def check_shape(model: str, *, channels: int, num_classes: int, image_size: tuple[int, int],
                **positive: int) -> tuple[int, int]:
    """(height, width) of the input, after checking that every size argument is a positive integer."""
    height, width_px = (int(s) for s in image_size)
    if height < 1 or width_px < 1:
        raise UserError(f"{model} image_size must be positive, got {tuple(image_size)}")
    for name, value in (("channels", channels), ("num_classes", num_classes), *positive.items()):
        if int(value) != value or value < 1:
            raise UserError(f"{model} {name} must be a positive integer, got {value!r}")
    return height, width_px


class FlatFeatureClassifier(nn.Module):
    """A conv stack ``layers`` and one linear classifier on its flattened output map (AlexNet, VGG).

    ``features()`` / ``num_features`` are what FRePo regresses on; subclasses build ``layers`` and call
    :meth:`_attach_classifier` with the stack's output shape.
    """

    layers: nn.Sequential

    def _attach_classifier(self, layers: list[nn.Module], feature_shape: tuple[int, int, int],
                           num_classes: int) -> None:
        self.layers = nn.Sequential(*layers)
        self.feature_shape = feature_shape
        self.num_features = feature_shape[0] * feature_shape[1] * feature_shape[2]
        self.classifier = nn.Linear(self.num_features, num_classes)

    def features(self, x_NCHW: Tensor) -> Tensor:
        """[N, F] flattened last block."""
        return self.layers(x_NCHW).flatten(1)

    def forward(self, x_NCHW: Tensor) -> Tensor:
        return self.classifier(self.features(x_NCHW))
