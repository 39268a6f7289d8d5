"""``digits_depth2_crossover.py``'s budgets distilled: both starts and RtP, DD and FRePo on pixels and on the memory
chosen there, at IPC 2, 3 and 5 under a depth-2 ConvNet, distillation seeds 0, 1 and 2, validation split.

Each budget is a cell of ``compare_default_protocol.py`` (its ``_cell``: the same members and per-method settings
as its digits cells, DD 200 and FRePo 400 outer steps) with ``model.depth=2``; the memory has the number of bases
chosen on the starts at seed 0 (validation %, 3 networks: IPC 2 pixels 83.52, K=4 69.26, K=8 90.37; IPC 3 pixels
83.89, K=4 63.33, K=8 85.19, K=16 89.81; IPC 5 pixels 88.15, K=4 55.93, K=8 91.67, K=16 96.48). The seed-0 starts
repeat that sweep's members (the same configs, so the same numbers).

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/digits_depth2_crossover_methods.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/digits_depth2_crossover_methods --out benchmarks/results/digits_depth2_crossover_methods
"""
import runpy
from pathlib import Path

_compare = runpy.run_path(str(Path(__file__).with_name("compare_default_protocol.py")))
_CHOSEN_BASES = {2: 8, 3: 16, 5: 16}  # K per IPC, chosen in digits_depth2_crossover.py
_, _DD_STEPS, _FREPO_STEPS = _compare["_CELLS"][("digits", 1)]  # 200 and 400, as in the digits cells


def _at_depth_2() -> dict[str, list[str]]:
    variants = {}
    for ipc, num_bases in _CHOSEN_BASES.items():
        memory = [f"memory.num_bases={num_bases}", "memory.downsample=1"]
        cell = _compare["_cell"]("digits", ipc, memory, _DD_STEPS, _FREPO_STEPS)
        variants.update({f"digits_ipc{ipc}_{name}": [*overrides, "model.depth=2"] for name, overrides in cell.items()})
    return variants


NAME = "digits_depth2_crossover_methods"
DESCRIPTION = "digits IPC 2/3/5 under a depth-2 ConvNet: starts, RtP, DD and FRePo on pixels and the chosen memory, seeds 0-2, validation"
BASE = _compare["BASE"]
GRID = {"variant": _at_depth_2()}
SEEDS = [0, 1, 2]
OVERRIDES = _compare["OVERRIDES"]
RESOURCES = _compare["RESOURCES"]
