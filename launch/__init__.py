"""Launch distillations on a cluster with submitit: one picklable task, sweeps as Slurm job arrays.

- :mod:`launch.task`: :class:`~launch.task.DistillTask`, the submitit callable that runs
  ``rtp_scale.distill.run(cfg)`` for one config (lazy import), exports the torch.distributed
  environment when a job has several processes, and checkpoints + requeues itself on timeout or
  preemption (the run resumes from its ``checkpoint.pt``).
- :mod:`launch.sweep`: ``python -m launch.sweep configs/sweeps/<name>.py`` expands a grid over config keys
  and seeds into ONE job array (``--cluster slurm``), or runs it locally (``local``, ``debug``);
  ``--dry-run`` prints the jobs, ``--resubmit <sweep dir>`` reruns only failed or missing members.
- :mod:`launch.collect`: ``python -m launch.collect <sweep dir>`` gathers every member's
  ``results.json`` into one table (markdown + CSV, optional PNG plot).

This package knows only ``rtp_scale.distill.run(cfg)``, the config builder and the resources of a job.
"""
from launch.task import DistillTask

__all__ = ["DistillTask"]
