"""Distillation seed 1 of ``ablation_unroll_mnist5k.py``: every (T, momentum) cell, and its start.

The parent ran seed 0 only, so its table's std was over networks, not over distillations. Here each cell runs
again at seed 1 with the parent's config (kept so by tests/test_launch.py) but for ``eval.every``: only the
final memory is evaluated (the parent's half-way points cost a third evaluation per member), and one ``start``
member per seed scores the starting memory (``meta.steps=0``) with that seed's networks, so every cell's gain
over its start is measured on the same networks.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/ablation_unroll_mnist5k_seeds.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/ablation_unroll_mnist5k_seeds --plot

Hardware: a 2-core AMD EPYC VM, two members side by side on one thread each: 8-13 minutes per distilling member
(4-6 of distillation, about 4 of evaluating 3 networks), 7 for the start member, 44 minutes for the grid at one
seed. Seed 2 is ``ablation_unroll_mnist5k_seed2.py`` (the same members in their own directory); ``launch.pool``
pools any number of seeds.
"""
import runpy
from pathlib import Path

_parent = runpy.run_path(str(Path(__file__).with_name("ablation_unroll_mnist5k.py")))
_inner_steps = _parent["INNER_STEPS_IN_ALL"]

NAME = "ablation_unroll_mnist5k_seeds"
DESCRIPTION = "ablation_unroll_mnist5k's (T, momentum) cells and their start at distillation seed 1, final evaluation only"
BASE = _parent["BASE"]
# one axis, named as the parent's members are (T50_momentum0.9_s1 is the parent's T50_momentum0.9_s0 at seed 1);
# in the order they run, so that a sweep cut short holds the start and the momentum-0.9 row first (--resubmit
# runs the rest): the start, then momentum 0.9 at every T, then momentum 0
GRID = {"variant": {
    "start": ["meta.steps=0"],
    **{f"T{t}_momentum{m:g}": [f"inner.steps={t}", f"meta.steps={_inner_steps // t}", f"inner.momentum={m}"]
       for m in (0.9, 0.0) for t in (10, 50, 100, 20)},
}}
SEEDS = [1]
OVERRIDES = [*_parent["OVERRIDES"], "eval.every=0"]
RESOURCES = _parent["RESOURCES"]
