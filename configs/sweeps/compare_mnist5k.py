"""Method comparison at equal storage on the offline sets (mnist5k and digits), IPC 1 and 10, sized for a CPU:
DD, FRePo, RtP on plain pixels, RtP addressable memories, FRePo on RtP memories (20 members, one job array).

Every member is one complete recipe, ``configs/compare/<dataset>_<method>_ipc<IPC>.toml`` (see
configs/compare/README.md for what is shared and what each method changes). The random-real baseline is not
a distillation; ``configs/compare/run_table.py`` runs this sweep, evaluates that baseline under the same
protocol and writes the README table:

    python configs/compare/run_table.py                      # everything, on this machine (--cluster local)
    python -m launch.sweep configs/sweeps/compare_mnist5k.py --cluster local   # only the distillations
    python -m launch.collect runs/compare/sweep              # launch's own per-member table

Hardware: a 2-core CPU, one member at a time; about 30-45 minutes for all 20 (digits members take tens of
seconds, mnist5k members a few minutes each, evaluation included). Expected: see the README's comparison
table (CPU-sized settings: far below the papers' GPU numbers, which need 100x more outer steps).
"""
DATASETS = ["digits", "mnist5k"]
METHODS = ["dd", "frepo", "rtp_pixels", "rtp_memories", "frepo_memories"]
BUDGETS = [1, 10]

NAME = "compare_mnist5k"
DESCRIPTION = "mnist5k + digits, IPC 1/10: DD vs FRePo vs RtP (pixels, memories) vs FRePo on memories (CPU-sized)"
GRID = {"recipe": [f"configs/compare/{ds}_{method}_ipc{ipc}.toml"
                   for ds in DATASETS for method in METHODS for ipc in BUDGETS]}
SEEDS = [0]
RESOURCES = {"timeout_min": 60, "cpus_per_task": 2, "mem_gb": 4, "array_parallelism": 1}
