"""Selection at the 10-IPC storage of mnist5k: how to spend the floats -- fewer bases and more slots, or more.

At 10 IPC the start does most of the work (``select_mnist5k_ipc10*.py``: the undistilled principal-component
memory reads 96.07 % on validation, the best distilled member 96.13), and every earlier member kept one shape:
64 bases at 14x14 and 102 slots per class. The floats (78,400) can buy other shapes; each slot is the projection
of its own real image onto the mean and K-1 principal components (``memory.init=pca``), so K trades how much of
an image a slot keeps against how many different images the memory holds. Starts only (``meta.steps=0``), each
at the most slots per class its K and base size allow (``rtp_scale.memory.budget``), with the validation split's
350 training images per class as the pool (every slot a different image):

=========  ===========  ===============
K          bases        slots per class
=========  ===========  ===============
32         14x14        225
48         14x14        143
64         14x14        102 (the recipe's shape)
96         14x14        62
32         28x28        166
=========  ===========  ===============

Measured (validation %, 3 networks): K=32 95.20, K=48 95.40, K=64 96.20, K=96 95.27 (14x14), K=32 at 28x28 94.47;
with ``select_mnist5k_ipc10_shapes_more_bases.py``'s K=128 at 14x14 94.53 and K=64 at 28x28 93.67. The recipe's
shape stays.

Evaluation is the recipe's (300 epochs over the set, 3 networks, seed 0), so a set with more slots also gets
more SGD steps, as the field's protocol gives it. Scored on the validation split (the last 50 training images per
class, never used to build a memory).

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/select_mnist5k_ipc10_shapes.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/select_mnist5k_ipc10_shapes --out benchmarks/results/select_mnist5k_ipc10_shapes

Hardware: a 2-core AMD EPYC VM with AVX2 only, two members side by side on one thread each; evaluation time
grows with the slots (9-78 minutes of wall time per member at low priority beside other sweeps).
"""
# (K, downsample): the recipe's shape first, so that its number, the one to beat, comes soonest
_SHAPES = [(64, 2), (32, 2), (48, 2), (96, 2), (32, 1)]

NAME = "select_mnist5k_ipc10_shapes"
DESCRIPTION = "mnist5k IPC 10, PCA starts of five shapes (K bases x base size), no distillation, validation split"
BASE = "configs/mnist5k_rtp_ipc10.toml"
GRID = {"variant": {f"K{k}_{28 // ds}x{28 // ds}": [f"memory.num_bases={k}", f"memory.downsample={ds}"]
                    for k, ds in _SHAPES}}
SEEDS = [0]
OVERRIDES = ["memory.init=pca", "meta.steps=0", "data.val_per_class=50", "data.eval_split=val", "eval.num_nets=3",
             "log.image_every=0"]
RESOURCES = {"timeout_min": 120, "cpus_per_task": 1, "mem_gb": 6, "array_parallelism": 2}
