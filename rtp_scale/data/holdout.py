"""A validation split carved out of the training split, for choosing recipes without looking at the test set.

``data.val_per_class=N`` holds out the last N training images of every class (in the dataset's own order, so
the split is the same on every machine and needs no seed); distillation, memory initialisation and the
random-real baselines never see them. ``data.eval_split`` says what evaluation reports on:

* ``val``: the held-out images take the place of the test split, and the test images are not even kept in
  memory, so nothing selected this way can have looked at them;
* ``test`` (default): the real test split, with the same reduced training split -- the one evaluation of a
  recipe chosen on ``val``.

Normalisation statistics (one mean and std per channel) are those of the whole training split, so that ``val``
and ``test`` runs see identically preprocessed images; ZCA, when asked for, is fitted after the hold-out, on
the remaining training images only.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from rtp_scale.data import SplitDataset
from rtp_scale.data.sampler import indices_by_class
from rtp_scale.errors import UserError


def holdout_indices(labels_N: torch.Tensor, num_classes: int, per_class: int) -> torch.Tensor:
    """int64 indices of the last ``per_class`` images of every class, class-major; one line if a class is too small."""
    blocks = []
    for c, members in enumerate(indices_by_class(labels_N, num_classes)):
        if members.numel() <= per_class:
            raise UserError(f"data.val_per_class={per_class} leaves no training image of class {c} "
                            f"({members.numel()} in the training split)")
        blocks.append(members[-per_class:])
    return torch.cat(blocks)


def carve_validation(data: SplitDataset, *, per_class: int, eval_split: str) -> SplitDataset:
    """``data`` with ``per_class`` training images per class held out; they replace the test split when
    ``eval_split == 'val'``. ``per_class == 0`` returns ``data`` itself (DataConfig refuses ``val`` without a
    hold-out)."""
    if per_class == 0:
        return data
    held = holdout_indices(data.train_y, data.info.num_classes, per_class)
    keep = torch.ones(len(data.train_y), dtype=torch.bool)
    keep[held] = False
    keep = keep.to(data.train_y.device)
    held = held.to(data.train_y.device)
    carved = replace(data, train_x=data.train_x[keep], train_y=data.train_y[keep])
    if eval_split == "val":
        carved = replace(carved, test_x=data.train_x[held], test_y=data.train_y[held])
    return carved
