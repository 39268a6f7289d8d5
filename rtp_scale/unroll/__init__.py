"""Differentiable inner loops and their exact, memory-bounded meta-gradients.

This package knows nothing of memories, datasets or methods: it takes an inner-loss function,
an outer-loss function, an initial parameter dict, meta-parameter tensors and a policy.

- :mod:`.inner`: ``sgd_momentum_step`` (exactly ``torch.optim.SGD`` with momentum, pure and
  differentiable) and ``zeros_like_params``.
- :mod:`.policy`: ``UnrollPolicy`` (full / segmented / truncated, segment length, offload, memory
  budget, precision).
- :mod:`.precision`: bfloat16 autocast of the losses, and ``fast_bf16_available`` (is it faster here?).
- :mod:`.engine`: ``unroll_meta_grad`` (forward pass + segment-by-segment adjoint recursion),
  ``UnrollResult`` and ``ChunkedLoss`` (an outer loss differentiated part by part).
- :mod:`.meter`: ``SavedTensorMeter`` (peak graph memory: sanity checks and the memory budget's measurements).
"""
from rtp_scale.unroll.engine import (
    ChunkedLoss,
    GradReducer,
    InnerLoss,
    OuterLoss,
    UnrollResult,
    unroll_meta_grad,
)
from rtp_scale.unroll.meter import SavedTensorMeter
from rtp_scale.unroll.inner import Params, sgd_momentum_step, zeros_like_params
from rtp_scale.unroll.policy import UnrollPolicy
from rtp_scale.unroll.precision import fast_bf16_available

__all__ = [
    "ChunkedLoss",
    "GradReducer",
    "InnerLoss",
    "OuterLoss",
    "Params",
    "SavedTensorMeter",
    "UnrollPolicy",
    "UnrollResult",
    "fast_bf16_available",
    "sgd_momentum_step",
    "unroll_meta_grad",
    "zeros_like_params",
]
