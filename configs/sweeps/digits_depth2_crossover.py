"""``digits_budget_crossover.py`` under a depth-2 ConvNet: random real images against the no-distillation memory
with K = 4, 8 or 16 bases at 8x8, at IPC 2, 3 and 5, with ``model.depth=2`` and nothing else changed.

The depth-3 crossover was measured where no method lifted a digits set above its start (its meta-gradient
ill-conditioned, README "The network, not the method, held digits back"); at depth 2 every method distils, so
where a memory starts winning is decided anew: K per budget is chosen here on the starts (validation split, seed
0, 3 networks, the rule of the depth-3 sweep), and ``digits_depth2_crossover_methods.py`` distils both sets of
each budget with RtP, DD and FRePo.
Chosen: K=8 at IPC 2, K=16 at IPC 3 and 5 (scores in that sweep's docstring; README, "digits between 1 and 10 IPC").
Hardware: a 2-core AMD EPYC VM (AVX2 only), one thread per member, two side by side: 25-191 s per member.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/digits_depth2_crossover.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/digits_depth2_crossover --out benchmarks/results/digits_depth2_crossover
"""
import runpy
from pathlib import Path

_parent = runpy.run_path(str(Path(__file__).with_name("digits_budget_crossover.py")))

NAME = "digits_depth2_crossover"
DESCRIPTION = "digits IPC 2/3/5 under a depth-2 ConvNet: random real images vs the no-distillation memory, K=4/8/16, validation"
BASE = _parent["BASE"]
GRID = {"variant": {name: [*overrides, "model.depth=2"] for name, overrides in _parent["GRID"]["variant"].items()
                    if not name.startswith("ipc1_")}}
SEEDS = [0]
OVERRIDES = _parent["OVERRIDES"]
RESOURCES = _parent["RESOURCES"]
