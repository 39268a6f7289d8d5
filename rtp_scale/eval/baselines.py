"""Baselines reported beside every distilled result, under the same protocol: a random real subset of
the same storage (a new subset per network) and the full training set."""
from __future__ import annotations

import torch

from rtp_scale.config import EvalConfig, ModelConfig
from rtp_scale.data import SplitDataset
from rtp_scale.data.sampler import random_subset_per_class
from rtp_scale.data.sources import MemorySource, RealSource
from rtp_scale.eval.protocol import EvalResult, evaluate_synthetic
from rtp_scale.seeding import make_generator


def random_real(data: SplitDataset | RealSource, *, ipc: int, model_cfg: ModelConfig, eval_cfg: EvalConfig,
                augment_ops: str, seed: int, progress: bool = False) -> EvalResult:
    """``ipc`` random real images per class; network i trains on its own subset drawn from (seed, i).

    ``data`` is an in-memory dataset or any real source (an FFCV one reads only the chosen images). The subsets
    depend only on (seed, i), not on ``augment_ops`` or the model, so baselines under different protocols train
    their network i on the same images.
    """
    source = data if isinstance(data, RealSource) else MemorySource(data, per_class=1)
    num_classes = source.info.num_classes

    def subset(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = random_subset_per_class(source.train_labels, num_classes, ipc, make_generator(seed, "random-real", i))
        return source.take(idx)

    x0, y0 = subset(0)
    test_x, test_y = source.eval_tensors("test")
    return evaluate_synthetic(x0, y0, test_x=test_x, test_y=test_y, num_classes=num_classes,
                              model_cfg=model_cfg, eval_cfg=eval_cfg, augment_ops=augment_ops, seed=seed,
                              progress=progress, desc=f"random real ipc={ipc}", train_sets=subset)


def full_data(data: SplitDataset, *, model_cfg: ModelConfig, eval_cfg: EvalConfig, augment_ops: str, seed: int,
              progress: bool = False) -> EvalResult:
    """The whole training set for ``eval_cfg.full_epochs`` epochs."""
    return evaluate_synthetic(data.train_x, data.train_y, test_x=data.test_x, test_y=data.test_y,
                              num_classes=data.info.num_classes, model_cfg=model_cfg, eval_cfg=eval_cfg,
                              augment_ops=augment_ops, seed=seed, epochs=eval_cfg.full_epochs, progress=progress,
                              desc="full data")
