"""Does the 10-IPC recipe's long horizon make RtP add to the digits memory, as it does on mnist5k?

Under the method comparison's digits schedule (the default job's: exact T=60 unrolls, 30 outer steps at Adam
4e-3) RtP takes the depth-2 10-IPC digits memory below its start (94.14 against 96.23 % on validation, seeds 0-2)
while FRePo raises it (97.78 %). On mnist5k the 10-IPC recipe (``configs/mnist5k_rtp_ipc10.toml``) added to its
memory with truncated unrolls as long as evaluation's training (T=1,200: 300 epochs of 4 batches of 256). Here
the comparison's ``digits_ipc10_rtp_memories`` member at depth 2 with that recipe's schedule: truncated unrolls
(window 60), 75 outer Adam steps at 5e-4, gradient clip 2, at T=600 (evaluation's length on this set: 330
recalls, 2 batches per epoch) and at the recipe's T=1,200; seeds 0-2, validation split.

Measured (validation %, 3 networks per seed): T=600 97.41, 95.93, 97.04 (96.79 +- 0.63); T=1,200 97.22, 96.48,
97.22 (96.98 +- 0.35), chosen, and on the test split 92.58 +- 0.42 (README, method comparison). 470-502 s and
796-905 s of distillation per member on one thread beside one to three other processes (2-core AMD EPYC, AVX2).

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/digits_depth2_ipc10_horizon.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/digits_depth2_ipc10_horizon --out benchmarks/results/digits_depth2_ipc10_horizon
"""
import runpy
from pathlib import Path

from rtp_scale.config import load_config

_probe = runpy.run_path(str(Path(__file__).with_name("digits_depth2_probe.py")))
_member = _probe["GRID"]["variant"]["digits_ipc10_rtp_memories"]
_recipe = load_config(Path(__file__).parents[1] / "mnist5k_rtp_ipc10.toml")  # the schedule is read, not copied
_schedule = [f"unroll.mode={_recipe.unroll.mode}", f"unroll.window={_recipe.unroll.window}",
             f"meta.steps={_recipe.meta.steps}", f"meta.lr={_recipe.meta.lr}",
             f"meta.grad_clip={_recipe.meta.grad_clip}"]

NAME = "digits_depth2_ipc10_horizon"
DESCRIPTION = "digits 10-IPC memory at depth 2: RtP with the mnist5k 10-IPC recipe's truncated long unrolls, T=600 and 1200, seeds 0-2, validation"
BASE = _probe["BASE"]
GRID = {"variant": {f"T{steps}": [*_member, *_schedule, f"inner.steps={steps}"] for steps in (600, 1200)}}
SEEDS = [0, 1, 2]
OVERRIDES = _probe["OVERRIDES"]
RESOURCES = _probe["RESOURCES"]
