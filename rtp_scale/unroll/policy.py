"""How the unroll engine trades device memory for recomputation (see ``engine.py``).

=============  ==============================================  ===============================
mode           device memory (T steps, k = segment)            compute (in inner-step forwards)
=============  ==============================================  ===============================
``full``       T steps of activations + double-backward graph  1 forward pass with graph
``segmented``  k steps of activations + ceil(T/k) (theta, v)   graph-free pass + recompute
``truncated``  as segmented, over the last ``window`` steps     T - W graph-free steps + W as above
=============  ==============================================  ===============================

All modes return the *exact* gradient of what they differentiate (``truncated`` differentiates
only the last ``window`` steps, treating the state at step ``T - window`` as a constant, as
RaT-BPTT does).

Two opt-in settings: ``memory_budget_mb`` (``segmented`` only) keeps the graph of the last ``m``
steps from the forward pass, so that only the first ``T - m`` steps are recomputed (``m`` as large
as the budget allows; ``m = T`` is ``full`` mode), and ``precision="bf16"`` evaluates the losses
under bfloat16 autocast while the state, the update and the adjoints stay in float32
(see :mod:`.precision`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from rtp_scale.errors import UserError
from rtp_scale.unroll.precision import PRECISIONS

MODES = ("full", "segmented", "truncated")


@dataclass(frozen=True, kw_only=True)
class UnrollPolicy:
    """Checkpointing / truncation policy of one unroll."""

    mode: str = "segmented"
    """``"full"``: keep the whole graph, one backward (fastest for short unrolls, memory grows
    with T). ``"segmented"``: keep (theta, v) only at segment boundaries and recompute each
    segment with its graph during the reverse pass. ``"truncated"``: RaT-BPTT window: run the
    first ``steps - window`` steps without graph, differentiate only the last ``window`` steps
    (segmented inside the window)."""

    segment: int = 0
    """Inner steps per recomputed segment; 0 means ceil(sqrt(span)) where span is ``steps``
    (``window`` in truncated mode). Must not exceed ``steps``; in truncated mode a segment longer
    than the window is cut to the window. Ignored in ``full`` mode."""

    window: int = 0
    """Number of differentiated final steps in ``truncated`` mode (required > 0 there, at most
    ``steps``). Ignored in the other modes."""

    offload: bool = False
    """Keep the boundary states in host memory (pinned when they come from CUDA) and move each
    back to the device when its segment is recomputed: device memory then holds one segment."""

    memory_budget_mb: float = 0.0
    """``segmented`` mode only; 0 = off. Bytes (MiB) of autograd's saved tensors the unroll may hold
    at once -- the graphs of its inner steps and of its outer loss, not the process's resident memory
    nor the boundary states. Within it, the forward pass keeps the graph of the last
    ``m = floor((budget - outer) / per_step)`` steps (at most all of them), and the reverse pass
    back-propagates that tail from its kept graph instead of recomputing it; ``per_step`` (one inner
    step's graph) and ``outer`` (one outer-loss part's graph) are measured on the first step of every
    unroll. The gradient is the same exact one. A budget that cannot hold one recomputed segment, or
    the outer loss's graph, is refused."""

    precision: str = "fp32"
    """``"fp32"``: every loss in the parameters' dtype. ``"bf16"``: every inner loss and the outer loss
    evaluated under ``torch.autocast(dtype=torch.bfloat16)`` (forward pass and recomputations alike),
    while the state (theta, v), the SGD update, the adjoints and the gradient sums stay float32.
    ``"bf16_reverse"`` (segmented and truncated modes): the forward pass in float32, so the trajectory is
    float32's bit for bit, and only the reverse pass's recomputed segments and the outer loss under autocast.
    Not for float64 unrolls."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"unroll mode {self.mode!r} is unknown; choose one of {', '.join(MODES)}")
        if self.segment < 0:
            raise UserError(f"unroll segment must be >= 0 (0 = sqrt of the unroll), got {self.segment}")
        if self.window < 0:
            raise UserError(f"unroll window must be >= 0, got {self.window}")
        if self.mode == "truncated" and self.window == 0:
            raise UserError("unroll mode 'truncated' needs window > 0 (the number of differentiated steps)")
        if self.memory_budget_mb < 0:
            raise UserError(f"unroll memory budget must be >= 0 MiB (0 = off), got {self.memory_budget_mb}")
        if self.memory_budget_mb > 0 and self.mode != "segmented":
            raise UserError(f"an unroll memory budget needs mode 'segmented' (mode is {self.mode!r}: "
                            f"{'it keeps the whole graph' if self.mode == 'full' else 'its window is recomputed'})")
        if self.precision not in PRECISIONS:
            raise UserError(f"unroll precision {self.precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
        if self.precision == "bf16_reverse" and self.mode == "full":
            raise UserError("unroll precision 'bf16_reverse' needs a recomputing mode ('segmented' or 'truncated'): "
                            "full mode recomputes nothing, so only its outer loss would run in bfloat16")

    def differentiated_steps(self, steps: int) -> int:
        """How many of ``steps`` inner steps the meta-gradient flows through."""
        return self.window if self.mode == "truncated" else steps

    def validate(self, steps: int) -> None:
        """Raise :class:`UserError` if this policy cannot run an unroll of ``steps`` steps."""
        if steps < 1:
            raise UserError(f"an unroll needs at least one inner step, got steps={steps}")
        if self.mode == "truncated" and self.window > steps:
            raise UserError(f"unroll window {self.window} exceeds the number of inner steps {steps}")
        if self.mode != "full" and self.segment > steps:
            raise UserError(f"unroll segment {self.segment} exceeds the number of inner steps {steps}")

    def kept_steps(self, steps: int, *, per_step: int, outer: int) -> int:
        """How many final steps of an unroll of ``steps`` keep their forward-pass graph within the memory budget,
        given the saved-tensor bytes of one inner step's graph and of one outer-loss part's graph.

        The kept tail (``m`` steps) is alive together with the outer loss's graph; after it is freed, one
        recomputed segment (at most ``k`` steps) is alive at a time. So the peak is
        ``max(m * per_step + outer, min(k, steps - m) * per_step)``, and ``m`` is the largest that fits. A budget
        that cannot hold the outer loss's graph or one segment raises :class:`UserError`."""
        k = self.segment_length(steps)
        budget_mb, mib = self.memory_budget_mb, 2**-20
        budget = budget_mb * 2**20
        if outer > budget:
            raise UserError(f"unroll memory budget {budget_mb:g} MiB cannot hold the outer loss's graph "
                            f"({outer * mib:.2f} MiB); raise it to at least {outer * mib:.2f} MiB or differentiate "
                            f"the outer loss in smaller parts (unroll.outer_chunk)")
        kept = steps if per_step == 0 else min(steps, int((budget - outer) // per_step))
        longest = min(k, steps - kept)
        if longest * per_step > budget:
            need = longest * per_step * mib
            raise UserError(f"unroll memory budget {budget_mb:g} MiB cannot hold one recomputed segment of "
                            f"{longest} inner steps ({need:.2f} MiB at {per_step * mib:.3f} MiB per step); raise it "
                            f"to at least {need:.2f} MiB or shorten the segment (unroll.segment)")
        return kept

    def segment_length(self, steps: int) -> int:
        """Steps per recomputed segment for an unroll of ``steps`` steps (validates first).

        ``full`` mode returns the whole span (one segment)."""
        self.validate(steps)
        span = self.differentiated_steps(steps)
        if self.mode == "full":
            return span
        if self.segment == 0:
            return math.isqrt(span - 1) + 1  # ceil(sqrt(span))
        return min(self.segment, span)  # truncated: a segment longer than the window is the window
