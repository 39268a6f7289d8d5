"""``digits_depth2_probe.py``'s members at distillation seeds 1 and 2 (the same configs but for the seed).

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/digits_depth2_probe_seeds.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/digits_depth2_probe_seeds --out benchmarks/results/digits_depth2_probe_seeds
"""
import runpy
from pathlib import Path

_parent = runpy.run_path(str(Path(__file__).with_name("digits_depth2_probe.py")))

NAME = "digits_depth2_probe_seeds"
DESCRIPTION = "digits_depth2_probe's members at distillation seeds 1 and 2, validation"
BASE = _parent["BASE"]
GRID = _parent["GRID"]
SEEDS = [1, 2]
OVERRIDES = _parent["OVERRIDES"]
RESOURCES = _parent["RESOURCES"]
