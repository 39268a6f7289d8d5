"""One outer step's meta-gradient on this rank, reduced over all ranks: what ``distill`` runs every step.

Kept apart from ``distill.run`` so that the multi-process tests and the scaling benchmark run this very code
rather than a copy of it.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from rtp_scale.config import Config
from rtp_scale.distributed import RankContext
from rtp_scale.seeding import make_generator

RealSampler = Callable[[torch.Generator], tuple[Tensor, Tensor]]


def unroll_inputs(cfg: Config, sample_real: RealSampler, step: int,
                  j: int) -> tuple[Tensor, Tensor, torch.Generator]:
    """Unroll ``j`` of outer step ``step``: its real batch and the generator that draws its network and plan.

    They depend on (seed, step, j) only, not on the rank running the unroll.
    """
    generator = make_generator(cfg.run.seed, "unroll", step, j)
    real_x, real_y = sample_real(generator)
    return real_x, real_y, generator


def reduced_meta_gradient(cfg: Config, ctx: RankContext, method, memory: nn.Module, params: list[Tensor],
                          sample_real: RealSampler, *, step: int, lrs: Tensor,
                          learn_lrs: bool) -> tuple[dict[str, float], Tensor]:
    """Add this rank's unrolls of outer step ``step`` to ``params``' ``.grad`` (zeroed by the caller), then sum
    gradients and metrics over ranks in one all-reduce.

    Returns the step's metrics (means over its unrolls) and the learned-lr gradient (zeros unless ``learn_lrs``).
    """
    lr_grad = torch.zeros_like(lrs)
    metrics: dict[str, float] = {}
    mine = ctx.unrolls(cfg.dist.meta_batch)
    common = dict(lrs=lrs if learn_lrs else lrs.detach(), scale=ctx.grad_scale(cfg.dist.meta_batch),
                  shard=ctx.shard, num_shards=ctx.inner_shards, reduce_grad=ctx.reduce_grad)

    # lazy: run one by one, each unroll's real batch is drawn when that unroll starts
    inputs = (unroll_inputs(cfg, sample_real, step, j) for j in mine)
    if cfg.dist.batch_unrolls and len(mine) > 1:
        results = [method.batched_meta_gradient(memory, list(inputs), **common)]
    else:
        results = [method.meta_gradient(memory, real_x, real_y, generator=generator, **common)
                   for real_x, real_y, generator in inputs]
    for unroll_metrics, lr_g in results:
        if lr_g is not None:
            lr_grad += lr_g
        for k, v in unroll_metrics.items():
            metrics[k] = metrics.get(k, 0.0) + v / len(results)
    grads = [p.grad for p in params] + ([lr_grad] if learn_lrs else [])
    return ctx.sum_grads_(grads, metrics), lr_grad  # one all-reduce: gradients + the step's metrics
