"""The 10-IPC recipe's final runs: distilled on the whole training split and scored once on the test split.

``configs/mnist5k_rtp_ipc10.toml`` was chosen on the validation split (``select_mnist5k_ipc10_horizon.py``, the
last 50 training images per class held out) and its selection runs were scored on test as they were, on 350
images per class (``select_mnist5k_ipc10_horizon_seeds.py``). Once chosen, a recipe is run as a user runs it: on
the whole training split, 400 images per class, as the default job's first README row is. Nothing is chosen here:
one member is the recipe unchanged, the other its undistilled start (``meta.steps=0``), each at distillation
seeds 0, 1 and 2 and scored by the same 3 networks per seed (the first 3 of the recipe's 5, as the selection
seeds were), so every seed's gain over its own start is measured on the same networks. The recipe's members come
first, so the three long ones run before the starts.

Measured (test %, 3 networks per seed): the recipe 96.53, 96.80, 96.87 (96.73 +- 0.14 over seeds), its start 96.17,
96.30, 96.20 (96.22 +- 0.06): +0.37, +0.50 and +0.67 points over the start.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/final_mnist5k_ipc10_whole_train.py --cluster local \
        --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/final_mnist5k_ipc10_whole_train --out benchmarks/results/final_mnist5k_ipc10_whole_train

Hardware: a 2-core AMD EPYC VM with AVX2 only, two members side by side on one thread each (a third process beside
them at times): 43-65 minutes of distillation (2,468-3,137 CPU seconds) and 14 of evaluation per recipe member, 14-16
minutes per start; 2 h 15 min for the sweep.
"""
NAME = "final_mnist5k_ipc10_whole_train"
DESCRIPTION = "mnist5k IPC 10: the selected recipe and its PCA start on the whole training split, test split, seeds 0-2"
BASE = "configs/mnist5k_rtp_ipc10.toml"
GRID = {"variant": {"recipe": [], "start": ["meta.steps=0"]}}
SEEDS = [0, 1, 2]
OVERRIDES = ["data.val_per_class=0", "data.eval_split=test", "eval.num_nets=3", "log.image_every=0"]
RESOURCES = {"timeout_min": 120, "cpus_per_task": 2, "mem_gb": 6, "array_parallelism": 1}
