"""Method comparison at equal storage on CIFAR-10 (GPU-sized): IPC 1/10/50 x {RtP memories, RtP on plain
pixels, FRePo, DD}, 3 seeds each: 36 members in ONE Slurm job array.

Every member starts from the tuned RtP recipe of its budget (``configs/rtp/cifar10_ipc<IPC>.toml``: same
ConvNet, ZCA, augmentation, real batch and evaluation protocol); a named ``variant`` changes only what the
method needs (what is learned, its meta-gradient and its outer optimiser, with the papers' settings), so the
rows of ``python -m launch.collect runs/sweeps/methods --plot`` differ by the method alone. The CPU-sized
counterpart on the offline sets is ``configs/sweeps/compare_mnist5k.py``.

Hardware: 1 GPU with >= 40 GB per member (A100/H100); RtP members about a day at the recipes' meta.steps,
FRePo and DD less. Members past the time limit checkpoint and requeue themselves.

    python -m launch.sweep configs/sweeps/methods.py --dry-run
    python -m launch.sweep configs/sweeps/methods.py --partition gpu --array-parallelism 8

Expected (papers, ConvNet, CIFAR-10 % test accuracy, IPC 1/10/50): RtP 66.4/71.2/73.6, FRePo
46.8/65.5/71.7; DD far below both (36.8 at 10 images per class in its paper, with AlexNet).
"""
BUDGETS = [1, 10, 50]

NAME = "methods"
DESCRIPTION = "CIFAR-10 at IPC 1/10/50: RtP memories vs RtP on pixels vs FRePo vs DD, 3 seeds"
GRID = {
    "recipe": [f"configs/rtp/cifar10_ipc{ipc}.toml" for ipc in BUDGETS],
    "variant": {
        # the recipe as tuned: K shared bases + addressing, BPTT through SGD-momentum
        "rtp_memories": [],
        # same method on plain images (RtP's "BPTT" baseline); 10 images per class per inner step
        "rtp_pixels": ["memory.kind=pixel", "inner.batch_per_class=10"],
        # FRePo: pixels + learned labels, KRR on a model pool's features, LAMB 3e-3 with cosine decay
        "frepo": ["method.name=frepo", "memory.kind=pixel", "memory.learn_labels=true", "meta.optimizer=lamb",
                  "meta.lr=0.003", "meta.schedule=cosine", "meta.lr_floor=0.1", "meta.grad_clip=0",
                  "frepo.pool_size=10", "frepo.max_age=100", "frepo.train_lr=0.0003", "frepo.reg=0.000001"],
        # DD: pixels + one learned lr per inner step, 30 plain GD steps (3 epochs x 10), random inits, Adam
        "dd": ["method.name=dd", "memory.kind=pixel", "inner.steps=30", "inner.lr=0.02", "dd.epochs=3",
               "dd.init=random", "meta.optimizer=adam", "meta.lr=0.01", "meta.lr_lr=0.001", "meta.grad_clip=0"],
    },
}
SEEDS = [0, 1, 2]
RESOURCES = {"timeout_min": 24 * 60, "gpus_per_node": 1, "cpus_per_task": 8, "mem_gb": 64, "array_parallelism": 8,
             "signal_delay_s": 300}
