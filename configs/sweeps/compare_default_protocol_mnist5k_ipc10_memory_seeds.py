"""Distillation seeds 1 and 2 of ``compare_default_protocol_mnist5k_ipc10_memories.py``: DD and FRePo on the
10-IPC memory (64 bases at 14x14, 102 slots per class), so the 10-IPC cell's memory rows are over seeds 0-2 like
its pixel rows (``compare_default_protocol_mnist5k_ipc10_pixel_seeds.py``) and RtP's 10-IPC recipe
(``select_mnist5k_ipc10_horizon_seeds.py``). The configs are the seed-0 members' (tests/test_launch.py keeps them
so), run with the same code (fused ConvNet blocks) as seed 0.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/compare_default_protocol_mnist5k_ipc10_memory_seeds.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/compare_default_protocol_mnist5k_ipc10_memory_seeds

Hardware: a 2-core CPU, two members side by side on one thread each: 16-25 minutes per member (seed 0: 941 s of
DD's outer steps, 626 s of FRePo's, then an evaluation of 5 networks).
"""
import runpy
from pathlib import Path

_parent = runpy.run_path(str(Path(__file__).with_name("compare_default_protocol_mnist5k_ipc10_memories.py")))

NAME = "compare_default_protocol_mnist5k_ipc10_memory_seeds"
DESCRIPTION = "DD and FRePo on the 10-IPC mnist5k memory at distillation seeds 1 and 2"
BASE = _parent["BASE"]
GRID = _parent["GRID"]
SEEDS = [1, 2]
OVERRIDES = _parent["OVERRIDES"]
RESOURCES = _parent["RESOURCES"]
