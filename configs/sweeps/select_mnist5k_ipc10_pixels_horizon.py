"""Selection at the 10-IPC storage of mnist5k, pixel sets: does the memory's long horizon help plain pixels too?

The 10-IPC memory recipe (``configs/mnist5k_rtp_ipc10.toml``) was chosen among truncated unrolls as long as
evaluation's training (``select_mnist5k_ipc10_horizon.py``: T = 1,200, the last 60 steps differentiated, 75 outer
steps), while RtP on pixel sets was tried only with the default job's exact T=60 unrolls
(``compare_default_protocol_mnist5k_ipc10.py``: 91.28 % at Adam 4e-3, 92.84 % at 1e-2 on validation; FRePo's
pixel set with learned labels 93.00 %, the best pixel set). Here the pixel set gets the memory's horizon and
schedule at the pixel members' two outer lrs, under the pixel members' network, evaluation (5 networks) and
validation split, so that "the memory is above the best pixel set" does not rest on a shorter horizon for pixels.

Measured (validation %, 5 networks, seed 0): lr 1e-2 91.56, lr 4e-3 90.56, against 92.84 and 91.28 for the same lrs
with T=60 unrolls and 88.96 for the start: the long horizon lowers pixel sets (distillation 3,017-3,042 s a member at low
priority beside a CI run, two side by side).

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/select_mnist5k_ipc10_pixels_horizon.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/select_mnist5k_ipc10_pixels_horizon

Hardware: a 2-core CPU, the two members side by side on one thread each.
"""
import runpy
from pathlib import Path

_here = Path(__file__).parent
_compare = runpy.run_path(str(_here / "compare_default_protocol_mnist5k_ipc10.py"))
_horizon = runpy.run_path(str(_here / "select_mnist5k_ipc10_horizon.py"))
_T = 1200
_pixels = _compare["GRID"]["variant"]["mnist5k_ipc10_rtp_pixels"]  # pixels, 10 IPC, validation split, 5 nets
assert _pixels[-1] == "meta.steps=60", _pixels
_long = ["unroll.mode=truncated", f"unroll.window={_horizon['WINDOW']}", f"inner.steps={_T}",
         f"meta.steps={_horizon['OUTER_STEPS'][_T]}"]

NAME = "select_mnist5k_ipc10_pixels_horizon"
DESCRIPTION = "mnist5k IPC 10, RtP on pixel sets with the memory recipe's truncated T=1,200 unrolls, 2 outer lrs"
BASE = _compare["BASE"]
GRID = {"variant": {
    "pixels_T1200_lr1e-2": [*_pixels[:-1], *_long, "meta.lr=0.01"],
    "pixels_T1200_lr4e-3": [*_pixels[:-1], *_long, "meta.lr=0.004"],
}}
SEEDS = [0]
OVERRIDES = _compare["OVERRIDES"]
RESOURCES = {**_compare["RESOURCES"], "timeout_min": 120}
