"""Class-incremental task streams built from the registered datasets.

* one dataset split into T tasks of disjoint classes (split MNIST / digits / CIFAR-10 / CIFAR-100 in 5 or 10
  tasks): classes in natural order (0-1, 2-3, ...) or in an order drawn from the run seed;
* several datasets in sequence (in the spirit of RtP's MANY benchmark, e.g. ``mnist,fashion_mnist,svhn,cifar10``
  when they are on disk): one label space of all their classes (dataset d's labels offset by the classes
  before it), every image resized to one resolution and to the largest channel count, each dataset split into
  ``tasks`` tasks of its own classes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rtp_scale.data import DatasetInfo, SplitDataset, load_dataset
from rtp_scale.errors import UserError
from rtp_scale.seeding import make_generator


@dataclass(frozen=True)
class Task:
    """One step of the stream: the classes it brings (global label ids) and a name for tables."""

    index: int
    classes: tuple[int, ...]
    name: str


def split_classes(classes: list[int], num_tasks: int) -> list[tuple[int, ...]]:
    """``classes`` cut into ``num_tasks`` consecutive groups, sizes differing by at most one."""
    if not 1 <= num_tasks <= len(classes):
        raise UserError(f"cannot split {len(classes)} classes into {num_tasks} tasks (need 1..{len(classes)})")
    bounds = [len(classes) * t // num_tasks for t in range(num_tasks + 1)]
    return [tuple(classes[bounds[t]:bounds[t + 1]]) for t in range(num_tasks)]


def class_order(num_classes: int, order: str, seed: int) -> list[int]:
    """'natural' (0, 1, 2, ...) or 'random' (a permutation drawn from (seed, 'class-order'))."""
    if order == "natural":
        return list(range(num_classes))
    if order == "random":
        return torch.randperm(num_classes, generator=make_generator(seed, "class-order")).tolist()
    raise UserError(f"unknown class order {order!r}; choose natural or random")


def make_tasks(data: SplitDataset, *, tasks_per_group: int, order: str = "natural", seed: int = 0,
               groups: list[tuple[str, list[int]]] | None = None) -> list[Task]:
    """Tasks over ``data``'s classes; ``groups`` (name, classes) are split separately (one per dataset)."""
    names = data.info.class_names
    groups = groups or [(data.info.name, list(range(data.info.num_classes)))]
    tasks: list[Task] = []
    for group_name, group_classes in groups:
        ordered = [group_classes[i] for i in class_order(len(group_classes), order, seed)]
        for classes in split_classes(ordered, tasks_per_group):
            label = "/".join(names[c] for c in classes) if len(classes) <= 4 else f"{len(classes)} classes"
            prefix = f"{group_name}:" if len(groups) > 1 else ""
            tasks.append(Task(index=len(tasks), classes=classes, name=prefix + label))
    return tasks


def task_mask(labels: torch.Tensor, classes: tuple[int, ...] | list[int]) -> torch.Tensor:
    """Boolean mask of the samples whose label is one of ``classes``."""
    return torch.isin(labels, torch.as_tensor(list(classes), device=labels.device))


def _adapt(x_NCHW: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    if x_NCHW.shape[1] != channels:
        if x_NCHW.shape[1] != 1:
            raise UserError(f"cannot combine {x_NCHW.shape[1]}-channel and {channels}-channel datasets")
        x_NCHW = x_NCHW.expand(-1, channels, -1, -1)
    if x_NCHW.shape[-2:] != (size, size):
        x_NCHW = F.interpolate(x_NCHW, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x_NCHW.contiguous()


def load_stream(names: list[str], *, root: str | None = None, download: bool = False,
                resolution: int | None = None) -> tuple[SplitDataset, list[tuple[str, list[int]]]]:
    """Load one dataset, or several concatenated into one label space; returns (data, class groups).

    Several datasets: each is loaded normalised by its own statistics, then resized (antialiased bilinear) to
    ``resolution`` (default: the largest side among them) and grey images repeated to 3 channels when any
    dataset is in colour. The combined info records mean 0 / std 1, the space the images now live in.
    """
    if not names:
        raise UserError("no dataset given")
    if len(set(names)) != len(names):
        raise UserError(f"a dataset appears twice in {','.join(names)}")
    if len(names) == 1:
        data = load_dataset(names[0], root=root, resolution=resolution, download=download)
        return data, [(names[0], list(range(data.info.num_classes)))]
    parts = [load_dataset(n, root=root, resolution=resolution, download=download) for n in names]
    size = resolution or max(max(p.info.height, p.info.width) for p in parts)
    channels = max(p.info.channels for p in parts)
    xs_train, ys_train, xs_test, ys_test, groups, class_names = [], [], [], [], [], []
    offset = 0
    for name, part in zip(names, parts):
        xs_train.append(_adapt(part.train_x, channels, size))
        xs_test.append(_adapt(part.test_x, channels, size))
        ys_train.append(part.train_y + offset)
        ys_test.append(part.test_y + offset)
        groups.append((name, list(range(offset, offset + part.info.num_classes))))
        class_names += [f"{name}:{c}" for c in part.info.class_names]
        offset += part.info.num_classes
    info = DatasetInfo(name="+".join(names), channels=channels, height=size, width=size, num_classes=offset,
                       mean=(0.0,) * channels, std=(1.0,) * channels, class_names=tuple(class_names))
    data = SplitDataset(info=info, train_x=torch.cat(xs_train), train_y=torch.cat(ys_train),
                        test_x=torch.cat(xs_test), test_y=torch.cat(ys_test))
    return data, groups
