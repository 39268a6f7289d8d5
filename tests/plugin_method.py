"""A distillation method defined outside the package: ``method.name=tests.plugin_method:OneStepMethod``.

It is the smallest complete method: train a fresh network for ONE gradient step on the memory's images and take
the real-batch loss of the result as the meta-loss (Dataset Distillation with T=1). It keeps a running mean of
its meta-loss across outer steps, so a checkpoint must carry its ``state_dict`` for a resumed run to match a
straight one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from rtp_scale.config import Config
from rtp_scale.data.augment import Augmenter
from rtp_scale.errors import UserError
from rtp_scale.models import init_params


class OneStepMethod:
    """Meta-loss: cross-entropy on the real batch of a fresh network after one SGD step on the memory."""

    def __init__(self, cfg: Config, net: nn.Module, augmenter: Augmenter) -> None:
        self.cfg, self.net, self.augmenter = cfg, net, augmenter
        self.loss_ema: float | None = None
        """Exponential moving average of the meta-loss (decay 0.9), the state a checkpoint must keep."""

    def state_dict(self) -> dict:
        return {"loss_ema": self.loss_ema}

    def load_state_dict(self, state: dict) -> None:
        self.loss_ema = state.get("loss_ema")

    def meta_gradient(self, memory: nn.Module, real_x: Tensor, real_y: Tensor, *, lrs: Tensor,
                      generator: torch.Generator, scale: float = 1.0, shard: int = 0, num_shards: int = 1,
                      reduce_grad=None) -> tuple[dict[str, float], Tensor | None]:
        if num_shards != 1:
            raise UserError("tests.plugin_method:OneStepMethod does not shard its inner batch; set dist.inner_shards=1")
        x_all, y_all = memory.class_images()
        params = {k: v.to(x_all).requires_grad_(True) for k, v in init_params(self.net, generator).items()}
        inner_loss = F.cross_entropy(functional_call(self.net, params, (x_all,)), y_all)
        grads = torch.autograd.grad(inner_loss, list(params.values()), create_graph=True)
        stepped = {k: p - lrs[0] * g for (k, p), g in zip(params.items(), grads)}
        meta_loss = F.cross_entropy(functional_call(self.net, stepped, (real_x,)), real_y)
        (scale * meta_loss).backward(inputs=[p for p in memory.parameters() if p.requires_grad])
        loss = float(meta_loss.detach())
        self.loss_ema = loss if self.loss_ema is None else 0.9 * self.loss_ema + 0.1 * loss
        return {"meta/loss": loss, "inner/loss_first": float(inner_loss.detach()),
                "inner/loss_last": float(inner_loss.detach()), "plugin/loss_ema": self.loss_ema}, None
