"""Selection at the 10-IPC storage of mnist5k, second round: a less noisy meta-gradient from the PCA start.

In ``select_mnist5k_ipc10_gain.py`` every member ended where it started or below (95.87-96.07 % against the
start's 96.07 on validation): the smaller the outer lr, the less the memory moved and the closer it stayed.
Each outer step there draws one network and 5 images per class per inner step, so each of the 1,020 slots enters
only ~3 of the unroll's 60 steps. Two ways to average more per step, each at about 4x a step's compute:
``inner.batch_per_class=25`` (250 images per inner step, close to evaluation's minibatch of 256, so the unroll
trains as evaluation does) and ``dist.meta_batch=4`` (four unrolls from four networks, their meta-gradients
averaged). Both at T=60, Adam 1e-3 (the lr that lost 0.4 points with the noisier step), 30 outer steps. Scored
on the validation split, 3 networks, seed 0.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/select_mnist5k_ipc10_signal.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/select_mnist5k_ipc10_signal
"""
NAME = "select_mnist5k_ipc10_signal"
DESCRIPTION = "mnist5k IPC 10, PCA start: 4x larger inner batch or 4 unrolls per outer step, validation split"
BASE = "configs/mnist5k_rtp_ipc10.toml"
GRID = {"variant": {"batch25": ["inner.batch_per_class=25"], "meta_batch4": ["dist.meta_batch=4"]}}
SEEDS = [0]
OVERRIDES = ["memory.init=pca", "inner.steps=60", "meta.steps=30", "meta.lr=0.001", "data.val_per_class=50",
             "data.eval_split=val", "eval.num_nets=3", "log.image_every=0"]
RESOURCES = {"timeout_min": 120, "cpus_per_task": 2, "mem_gb": 6, "array_parallelism": 1}
