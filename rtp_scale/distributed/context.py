"""Rank setup through Accelerate (torch.distributed underneath: NCCL on GPUs, gloo on CPU) and the
assignment of a step's unrolls to ranks.

Ranks form a grid of ``world = replicas x inner_shards``; replica ``q`` runs unrolls
``q, q + replicas, ...`` of the ``meta_batch`` unrolls of an outer step. The seed of unroll ``j`` depends
only on (run seed, outer step, j), never on the rank that runs it, so a run's result does not depend on
how many processes computed it (up to float summation order).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from rtp_scale.config import Config
from rtp_scale.errors import UserError


@dataclass
class RankContext:
    """This process's place in the run."""

    rank: int
    world_size: int
    device: torch.device
    inner_shards: int
    accelerator: object | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def replicas(self) -> int:
        return self.world_size // self.inner_shards

    @property
    def replica(self) -> int:
        return self.rank // self.inner_shards

    @property
    def shard(self) -> int:
        return self.rank % self.inner_shards

    def unrolls(self, meta_batch: int) -> list[int]:
        """Indices of the outer step's unrolls that this rank's replica runs."""
        return list(range(self.replica, meta_batch, self.replicas))

    def sum_grads_(self, tensors: list[torch.Tensor]) -> None:
        """Sum gradients over all ranks in ONE coalesced all-reduce (flatten, reduce, unflatten).

        Inner shards of one unroll hold identical meta-gradients (each back-propagated the same outer
        loss), so the caller scales by 1/inner_shards before; see DESIGN §3.
        """
        if self.world_size == 1 or not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def setup_ranks(cfg: Config, device: torch.device) -> RankContext:
    """Start (or join) the process group through Accelerate and check the grid fits the world."""
    from accelerate import Accelerator  # imported here: costs ~1.5 s and only entry points need it

    # cpu=True makes Accelerate use gloo on machines without GPUs (a plain Accelerator() there leaves
    # gradients unsynchronised, DESIGN §4)
    accelerator = Accelerator(cpu=device.type == "cpu")
    world, rank = accelerator.num_processes, accelerator.process_index
    shards = cfg.dist.inner_shards
    if world % shards:
        raise UserError(f"dist.inner_shards={shards} must divide the number of processes ({world})")
    replicas = world // shards
    if cfg.dist.meta_batch % replicas:
        raise UserError(f"dist.meta_batch={cfg.dist.meta_batch} must be a multiple of the number of replicas "
                        f"(processes / inner_shards = {replicas})")
    run_device = accelerator.device if device.type == "cuda" else device
    return RankContext(rank=rank, world_size=world, device=run_device, inner_shards=shards, accelerator=accelerator)
