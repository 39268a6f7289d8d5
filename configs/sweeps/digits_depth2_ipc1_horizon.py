"""The 1-IPC digits memory under the long horizon that raised the digits memories at IPC 2-10.

``digits_depth2_crossover_horizon.py`` chose T=300 (evaluation's training length at those budgets) over T=1,200 on
validation at IPC 2, 3 and 5, and there RtP with the mnist5k 10-IPC recipe's schedule raised the memory's start
at every seed on both splits. Here the method comparison's 1-IPC digits RtP memory (4 bases at 8x8, 9 slots per
class; ``digits_depth2_probe.py``'s ``digits_ipc1_rtp_memories``) under the same schedule at T=300, which is
evaluation's length here too (90 recalls, one batch per epoch, 300 epochs); seeds 0-2, validation split. No
selection is made here: it fills the crossover table's IPC-1 cell.

Measured (3 networks per seed, seeds 0-2): validation 67.78, 68.33, 66.11 (67.41 +- 0.94), test 65.75 +- 2.01: above
the start at every seed (+3.9 / +4.3 points), below RtP under the default job's schedule (73.40 / 67.25). 233-410 s of
distillation per member on one thread beside a test run (2-core AMD EPYC, AVX2).

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/digits_depth2_ipc1_horizon.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/digits_depth2_ipc1_horizon --out benchmarks/results/digits_depth2_ipc1_horizon
"""
import runpy
from pathlib import Path

_probe = runpy.run_path(str(Path(__file__).with_name("digits_depth2_probe.py")))
_horizon = runpy.run_path(str(Path(__file__).with_name("digits_depth2_ipc10_horizon.py")))

NAME = "digits_depth2_ipc1_horizon"
DESCRIPTION = "digits 1-IPC memory at depth 2: RtP with the mnist5k 10-IPC recipe's truncated long unrolls at T=300, seeds 0-2, validation"
BASE = _probe["BASE"]
GRID = {"variant": {"T300": [*_probe["GRID"]["variant"]["digits_ipc1_rtp_memories"], *_horizon["_schedule"],
                             "inner.steps=300"]}}
SEEDS = [0, 1, 2]
OVERRIDES = _probe["OVERRIDES"]
RESOURCES = _probe["RESOURCES"]
