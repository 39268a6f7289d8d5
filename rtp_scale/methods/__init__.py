"""Distillation methods. Each computes meta-gradients into a memory and knows nothing of ranks or logs.

A method object has::

    meta_gradient(memory, real_x, real_y, *, lrs, generator, scale, shard, num_shards, reduce_grad)
        -> (metrics: dict[str, float], lr_grad: Tensor | None)
    state_dict() -> dict            # anything beyond the memory that a checkpoint must keep (e.g. a model pool)
    load_state_dict(state) -> None
    end_step(memory, *, done) -> None   # optional: called on every process after each outer update (FRePo's pool)

Methods: ``rtp`` (methods/rtp.py), ``frepo`` (methods/frepo.py: kernel ridge regression on a model pool's
features, methods/krr.py), ``dd`` (methods/dd.py: the original Dataset Distillation).
"""
from __future__ import annotations

from torch import nn

from rtp_scale.config import Config
from rtp_scale.data.augment import Augmenter
from rtp_scale.errors import UserError


def build_method(cfg: Config, net: nn.Module, augmenter: Augmenter):
    """The configured method, bound to the inner network skeleton and the augmentation."""
    if cfg.method.name == "rtp":
        from rtp_scale.methods.rtp import RtpMethod

        return RtpMethod(cfg, net, augmenter)
    if cfg.method.name == "frepo":
        from rtp_scale.methods.frepo import FrepoMethod

        return FrepoMethod(cfg, net, augmenter)
    if cfg.method.name == "dd":
        from rtp_scale.methods.dd import DDMethod

        return DDMethod(cfg, net, augmenter)
    raise UserError(f"unknown method {cfg.method.name!r}")
