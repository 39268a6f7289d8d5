"""Memories vs pixels on scikit-learn's 8x8 digits at 1 and 10 images per class of storage, validation split.

At 8x8 an image is 64 floats, so a factored memory has little to factor: at 1 IPC (640 floats) the bases alone
take most of the budget. The members, each at (or below) the pixel set's storage:

- pixels: the then default job's RtP schedule on plain images from random real ones (outer lr 1e-3 and 1e-2);
- memories, principal-component start (the default's): IPC 1 -- K=8 bases at 4x4 (``memory.downsample=2``), 6
  slots per class (608 floats), or K=4 at full 8x8, 9 slots per class (616 floats); IPC 10 -- K=16 at 4x4, 38
  slots per class (6,336 floats), or K=16 at 8x8, 33 slots per class (6,304 floats). (A principal-component
  start at 4x4 has at most 16 directions, so K stays at 16 there);

each evaluated at its start (``meta.steps=0``: random real images for pixels, the no-distillation baseline for
memories) and after 60 outer steps (T=60, 5 images per class per inner step, Adam). The validation split is the
last 18 training images of each class (about 1/8, as mnist5k's 50 of 400); 3 networks per member, seed 0.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/digits_memories_vs_pixels.py --cluster local --cpus 1 --array-parallelism 1 --wait
    python -m launch.collect runs/sweeps/digits_memories_vs_pixels

Hardware: a 2-core CPU, one thread per member; 1-4 minutes per member.
"""
NAME = "digits_memories_vs_pixels"
DESCRIPTION = "digits IPC 1 / 10: PCA memories (bases at 4x4 or 8x8) vs pixels, start and 60 outer steps, validation"
_PIX1 = ["memory.kind=pixel", "memory.ipc=1"]
_PIX10 = ["memory.kind=pixel", "memory.ipc=10"]
_MEM1_DS2 = ["memory.ipc=1", "memory.num_bases=8", "memory.downsample=2"]
_MEM1_DS1 = ["memory.ipc=1", "memory.num_bases=4", "memory.downsample=1"]
_MEM10_DS2 = ["memory.ipc=10", "memory.num_bases=16", "memory.downsample=2"]
_MEM10_DS1 = ["memory.ipc=10", "memory.num_bases=16", "memory.downsample=1"]
_START = ["meta.steps=0"]
GRID = {"variant": {
    "ipc1_pixels_start": [*_PIX1, *_START],
    "ipc1_pixels_lr1e-3": [*_PIX1, "meta.lr=0.001"],
    "ipc1_pixels_lr1e-2": [*_PIX1, "meta.lr=0.01"],
    "ipc1_memory_K8_4x4_start": [*_MEM1_DS2, *_START],
    "ipc1_memory_K8_4x4": _MEM1_DS2,
    "ipc1_memory_K4_8x8_start": [*_MEM1_DS1, *_START],
    "ipc1_memory_K4_8x8": _MEM1_DS1,
    "ipc10_pixels_start": [*_PIX10, *_START],
    "ipc10_pixels_lr1e-3": [*_PIX10, "meta.lr=0.001"],
    "ipc10_pixels_lr1e-2": [*_PIX10, "meta.lr=0.01"],
    "ipc10_memory_K16_4x4_start": [*_MEM10_DS2, *_START],
    "ipc10_memory_K16_4x4": _MEM10_DS2,
    "ipc10_memory_K16_8x8_start": [*_MEM10_DS1, *_START],
    "ipc10_memory_K16_8x8": _MEM10_DS1,
}}
SEEDS = [0]
# meta.steps / meta.lr: the defaults when this ran, pinned (a member's own value still wins)
OVERRIDES = ["data.name=digits", "data.val_per_class=18", "data.eval_split=val", "eval.num_nets=3",
             "log.image_every=0", "meta.steps=60", "meta.lr=0.001"]
RESOURCES = {"timeout_min": 60, "cpus_per_task": 1, "mem_gb": 4, "array_parallelism": 1}
