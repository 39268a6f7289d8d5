"""``compare_default_protocol.py``'s mnist5k cell at a 10-IPC budget: the pixel sets, then DD and FRePo on memories.

Same network, evaluation (300 epochs, 5 networks), validation split and per-method settings as the parent sweep's
1-IPC cell; the memory shape is the 10-IPC recipe's (``configs/mnist5k_rtp_ipc10.toml``: 64 bases at 14x14, 102
slots per class, 9.93 IPC), pixel sets hold 10 images per class. RtP's memory and the undistilled start are
``select_mnist5k_ipc10_gain.py`` and ``select_mnist5k_ipc10.py``. Pixel members come first: they evaluate 100
images in a minute, the memory members 1,020 images in about 20.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/compare_default_protocol_mnist5k_ipc10.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/compare_default_protocol_mnist5k_ipc10
"""
import runpy
from pathlib import Path

_parent = runpy.run_path(str(Path(__file__).with_name("compare_default_protocol.py")))
_DD_STEPS, _FREPO_STEPS = 150, 300  # the parent's mnist5k cell's
_common = [*_parent["_DATASETS"]["mnist5k"], "memory.ipc=10"]
_pixels = [*_common, *_parent["_PIXELS"]]
_memories = [*_common, "memory.num_bases=64", "memory.downsample=2"]

NAME = "compare_default_protocol_mnist5k_ipc10"
DESCRIPTION = "compare_default_protocol's mnist5k cell at 10 IPC: pixel sets, DD and FRePo memories, validation split"
BASE = _parent["BASE"]
GRID = {"variant": {f"mnist5k_ipc10_{name}": overrides for name, overrides in {
    "start_pixels": [*_pixels, *_parent["_START"]],
    "rtp_pixels": [*_pixels, *_parent["_RTP_PIXELS"]],
    "rtp_pixels_lr1e-2": [*_pixels, *_parent["_RTP_PIXELS"], "meta.lr=0.01"],
    "dd_pixels": [*_pixels, *_parent["_DD"], f"meta.steps={_DD_STEPS}"],
    "frepo_pixels": [*_pixels, *_parent["_FREPO"], f"meta.steps={_FREPO_STEPS}", "memory.learn_labels=true"],
    "dd_memories": [*_memories, *_parent["_DD"], f"meta.steps={_DD_STEPS}"],
    "frepo_memories": [*_memories, *_parent["_FREPO"], f"meta.steps={_FREPO_STEPS}"],
}.items()}}
SEEDS = [0]
OVERRIDES = _parent["OVERRIDES"]
RESOURCES = _parent["RESOURCES"]
