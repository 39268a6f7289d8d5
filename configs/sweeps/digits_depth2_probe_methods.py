"""DD and FRePo on ``digits_depth2_probe.py``'s cells: the comparison's digits members of both methods, on pixels and
on memories, with ``model.depth=2`` and nothing else changed, at distillation seeds 0, 1 and 2, validation split.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/digits_depth2_probe_methods.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/digits_depth2_probe_methods --out benchmarks/results/digits_depth2_probe_methods
"""
import runpy
from pathlib import Path

_probe = runpy.run_path(str(Path(__file__).with_name("digits_depth2_probe.py")))

NAME = "digits_depth2_probe_methods"
DESCRIPTION = "digits IPC 1 and 10 under a depth-2 ConvNet: DD and FRePo on pixels and memories, seeds 0-2, validation"
BASE = _probe["BASE"]
GRID = {"variant": _probe["_at_depth_2"](("dd", "frepo"))}
SEEDS = [0, 1, 2]
OVERRIDES = _probe["OVERRIDES"]
RESOURCES = _probe["RESOURCES"]
