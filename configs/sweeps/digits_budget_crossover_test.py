"""``digits_budget_crossover.py``'s choices scored once on the test split, distillation seeds 0, 1 and 2.

At each budget between 1 and 10 IPC, random real images against the no-distillation memory with the number of
bases chosen on validation (seed 0): K=8 at IPC 2 and 3, K=16 at IPC 5 (validation %, 3 networks: IPC 2 pixels
64.81, K=4 52.22, K=8 75.19; IPC 3 pixels 65.56, K=4 55.19, K=8 76.11, K=16 70.37; IPC 5 pixels 76.67, K=4
54.81, K=8 83.15, K=16 88.52). IPC 1 and 10 are in ``compare_default_protocol*.py``, which scored the same two
starting sets (4 and 16 bases at 8x8) on the test split at the same seeds.

Measured (test %, mean +- std over seeds 0-2 of 3 networks each): IPC 2 pixels 60.44 +- 2.89, memory 66.39 +- 0.26;
IPC 3 63.89 +- 2.50, 70.54 +- 2.10; IPC 5 71.92 +- 1.00, 76.68 +- 2.50: the memory is above at every seed.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/digits_budget_crossover_test.py --cluster local --cpus 1 --array-parallelism 1 --wait
    python -m launch.collect runs/sweeps/digits_budget_crossover_test --out benchmarks/results/digits_budget_crossover_test

Hardware: a 2-core CPU, one thread: 1-2 minutes per member (evaluation only), about 20 minutes for the sweep.
"""
import runpy
from pathlib import Path

_parent = runpy.run_path(str(Path(__file__).with_name("digits_budget_crossover.py")))
_CHOSEN = ("ipc2_pixels", "ipc3_pixels", "ipc5_pixels", "ipc2_memory_K8", "ipc3_memory_K8", "ipc5_memory_K16")

NAME = "digits_budget_crossover_test"
DESCRIPTION = "digits IPC 2/3/5: random real images and the memory chosen on validation, test split, seeds 0-2"
BASE = _parent["BASE"]
GRID = {"variant": {name: _parent["GRID"]["variant"][name] for name in _CHOSEN}}
SEEDS = [0, 1, 2]
OVERRIDES = [*_parent["OVERRIDES"], "data.eval_split=test"]
RESOURCES = _parent["RESOURCES"]
