"""Dataset Distillation (Wang, Zhu, Torralba & Efros, 2018): learned images and one learned learning rate
per inner step, meta-gradient by back-propagation through a few plain gradient-descent steps.

The unroll, as in the paper (``distill_steps`` x ``distill_epochs``, one lr per step per epoch):

- ``T = inner.steps`` steps of plain GD (``Config`` sets ``inner.momentum=0`` and ``inner.learn_lr=true``
  for this method), step ``t`` with its own learned ``lrs[t]`` — T learned lrs in all;
- they form ``dd.epochs`` passes over ``S = ceil(T / epochs)`` steps (the last pass is cut short when T is
  not a multiple); step ``t`` trains on the ``(t mod S)``-th fixed group of every class's images, so each
  epoch replays the same images in the same order. With ``r >= S`` images per class the groups are
  contiguous, near-equal slices covering all of them (DD's ``distilled_images_per_class_per_step = r/S``);
  with ``r < S`` step ``t`` uses image ``(t mod S) mod r`` of every class;
- the meta-loss is the cross-entropy of the final network on the real batch.

Init modes (``dd.init``): ``random`` draws a fresh network from the unroll's generator every outer step (the
synthetic set must work for any init, as the evaluation protocol asks); ``fixed`` uses the same init, from
``(seed, 'dd-fixed-init')``, every outer step (DD's fixed-init setting; the evaluation protocol still trains
fresh random inits, so such a set is expected to do poorly there).

The exact meta-gradient, learned lrs included, comes from the shared engine (``rtp_scale.unroll``) with
momentum 0, so every unroll policy (full, segmented, truncated) and the inner-shard axis work as for RtP:
shard ``k`` computes its slice of every step's minibatch and ``reduce_grad`` sums the inner gradients.
Augmentation, when configured, is one draw per unroll applied once to every image (DD itself has none).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from rtp_scale.config import Config
from rtp_scale.data.augment import Augmenter
from rtp_scale.methods.rtp import push_to_memory, real_batch_loss, shard_columns, unroll_policy
from rtp_scale.models import init_params
from rtp_scale.seeding import make_generator
from rtp_scale.unroll import unroll_meta_grad
from rtp_scale.unroll.engine import GradReducer


def steps_per_epoch(total_steps: int, epochs: int) -> int:
    """S = ceil(T / epochs)."""
    return -(-total_steps // epochs)


def step_groups(*, num_classes: int, images_per_class: int, steps: int) -> list[Tensor]:
    """For each of the S steps of an epoch, the class-major indices of the images it trains on."""
    r = images_per_class
    if r >= steps:
        local = [torch.arange(r * s // steps, r * (s + 1) // steps) for s in range(steps)]
    else:
        local = [torch.tensor([s % r]) for s in range(steps)]
    offsets_C1 = (torch.arange(num_classes) * r)[:, None]
    return [(offsets_C1 + idx[None, :]).reshape(-1) for idx in local]


class DDMethod:
    """Computes DD meta-gradients into a memory's ``.grad`` and returns the learned-lr gradient."""

    def __init__(self, cfg: Config, net: nn.Module, augmenter: Augmenter):
        self.cfg, self.net, self.augmenter = cfg, net, augmenter
        self.policy = unroll_policy(cfg)
        self.steps_per_epoch = steps_per_epoch(cfg.inner.steps, cfg.dd.epochs)

    def state_dict(self) -> dict:
        return {}  # the fixed init is re-derived from the seed; nothing else lives between steps

    def load_state_dict(self, state: dict) -> None:
        pass

    def initial_params(self, generator: torch.Generator) -> dict[str, Tensor]:
        """The unroll's starting network: fresh from ``generator``, or the run's fixed init."""
        if self.cfg.dd.init == "fixed":
            generator = make_generator(self.cfg.run.seed, "dd-fixed-init")
        return init_params(self.net, generator)

    def meta_gradient(self, memory: nn.Module, real_x: Tensor, real_y: Tensor, *, lrs: Tensor,
                      generator: torch.Generator, scale: float = 1.0, shard: int = 0, num_shards: int = 1,
                      reduce_grad: GradReducer = None) -> tuple[dict[str, float], Tensor | None]:
        """Accumulate ``scale * d(meta-loss)/d(memory)`` into ``memory``'s ``.grad``; return ``scale * dL/dlrs``."""
        cfg, net = self.cfg, self.net
        T = cfg.inner.steps
        x_all, y_all = memory.class_images()
        num_classes = memory.meta["num_classes"]
        device, dtype = x_all.device, x_all.dtype
        params0 = {k: v.to(device=device, dtype=dtype) for k, v in self.initial_params(generator).items()}
        groups = [g.to(device) for g in step_groups(num_classes=num_classes,
                                                     images_per_class=len(y_all) // num_classes,
                                                     steps=self.steps_per_epoch)]
        x_in = x_all
        if self.augmenter.enabled:  # one draw per unroll, per image: the same transform at every step
            x_in = self.augmenter.apply(x_all, self.augmenter.draw(len(x_all), generator, device=device, dtype=dtype))

        def inner_loss(params: dict[str, Tensor], t: int, meta: tuple[Tensor, ...]) -> Tensor:
            (images,) = meta
            idx = groups[t % self.steps_per_epoch]
            columns = shard_columns(len(idx), shard, num_shards)
            xb, yb = images[idx][columns], y_all[idx][columns]
            # sum / full width: the shards' losses add up to the mean over the step's images
            return F.cross_entropy(functional_call(net, params, (xb,)), yb, reduction="sum") / len(idx)

        outer_loss = real_batch_loss(net, real_x, real_y, cfg.unroll.outer_chunk)
        leaf = x_in.detach().requires_grad_(True)
        result = unroll_meta_grad(inner_loss=inner_loss, outer_loss=outer_loss, params0=params0, meta=(leaf,),
                                  steps=T, lrs=lrs, momentum=0.0, weight_decay=cfg.inner.weight_decay,
                                  policy=self.policy, reduce_grad=reduce_grad)
        regulariser = push_to_memory(memory, x_in, result.meta_grads[0], coeff_l2=cfg.memory.coeff_l2, scale=scale)
        lr_grad = None if result.lr_grad is None else scale * result.lr_grad
        metrics = {"meta/loss": result.outer_loss, "meta/regulariser": regulariser,
                   "inner/loss_first": result.inner_losses[0], "inner/loss_last": result.inner_losses[-1],
                   "inner/steps": float(T), "inner/epochs": float(math.ceil(T / self.steps_per_epoch))}
        return metrics, lr_grad
