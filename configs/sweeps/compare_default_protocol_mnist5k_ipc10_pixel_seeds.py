"""Distillation seeds 0, 1 and 2 of ``compare_default_protocol_mnist5k_ipc10.py``'s pixel sets.

With the 10-IPC recipe's own seeds (``select_mnist5k_ipc10_horizon_seeds.py``) this puts the 10-IPC cell's pixel
rows and its memory row over three distillation seeds. Same configs and resources as the parent sweep (kept so by
tests/test_launch.py); they run with the fused ConvNet blocks (``model.fused``, added after the parent's seed-0
members ran: the same network, other float rounding), so seed 0 is run again here and every seed comes from one
version of the code. Its artifacts are also scored with DSA's augmentation (README, "Augmented evaluation at 10 IPC").

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/compare_default_protocol_mnist5k_ipc10_pixel_seeds.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/compare_default_protocol_mnist5k_ipc10_pixel_seeds
"""
import runpy
from pathlib import Path

_parent = runpy.run_path(str(Path(__file__).with_name("compare_default_protocol_mnist5k_ipc10.py")))

NAME = "compare_default_protocol_mnist5k_ipc10_pixel_seeds"
DESCRIPTION = "compare_default_protocol_mnist5k_ipc10's pixel sets (and their random-real start) at distillation seeds 0, 1 and 2"
BASE = _parent["BASE"]
# longest first, so two lanes finish close together
GRID = {"variant": {name: _parent["GRID"]["variant"][name] for name in (
    "mnist5k_ipc10_rtp_pixels", "mnist5k_ipc10_rtp_pixels_lr1e-2", "mnist5k_ipc10_frepo_pixels",
    "mnist5k_ipc10_dd_pixels", "mnist5k_ipc10_start_pixels")}}
SEEDS = [0, 1, 2]
OVERRIDES = _parent["OVERRIDES"]
RESOURCES = _parent["RESOURCES"]
