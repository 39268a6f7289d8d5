"""Selection at the 10-IPC storage of mnist5k, second round: a more consistent meta-gradient from the PCA start.

In ``select_mnist5k_ipc10_gain.py`` every member ended where it started or below (95.87-96.07 % against the
start's 96.07 on validation): the smaller the outer lr, the less the memory moved and the closer it stayed.
Each outer step there draws one network and 5 images per class per inner step, so each of the 1,020 slots enters
only ~3 of the unroll's 60 steps, and two unrolls' meta-gradients agree 3.5x less than at 1 IPC (pairwise cosine
0.026 against 0.091, ``python -m rtp_scale.bench agreement``). With ``inner.batch_per_class=25`` (250 images per
inner step, close to evaluation's minibatch of 256, so the unroll trains as evaluation does; about 4x a step's
compute per step) they agree as much as at 1 IPC (0.090). This member asks whether that turns into accuracy: T=60,
Adam 1e-3 (the lr that lost 0.4 points with the noisier step), 30 outer steps. Scored on the validation split,
3 networks, seed 0.

Measured: 95.67 +- 0.25 %, the same as with 5 images per class and 0.4 points below the start (96.07); the
distillation took 1,326 s on one thread beside another member. A more consistent meta-gradient is not enough
here. (``dist.meta_batch=4``, averaging four networks' unrolls, was started as a second member and stopped
unfinished, to leave the CPU to the sub-IPC seeds; it was not measured.)

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/select_mnist5k_ipc10_signal.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/select_mnist5k_ipc10_signal
"""
NAME = "select_mnist5k_ipc10_signal"
DESCRIPTION = "mnist5k IPC 10, PCA start: 25 images per class per inner step, validation split"
BASE = "configs/mnist5k_rtp_ipc10.toml"
GRID = {"variant": {"batch25": ["inner.batch_per_class=25"]}}
SEEDS = [0]
# exact unrolls, as configs/mnist5k_rtp_ipc10.toml had when this sweep ran
OVERRIDES = ["unroll.mode=segmented", "unroll.window=0",
             "memory.init=pca", "inner.steps=60", "meta.steps=30", "meta.lr=0.001", "data.val_per_class=50",
             "data.eval_split=val", "eval.num_nets=3", "log.image_every=0"]
RESOURCES = {"timeout_min": 120, "cpus_per_task": 2, "mem_gb": 6, "array_parallelism": 1}
