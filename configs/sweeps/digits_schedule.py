"""digits: the comparison table's RtP schedule (T=20, 10 images per class per step, Adam 1e-2, 200 outer steps)
on the default job's network and protocol, for the best pixel and memory settings of
``configs/sweeps/digits_memories_vs_pixels.py`` -- where the then default job's schedule (T=60, Adam 1e-3, 60 outer
steps, chosen on mnist5k) moved no member by more than 1.5 points on digits. Same validation split (last 18
training images per class), 3 networks, seed 0.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/digits_schedule.py --cluster local --cpus 1 --array-parallelism 1 --wait
    python -m launch.collect runs/sweeps/digits_schedule

Hardware: a 2-core CPU, one thread per member; 2-5 minutes per member.
"""
NAME = "digits_schedule"
DESCRIPTION = "digits IPC 1 / 10: pixels vs memories (bases at 8x8) under T=20, Adam 1e-2, 200 outer steps, validation"
GRID = {"variant": {
    "ipc1_pixels": ["memory.kind=pixel", "memory.ipc=1"],
    "ipc1_memory_K4_8x8": ["memory.ipc=1", "memory.num_bases=4", "memory.downsample=1"],
    "ipc10_pixels": ["memory.kind=pixel", "memory.ipc=10"],
    "ipc10_memory_K16_8x8": ["memory.ipc=10", "memory.num_bases=16", "memory.downsample=1"],
}}
SEEDS = [0]
OVERRIDES = ["data.name=digits", "data.val_per_class=18", "data.eval_split=val", "eval.num_nets=3",
             "log.image_every=0", "inner.steps=20", "inner.batch_per_class=10", "meta.lr=0.01", "meta.steps=200"]
RESOURCES = {"timeout_min": 60, "cpus_per_task": 1, "mem_gb": 4, "array_parallelism": 1}
