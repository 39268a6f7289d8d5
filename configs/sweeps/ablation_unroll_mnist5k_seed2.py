"""Distillation seed 2 of ``ablation_unroll_mnist5k_seeds.py``: the same members (every (T, momentum) cell and the
start, final evaluation only) at seed 2, in their own sweep directory so that seed 1's runs stay as they are.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/ablation_unroll_mnist5k_seed2.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/ablation_unroll_mnist5k_seed2 --plot --out benchmarks/results/ablation_unroll_mnist5k_seed2
    python -m launch.pool benchmarks/results/ablation_unroll_mnist5k/curves.csv \\
        benchmarks/results/ablation_unroll_mnist5k_seeds/curves.csv benchmarks/results/ablation_unroll_mnist5k_seed2/curves.csv \\
        --out benchmarks/results/ablation_unroll_mnist5k_seed2

Measured (validation %, 3 networks; start 84.93): T=10 81.00 / 80.47 (momentum 0.9 / 0), T=20 85.07 / 82.53,
T=50 89.07 / 85.13, T=100 88.53 / 86.27; every sign of seeds 0 and 1 repeats (README, "Ablation").

Hardware: a 2-core AMD EPYC VM with AVX2 only, two members side by side on one thread each: 56 minutes for the
grid, 260-386 CPU seconds of distillation per member.
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
