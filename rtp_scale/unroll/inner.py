"""The differentiable inner optimiser: SGD with (heavy-ball) momentum on a dict of tensors.

The network is never copied or mutated: its weights live in a ``Params`` dict
(``name -> tensor``) that is fed to ``torch.func.functional_call``, and every step returns
*new* dicts. Because nothing is done in place, autograd can record a chain of steps and
differentiate the final weights w.r.t. anything the steps depended on (the synthetic data
through the inner gradients, a learned learning rate, the initial state).

The update is exactly ``torch.optim.SGD(momentum=mu, dampening=0, nesterov=False,
weight_decay=wd)`` (same operations in the same order, so float results agree bit for bit
when ``lr`` is a Python float)::

    g' = g + wd * theta          # weight decay folded into the gradient
    v  = mu * v + g'             # with v0 = 0 this equals torch's "first step: v = g'"
    theta = theta - lr * v
"""
from __future__ import annotations

import torch
from torch import Tensor

Params = dict[str, Tensor]


def zeros_like_params(params: Params) -> Params:
    """A velocity of zeros (no graph) with the same names, shapes, dtypes and devices."""
    return {name: torch.zeros_like(p, requires_grad=False) for name, p in params.items()}


def sgd_momentum_step(
    params: Params,
    velocity: Params,
    grads: Params,
    *,
    lr: float | Tensor,
    momentum: float,
    weight_decay: float = 0.0,
) -> tuple[Params, Params]:
    """One SGD-with-momentum step; returns ``(new_params, new_velocity)``.

    Pure (no tensor is modified) and differentiable w.r.t. ``params``, ``velocity``,
    ``grads`` and a tensor ``lr`` (a 0-dim tensor, e.g. ``lrs[t]`` of a learned schedule).
    A float ``lr`` uses ``Tensor.add(alpha=-lr)`` as torch.optim does (a fused
    multiply-add on CPU), a tensor ``lr`` the product ``theta - lr * v``; both are the
    same update up to the last bit.
    """
    new_params: Params = {}
    new_velocity: Params = {}
    for name, p in params.items():
        g = grads[name]
        if weight_decay != 0.0:
            g = g.add(p, alpha=weight_decay)
        v = velocity[name].mul(momentum).add(g) if momentum != 0.0 else g
        if isinstance(lr, Tensor):
            new_params[name] = p - lr * v
        else:
            new_params[name] = p.add(v, alpha=-lr)
        new_velocity[name] = v
    return new_params, new_velocity
