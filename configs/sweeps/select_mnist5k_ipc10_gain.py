"""Selection at the 10-IPC storage of mnist5k: can distillation lift the principal-component start?

The distilled member of ``select_mnist5k_ipc10.py`` (PCA start, T=60, Adam 1e-3, 30 outer steps) ended 0.4 points
*below* its own undistilled start on validation (95.67 against 96.07 %). Two measured reasons to expect a smaller
outer step to help: at 10 IPC the start's addressing coefficients of the later principal components have an RMS
of only 0.07 (0.13-0.16 at 1 IPC), and Adam moves every coordinate by about lr per step whatever its gradient's
size -- 30 steps at 1e-3 can shift them by 0.03, with each of the 1,020 slots seen only ~3 times per T=60 unroll,
so mostly by noise. And the short-horizon bias: evaluation trains for 1,200 SGD steps, a T=60 unroll sees 60.
This sweep crosses the outer lr (2e-4, 5e-4) with the unroll length at the same 1,800 inner steps in all
(T=60 for 30 outer steps, T=150 for 12). Scored on the validation split (the last 50 training images per class,
never distilled on), 3 networks per member, seed 0.

Measured (validation %, 3 networks): T=60 at 5e-4 95.87, at 2e-4 96.00; T=150 at 5e-4 96.07, at 2e-4 96.00; the
start 96.07. No member ends above the start; ``select_mnist5k_ipc10_signal.py`` tries a more consistent step.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/select_mnist5k_ipc10_gain.py --cluster local --cpus 1 \
        --array-parallelism 2 --wait                                                      # or --cluster slurm
    python -m launch.collect runs/sweeps/select_mnist5k_ipc10_gain

Hardware: a 2-core CPU, two members side by side on one thread each.
"""
INNER_STEPS_IN_ALL = 1800

NAME = "select_mnist5k_ipc10_gain"
DESCRIPTION = "mnist5k IPC 10, PCA start: outer lr x unroll length at 1,800 inner steps, validation split"
BASE = "configs/mnist5k_rtp_ipc10.toml"
GRID = {
    "variant": {f"T{t}": [f"inner.steps={t}", f"meta.steps={INNER_STEPS_IN_ALL // t}"] for t in (150, 60)},
    "meta.lr": [5e-4, 2e-4],
}
SEEDS = [0]
# exact unrolls, as configs/mnist5k_rtp_ipc10.toml had when this sweep ran
OVERRIDES = ["unroll.mode=segmented", "unroll.window=0",
             "memory.init=pca", "data.val_per_class=50", "data.eval_split=val", "eval.num_nets=3",
             "log.image_every=0"]
RESOURCES = {"timeout_min": 120, "cpus_per_task": 2, "mem_gb": 6, "array_parallelism": 1}
