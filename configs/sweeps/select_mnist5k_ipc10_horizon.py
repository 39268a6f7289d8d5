"""Selection at the 10-IPC storage of mnist5k: does a horizon as long as evaluation's lift the PCA start?

``select_mnist5k_ipc10_gain.py`` and ``select_mnist5k_ipc10_signal.py`` found no schedule of exact unrolls of
60-150 steps above the undistilled principal-component start (96.07 % on validation), while evaluation trains for
1,200 SGD steps. RaT-BPTT's truncated unrolls (``unroll.mode=truncated``) reach that horizon at a cost a 2-core CPU
can pay: each outer step draws its length in [60, T], runs all but the last 60 inner steps without a graph and
differentiates the last 60, so the meta-gradient says what the synthetic set should change about a network that
has already trained on it (the last inner step's loss, median over this sweep's outer steps: 0.14 after 60-100
inner steps, 0.005 after 550-650). Two horizons
(T = 300, T = 1,200, the evaluation's) cross two outer lrs; every member gets about 20 minutes of distillation on
one thread (measured: 9.4 and 16.1 s per outer step), so T = 300 takes 125 outer steps and T = 1,200 takes 75.
Scored on the validation split (the last 50 training images per class, never distilled on), 3 networks, seed 0.

Measured (validation %, 3 networks; the start 96.07): T=300 at 5e-4 96.00, at 1e-3 95.87; T=1,200 at 5e-4 96.13,
at 1e-3 95.93 (distillation 956-1,181 s, two members side by side). The long horizon removes the exact T=60
unrolls' loss, but no member is above the start by more than the networks' spread; T=1,200 at 5e-4, the best
distilled member, is now ``configs/mnist5k_rtp_ipc10.toml`` (``select_mnist5k_ipc10_horizon_seeds.py`` repeats it).

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/select_mnist5k_ipc10_horizon.py --cluster local --cpus 1 \
        --array-parallelism 2 --wait                                                      # or --cluster slurm
    python -m launch.collect runs/sweeps/select_mnist5k_ipc10_horizon

Hardware: a 2-core CPU, two members side by side on one thread each.
"""
WINDOW = 60
OUTER_STEPS = {300: 125, 1200: 75}  # about 20 minutes of distillation each on one thread

NAME = "select_mnist5k_ipc10_horizon"
DESCRIPTION = "mnist5k IPC 10, PCA start: truncated unrolls to T=300/1,200 (last 60 steps differentiated) x outer lr"
BASE = "configs/mnist5k_rtp_ipc10.toml"
GRID = {  # lr outermost, so the two side-by-side members of each round differ in T only
    "meta.lr": [5e-4, 1e-3],
    "variant": {f"T{t}": [f"inner.steps={t}", f"meta.steps={steps}"] for t, steps in OUTER_STEPS.items()},
}
SEEDS = [0]
OVERRIDES = ["memory.init=pca", "unroll.mode=truncated", f"unroll.window={WINDOW}", "data.val_per_class=50",
             "data.eval_split=val", "eval.num_nets=3", "log.image_every=0"]
RESOURCES = {"timeout_min": 120, "cpus_per_task": 2, "mem_gb": 6, "array_parallelism": 1}
