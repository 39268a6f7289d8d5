"""``digits_budget_crossover.py``'s two sets at IPC 2, 3 and 5 after RtP's outer steps, validation split, seed 0.

Does distillation change the crossover? The default job's schedule as the method comparison runs it on digits
(``compare_default_protocol.py``: T=60, momentum 0.9, 5 images per class per inner step, Adam 4e-3; 30 outer steps
for memories, 60 for pixel sets), from the crossover's starts: random real images, and the memory with the
number of bases chosen there on validation (K=8 at IPC 2 and 3, K=16 at IPC 5).

Measured (validation %, 3 networks; the start in brackets): pixels IPC 2 58.89 (64.81), IPC 3 66.48 (65.56), IPC 5
diverged at outer step 59 (meta-gradient infinite); memories IPC 2 70.74 (75.19), IPC 3 74.44 (76.11), IPC 5 87.41
(88.52).

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/digits_budget_crossover_distilled.py --cluster local --cpus 1 --array-parallelism 1 --wait
    python -m launch.collect runs/sweeps/digits_budget_crossover_distilled --out benchmarks/results/digits_budget_crossover_distilled

Hardware: a 2-core CPU, one thread: 1-3 minutes per member.
"""
import runpy
from pathlib import Path

_parent = runpy.run_path(str(Path(__file__).with_name("digits_budget_crossover.py")))
_chosen = runpy.run_path(str(Path(__file__).with_name("digits_budget_crossover_test.py")))["GRID"]["variant"]
_rtp_pixels = runpy.run_path(str(Path(__file__).with_name("compare_default_protocol.py")))["_RTP_PIXELS"]

NAME = "digits_budget_crossover_distilled"
DESCRIPTION = "digits IPC 2/3/5: RtP (the default job's schedule) on random real images and on the chosen memory, validation"
BASE = _parent["BASE"]
GRID = {"variant": {f"rtp_{name}": [*overrides, *(_rtp_pixels if "pixels" in name else [])]
                    for name, overrides in _chosen.items()}}
SEEDS = [0]
OVERRIDES = [override for override in _parent["OVERRIDES"] if override != "meta.steps=0"]
RESOURCES = _parent["RESOURCES"]
