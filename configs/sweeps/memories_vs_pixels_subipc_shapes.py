"""Below one image per class on mnist5k: memories whose bases are stored at 7x7, the pixel sets' winning size.

In ``memories_vs_pixels_subipc.py`` the memories kept 14x14 bases, so the floats left for bases bought only K=8
(IPC 0.5) and K=4 (IPC 0.2) of them, and a projected slot can mix only that many principal components; the pixel
set that won at IPC 0.2 stored its images at 7x7. Here the bases are 7x7 too (``memory.downsample=4``), which
buys more of them at the same floats: IPC 0.5, K=16 and 19 slots per class (3,824 floats) or K=8 and 44 slots
(3,912); IPC 0.2, K=8 and 14 slots (1,512). Same start (mean + K-1 principal components, every slot projected
from its own real image), schedule (T=60, 5 images per class per inner step, Adam, 24 outer steps), outer lrs
(1e-3 and 1e-2, as the pixel members), validation split and 3 networks per member as the parent sweep, seed 0.

Measured (validation %, start / lr 1e-3 / lr 1e-2): IPC 0.5 K=16 72.33 / 81.73 / 90.93, K=8 52.27 / 65.60 / 80.60;
IPC 0.2 K=8 57.60 / 67.47 / 81.73, against the best pixel sets' 78.20 (IPC 0.5) and 74.20 (IPC 0.2). The lr 1e-2
members of K=16 (IPC 0.5) and K=8 (IPC 0.2) are repeated at seeds 1 and 2 in
``memories_vs_pixels_subipc_memory_seeds.py``; README, "Memories vs pixels at equal storage", has all three seeds.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/memories_vs_pixels_subipc_shapes.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/memories_vs_pixels_subipc_shapes
"""
import runpy
from pathlib import Path

_parent = runpy.run_path(str(Path(__file__).with_name("memories_vs_pixels_subipc.py")))
_SHAPES = {
    "ipc0.5_K16_7x7": ["memory.ipc=0.5", "memory.num_bases=16", "memory.downsample=4"],
    "ipc0.5_K8_7x7": ["memory.ipc=0.5", "memory.num_bases=8", "memory.downsample=4"],
    "ipc0.2_K8_7x7": ["memory.ipc=0.2", "memory.num_bases=8", "memory.downsample=4"],
}
_SCHEDULES = {"start": ["meta.steps=0"], "lr1e-3": ["meta.lr=0.001"], "lr1e-2": ["meta.lr=0.01"]}

NAME = "memories_vs_pixels_subipc_shapes"
DESCRIPTION = "mnist5k IPC 0.5 / 0.2: PCA memories with 7x7 bases, start and 24 outer steps, validation"
GRID = {"variant": {f"{shape}_{schedule}": [*shape_overrides, *schedule_overrides]
                    for schedule, schedule_overrides in _SCHEDULES.items()  # the starts first: soonest
                    for shape, shape_overrides in _SHAPES.items()}}
SEEDS = _parent["SEEDS"]
OVERRIDES = _parent["OVERRIDES"]
RESOURCES = _parent["RESOURCES"]
