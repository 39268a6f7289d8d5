"""Selection at the 10-IPC storage of mnist5k: does augmenting evaluation's training lift the sets it trains on?

At 10 IPC the undistilled principal-component memory already reads 96.07 % on validation and the distilled one
96.13 % (``select_mnist5k_ipc10_horizon.py``), a network trained on 1,020 recalls for 1,200 SGD steps without any
augmentation. The field evaluates with DSA's augmentation (Zhao & Bilen 2021; on MNIST its ops without flip), so
this sweep measures two evaluation protocols on the two undistilled starts of the 10-IPC cell, the PCA memory
(64 bases at 14x14, 102 slots per class, 9.93 IPC) and 10 random real images per class: ``crop_scale_rotate``
(geometry only) and DSA's MNIST list ``color_crop_cutout_scale_rotate``. No outer step: what evaluation alone
does, on the validation split (the last 50 training images per class), the same 3 networks per member as the
10-IPC rows evaluated without augmentation (memory start 96.07 %, random real 88.93 %).

Measured (validation %, 3 networks): PCA start 96.93 (geometry), 97.27 (DSA's ops); random real 92.07 and 90.87.
DSA's ops became the memory's protocol (``select_mnist5k_ipc10_eval_augment_recipe.py``).

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/select_mnist5k_ipc10_eval_augment.py --cluster local \
        --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/select_mnist5k_ipc10_eval_augment
"""
import runpy
from pathlib import Path

_parent = runpy.run_path(str(Path(__file__).with_name("select_mnist5k_ipc10_horizon.py")))
_AUGMENTS = {"geometry": "crop_scale_rotate", "dsa": "color_crop_cutout_scale_rotate"}
_STARTS = {"memory_start": ["memory.init=pca"], "pixel_start": ["memory.kind=pixel", "memory.init=real"]}

NAME = "select_mnist5k_ipc10_eval_augment"
DESCRIPTION = "mnist5k IPC 10: the PCA memory start and random real images under augmented evaluation, validation"
BASE = _parent["BASE"]
GRID = {  # the augmentation outermost, so the two side-by-side members of each round are the two starts
    "variant": {f"{start}_{aug}": [*start_overrides, f"eval.augment={ops}"]
                for aug, ops in _AUGMENTS.items() for start, start_overrides in _STARTS.items()},
}
SEEDS = [0]
OVERRIDES = [*_parent["OVERRIDES"], "meta.steps=0"]
RESOURCES = _parent["RESOURCES"]
