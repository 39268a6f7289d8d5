"""Smoke sweep: 4 tiny RtP distillations on the offline 8x8 `digits` (IPC 1 and 2, seeds 0 and 1).

Hardware: any CPU; each member takes seconds. Use it to try the launcher end to end:

    python -m launch.sweep configs/sweeps/smoke.py --cluster local --array-parallelism 2
    python -m launch.sweep configs/sweeps/smoke.py --cluster slurm --partition debug --wait   # on Slurm
    python -m launch.collect runs/sweeps/smoke

Expected: 4/4 members completed. The accuracies mean nothing (a few steps of a width-8 ConvNet).
"""
NAME = "smoke"
DESCRIPTION = "4 tiny RtP distillations on digits: IPC 1/2 x seeds 0/1 (seconds each, CPU)"
GRID = {"memory.ipc": [1, 2]}
SEEDS = [0, 1]
OVERRIDES = [
    "data.name=digits", "data.real_per_class=8", "model.width=8", "model.depth=2", "memory.num_bases=6",
    "memory.downsample=2", "inner.steps=6", "inner.batch_per_class=4", "meta.steps=4", "eval.num_nets=1",
    "eval.epochs=3", "eval.batch_size=64", "log.image_every=0", "log.tensorboard=false", "checkpoint.every=1",
    "run.device=cpu",
]
RESOURCES = {"timeout_min": 10, "cpus_per_task": 1, "mem_gb": 2, "array_parallelism": 2}
