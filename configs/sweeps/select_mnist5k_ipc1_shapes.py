"""A probe at the default job's 1-IPC storage: what won below 1 IPC (7x7 bases, outer lr 1e-2), at 1 IPC.

Below one image per class (``memories_vs_pixels_subipc_shapes.py``) memories with bases at 7x7 and Adam 1e-2 beat
every other set: at IPC 0.5, K=16 and 19 slots per class reached 90.9 % on validation, about the default job's
91.3 % at twice the storage. Here, at the default's 1 IPC and schedule (T=60, 5 images per class per inner step,
30 outer steps): its own shape (K=16 at 14x14, 29 slots per class) at lr 1e-2 instead of 4e-3, and K=32 at 7x7
with 19 slots per class (7,648 floats) at lr 1e-2, beside the default itself under the same 3 networks.
Validation split, 3 networks, seed 0: a probe for the next choice of the default, not yet a selection.

Measured (one thread, two or three jobs side by side): the default 91.67 +- 0.09 % (distill 285 s), its shape at
lr 1e-2 91.40 +- 0.59 (556 s), K=32 at 7x7 and lr 1e-2 93.00 +- 0.28 (395 s). At seeds 1 and 2 the last read
90.80 and 90.73 against the default's 92.07 and 90.67 (README): over three seeds the two are equal, and the default
stays.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/select_mnist5k_ipc1_shapes.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/select_mnist5k_ipc1_shapes
"""
NAME = "select_mnist5k_ipc1_shapes"
DESCRIPTION = "mnist5k IPC 1: the default's shape at Adam 1e-2, and K=32 bases at 7x7, validation split"
GRID = {"variant": {
    "K16_14x14_lr1e-2": ["meta.lr=0.01"],
    "K32_7x7_lr1e-2": ["memory.num_bases=32", "memory.downsample=4", "meta.lr=0.01"],
    "K16_14x14_default": [],  # the default job's config, scored by the same 3 networks
}}
SEEDS = [0]
OVERRIDES = ["data.val_per_class=50", "data.eval_split=val", "eval.num_nets=3", "log.image_every=0"]
RESOURCES = {"timeout_min": 90, "cpus_per_task": 2, "mem_gb": 4, "array_parallelism": 1}
