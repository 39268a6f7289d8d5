"""Rank setup through Accelerate (torch.distributed underneath: NCCL on GPUs, gloo on CPU), the 2-D
process grid of a run, and the reductions between ranks.

Ranks form a grid ``world = replicas x inner_shards``; rank ``r`` is replica ``r // inner_shards``,
shard ``r % inner_shards``:

- **meta-batch axis** (replicas): replica ``q`` runs unrolls ``q, q + replicas, ...`` of the
  ``dist.meta_batch`` unrolls of an outer step. The seed of unroll ``j`` depends only on (run seed,
  outer step, j), never on the rank that runs it, so the result does not depend on how many processes
  computed it (up to float summation order). Memory gradients are summed in ONE coalesced all-reduce.
- **inner-batch axis** (shards): the ``inner_shards`` ranks of a replica run the SAME unroll, each on
  its slice of every inner minibatch; :meth:`RankContext.reduce_grad` sums their inner gradients with a
  differentiable all-reduce over the replica's process subgroup, so all of them hold identical
  parameters, and autograd sums the adjoints of that all-reduce in the reverse pass.

Why the memory gradient is scaled by ``1 / (meta_batch * inner_shards)`` (DESIGN §3): every shard
back-propagates the same outer loss and the all-reduce's backward sums those identical adjoints, so
the gradients of a replica's shards (w.r.t. the memory and learned lrs) add up to exactly
``inner_shards`` times the unsharded meta-gradient. Proved in float64 by tests/test_distributed.py.
"""
from __future__ import annotations

import datetime
import os
import sys
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.distributed as dist
from torch import Tensor

from rtp_scale.config import Config
from rtp_scale.errors import UserError
from rtp_scale.seeding import make_generator

TIMEOUT_ENV = "RTP_SCALE_DIST_TIMEOUT_S"
"""Seconds a collective may wait for the slowest rank before the run fails (default below)."""
DEFAULT_TIMEOUT_S = 2 * 3600
# Generous on purpose: only rank 0 evaluates (eval.every and the final evaluation) while the others wait
# in their next collective. A dead peer is noticed much sooner: gloo fails the survivors' collective at
# once ("Connection closed by peer"), and torchrun / accelerate launch / srun --kill-on-bad-exit tear the
# remaining ranks down; this timeout is only the last resort (e.g. NCCL with a silently hung peer).

Params = dict[str, Tensor]


def _flatten(tensors: list[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflatten_into_(flat: Tensor, tensors: list[Tensor]) -> None:
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


@dataclass
class RankContext:
    """This process's place in the run's process grid (a 1x1 grid when there is one process)."""

    rank: int
    world_size: int
    device: torch.device
    inner_shards: int
    accelerator: object | None = None
    shard_group: object | None = None
    """The process subgroup of this rank's replica (all its inner shards); None when inner_shards == 1."""
    deepspeed: bool = False
    """The run was launched with an Accelerate DeepSpeed config (the outer optimiser is ZeRO-sharded)."""
    _reducer: Callable[[Params], Params] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ the grid
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

    def grad_scale(self, meta_batch: int) -> float:
        """The factor on each unroll's meta-gradient so that the sum over all ranks is the meta-batch mean.

        ``1 / meta_batch`` averages the unrolls; ``1 / inner_shards`` undoes the factor ``inner_shards``
        that the differentiable all-reduce puts on every shard's gradient (module docstring).
        """
        return 1.0 / (meta_batch * self.inner_shards)

    def generator(self, seed: int, purpose: str, step: int) -> torch.Generator:
        """A generator for randomness that is genuinely per process: derived from (run seed, purpose,
        outer step, rank). Unroll randomness does NOT use it: it is keyed by the unroll index (see
        :meth:`unrolls`) so that a run's result does not depend on the number of processes."""
        return make_generator(seed, purpose, step, "rank", self.rank)

    # ------------------------------------------------------------------ the inner-batch axis
    @property
    def reduce_grad(self) -> Callable[[Params], Params] | None:
        """The ``reduce_grad`` hook of the unroll engine: sum a replica's inner gradients over its shards
        (one differentiable all-reduce of the flattened gradients per inner step); None without sharding."""
        return self._reducer

    # ------------------------------------------------------------------ the reductions
    def sum_grads_(self, tensors: list[Tensor], metrics: dict[str, float] | None = None) -> dict[str, float]:
        """Sum gradients over all ranks in ONE coalesced all-reduce (flatten, reduce, unflatten), in place.

        ``metrics`` (this rank's scalars, the same keys on every rank) ride along in the same all-reduce
        and come back as the whole step's values: averaged over replicas, and ``inner/loss*`` (a shard's
        loss is its columns' share of the minibatch mean) summed over inner shards. The caller has scaled
        the gradients by :meth:`grad_scale`.
        """
        metrics = dict(metrics or {})
        if self.world_size == 1 or not (tensors or metrics):
            return metrics
        keys = sorted(metrics)
        dtype = tensors[0].dtype if tensors else torch.float64
        parts = [t.reshape(-1) for t in tensors]
        parts.append(torch.tensor([metrics[k] for k in keys], dtype=dtype, device=self.device))
        flat = torch.cat(parts)
        dist.all_reduce(flat)
        _unflatten_into_(flat, tensors)
        values = flat[flat.numel() - len(keys):].tolist()
        out = {}
        for k, v in zip(keys, values):
            mean = v / self.world_size
            out[k] = mean * self.inner_shards if k.startswith("inner/loss") else mean
        return out

    def broadcast_(self, tensors: list[Tensor], src: int = 0) -> None:
        """Overwrite ``tensors`` on every rank with rank ``src``'s values (one coalesced broadcast)."""
        if self.world_size == 1 or not tensors:
            return
        flat = _flatten([t.detach() for t in tensors])
        dist.broadcast(flat, src=src)
        with torch.no_grad():
            _unflatten_into_(flat, tensors)

    def agree(self, value: int, what: str) -> None:
        """Raise on every rank unless all ranks hold the same integer ``value`` (e.g. the resume step)."""
        if self.world_size == 1:
            return
        both = torch.tensor([value, -value], dtype=torch.int64, device=self.device)
        dist.all_reduce(both, op=dist.ReduceOp.MAX)
        high, low = int(both[0]), -int(both[1])
        if high != low:
            raise UserError(f"ranks disagree on {what} (between {low} and {high}); with several nodes "
                            f"run.out_dir must be on a filesystem that every node sees")

    def divergence(self, tensors: list[Tensor]) -> float:
        """Largest absolute difference of ``tensors`` between any two ranks (0.0: bitwise replicated).

        One all-reduce (MAX) of ``[t, -t]`` per tensor, so the extra memory is twice the largest tensor."""
        if self.world_size == 1 or not tensors:
            return 0.0
        worst = 0.0
        for t in tensors:
            flat = t.detach().reshape(-1)
            both = torch.cat([flat, -flat])
            dist.all_reduce(both, op=dist.ReduceOp.MAX)
            high, neg_low = both[:flat.numel()].double(), both[flat.numel():].double()
            worst = max(worst, float((high + neg_low).max()))  # max over ranks - min over ranks
        return worst

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def make_shard_reducer(group: object) -> Callable[[Params], Params]:
    """Sum a dict of inner gradients over ``group`` with one differentiable all-reduce.

    ``torch.distributed._functional_collectives.all_reduce`` is differentiable (its backward is an
    all-reduce of the adjoints) on gloo and NCCL alike; it is applied in the unroll's graph-free forward
    and in every recomputed segment, so all ranks issue the same collectives in the same order.
    """
    from torch.distributed import _functional_collectives as fc

    def reduce_grad(grads: Params) -> Params:
        names = list(grads)
        flat = fc.all_reduce(_flatten([grads[n] for n in names]), "sum", group)
        out, offset = {}, 0
        for n in names:
            g = grads[n]
            out[n] = flat[offset:offset + g.numel()].view_as(g)
            offset += g.numel()
        return out

    return reduce_grad


def timeout_seconds() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    if not raw:
        return float(DEFAULT_TIMEOUT_S)
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"{TIMEOUT_ENV}={raw!r} must be a number of seconds") from None
    if value <= 0:
        raise UserError(f"{TIMEOUT_ENV}={raw!r} must be > 0")
    return value


def using_deepspeed() -> bool:
    """True under ``accelerate launch`` with a DeepSpeed config (Accelerate sets this variable)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def check_grid(world: int, inner_shards: int, meta_batch: int) -> int:
    """The number of replicas, or a UserError saying why the grid does not fit the world."""
    if world % inner_shards:
        hint = (" -- this is one process; start several with e.g. `accelerate launch --config_file "
                "configs/accelerate/cpu_2proc.yaml -m rtp_scale.distill ...` (README, Scaling out)") if world == 1 else ""
        raise UserError(f"dist.inner_shards={inner_shards} must divide the number of processes ({world}){hint}")
    replicas = world // inner_shards
    if meta_batch % replicas:
        raise UserError(f"dist.meta_batch={meta_batch} must be a multiple of the number of replicas "
                        f"(processes / inner_shards = {world} / {inner_shards} = {replicas})")
    return replicas


_RAN_AS_RANK = False  # set by setup_ranks in a process that joined a group of several: see end_rank_process


def end_rank_process(code: int) -> None:
    """End a process that ran as one rank of several now, with ``code``, skipping the interpreter's teardown.

    A rank's gloo worker threads outlive ``destroy_process_group`` whenever something still references its
    groups (DeepSpeed's engine and ``deepspeed.utils.groups`` always do; measured: every group's threads still
    run after it), and a C++ thread still running at teardown aborts the process ("terminate called without an
    active exception", SIGABRT) after its work is done -- a finished ZeRO-2 rank failed its launch that way.
    ``os._exit`` ends the process before teardown starts; everything the run writes is closed or flushed by
    then (files by ``run``'s ``finally``, the standard streams and logging here). No-op in any other process.
    """
    if not _RAN_AS_RANK:
        return
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to write to
            pass
    os._exit(code)


def release_process_group() -> None:
    """Destroy the default process group, if one was started: every process entry point calls this before it
    exits. A gloo process that exits with its group alive can abort at interpreter teardown ("terminate called
    without an active exception", SIGABRT: its worker threads still hold tensors), failing a run that finished
    -- seen on a rank that returned while rank 0 was still evaluating (pytorch/pytorch#190489). Threads of groups
    that something still references survive this; entry points end such a rank with :func:`end_rank_process`."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def setup_ranks(cfg: Config, device: torch.device) -> RankContext:
    """Start (or join) the process group through Accelerate and build this rank's place in the grid.

    Works wherever the torch.distributed environment variables are set (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): ``accelerate launch``, ``torchrun``, or a submitit
    task (launch/task.py exports them from Slurm's environment); one process without them.
    """
    from accelerate import Accelerator  # imported here: costs ~1.5 s and only entry points need it
    from accelerate.utils import InitProcessGroupKwargs

    timeout = datetime.timedelta(seconds=timeout_seconds())
    deepspeed = using_deepspeed()
    if deepspeed:
        # DESIGN §4: DeepSpeed through Accelerate needs cpu=False (cpu=True silently ignores DeepSpeed);
        # on a CPU machine the backend must then be named: gloo.
        backend = "nccl" if device.type == "cuda" else "gloo"
        accelerator = Accelerator(kwargs_handlers=[InitProcessGroupKwargs(backend=backend, timeout=timeout)])
    else:
        # cpu=True makes Accelerate use gloo on machines without GPUs (a plain Accelerator() there leaves
        # the processes unconnected, DESIGN §4)
        # (Accelerate picks the backend itself; naming one breaks the single-process case)
        accelerator = Accelerator(cpu=device.type == "cpu", kwargs_handlers=[InitProcessGroupKwargs(timeout=timeout)])
    world, rank = accelerator.num_processes, accelerator.process_index
    if world > 1:
        global _RAN_AS_RANK
        _RAN_AS_RANK = True
    shards = cfg.dist.inner_shards
    if shards > 1 and cfg.method.name == "frepo":
        raise UserError("dist.inner_shards > 1 splits an unroll's inner minibatch over processes, but method.name="
                        "frepo has no unroll; spread FRePo over processes with dist.meta_batch instead")
    check_grid(world, shards, cfg.dist.meta_batch)
    run_device = accelerator.device if device.type == "cuda" else device
    group = None
    if shards > 1:
        # every rank must create every subgroup, in the same order (torch.distributed.new_group's contract)
        for q in range(world // shards):
            ranks = list(range(q * shards, (q + 1) * shards))
            made = dist.group.WORLD if shards == world else dist.new_group(ranks, timeout=timeout)
            if rank in ranks:
                group = made
    ctx = RankContext(rank=rank, world_size=world, device=run_device, inner_shards=shards,
                      accelerator=accelerator, shard_group=group, deepspeed=deepspeed)
    if group is not None:
        ctx._reducer = make_shard_reducer(group)
    return ctx
