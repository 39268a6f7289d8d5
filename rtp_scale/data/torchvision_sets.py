"""MNIST, Fashion-MNIST, CIFAR-10/100 and SVHN read from a local copy in torchvision's on-disk format.

Expected layout under ``data.root`` (exactly what ``torchvision.datasets.X(root, download=True)`` writes):

* mnist:          ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
* fashion_mnist:  ``FashionMNIST/raw/`` with the same four file names
* cifar10:        ``cifar-10-batches-py/data_batch_1..5``, ``test_batch``, ``batches.meta``
* cifar100:       ``cifar-100-python/train``, ``test``, ``meta``
* svhn:           ``train_32x32.mat``, ``test_32x32.mat``

Reading goes through torchvision's own dataset classes, with one change: CIFAR and SVHN files are
checked for *presence*, not MD5. Hashing is what torchvision uses to decide whether to download, but it
rejects any re-packed or hand-made copy (including the small files the tests write); a truly corrupt
file still fails when unpickled / parsed, and is reported as a :class:`UserError` naming it.
``data.download=true`` uses the unmodified torchvision classes, so downloads are MD5-verified.

Normalisation: mean/std are computed on the training pixels actually loaded (not the published
constants): one chunked pass over the uint8 data; on the full CIFAR-10 training set it gives the usual
(0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616).
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from rtp_scale.data.split import SplitDataset, build_split
from rtp_scale.errors import UserError

_MNIST_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)


@dataclass(frozen=True)
class _Spec:
    files: tuple[str, ...]
    """Paths relative to root that must exist before reading."""
    describe: str
    """The same, for humans; ``{root}`` is substituted."""
    read: Callable[[str, bool], tuple[np.ndarray, np.ndarray, tuple[str, ...]]]
    """(root, train) -> (uint8 images NCHW, int64 labels N, class names)."""
    download: Callable[[str], None]


def _read_mnist_like(cls_name: str) -> Callable[[str, bool], tuple[np.ndarray, np.ndarray, tuple[str, ...]]]:
    def read(root: str, train: bool):
        import torchvision.datasets as tvd

        ds = getattr(tvd, cls_name)(root, train=train, download=False)
        return ds.data.unsqueeze(1).numpy(), ds.targets.numpy(), tuple(ds.classes)

    return read


def _read_cifar(cls_name: str) -> Callable[[str, bool], tuple[np.ndarray, np.ndarray, tuple[str, ...]]]:
    def read(root: str, train: bool):
        import torchvision.datasets as tvd

        base = getattr(tvd, cls_name)
        # Presence-only checks: md5 None makes torchvision's check_integrity test os.path.isfile only.
        lenient = type(
            f"_Lenient{cls_name}", (base,),
            {
                "train_list": [[f, None] for f, _ in base.train_list],
                "test_list": [[f, None] for f, _ in base.test_list],
                "meta": {**base.meta, "md5": None},
            },
        )
        ds = lenient(root, train=train, download=False)
        return np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)), np.asarray(ds.targets), tuple(ds.classes)

    return read


def _read_svhn(root: str, train: bool):
    import torchvision.datasets as tvd

    lenient = type(
        "_LenientSVHN", (tvd.SVHN,),
        {"split_list": {k: [url, fn, None] for k, (url, fn, _) in tvd.SVHN.split_list.items()}},
    )
    ds = lenient(root, split="train" if train else "test", download=False)
    return np.ascontiguousarray(ds.data), np.asarray(ds.labels), tuple(str(c) for c in range(10))


def _download_split_classes(cls_name: str, split_kw: str) -> Callable[[str], None]:
    def download(root: str) -> None:
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        if split_kw == "split":
            cls(root, split="train", download=True)
            cls(root, split="test", download=True)
        else:
            cls(root, train=True, download=True)
            cls(root, train=False, download=True)

    return download


SPECS: dict[str, _Spec] = {
    "mnist": _Spec(
        files=tuple(f"MNIST/raw/{f}" for f in _MNIST_FILES),
        describe="{root}/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
        read=_read_mnist_like("MNIST"), download=_download_split_classes("MNIST", "train"),
    ),
    "fashion_mnist": _Spec(
        files=tuple(f"FashionMNIST/raw/{f}" for f in _MNIST_FILES),
        describe="{root}/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
        read=_read_mnist_like("FashionMNIST"), download=_download_split_classes("FashionMNIST", "train"),
    ),
    "cifar10": _Spec(
        files=tuple(f"cifar-10-batches-py/{f}" for f in
                    [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]),
        describe="{root}/cifar-10-batches-py/data_batch_1..5, test_batch and batches.meta",
        read=_read_cifar("CIFAR10"), download=_download_split_classes("CIFAR10", "train"),
    ),
    "cifar100": _Spec(
        files=("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"),
        describe="{root}/cifar-100-python/train, test and meta",
        read=_read_cifar("CIFAR100"), download=_download_split_classes("CIFAR100", "train"),
    ),
    "svhn": _Spec(
        files=("train_32x32.mat", "test_32x32.mat"),
        describe="{root}/train_32x32.mat and test_32x32.mat",
        read=_read_svhn, download=_download_split_classes("SVHN", "split"),
    ),
}

# What a malformed file makes torchvision / pickle / scipy raise while parsing.
_READ_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError, IndexError, OSError, RuntimeError)


def load_torchvision(name: str, *, root: str | None, resolution: int | None, download: bool) -> SplitDataset:
    """Load one of :data:`SPECS` from ``root`` (optionally downloading it first) and normalise it."""
    spec = SPECS[name]
    if root is None or str(root) == "":
        raise UserError(f"{name}: data.root is required (the folder holding the torchvision-format files)")
    root = os.path.expanduser(str(root))
    if download:
        try:
            spec.download(root)
        except (OSError, RuntimeError) as err:  # URLError is an OSError; torchvision raises RuntimeError
            raise UserError(f"{name}: could not download into {root}: {err}") from err
    missing = [f for f in spec.files if not (Path(root) / f).is_file()]
    if missing:
        expected = spec.describe.replace("{root}", root)
        raise UserError(
            f"{name}: expected {expected} (missing {Path(root) / missing[0]}); "
            "pass --set data.download=true to fetch"
        )
    try:
        train_x, train_y, classes = spec.read(root, True)
        test_x, test_y, _ = spec.read(root, False)
    except _READ_ERRORS as err:
        raise UserError(f"{name}: could not read the files under {root} (corrupt or not torchvision's format): "
                        f"{type(err).__name__}: {err}") from err
    return build_split(
        name=name,
        class_names=classes,
        train_x_NCHW=torch.from_numpy(train_x),
        train_y=torch.from_numpy(np.asarray(train_y, dtype=np.int64)),
        test_x_NCHW=torch.from_numpy(test_x),
        test_y=torch.from_numpy(np.asarray(test_y, dtype=np.int64)),
        resolution=resolution,
    )
