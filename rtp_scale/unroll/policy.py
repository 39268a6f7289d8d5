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
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from rtp_scale.errors import UserError

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

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"unroll mode {self.mode!r} is unknown; choose one of {', '.join(MODES)}")
        if self.segment < 0:
            raise UserError(f"unroll segment must be >= 0 (0 = sqrt of the unroll), got {self.segment}")
        if self.window < 0:
            raise UserError(f"unroll window must be >= 0, got {self.window}")
        if self.mode == "truncated" and self.window == 0:
            raise UserError("unroll mode 'truncated' needs window > 0 (the number of differentiated steps)")

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
