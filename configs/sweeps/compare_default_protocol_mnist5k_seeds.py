"""Distillation seeds 1 and 2 of ``compare_default_protocol.py``'s mnist5k memory rows (seed 0 is in that sweep).

At seed 0 the default job (RtP on memories) beat DD and FRePo on the same memories by 2.0-2.6 validation
points, the closest margins of the comparison; these members repeat those rows, the memory's start and random
real images at two more distillation seeds, so the margins are measured over seeds and not over one seed's
networks. ``rtp_memories`` is the default job on the validation split (``python -m rtp_scale.distill --set
data.val_per_class=50 data.eval_split=val``), which the parent sweep ran outside its array. The distilled pixel
sets at seeds 1 and 2 are ``compare_default_protocol_mnist5k_pixel_seeds.py``. Same configs and resources as the
parent sweep:

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/compare_default_protocol_mnist5k_seeds.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/compare_default_protocol_mnist5k_seeds

Hardware: a 2-core AMD EPYC VM, two members side by side on one thread each: 50 minutes for the ten (DD's
members 20 minutes each with their evaluation, the random-real ones half a minute); their test evaluations
5-6 minutes each.
"""
import runpy
from pathlib import Path

_parent = runpy.run_path(str(Path(__file__).with_name("compare_default_protocol.py")))
_variants = _parent["GRID"]["variant"]
_memories = _variants["mnist5k_ipc1_start_memories"][:-1]  # without meta.steps=0: the default schedule
assert _variants["mnist5k_ipc1_start_memories"][-1] == "meta.steps=0"

NAME = "compare_default_protocol_mnist5k_seeds"
DESCRIPTION = "compare_default_protocol's mnist5k memory rows and starts at distillation seeds 1 and 2"
BASE = _parent["BASE"]
# longest first, so two lanes finish close together
GRID = {"variant": {
    "mnist5k_ipc1_dd_memories": _variants["mnist5k_ipc1_dd_memories"],
    "mnist5k_ipc1_rtp_memories": _memories,
    "mnist5k_ipc1_frepo_memories": _variants["mnist5k_ipc1_frepo_memories"],
    "mnist5k_ipc1_start_memories": _variants["mnist5k_ipc1_start_memories"],
    "mnist5k_ipc1_start_pixels": _variants["mnist5k_ipc1_start_pixels"],
}}
SEEDS = [1, 2]
OVERRIDES = _parent["OVERRIDES"]
RESOURCES = _parent["RESOURCES"]
