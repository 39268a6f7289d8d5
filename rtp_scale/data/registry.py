"""Dataset registry: one name -> one loader that returns normalised, in-memory train/test tensors.

``data.name`` is a registered name (:func:`dataset_names`) or ``package.module:loader``, a loader of one's own:
a callable taking keyword-only ``root`` (str or None), ``resolution`` (int or None) and ``download`` (bool) and
returning a :class:`~rtp_scale.data.split.SplitDataset` (build it with :func:`~rtp_scale.data.split.build_split`).

The split type and its helpers live in :mod:`rtp_scale.data.split`, below both this module and the loaders; they
are re-exported here. Loaders import their heavy dependencies (torchvision, PIL, mlxtend, scikit-learn) lazily,
so that importing this module (for ``dataset_names()`` or config validation) costs nothing.
"""
from __future__ import annotations

from rtp_scale.data.imagefolder import load_imagefolder
from rtp_scale.data.offline import load_digits, load_mnist5k
from rtp_scale.data.split import (
    DatasetInfo, DatasetLoader, SplitDataset, build_split, channel_stats, check_resolution, resize_square,
    to_unit_float,
)
from rtp_scale.data.torchvision_sets import load_torchvision
from rtp_scale.errors import UserError
from rtp_scale.plugins import is_spec, load_object

__all__ = [
    "DATASETS", "DatasetInfo", "DatasetLoader", "SplitDataset", "build_split", "channel_stats", "check_resolution",
    "dataset_names", "load_dataset", "resize_square", "to_unit_float",
]


# --------------------------------------------------------------------------- the registry
# The wrappers adapt each loader to the one signature; the loaders import their heavy dependencies when called.


def _mnist5k(*, root: str | None, resolution: int | None, download: bool) -> SplitDataset:
    return load_mnist5k(resolution=resolution)


def _digits(*, root: str | None, resolution: int | None, download: bool) -> SplitDataset:
    return load_digits(resolution=resolution)


def _torchvision(name: str) -> DatasetLoader:
    def load(*, root: str | None, resolution: int | None, download: bool) -> SplitDataset:
        return load_torchvision(name, root=root, resolution=resolution, download=download)

    load.__name__ = f"_{name}"
    return load


def _imagefolder(*, root: str | None, resolution: int | None, download: bool) -> SplitDataset:
    if download:
        raise UserError("imagefolder: data.download is not supported; point data.root at a local copy")
    return load_imagefolder(root=root, resolution=resolution)


DATASETS: dict[str, DatasetLoader] = {
    "mnist5k": _mnist5k,
    "digits": _digits,
    "mnist": _torchvision("mnist"),
    "fashion_mnist": _torchvision("fashion_mnist"),
    "cifar10": _torchvision("cifar10"),
    "cifar100": _torchvision("cifar100"),
    "svhn": _torchvision("svhn"),
    "imagefolder": _imagefolder,
}


def dataset_names() -> list[str]:
    """All registered dataset names, in registry order (offline ones first)."""
    return list(DATASETS)


def dataset_loader(name: str) -> DatasetLoader:
    """The loader ``data.name`` stands for: a registered one, or the callable a ``package.module:fn`` spec names."""
    if is_spec(name):
        loader = load_object(name, kind="dataset")
        if not callable(loader):
            raise UserError(f"dataset {name!r} is not callable; it must be a loader function (see "
                            f"rtp_scale.data.registry)")
        return loader  # type: ignore[return-value]
    loader = DATASETS.get(name)
    if loader is None:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)} "
                        f"or a package.module:loader of your own")
    return loader


def load_dataset(
    name: str, *, root: str | None = None, resolution: int | None = None, download: bool = False
) -> SplitDataset:
    """Load a registered (or ``package.module:loader``) dataset fully into memory, normalised.

    Mistakes raise :class:`UserError`.
    """
    loader = dataset_loader(name)
    check_resolution(resolution)
    data = loader(root=root, resolution=resolution, download=download)
    if not isinstance(data, SplitDataset):
        raise UserError(f"dataset {name!r} returned {type(data).__name__}, not a rtp_scale.data.split.SplitDataset "
                        f"(build it with rtp_scale.data.split.build_split)")
    return data
