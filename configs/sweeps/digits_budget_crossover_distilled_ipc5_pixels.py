"""RtP's IPC-5 pixel set of ``digits_budget_crossover_distilled.py`` again, at lower outer lrs.

There it diverged at outer step 59 of 60 (Adam 4e-3: the meta-gradient's norm became infinite). The same member
(random real start, the method comparison's pixel schedule, seed 0, validation split) at Adam 2e-3 and 1e-3.

Measured: both diverged too, at outer steps 25 (2e-3) and 54 (1e-3), with meta-gradient norms of 8e4-2e19 from the
first step on. The outer lr is not the cause: the depth-3 network's last instance norm sees a 2x2 map of an 8x8
digit (``digits_depth2_probe.py``; README, "digits (8x8)").

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/digits_budget_crossover_distilled_ipc5_pixels.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/digits_budget_crossover_distilled_ipc5_pixels --out benchmarks/results/digits_budget_crossover_distilled_ipc5_pixels
"""
import runpy
from pathlib import Path

_parent = runpy.run_path(str(Path(__file__).with_name("digits_budget_crossover_distilled.py")))

NAME = "digits_budget_crossover_distilled_ipc5_pixels"
DESCRIPTION = "digits IPC 5: RtP on random real images at outer lr 2e-3 and 1e-3 (4e-3 diverged), validation"
BASE = _parent["BASE"]
GRID = {"variant": {"rtp_ipc5_pixels": _parent["GRID"]["variant"]["rtp_ipc5_pixels"]}, "meta.lr": [2e-3, 1e-3]}
SEEDS = _parent["SEEDS"]
OVERRIDES = _parent["OVERRIDES"]
RESOURCES = _parent["RESOURCES"]
