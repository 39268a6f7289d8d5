"""At what budget does a factored memory start beating pixels on 8x8 digits? Starts at IPC 1, 2, 3 and 5.

At 1 IPC on digits the memory (4 bases at 8x8, 9 slots per class) is no better than one random real image per
class, and at 10 IPC (16 bases, 33 slots) it is 10 points above ten (README, "Method comparison under the default
job's protocol"); no distillation method moved either set off its start there. This sweep fills the budgets in
between with those starting points, which is where the comparison is decided on digits: random real images
(``memory.kind=pixel``, IPC 1, 2, 3, 5) against the no-distillation memory (principal components + projected
slots, ``memory.init=auto``) with K = 4, 8 or 16 bases at full 8x8, every K whose memory holds at least 3 slots
per class at that budget (r = floor((IPC*640 - 64K) / 10K)):

    IPC 1: K=4 (9 slots per class)                 IPC 3: K=4 (41), K=8 (17), K=16 (5)
    IPC 2: K=4 (25), K=8 (9)                       IPC 5: K=4 (73), K=8 (33), K=16 (13)

(K=2 is left out: every recall then lies on one line, the mean plus a multiple of the first principal
component; at IPC 5, 153 slots per class, it read 24.07 +- 1.14 % on validation, seed 0, and its 1,530 images
took 10 minutes to evaluate.) K is chosen per budget on the validation split (the last 18 training images per
class), 3 networks per member under the default job's protocol, distillation seed 0 (the seed draws the real
images and the networks); ``digits_budget_crossover_test.py`` scores the chosen memories and the random real
images once on the test split at seeds 0, 1 and 2, and ``digits_budget_crossover_distilled.py`` distils both.

Measured (validation %, 3 networks): README, "digits between 1 and 10 IPC"; chosen: K=4 at IPC 1 (the only
candidate), K=8 at IPC 2 and 3, K=16 at IPC 5.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/digits_budget_crossover.py --cluster local --cpus 1 --array-parallelism 1 --wait
    python -m launch.collect runs/sweeps/digits_budget_crossover --out benchmarks/results/digits_budget_crossover

Hardware: a 2-core CPU, one thread per member: 1-5 minutes per member (evaluation only,
about 0.3 s per synthetic image), about 20 minutes for the sweep.
"""
from rtp_scale.errors import UserError
from rtp_scale.memory.budget import addressable_images_per_class

NAME = "digits_budget_crossover"
DESCRIPTION = "digits IPC 1/2/3/5: random real images vs the no-distillation memory with K=4, 8, 16 bases at 8x8, validation"
BASE = "configs/mnist5k_rtp_ipc1.toml"
_SLOTS_AT_LEAST = 3
_IPCS = (1, 2, 3, 5)
_NUM_BASES = (4, 8, 16)


def _slots(ipc: int, num_bases: int) -> int:
    """Slots per class of K full-resolution 8x8 bases in ``ipc`` images per class of 10 classes (0: no room)."""
    try:
        return addressable_images_per_class(ipc=ipc, num_classes=10, pixels_per_image=64, num_bases=num_bases,
                                            downsample=1)
    except UserError:  # the bases alone exceed the budget
        return 0


GRID = {"variant": {
    **{f"ipc{ipc}_pixels": ["memory.kind=pixel", "memory.init=real", f"memory.ipc={ipc}"] for ipc in _IPCS},
    **{f"ipc{ipc}_memory_K{k}": [f"memory.ipc={ipc}", f"memory.num_bases={k}", "memory.downsample=1"]
       for ipc in _IPCS for k in _NUM_BASES if _slots(ipc, k) >= _SLOTS_AT_LEAST},
}}
SEEDS = [0]
OVERRIDES = ["meta.steps=0", "data.name=digits", "data.val_per_class=18", "data.eval_split=val", "eval.num_nets=3",
             "log.image_every=0"]
RESOURCES = {"timeout_min": 30, "cpus_per_task": 1, "mem_gb": 4, "array_parallelism": 2}
