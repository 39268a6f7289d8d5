"""Selection at the 10-IPC storage of mnist5k: the starting memory, with and without distillation.

The 10-IPC storage (``configs/mnist5k_rtp_ipc10.toml``: 64 bases at 14x14, 102 slots per class). The recipe this
sweep started from began with 64 random real images with one-hot addressing and distilled with the 1-IPC default's
previous schedule (T=20, 10 images per class per step, Adam 1e-2, 60 steps; member ``recipe``, its settings spelled
out below). The members: that recipe; its ``real`` and ``pca`` starts without distillation (the
no-distillation baselines a distilled row must beat); and the PCA start distilled with the schedule that won at
1 IPC (T=60 on 5 images per class, Adam 1e-3). Scored on the validation split (the last 50 training images
per class, never distilled on), 3 networks per member.

    python -m launch.sweep configs/sweeps/select_mnist5k_ipc10.py --cluster slurm --wait   # or --cluster local
    python -m launch.collect runs/sweeps/select_mnist5k_ipc10

Measured (validation, 3 networks, seed 0): real start 86.73 +- 1.11, PCA start 96.07 +- 0.09, recipe 87.87 +- 0.19,
PCA start + T=60 for 30 steps 95.67 +- 0.19 (10 random real images per class: 89.00 +- 1.34). The last became
``configs/mnist5k_rtp_ipc10.toml``.

Hardware: a 2-core CPU, one member at a time; evaluating 1,020 images for 300 epochs on 3 networks takes
10-20 minutes, the distilled members add 10-25 minutes.
"""
NAME = "select_mnist5k_ipc10"
DESCRIPTION = "mnist5k IPC 10: real vs PCA start, without and with distillation, validation split"
BASE = "configs/mnist5k_rtp_ipc10.toml"
GRID = {"variant": {  # the evaluation-only members first: their numbers come soonest
    "real_no_distill": ["memory.init=real", "meta.steps=0"],
    "pca_no_distill": ["memory.init=pca", "meta.steps=0"],
    "recipe": ["memory.init=real", "inner.steps=20", "inner.batch_per_class=10", "meta.lr=0.01", "meta.steps=60"],
    "pca_T60_b5_30steps": ["memory.init=pca", "inner.steps=60", "inner.batch_per_class=5", "meta.lr=0.001",
                           "meta.steps=30"],
}}
SEEDS = [0]
# exact unrolls, as configs/mnist5k_rtp_ipc10.toml had when this sweep ran
OVERRIDES = ["unroll.mode=segmented", "unroll.window=0", "data.val_per_class=50", "data.eval_split=val",
             "eval.num_nets=3", "log.image_every=0"]
RESOURCES = {"timeout_min": 90, "cpus_per_task": 2, "mem_gb": 6, "array_parallelism": 1}
