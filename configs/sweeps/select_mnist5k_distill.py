"""Selection, step 2: how to distill the principal-component start of the 1-IPC memory on a CPU budget.

Every member starts from the PCA memory (16 bases at 14x14, 29 slots per class, each slot projected from its own
real image; ``memory.init=pca``) and distills it with long unrolls and a low outer lr, the direction that the
short-horizon bias of T=20 suggests (see README, "Choosing the default recipe"). The variants trade unroll
length against inner batch and outer steps at roughly equal CPU time. Scored on the validation split (the last
50 training images per class); the best of the members that fit the default job's 10 minutes became the
default job (T60_b5_60steps; replaced since by the faster member of select_mnist5k_fast.py).

    python -m launch.sweep configs/sweeps/select_mnist5k_distill.py --cluster slurm --wait   # or --cluster local
    python -m launch.collect runs/sweeps/select_mnist5k_distill

Hardware: a 2-core CPU, one member at a time, 10-15 minutes each on a quiet machine (evaluation included; the
chosen member took 48 minutes on a loaded one). README, "Choosing the default recipe", has the members run so far.
"""
NAME = "select_mnist5k_distill"
DESCRIPTION = "mnist5k IPC 1, PCA start: unroll length x inner batch x outer steps, validation split"
BASE = "configs/mnist5k_rtp_ipc1.toml"
GRID = {"variant": {
    "T60_b10_40steps": ["inner.steps=60", "inner.batch_per_class=10", "meta.steps=40"],
    "T60_b5_60steps": ["inner.steps=60", "inner.batch_per_class=5", "meta.steps=60"],
    "T120_b5_30steps": ["inner.steps=120", "inner.batch_per_class=5", "meta.steps=30"],
}}
SEEDS = [0]
OVERRIDES = ["memory.init=pca", "meta.lr=0.001", "data.val_per_class=50", "data.eval_split=val"]
RESOURCES = {"timeout_min": 90, "cpus_per_task": 2, "mem_gb": 4, "array_parallelism": 1}
