"""Two more shapes at the 10-IPC storage of mnist5k, toward more bases and fewer slots than the recipe's.

``select_mnist5k_ipc10_shapes.py`` found that, at the same floats, fewer bases with more slots score below the
recipe's 64 bases at 14x14 (each slot keeps less of its image). These members go the other way: K=128 at 14x14 (41
slots per class) and K=64 at 28x28 (44), with the parent's start, evaluation and split, so every member of both
sweeps is scored by the same 3 networks.

Measured (validation %, 3 networks): K=128 at 14x14 94.53, K=64 at 28x28 93.67, both below the recipe's 96.20.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/select_mnist5k_ipc10_shapes_more_bases.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/select_mnist5k_ipc10_shapes_more_bases --out benchmarks/results/select_mnist5k_ipc10_shapes_more_bases
"""
import runpy
from pathlib import Path

_parent = runpy.run_path(str(Path(__file__).with_name("select_mnist5k_ipc10_shapes.py")))
# (K, downsample), as in the parent
_MORE_SHAPES = [(128, 2), (64, 1)]

NAME = "select_mnist5k_ipc10_shapes_more_bases"
DESCRIPTION = "mnist5k IPC 10, PCA starts with more bases than the recipe's (K=128 at 14x14, K=64 at 28x28), validation"
BASE = _parent["BASE"]
GRID = {"variant": {f"K{k}_{28 // ds}x{28 // ds}": [f"memory.num_bases={k}", f"memory.downsample={ds}"]
                    for k, ds in _MORE_SHAPES}}
SEEDS = _parent["SEEDS"]
OVERRIDES = _parent["OVERRIDES"]
RESOURCES = _parent["RESOURCES"]
