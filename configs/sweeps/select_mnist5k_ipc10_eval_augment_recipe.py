"""The 10-IPC recipe (``configs/mnist5k_rtp_ipc10.toml``: T = 1,200 truncated to its last 60 steps, Adam 5e-4, 75
outer steps) distilled at seeds 0, 1 and 2 and evaluated with DSA's augmentation for MNIST
(``eval.augment=color_crop_cutout_scale_rotate``), on the validation split, 3 networks: does distillation's gain over
its start hold when evaluation augments?

Measured (DSA's ops, 3 networks per seed): validation 97.53, 97.47, 97.20 against the starts' 97.27, 97.13, 97.33; test
97.77, 97.87, 97.33 against 97.47, 97.57, 97.30 (README, Results).

``select_mnist5k_ipc10_eval_augment.py`` measured the two undistilled starts under two augmentations and chose this
one on validation (the PCA start: 97.27 % with DSA's ops, 96.93 with geometry only, 96.07 without); the distillation
itself does not read ``eval.augment``, so the artifacts can be scored under any protocol afterwards
(``python -m rtp_scale.evaluate --artifact <member>/memory.safetensors --no-scores --set eval.augment=...``).
The members are ``select_mnist5k_ipc10_horizon_seeds.py``'s distilled member but for the seed and the evaluation's
augmentation (tests/test_launch.py keeps them so).

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/select_mnist5k_ipc10_eval_augment_recipe.py --cluster local \
        --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/select_mnist5k_ipc10_eval_augment_recipe
"""
import runpy
from pathlib import Path

_seeds = runpy.run_path(str(Path(__file__).with_name("select_mnist5k_ipc10_horizon_seeds.py")))

NAME = "select_mnist5k_ipc10_eval_augment_recipe"
DESCRIPTION = "mnist5k IPC 10: the 10-IPC recipe at seeds 0-2, evaluated with DSA's MNIST augmentation"
BASE = _seeds["BASE"]
GRID = {"variant": {"T1200_lr5e-4_dsa": [*_seeds["GRID"]["variant"]["T1200_lr5e-4"],
                                         "eval.augment=color_crop_cutout_scale_rotate"]}}
SEEDS = [0, 1, 2]
OVERRIDES = _seeds["OVERRIDES"]
RESOURCES = _seeds["RESOURCES"]
