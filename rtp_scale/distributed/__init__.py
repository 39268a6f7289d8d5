"""Process-level concerns of a run: which process does what, and the reductions between them.

- :mod:`rtp_scale.distributed.context`: rank setup through Accelerate, the 2-D process grid
  (meta-batch replicas x inner-batch shards), the differentiable inner-gradient all-reduce, the coalesced
  meta-gradient all-reduce, broadcast / agreement / replication checks.
- :mod:`rtp_scale.distributed.zero`: the outer optimiser sharded with DeepSpeed ZeRO-1/2 through Accelerate.
"""
from rtp_scale.distributed.context import RankContext, release_process_group, setup_ranks
from rtp_scale.distributed.zero import prepare_outer_optimizer

__all__ = ["RankContext", "prepare_outer_optimizer", "release_process_group", "setup_ranks"]
