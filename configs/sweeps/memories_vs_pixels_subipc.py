"""Memories vs pixels below one image per class on mnist5k (RtP's first research question), validation split.

At 0.5 and 0.2 images per class of storage (3,920 and 1,568 floats) a full-resolution pixel set cannot hold an
image of every class; a factored memory's storage does not grow with the number of classes. Both are given the
same floats:

- memories: K shared bases at 14x14 (``memory.downsample=2``) with r slots per class -- IPC 0.5: K=8, r=29
  (3,888 floats); IPC 0.2: K=4, r=19 (1,544 floats); started from the training set's mean + K-1 principal
  components, every slot projected from its own real image (the default job's start);
- pixels: real images stored at reduced resolution (``memory.pixel_downsample``) -- IPC 0.5: 2 images per
  class at 14x14 (3,920 floats); IPC 0.2: 3 images per class at 7x7 (1,470 floats); started from random real
  images average-pooled to that size.

Each start is scored without distillation (``meta.steps=0``: the no-distillation baselines; the pixel start
is "random real images that fit the same floats") and after 24 outer steps of the default job's schedule (T=60,
5 images per class per inner step, Adam). The memories use the default's outer lr (1e-3, chosen at 1 IPC);
pixels get two outer lrs (1e-3 and 1e-2) since no lr was chosen for them under this protocol. Scored on the
validation split (the last 50 training images per class, never distilled on), 3 networks per member, seed 0.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/memories_vs_pixels_subipc.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/memories_vs_pixels_subipc

Hardware: a 2-core CPU, two members side by side on one thread each; 5-20 minutes per member.
"""
NAME = "memories_vs_pixels_subipc"
DESCRIPTION = "mnist5k IPC 0.5 / 0.2: PCA memories vs downsampled pixels, start and 24 outer steps, validation"
_MEM05 = ["memory.ipc=0.5", "memory.num_bases=8"]
_MEM02 = ["memory.ipc=0.2", "memory.num_bases=4"]
_PIX05 = ["memory.kind=pixel", "memory.ipc=0.5", "memory.pixel_downsample=2"]
_PIX02 = ["memory.kind=pixel", "memory.ipc=0.2", "memory.pixel_downsample=4"]
GRID = {"variant": {  # the evaluation-only members first: their numbers come soonest
    "ipc0.5_memory_start": [*_MEM05, "meta.steps=0"],
    "ipc0.5_pixels_start": [*_PIX05, "meta.steps=0"],
    "ipc0.2_memory_start": [*_MEM02, "meta.steps=0"],
    "ipc0.2_pixels_start": [*_PIX02, "meta.steps=0"],
    "ipc0.5_memory": [*_MEM05, "meta.lr=0.001"],
    "ipc0.5_pixels_lr1e-3": [*_PIX05, "meta.lr=0.001"],
    "ipc0.5_pixels_lr1e-2": [*_PIX05, "meta.lr=0.01"],
    "ipc0.2_memory": [*_MEM02, "meta.lr=0.001"],
    "ipc0.2_pixels_lr1e-3": [*_PIX02, "meta.lr=0.001"],
    "ipc0.2_pixels_lr1e-2": [*_PIX02, "meta.lr=0.01"],
}}
SEEDS = [0]
OVERRIDES = ["meta.steps=24", "data.val_per_class=50", "data.eval_split=val", "eval.num_nets=3", "log.image_every=0"]
RESOURCES = {"timeout_min": 90, "cpus_per_task": 2, "mem_gb": 4, "array_parallelism": 1}
