"""Differentiable inner loops and their exact, memory-bounded meta-gradients.

This package knows nothing of memories, datasets or methods: it takes an inner-loss function,
an outer-loss function, an initial parameter dict, meta-parameter tensors and a policy.

- :mod:`.inner`: ``sgd_momentum_step`` (exactly ``torch.optim.SGD`` with momentum, pure and
  differentiable) and ``zeros_like_params``.
- :mod:`.policy`: ``UnrollPolicy`` (full / segmented / truncated, segment length, offload).
- :mod:`.engine`: ``unroll_meta_grad`` (forward pass + segment-by-segment adjoint recursion),
  ``UnrollResult``, ``ChunkedLoss`` (an outer loss differentiated part by part), and ``SavedTensorMeter`` (peak graph memory, for sanity checks).
"""
from rtp_scale.unroll.engine import (
    ChunkedLoss,
    GradReducer,
    InnerLoss,
    OuterLoss,
    SavedTensorMeter,
    UnrollResult,
    unroll_meta_grad,
)
from rtp_scale.unroll.inner import Params, sgd_momentum_step, zeros_like_params
from rtp_scale.unroll.policy import UnrollPolicy

__all__ = [
    "ChunkedLoss",
    "GradReducer",
    "InnerLoss",
    "OuterLoss",
    "Params",
    "SavedTensorMeter",
    "UnrollPolicy",
    "UnrollResult",
    "sgd_momentum_step",
    "unroll_meta_grad",
    "zeros_like_params",
]
