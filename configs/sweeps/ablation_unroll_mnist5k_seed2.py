"""Distillation seed 2 of ``ablation_unroll_mnist5k_seeds.py``: the same members (every (T, momentum) cell and the
start, final evaluation only) at seed 2, in their own sweep directory so that seed 1's runs stay as they are.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/ablation_unroll_mnist5k_seed2.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/ablation_unroll_mnist5k_seed2 --plot --out benchmarks/results/ablation_unroll_mnist5k_seed2
    python -m launch.pool benchmarks/results/ablation_unroll_mnist5k/curves.csv \\
        benchmarks/results/ablation_unroll_mnist5k_seeds/curves.csv benchmarks/results/ablation_unroll_mnist5k_seed2/curves.csv \\
        --out benchmarks/results/ablation_unroll_mnist5k_seed2

Hardware: a 2-core AMD EPYC VM with AVX2 only, two members side by side on one thread each.
"""
import runpy
from pathlib import Path

_seed1 = runpy.run_path(str(Path(__file__).with_name("ablation_unroll_mnist5k_seeds.py")))

NAME = "ablation_unroll_mnist5k_seed2"
DESCRIPTION = "ablation_unroll_mnist5k's (T, momentum) cells and their start at distillation seed 2, final evaluation only"
BASE = _seed1["BASE"]
GRID = _seed1["GRID"]
SEEDS = [2]
OVERRIDES = _seed1["OVERRIDES"]
RESOURCES = _seed1["RESOURCES"]
