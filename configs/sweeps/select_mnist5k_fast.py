"""Selection, step 3: the default job within 10 minutes in all on a 2-core CPU.

The recipe of step 2 (``select_mnist5k_distill``: PCA start, T=60, 5 images per class and step, 60 outer Adam
steps at lr 1e-3) distils for about 10-13 minutes on a quiet 2-core machine, before its evaluation. These members
spend half of its inner steps (1,800: 30 outer steps of T=60, or 36 of T=50) and ask whether a larger outer lr
recovers what the shorter schedule loses. Scored on the validation split (the last 50 training images per
class), 5 networks, seed 0; the best member became the default job (T60_30steps_lr4e-3: 91.12 % against
91.04 % for step 2's 60 steps; README, "Choosing the default recipe").

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/select_mnist5k_fast.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/select_mnist5k_fast

Hardware: a 2-core CPU, two members side by side on one thread each, about 20 minutes per member.
"""
NAME = "select_mnist5k_fast"
DESCRIPTION = "mnist5k IPC 1, PCA start: half the default's inner steps at three outer lrs, validation split"
BASE = "configs/mnist5k_rtp_ipc1.toml"
GRID = {"variant": {
    "T60_30steps_lr1e-3": ["inner.steps=60", "meta.steps=30", "meta.lr=0.001"],
    "T60_30steps_lr2e-3": ["inner.steps=60", "meta.steps=30", "meta.lr=0.002"],
    "T60_30steps_lr4e-3": ["inner.steps=60", "meta.steps=30", "meta.lr=0.004"],
    "T50_36steps_lr2e-3": ["inner.steps=50", "meta.steps=36", "meta.lr=0.002"],
}}
SEEDS = [0]
OVERRIDES = ["memory.init=pca", "inner.batch_per_class=5", "data.val_per_class=50", "data.eval_split=val"]
RESOURCES = {"timeout_min": 90, "cpus_per_task": 1, "mem_gb": 4, "array_parallelism": 2}
