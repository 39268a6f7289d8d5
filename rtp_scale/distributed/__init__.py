"""Process-level concerns of a run: which process does what, and the reductions between them."""
from rtp_scale.distributed.context import RankContext, setup_ranks

__all__ = ["RankContext", "setup_ranks"]
