"""A probe of the digits cells of ``compare_default_protocol.py`` under a depth-2 ConvNet: does RtP then gain?

Under the default job's network (width 32, depth 3) an 8x8 digit reaches the third block as a 2x2 map, and that
block's instance norm normalises 4 numbers per channel -- often 4 equal ones (a ReLU'd map of zeros plus the
conv's bias), where its scale is eps^-1/2. The first derivative survives that; the meta-gradient, a second
derivative, does not: its norm is 2e4-1e19 (medians 9e7-1e12) at every outer step of every digits member of ``digits_budget_crossover_distilled.py``
and ~6e12 at the first outer step of the IPC-5 pixel set, against 0.05 at depth 2 (the same set, 4x4 maps in the
last block) and ~0.2 on mnist5k. Adam normalises the step, so a run goes on with a direction set by the
ill-conditioned entries -- or stops when one overflows (``diverged``). ``rtp_scale.distill`` now warns about it.

Here the starts and RtP's sets of both digits cells (1 and 10 IPC, pixels and memories) with ``model.depth=2``
and nothing else changed (distillation and evaluation networks alike), seed 0, validation split; the depth-3
numbers are the comparison's own members.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/digits_depth2_probe.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/digits_depth2_probe --out benchmarks/results/digits_depth2_probe
"""
import runpy
from pathlib import Path

_parent = runpy.run_path(str(Path(__file__).with_name("compare_default_protocol.py")))


def _at_depth_2(kinds: tuple[str, ...]) -> dict[str, list[str]]:
    """The comparison's digits variants of these kinds (start, rtp, dd, frepo), on pixels and memories, at depth 2."""
    names = [f"digits_ipc{ipc}_{kind}_{sets}" for ipc in (1, 10) for kind in kinds for sets in ("pixels", "memories")]
    return {name: [*_parent["GRID"]["variant"][name], "model.depth=2"] for name in names}


NAME = "digits_depth2_probe"
DESCRIPTION = "digits IPC 1 and 10 under a depth-2 ConvNet: starts and RtP on pixels and memories, validation"
BASE = _parent["BASE"]
GRID = {"variant": _at_depth_2(("start", "rtp"))}
SEEDS = _parent["SEEDS"]
OVERRIDES = _parent["OVERRIDES"]
RESOURCES = _parent["RESOURCES"]
