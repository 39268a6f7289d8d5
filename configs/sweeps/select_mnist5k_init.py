"""Selection, step 1: which starting memory of the 1-IPC storage is best before any distillation?

Principal-component bases with every slot projected from its own real image (``memory.init=pca``), over the
trade-off the storage forces: K bases at 1/ds resolution against r recalled images per class (fewer, sharper
bases leave room for more slots). ``meta.steps=0``: nothing is distilled, each member is evaluated as built.
Scored on the validation split (the last 50 training images per class, never seen by the memory), with 3
networks per member for the screen; the chosen start is then distilled by ``select_mnist5k_distill.py``.

    python -m launch.sweep configs/sweeps/select_mnist5k_init.py --cluster slurm --wait   # or --cluster local
    python -m launch.collect runs/sweeps/select_mnist5k_init

Hardware: a 2-core CPU, one member at a time, evaluation only: about 5 minutes per member on a quiet machine (the
45-slot member took 24 minutes on a loaded one). README, "Choosing the default recipe", has the members run so far.
"""
NAME = "select_mnist5k_init"
DESCRIPTION = "mnist5k IPC 1, no distillation: PCA start over (bases K, downsample ds), validation split"
BASE = "configs/mnist5k_rtp_ipc1.toml"
GRID = {("memory.num_bases", "memory.downsample"): [(12, 2), (16, 2), (20, 2), (24, 2), (8, 1), (24, 4), (32, 4),
                                                     (48, 4)]}
SEEDS = [0]
OVERRIDES = ["memory.init=pca", "meta.steps=0", "data.val_per_class=50", "data.eval_split=val", "eval.num_nets=3"]
RESOURCES = {"timeout_min": 60, "cpus_per_task": 2, "mem_gb": 4, "array_parallelism": 1}
