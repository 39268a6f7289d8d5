"""Ablation (RtP's third research question): unroll length T x inner momentum at equal compute, mnist5k IPC 1.

Every member distills the default job's memory (PCA start, 16 bases at 14x14, 29 slots per class; Adam 1e-3) for
the same 1,200 inner steps in all: T=10 for 120 outer steps, T=20 for 60, T=50 for 24, T=100 for 12, each with
inner SGD momentum 0 and 0.9 at the same inner lr (0.01). Each member is evaluated on the validation split
(the last 50 training images per class, never distilled on) at the start, half way and at the end
(``eval.every``), with 3 fresh networks under the default protocol; ``launch.collect --plot`` draws those
evaluations against the distillation's CPU seconds (``accuracy_vs_cpu_seconds.png``, ``curves.csv``).

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/ablation_unroll_mnist5k.py --cluster local --cpus 1 \
        --array-parallelism 2 --wait                                                      # or --cluster slurm
    python -m launch.collect runs/sweeps/ablation_unroll_mnist5k --plot

Hardware: a 2-core CPU, two members side by side on one thread each: 17-25 minutes per member, of which the
distillation is 5-8 (the three evaluations of 3 networks x 300 epochs are the rest). README, "Ablation: unroll
length and inner momentum at equal compute", has the table and the plot.
"""
INNER_STEPS_IN_ALL = 1200

NAME = "ablation_unroll_mnist5k"
DESCRIPTION = "mnist5k IPC 1, PCA start: unroll length T x inner momentum at 1,200 inner steps, validation split"
BASE = "configs/mnist5k_rtp_ipc1.toml"
GRID = {
    "variant": {f"T{t}": [f"inner.steps={t}", f"meta.steps={INNER_STEPS_IN_ALL // t}",
                          f"eval.every={INNER_STEPS_IN_ALL // t // 2}"] for t in (10, 20, 50, 100)},
    "inner.momentum": [0.0, 0.9],
}
SEEDS = [0]
# meta.lr: the default when this ran (1e-3), pinned so that a later default does not change the members
OVERRIDES = ["meta.lr=0.001", "data.val_per_class=50", "data.eval_split=val", "eval.num_nets=3", "log.image_every=0"]
RESOURCES = {"timeout_min": 60, "cpus_per_task": 2, "mem_gb": 4, "array_parallelism": 1}
