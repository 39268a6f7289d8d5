"""Memories vs pixels at equal storage on mnist5k, IPC 0.2 / 0.5 / 1 / 10: the chosen sets, scored on the test split.

RtP's first research question as one figure. Every member is a set already chosen on validation by its own sweep,
distilled again at seeds 0, 1 and 2 (without the validation images, as selected) and scored on the test split
instead, with its sweep's networks and evaluation; nothing is chosen here. Per budget, the best memory and its
start (no outer step), the best distilled pixel set and its start (random real images that fit the same floats):

- IPC 0.2 and 0.5 (``memories_vs_pixels_subipc_shapes.py`` / ``memories_vs_pixels_subipc.py``, 24 outer steps,
  3 networks): memories of K=8 / 16 bases at 7x7, pixels 3 per class at 7x7 / 2 per class at 14x14, Adam 1e-2;
- IPC 1 (``compare_default_protocol.py``, 5 networks): the default job's memory, DD's pixel set;
- IPC 10 (``compare_default_protocol_mnist5k_ipc10.py``): FRePo's pixel set with learned labels. The 10-IPC
  memory (43-65 CPU minutes a seed), its start and random real images at 10 IPC are not run again: their test
  evaluations are committed in ``benchmarks/results/test_eval_ipc10/``.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/mnist5k_memories_vs_pixels_test.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/mnist5k_memories_vs_pixels_test

and the figure from the members' ``results.json`` with the 10-IPC files: README, "Memories vs pixels at equal
storage". Hardware: a 2-core CPU, two members side by side on one thread each; 1-12 minutes per member.
"""
import runpy
from pathlib import Path

_here = Path(__file__).parent


def _sweep(name: str) -> dict:
    return runpy.run_path(str(_here / f"{name}.py"))


def _on_test(overrides: list) -> list:
    """A member's overrides with its score moved from the validation to the test split (the images held out stay
    held out: the set is distilled as it was selected)."""
    assert "data.eval_split=val" in overrides, overrides
    return ["data.eval_split=test" if o == "data.eval_split=val" else o for o in overrides]


_subipc, _subipc_shapes = _sweep("memories_vs_pixels_subipc"), _sweep("memories_vs_pixels_subipc_shapes")
_SUBIPC = _subipc["OVERRIDES"]  # 24 outer steps, 50 validation images per class held out, 3 networks
assert _SUBIPC == _subipc_shapes["OVERRIDES"]
_shapes, _pixels = _subipc_shapes["GRID"]["variant"], _subipc["GRID"]["variant"]
_ipc1 = _sweep("compare_default_protocol")["GRID"]["variant"]
_ipc10 = _sweep("compare_default_protocol_mnist5k_ipc10")["GRID"]["variant"]
_default_job = _ipc1["mnist5k_ipc1_start_memories"][:-1]  # without meta.steps=0: the default job's schedule
assert _ipc1["mnist5k_ipc1_start_memories"][-1] == "meta.steps=0"

NAME = "mnist5k_memories_vs_pixels_test"
DESCRIPTION = "mnist5k memories vs pixels at IPC 0.2/0.5/1/10: the sets chosen on validation, scored on test"
# no BASE: the config defaults, which are the comparison sweeps' BASE (configs/mnist5k_rtp_ipc1.toml) written out
# and which leave a pixel set's start 'auto' (random real images), as the sub-IPC sweeps did
# longest first, so two lanes finish close together
GRID = {"variant": {
    "ipc1_rtp_memories": _on_test(_default_job),
    "ipc0.5_memories": _on_test([*_SUBIPC, *_shapes["ipc0.5_K16_7x7_lr1e-2"]]),
    "ipc0.2_memories": _on_test([*_SUBIPC, *_shapes["ipc0.2_K8_7x7_lr1e-2"]]),
    "ipc1_dd_pixels": _on_test(_ipc1["mnist5k_ipc1_dd_pixels"]),
    "ipc10_frepo_pixels": _on_test(_ipc10["mnist5k_ipc10_frepo_pixels"]),
    "ipc1_memories_start": _on_test(_ipc1["mnist5k_ipc1_start_memories"]),
    "ipc0.5_pixels": _on_test([*_SUBIPC, *_pixels["ipc0.5_pixels_lr1e-2"]]),
    "ipc0.2_pixels": _on_test([*_SUBIPC, *_pixels["ipc0.2_pixels_lr1e-2"]]),
    "ipc0.5_memories_start": _on_test([*_SUBIPC, *_shapes["ipc0.5_K16_7x7_start"]]),
    "ipc0.2_memories_start": _on_test([*_SUBIPC, *_shapes["ipc0.2_K8_7x7_start"]]),
    "ipc0.5_pixels_start": _on_test([*_SUBIPC, *_pixels["ipc0.5_pixels_start"]]),
    "ipc0.2_pixels_start": _on_test([*_SUBIPC, *_pixels["ipc0.2_pixels_start"]]),
    "ipc1_pixels_start": _on_test(_ipc1["mnist5k_ipc1_start_pixels"]),
}}
SEEDS = [0, 1, 2]
OVERRIDES = ["log.image_every=0"]
RESOURCES = {"timeout_min": 90, "cpus_per_task": 1, "mem_gb": 4, "array_parallelism": 2}
