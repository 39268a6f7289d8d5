"""``select_mnist5k_ipc10_horizon.py``'s best member on validation (T = 1,200 truncated to its last 60 steps, Adam
5e-4, 75 outer steps; now ``configs/mnist5k_rtp_ipc10.toml``) and the undistilled PCA start at distillation seeds 1
and 2, on the validation split; seed 0 of both is in the parent sweeps. The distilled members come first, so the two
long ones run side by side.

Measured (validation %, 3 networks): the distilled member 96.20 (seed 1) and 95.80 (seed 2), its start 95.93 and
95.27; with seed 0, +0.07, +0.27 and +0.53 points over the start. On the test split (each artifact once): 96.97,
96.80, 96.80 against 96.51 +- 0.16 for the starts (README, Results).

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/select_mnist5k_ipc10_horizon_seeds.py --cluster local \
        --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/select_mnist5k_ipc10_horizon_seeds
"""
import runpy
from pathlib import Path

_parent = runpy.run_path(str(Path(__file__).with_name("select_mnist5k_ipc10_horizon.py")))

NAME = "select_mnist5k_ipc10_horizon_seeds"
DESCRIPTION = "mnist5k IPC 10: the horizon sweep's best member and the PCA start at distillation seeds 1 and 2"
BASE = _parent["BASE"]
GRID = {"variant": {
    "T1200_lr5e-4": [*_parent["GRID"]["variant"]["T1200"], "meta.lr=0.0005"],
    "pca_no_distill": ["meta.steps=0"],
}}
SEEDS = [1, 2]
OVERRIDES = _parent["OVERRIDES"]
RESOURCES = _parent["RESOURCES"]
