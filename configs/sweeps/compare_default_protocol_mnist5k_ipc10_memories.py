"""The two memory members of ``compare_default_protocol_mnist5k_ipc10.py`` -- DD and FRePo on the 10-IPC memory (64
bases at 14x14, 102 slots per class) -- as a sweep of their own: the parent's pixel members ran, these two were
stopped before they started. Their configs are the parent's (tests/test_launch.py keeps them so); they run with the
fused ConvNet blocks (``model.fused``, added after the parent's members ran: the same network, other float rounding).

Measured (validation %, 5 networks / the first 3; the 10-IPC PCA start 96.07 and RtP's memory 96.13 on those 3):
DD 89.96 / 90.13, FRePo 95.72 / 95.87; distillation 941 and 626 s of outer steps on one thread (2-core AMD EPYC VM).

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/compare_default_protocol_mnist5k_ipc10_memories.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/compare_default_protocol_mnist5k_ipc10_memories
"""
import runpy
from pathlib import Path

_parent = runpy.run_path(str(Path(__file__).with_name("compare_default_protocol_mnist5k_ipc10.py")))

NAME = "compare_default_protocol_mnist5k_ipc10_memories"
DESCRIPTION = "DD and FRePo on the 10-IPC mnist5k memory (compare_default_protocol_mnist5k_ipc10's memory members)"
BASE = _parent["BASE"]
GRID = {"variant": {name: overrides for name, overrides in _parent["GRID"]["variant"].items()
                    if name.endswith("_memories")}}
SEEDS = _parent["SEEDS"]
OVERRIDES = _parent["OVERRIDES"]
RESOURCES = _parent["RESOURCES"]
