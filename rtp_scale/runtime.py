"""Shared run-time plumbing of the entry points: device choice and the prepared real dataset."""
from __future__ import annotations

import torch

from rtp_scale.config import DataConfig
from rtp_scale.data import SplitDataset, load_dataset
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
    data = load_dataset(cfg.name, root=cfg.root or None, resolution=cfg.resolution or None, download=cfg.download)
    if cfg.zca:
        zca = ZCA.fit(data.train_x, reg=cfg.zca_reg)
        data.train_x, data.test_x = zca.apply(data.train_x), zca.apply(data.test_x)
    return data.to(device)


def augment_ops(data_augment: str, eval_augment: str) -> str:
    """The augmentation used while training evaluation networks ('same' follows the distillation's)."""
    return data_augment if eval_augment == "same" else eval_augment
