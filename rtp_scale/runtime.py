"""Shared run-time plumbing of the entry points: device choice and the prepared real dataset."""
from __future__ import annotations

import torch

from rtp_scale.config import DataConfig
from rtp_scale.data import SplitDataset, load_dataset
from rtp_scale.data.holdout import carve_validation
from rtp_scale.data.zca import ZCA
from rtp_scale.errors import UserError


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA on a machine without it is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("run.device=cuda but no CUDA device is available; use run.device=cpu or auto")
    return torch.device(name)


def prepare_data(cfg: DataConfig, device: torch.device | str = "cpu") -> SplitDataset:
    """Load the registered dataset, whiten it with ZCA when asked (fitted on train only), move it to ``device``."""
    return prepare_data_and_zca(cfg, device)[0]


def prepare_data_and_zca(cfg: DataConfig, device: torch.device | str = "cpu", *,
                         zca: ZCA | None = None) -> tuple[SplitDataset, ZCA | None]:
    """:func:`prepare_data` that also returns the ZCA transform it applied (None without ``cfg.zca``).

    ``zca`` whitens with a given transform (e.g. the one a distilled artifact stores) instead of fitting one:
    the O(D^3) fit is skipped and the images are whitened exactly as the artifact's run whitened them.
    """
    data = load_dataset(cfg.name, root=cfg.root or None, resolution=cfg.resolution or None, download=cfg.download)
    data = carve_validation(data, per_class=cfg.val_per_class, eval_split=cfg.eval_split)  # before ZCA is fitted
    if not cfg.zca:
        return data.to(device), None
    if zca is None:
        zca = ZCA.fit(data.train_x, reg=cfg.zca_reg)
    elif zca.mean_D.numel() != data.train_x[0].numel():
        raise UserError(f"the given ZCA transform is for {zca.mean_D.numel()}-value images but {cfg.name} images "
                        f"have {data.train_x[0].numel()} values")
    data.train_x, data.test_x = zca.apply(data.train_x), zca.apply(data.test_x)
    return data.to(device), zca


def augment_ops(data_augment: str, eval_augment: str) -> str:
    """The augmentation used while training evaluation networks ('same' follows the distillation's)."""
    return data_augment if eval_augment == "same" else eval_augment
