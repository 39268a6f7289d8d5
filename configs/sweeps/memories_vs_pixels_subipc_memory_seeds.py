"""Distillation seeds 1 and 2 of the best sub-IPC memories on validation and their starts (seed 0 is in
``memories_vs_pixels_subipc_shapes.py``): IPC 0.5, K=16 bases at 7x7 with 19 slots per class; IPC 0.2, K=8 at
7x7 with 14 slots; both at outer lr 1e-2. Same configs and resources as that sweep; with
``memories_vs_pixels_subipc_pixel_seeds.py`` this puts the sub-IPC rows over three seeds.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/memories_vs_pixels_subipc_memory_seeds.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/memories_vs_pixels_subipc_memory_seeds
"""
import runpy
from pathlib import Path

_parent = runpy.run_path(str(Path(__file__).with_name("memories_vs_pixels_subipc_shapes.py")))
_variants = _parent["GRID"]["variant"]

NAME = "memories_vs_pixels_subipc_memory_seeds"
DESCRIPTION = "memories_vs_pixels_subipc_shapes' best memories and their starts at distillation seeds 1 and 2"
GRID = {"variant": {name: _variants[name] for name in (
    "ipc0.5_K16_7x7_lr1e-2", "ipc0.2_K8_7x7_lr1e-2", "ipc0.5_K16_7x7_start", "ipc0.2_K8_7x7_start")}}
SEEDS = [1, 2]
OVERRIDES = _parent["OVERRIDES"]
RESOURCES = _parent["RESOURCES"]
