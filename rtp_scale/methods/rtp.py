"""Remember the Past (Deng & Russakovsky, NeurIPS 2022): back-propagation through a long inner
SGD-momentum unroll, from a fresh network every outer step, to the synthetic images a memory recalls.

One meta-gradient:

1. recall every class's images ``x_all = memory.class_images()`` (a graph to the memory's tensors);
2. draw the unroll's randomness up front (fresh init, per-step class-balanced minibatches, one
   augmentation draw for the whole unroll) so that the engine may recompute any segment;
3. unroll T inner steps on minibatches of ``x_all`` and take the exact gradient of the final network's
   cross-entropy on a real batch w.r.t. ``x_all`` (rtp_scale.unroll);
4. push that gradient, plus the coefficient L2 regulariser, into the memory's ``.grad`` with one
   backward through the recall.

With ``memory.query_mix > 0`` step 1 recalls some classes with mixed label vectors instead of one-hot ones
(:func:`mixed_recall`), and those images train the inner network with their soft label.

``batched_meta_gradient`` (``dist.batch_unrolls``) runs several unrolls of one outer step as ONE unroll of
stacked networks (``torch.func.vmap``), with the same draws per unroll: the same gradient, in fewer kernels.

Pushing the gradient through the recall once (step 4) instead of re-recalling inside every inner step
keeps the engine unaware of memories and costs one small matmul instead of T of them.

This module knows nothing of ranks: inner-batch sharding enters only as (``shard``, ``num_shards``) and
a ``reduce_grad`` callable supplied by rtp_scale.distributed.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from rtp_scale.config import Config
from rtp_scale.data.augment import AugmentDraw, Augmenter
from rtp_scale.models import init_params
from rtp_scale.runtime import resolve_device
from rtp_scale.unroll import ChunkedLoss, UnrollPolicy, fast_bf16_available, unroll_meta_grad
from rtp_scale.unroll.engine import GradReducer


@dataclass(frozen=True)
class UnrollPlan:
    """The random draws of one unroll, fixed before it starts (segments are recomputed in reverse)."""

    batch_idx_TB: Tensor
    """[T, C*b] indices into the class-major recalled images, class-balanced at every step."""
    augment: AugmentDraw | None
    """One augmentation draw shared by every step of the unroll (RtP/DSA), or None."""
    steps: int
    """Steps to run (T, or a random length in [window, T] for truncated unrolls)."""


def draw_plan(*, num_classes: int, images_per_class: int, batch_per_class: int, steps: int, max_steps: int,
              augmenter: Augmenter, generator: torch.Generator, device: torch.device,
              dtype: torch.dtype) -> UnrollPlan:
    """Per step, ``batch_per_class`` distinct images of every class (all of them when the class has fewer)."""
    take = min(batch_per_class, images_per_class)
    # argsort of uniform noise = a random permutation per (step, class), in one vectorised draw
    order_TCR = torch.rand(max_steps, num_classes, images_per_class, generator=generator).argsort(dim=-1)
    offsets_C1 = (torch.arange(num_classes) * images_per_class)[:, None]
    batch_idx_TB = (order_TCR[:, :, :take] + offsets_C1).reshape(max_steps, num_classes * take)[:steps]
    draw = augmenter.draw(num_classes * take, generator, device=device, dtype=dtype) if augmenter.enabled else None
    return UnrollPlan(batch_idx_TB=batch_idx_TB.to(device), augment=draw, steps=steps)


def shard_columns(width: int, shard: int, num_shards: int) -> slice:
    """The contiguous slice of a minibatch of ``width`` images that inner shard ``shard`` computes."""
    bounds = [width * s // num_shards for s in range(num_shards + 1)]
    return slice(bounds[shard], bounds[shard + 1])


def mixed_recall(memory: nn.Module, y_all: Tensor, per_class: int, *, prob: float,
                 generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Recall every class block with a query that is mixed with probability ``prob`` (``memory.query_mix``).

    Returns (x [B*r, C, H, W], soft targets [B*r, memory.num_classes]): block b's r images are
    ``memory.recall(q_b)`` and carry the label vector ``q_b`` (see rtp_scale.memory.queries.draw_mixed_queries).
    ``y_all`` is the class-major label vector of ``memory.class_images()``.
    """
    from rtp_scale.memory.queries import draw_mixed_queries

    q_BC = draw_mixed_queries(y_all[::per_class], memory.num_classes, prob=prob, generator=generator)
    x_BR = memory.recall(q_BC.to(y_all.device))
    q_BC = q_BC.to(device=x_BR.device, dtype=x_BR.dtype)
    return x_BR.reshape(-1, *x_BR.shape[2:]), q_BC.repeat_interleave(per_class, dim=0)


def stacked_forward(net: nn.Module) -> Callable[[dict[str, Tensor], Tensor], Tensor]:
    """``(params with a leading axis M, x [M, b, ...]) -> logits [M, b, classes]``: M networks of ``net``'s
    architecture, each on its own batch, in one vectorised call (``torch.func.vmap``)."""
    return vmap(lambda params, x: functional_call(net, params, (x,)))


def real_batch_loss(net: nn.Module, real_x: Tensor, real_y: Tensor, chunk: int, *,
                    stacked: bool = False) -> ChunkedLoss:
    """Mean cross-entropy of the network on the real batch, as parts of at most ``chunk`` images (0: one part).

    With ``stacked``, the parameters carry a leading axis of M networks, ``real_x`` is [M, n, ...] and ``real_y``
    [M, n] (one batch per network), and the loss is the sum of the M networks' mean cross-entropies."""
    n = real_y.shape[-1]
    step = chunk or n
    forward = stacked_forward(net) if stacked else (lambda params, x: functional_call(net, params, (x,)))

    def part(rows: slice):
        def loss(params: dict[str, Tensor]) -> Tensor:
            logits = forward(params, real_x[:, rows] if stacked else real_x[rows])
            return F.cross_entropy(logits.flatten(0, -2), real_y[..., rows].flatten(), reduction="sum") / n
        return loss

    return ChunkedLoss(tuple(part(slice(s, s + step)) for s in range(0, n, step)))


def push_to_memory(memory: nn.Module, recalled: Tensor, image_grad: Tensor, *, coeff_l2: float, scale: float) -> float:
    """Back-propagate ``scale * image_grad`` (d meta-loss / d recalled images) and ``scale *`` the coefficient
    L2 regulariser into the memory's ``.grad`` with one backward through the recall; returns the regulariser."""
    regulariser = coeff_l2 * memory.coefficient_l2()
    outputs, grads = [recalled], [scale * image_grad]
    if regulariser.requires_grad:
        outputs.append(regulariser)
        grads.append(torch.full_like(regulariser, scale))
    torch.autograd.backward(outputs, grads)
    return float(regulariser.detach())


def unroll_policy(cfg: Config) -> UnrollPolicy:
    """The engine's policy from ``cfg.unroll``, checked against ``inner.steps``; says on stderr, in one line,
    when ``unroll.precision=bf16`` (or ``bf16_reverse``) will be slower than float32 on this run's device."""
    u = cfg.unroll
    policy = UnrollPolicy(mode=u.mode, segment=u.segment, window=u.window, offload=u.offload,
                          memory_budget_mb=u.memory_budget_mb, precision=u.precision)
    policy.validate(cfg.inner.steps)
    if u.precision != "fp32":
        fast, why = fast_bf16_available(resolve_device(cfg.run.device))
        if not fast:
            print(f"warning: unroll.precision={u.precision} will be slower than fp32 here: {why}", file=sys.stderr)
    return policy


class RtpMethod:
    """Computes RtP meta-gradients into a memory's ``.grad`` (and returns the learned-lr gradient)."""

    def __init__(self, cfg: Config, net: nn.Module, augmenter: Augmenter):
        self.cfg = cfg
        self.net = net
        self.augmenter = augmenter
        self.policy = unroll_policy(cfg)

    def state_dict(self) -> dict:
        return {}  # RtP draws a fresh network every outer step: nothing to keep between steps

    def load_state_dict(self, state: dict) -> None:
        pass

    def unroll_length(self, generator: torch.Generator) -> int:
        """T, or for RaT-BPTT a random length in [window, T] so that every part of training is seen."""
        T, window = self.cfg.inner.steps, self.cfg.unroll.window
        if self.cfg.unroll.mode != "truncated":
            return T
        return int(torch.randint(window, T + 1, (1,), generator=generator))

    def _draw_unroll(self, generator: torch.Generator, num_classes: int, per_class: int, device: torch.device,
                     dtype: torch.dtype) -> tuple[dict[str, Tensor], UnrollPlan]:
        """One unroll's fresh network and plan, drawn from its generator in a fixed order."""
        params0 = {k: v.to(device=device, dtype=dtype) for k, v in init_params(self.net, generator).items()}
        steps = self.unroll_length(generator)
        plan = draw_plan(num_classes=num_classes, images_per_class=per_class,
                         batch_per_class=self.cfg.inner.batch_per_class, steps=steps, max_steps=self.cfg.inner.steps,
                         augmenter=self.augmenter, generator=generator, device=device, dtype=dtype)
        return params0, plan

    def _minibatch(self, images: Tensor, labels: Tensor, plan: UnrollPlan, t: int,
                   columns: slice) -> tuple[Tensor, Tensor]:
        """Step ``t``'s (augmented) minibatch of the recalled images, this shard's columns of it."""
        idx = plan.batch_idx_TB[t]
        xb = images[idx]
        if plan.augment is not None:
            xb = self.augmenter.apply(xb, plan.augment)
        return xb[columns], labels[idx][columns]

    def _unroll_into_memory(self, memory: nn.Module, x_all: Tensor, *, inner_loss, outer_loss: ChunkedLoss,
                            params0: dict[str, Tensor], steps: int, lrs: Tensor, scale: float, unrolls: int,
                            reduce_grad: GradReducer) -> tuple[dict[str, float], Tensor | None]:
        """Run the engine, push ``scale *`` its gradient (and ``unrolls`` regularisers, one per unroll the loss
        sums) into the memory; metrics are means over the ``unrolls``."""
        cfg = self.cfg
        leaf = x_all.detach().requires_grad_(True)
        result = unroll_meta_grad(inner_loss=inner_loss, outer_loss=outer_loss, params0=params0, meta=(leaf,),
                                  steps=steps, lrs=lrs[:steps], momentum=cfg.inner.momentum,
                                  weight_decay=cfg.inner.weight_decay, policy=self.policy, reduce_grad=reduce_grad)
        regulariser = push_to_memory(memory, x_all, result.meta_grads[0], coeff_l2=cfg.memory.coeff_l2 * unrolls,
                                     scale=scale) / unrolls

        lr_grad = None
        if result.lr_grad is not None:
            lr_grad = torch.zeros_like(lrs)
            lr_grad[:steps] = scale * result.lr_grad
        metrics = {"meta/loss": result.outer_loss / unrolls, "meta/regulariser": regulariser,
                   "inner/loss_first": result.inner_losses[0] / unrolls,
                   "inner/loss_last": result.inner_losses[-1] / unrolls, "inner/steps": float(steps)}
        return metrics, lr_grad

    def meta_gradient(self, memory: nn.Module, real_x: Tensor, real_y: Tensor, *, lrs: Tensor,
                      generator: torch.Generator, scale: float = 1.0, shard: int = 0, num_shards: int = 1,
                      reduce_grad: GradReducer = None) -> tuple[dict[str, float], Tensor | None]:
        """Accumulate ``scale * d(meta-loss)/d(memory)`` into ``memory``'s ``.grad``.

        Returns the metrics of this unroll and ``scale * d(meta-loss)/d(lrs)`` (None unless lrs is learned).
        """
        cfg = self.cfg
        x_all, y_all = memory.class_images()
        num_classes = memory.meta["num_classes"]
        per_class = len(y_all) // num_classes
        params0, plan = self._draw_unroll(generator, num_classes, per_class, x_all.device, x_all.dtype)
        if cfg.memory.query_mix > 0:
            # drawn after the plan, so that query_mix=0 consumes exactly the random stream it always did
            x_all, y_all = mixed_recall(memory, y_all, per_class, prob=cfg.memory.query_mix, generator=generator)
        width = plan.batch_idx_TB.shape[1]
        columns = shard_columns(width, shard, num_shards)
        net = self.net

        def inner_loss(params: dict[str, Tensor], t: int, meta: tuple[Tensor, ...]) -> Tensor:
            xb, yb = self._minibatch(meta[0], y_all, plan, t, columns)
            # sum / full width: the shards' losses add up to the mean over the whole minibatch
            return F.cross_entropy(functional_call(net, params, (xb,)), yb, reduction="sum") / width

        outer_loss = real_batch_loss(net, real_x, real_y, cfg.unroll.outer_chunk)
        return self._unroll_into_memory(memory, x_all, inner_loss=inner_loss, outer_loss=outer_loss, params0=params0,
                                        steps=plan.steps, lrs=lrs, scale=scale, unrolls=1, reduce_grad=reduce_grad)

    def batched_meta_gradient(self, memory: nn.Module, draws: list[tuple[Tensor, Tensor, torch.Generator]], *,
                              lrs: Tensor, scale: float = 1.0, shard: int = 0, num_shards: int = 1,
                              reduce_grad: GradReducer = None) -> tuple[dict[str, float], Tensor | None]:
        """``meta_gradient`` of every ``(real_x, real_y, generator)`` in ``draws`` as ONE unroll of stacked networks
        (``dist.batch_unrolls``): the inner and outer losses are the sums of the unrolls' losses, whose networks
        do not interact, so the engine's gradient is the sum of their gradients. Each unroll draws its network and
        plan from its own generator exactly as ``meta_gradient`` does; returns the means of their metrics and the
        sum of their ``scale *`` lr gradients."""
        cfg = self.cfg
        x_all, y_all = memory.class_images()
        num_classes = memory.meta["num_classes"]
        per_class = len(y_all) // num_classes
        starts = [self._draw_unroll(g, num_classes, per_class, x_all.device, x_all.dtype) for _, _, g in draws]
        plans = [plan for _, plan in starts]
        steps = plans[0].steps  # one length: the config refuses truncated mode's per-unroll lengths
        params0 = {name: torch.stack([p[name] for p, _ in starts]) for name in starts[0][0]}
        width = plans[0].batch_idx_TB.shape[1]
        columns = shard_columns(width, shard, num_shards)
        forward = stacked_forward(self.net)

        def inner_loss(params: dict[str, Tensor], t: int, meta: tuple[Tensor, ...]) -> Tensor:
            batches = [self._minibatch(meta[0], y_all, plan, t, columns) for plan in plans]
            logits = forward(params, torch.stack([xb for xb, _ in batches]))
            return F.cross_entropy(logits.flatten(0, 1), torch.cat([yb for _, yb in batches]), reduction="sum") / width

        outer_loss = real_batch_loss(self.net, torch.stack([x for x, _, _ in draws]),
                                     torch.stack([y for _, y, _ in draws]), cfg.unroll.outer_chunk, stacked=True)
        return self._unroll_into_memory(memory, x_all, inner_loss=inner_loss, outer_loss=outer_loss, params0=params0,
                                        steps=steps, lrs=lrs, scale=scale, unrolls=len(draws), reduce_grad=reduce_grad)
