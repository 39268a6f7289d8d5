"""Distillation seeds 1 and 2 of ``compare_default_protocol.py``'s digits cells (seed 0 is in that sweep).

The digits members take a minute each, so their rows can be reported over three distillation seeds; the
mnist5k memory rows and starts at seeds 1 and 2 are ``compare_default_protocol_mnist5k_seeds.py``. Same members,
configs and resources as the parent sweep:

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/compare_default_protocol_digits_seeds.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/compare_default_protocol_digits_seeds
"""
import runpy
from pathlib import Path

_parent = runpy.run_path(str(Path(__file__).with_name("compare_default_protocol.py")))

NAME = "compare_default_protocol_digits_seeds"
DESCRIPTION = "compare_default_protocol's digits cells at distillation seeds 1 and 2"
BASE = _parent["BASE"]
GRID = {"variant": {name: overrides for name, overrides in _parent["GRID"]["variant"].items()
                    if name.startswith("digits")}}
SEEDS = [1, 2]
OVERRIDES = _parent["OVERRIDES"]
RESOURCES = _parent["RESOURCES"]
