"""Class-balanced index sampling for real batches (every outer step sees ``per_class`` images of each class).

Indices come out in contiguous class blocks ``[class 0 x per_class, class 1 x per_class, ...]`` so that
the labels of a sampled batch are known without a gather (``arange(C).repeat_interleave(per_class)``)
and meta-batch shards can split a batch by class.

All randomness comes from the caller's ``torch.Generator``; indices are produced on the generator's
device.
"""
from __future__ import annotations

import torch

from rtp_scale.errors import UserError


def indices_by_class(labels: torch.Tensor, num_classes: int) -> list[torch.Tensor]:
    """Indices of every class, each in dataset order (a stable sort of the labels)."""
    labels_cpu = labels.detach().to("cpu", torch.int64).reshape(-1)
    if labels_cpu.numel() and (labels_cpu.min() < 0 or labels_cpu.max() >= num_classes):
        raise UserError(f"labels must lie in 0..{num_classes - 1}, found {labels_cpu.min()}..{labels_cpu.max()}")
    # One stable sort instead of C boolean masks: O(N log N) however many classes there are.
    order = torch.argsort(labels_cpu, stable=True)
    counts = torch.bincount(labels_cpu, minlength=num_classes).tolist()
    return list(torch.split(order, counts))


class ClassBalancedSampler:
    """Draws ``per_class`` indices of each class per call.

    Within a class the draw is without replacement when the class has at least ``per_class`` samples,
    and with replacement otherwise (so tiny classes still yield full, balanced batches).
    """

    def __init__(self, labels: torch.Tensor, num_classes: int, per_class: int) -> None:
        if num_classes < 1:
            raise UserError(f"num_classes must be >= 1, got {num_classes}")
        if per_class < 1:
            raise UserError(f"per_class must be >= 1, got {per_class}")
        self.num_classes = num_classes
        self.per_class = per_class
        self._by_class = indices_by_class(labels, num_classes)
        empty = [c for c, idx in enumerate(self._by_class) if idx.numel() == 0]
        if empty:
            raise UserError(f"class(es) {empty} have no training samples; cannot sample class-balanced batches")
        self._by_class_on: dict[torch.device, list[torch.Tensor]] = {torch.device("cpu"): self._by_class}

    def class_sizes(self) -> list[int]:
        return [idx.numel() for idx in self._by_class]

    def _on(self, device: torch.device) -> list[torch.Tensor]:
        if device not in self._by_class_on:
            self._by_class_on[device] = [idx.to(device) for idx in self._by_class]
        return self._by_class_on[device]

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        """int64 ``[num_classes * per_class]`` indices on ``generator.device``, class blocks in order 0..C-1."""
        device = generator.device
        blocks = []
        for members in self._on(device):
            n = members.numel()
            if n >= self.per_class:
                pick = torch.randperm(n, generator=generator, device=device)[: self.per_class]
            else:
                pick = torch.randint(n, (self.per_class,), generator=generator, device=device)
            blocks.append(members[pick])
        return torch.cat(blocks)


def random_subset_per_class(
    labels: torch.Tensor, num_classes: int, per_class: int, generator: torch.Generator
) -> torch.Tensor:
    """A random real subset of exactly ``per_class`` distinct images per class (the random-real baseline).

    Same layout as :meth:`ClassBalancedSampler.sample`. Unlike the sampler it never repeats an image, so a
    class with fewer than ``per_class`` samples is a :class:`UserError` (the baseline would be mislabelled
    as having more storage than it has).
    """
    sampler = ClassBalancedSampler(labels, num_classes, per_class)
    small = {c: n for c, n in enumerate(sampler.class_sizes()) if n < per_class}
    if small:
        raise UserError(f"random real subset needs {per_class} images per class; classes {small} have fewer")
    return sampler.sample(generator)
