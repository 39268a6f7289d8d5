"""Does the long horizon that lifted the 10-IPC digits memory also make RtP the best memory at IPC 2, 3 and 5?

In ``digits_depth2_crossover_methods.py`` RtP under the default job's schedule (exact T=60 unrolls, 30 outer
steps at Adam 4e-3) ends below FRePo on the same memories at IPC 2, 3 and 5; at 10 IPC the mnist5k 10-IPC
recipe's schedule (``configs/mnist5k_rtp_ipc10.toml``: truncated unrolls, window 60, 75 outer Adam steps at 5e-4,
clip 2) took RtP level with FRePo (``digits_depth2_ipc10_horizon.py``). Here that sweep's members at the crossover's
budgets: its ``digits_ipc{2,3,5}_rtp_memories`` members (the memory K chosen there on validation) with the recipe's
schedule, at T=300 (evaluation's length at these budgets: at most 256 recalls, one batch per epoch, 300 epochs)
and the recipe's T=1,200; seeds 0-2, validation split.

Measured (validation %, 3 networks per seed, seeds 0-2): IPC 2 T=300 90.19 +- 0.69, T=1,200 89.88 +- 0.61; IPC 3
92.28 +- 0.75, 92.04 +- 0.40; IPC 5 94.81 +- 1.59, 94.75 +- 1.67. T=300 chosen at every budget, then on the test
split 81.26 +- 0.50, 87.36 +- 0.97 and 89.53 +- 0.79 (README, "digits between 1 and 10 IPC"). 205-223 s (T=300) and
439-626 s (T=1,200) of distillation per member on one thread, two side by side (2-core AMD EPYC, AVX2).

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/digits_depth2_crossover_horizon.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/digits_depth2_crossover_horizon --out benchmarks/results/digits_depth2_crossover_horizon
"""
import runpy
from pathlib import Path

_methods = runpy.run_path(str(Path(__file__).with_name("digits_depth2_crossover_methods.py")))
_horizon = runpy.run_path(str(Path(__file__).with_name("digits_depth2_ipc10_horizon.py")))
_IPCS = (2, 3, 5)

NAME = "digits_depth2_crossover_horizon"
DESCRIPTION = "digits IPC 2/3/5 memories at depth 2: RtP with the mnist5k 10-IPC recipe's truncated long unrolls, T=300 and 1200, seeds 0-2, validation"
BASE = _methods["BASE"]
GRID = {"variant": {f"ipc{ipc}_T{steps}": [*_methods["GRID"]["variant"][f"digits_ipc{ipc}_rtp_memories"],
                                            *_horizon["_schedule"], f"inner.steps={steps}"]
                    for ipc in _IPCS for steps in (300, 1200)}}
SEEDS = [0, 1, 2]
OVERRIDES = _methods["OVERRIDES"]
RESOURCES = _methods["RESOURCES"]
