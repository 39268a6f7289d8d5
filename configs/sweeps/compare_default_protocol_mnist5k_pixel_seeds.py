"""Distillation seeds 1 and 2 of ``compare_default_protocol.py``'s mnist5k distilled pixel sets (seed 0 is in that sweep).

With ``compare_default_protocol_mnist5k_seeds.py`` (the memory rows, both starts and the default job) this puts
every mnist5k row of the comparison over three distillation seeds. Pixel sets evaluate in seconds (10 images),
so their members are short. Same configs and resources as the parent sweep:

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/compare_default_protocol_mnist5k_pixel_seeds.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/compare_default_protocol_mnist5k_pixel_seeds

Hardware: a 2-core AMD EPYC VM, two members side by side on one thread each: 16 minutes for the eight; their
test evaluations under half a minute each.
"""
import runpy
from pathlib import Path

_parent = runpy.run_path(str(Path(__file__).with_name("compare_default_protocol.py")))
_variants = _parent["GRID"]["variant"]

NAME = "compare_default_protocol_mnist5k_pixel_seeds"
DESCRIPTION = "compare_default_protocol's mnist5k distilled pixel sets at distillation seeds 1 and 2"
BASE = _parent["BASE"]
# longest first, so two lanes finish close together
GRID = {"variant": {name: _variants[name] for name in (
    "mnist5k_ipc1_dd_pixels", "mnist5k_ipc1_rtp_pixels_lr1e-2", "mnist5k_ipc1_rtp_pixels", "mnist5k_ipc1_frepo_pixels")}}
SEEDS = [1, 2]
OVERRIDES = _parent["OVERRIDES"]
RESOURCES = _parent["RESOURCES"]
