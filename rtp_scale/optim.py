"""Outer-loop optimiser pieces that torch does not ship: LAMB and the cosine lr schedule FRePo uses.

Both follow optax, which FRePo's reference code calls:

* ``Lamb`` = ``optax.lamb``: Adam moments with bias correction, ``u = m_hat / (sqrt(v_hat) + eps) + wd * p``,
  then the layer-wise trust ratio ``||p|| / ||u||`` (1 when either norm is 0) per parameter tensor, then
  ``p -= lr * ratio * u``. A memory's tensors (an image tensor, a label matrix, bases, addressing) are
  each one "layer", so each moves by about ``lr`` times its own norm per step whatever its gradient scale.
* ``cosine_lr`` = ``optax.cosine_decay_schedule(lr, decay_steps, alpha=floor)``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al., 2020) exactly as ``optax.lamb`` (b1 0.9, b2 0.999, eps 1e-6, no weight decay by default)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0) -> None:
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Lamb: invalid lr={lr}, betas={betas}, eps={eps} or weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch.optim.Optimizer interface
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = float(state["step"])
                m, v, g = state["exp_avg"], state["exp_avg_sq"], p.grad
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                update: Tensor = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + group["eps"])
                if group["weight_decay"]:
                    update = update + group["weight_decay"] * p
                p_norm, u_norm = p.norm(), update.norm()
                ratio = torch.where((p_norm > 0) & (u_norm > 0), p_norm / u_norm, torch.ones_like(p_norm))
                p.sub_(group["lr"] * ratio * update)
        return loss


def cosine_lr(base_lr: float, step: int, total_steps: int, floor: float) -> float:
    """``base_lr * ((1 - floor) * (1 + cos(pi * step / total)) / 2 + floor)``: base_lr at step 0, then down to
    ``floor * base_lr`` at ``total_steps``."""
    progress = min(max(step, 0), total_steps) / max(total_steps, 1)
    return base_lr * ((1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)) + floor)
