"""Distillation seeds 1 and 2 of ``memories_vs_pixels_subipc.py``'s pixel rows (seed 0 is in that sweep).

Both budgets' random real images that fit the floats (the pixel starts) and their best distilled pixel sets on
validation (outer lr 1e-2 at IPC 0.5 and 0.2). Same configs and resources as the parent sweep; with
``memories_vs_pixels_subipc_memory_seeds.py`` (the memories) this puts the sub-IPC rows over three seeds.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/memories_vs_pixels_subipc_pixel_seeds.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/memories_vs_pixels_subipc_pixel_seeds
"""
import runpy
from pathlib import Path

_parent = runpy.run_path(str(Path(__file__).with_name("memories_vs_pixels_subipc.py")))
_variants = _parent["GRID"]["variant"]

NAME = "memories_vs_pixels_subipc_pixel_seeds"
DESCRIPTION = "memories_vs_pixels_subipc's pixel starts and best pixel sets at distillation seeds 1 and 2"
GRID = {"variant": {name: _variants[name] for name in (
    "ipc0.5_pixels_lr1e-2", "ipc0.2_pixels_lr1e-2", "ipc0.5_pixels_start", "ipc0.2_pixels_start")}}
SEEDS = [1, 2]
OVERRIDES = _parent["OVERRIDES"]
RESOURCES = _parent["RESOURCES"]
