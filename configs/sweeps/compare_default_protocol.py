"""Method comparison under the default job's protocol, validation split: mnist5k at 1 IPC, digits at 1 and 10 IPC.

The older comparison (``compare_mnist5k.py``) ran every method on narrower networks with shorter evaluations,
from random real images. Here every member uses the default job's network (ConvNet width 32, depth 3, instance
norm), its evaluation (300 epochs; 5 networks on mnist5k, 3 on digits) and the default job's starting points
(``memory.init=auto``: principal components + projected slots for addressable memories, random real images for
pixels). Per dataset and budget:

- ``start_pixels`` / ``start_memories``: the two starting sets, no outer step (random real images; the
  no-distillation memory);
- ``rtp_*``: the default job's schedule (T=60, momentum 0.9, 5 images per class per inner step, Adam 4e-3,
  30 outer steps; pixel sets get 60, their outer steps being cheaper) — on mnist5k pixels also at lr 1e-2,
  the better lr for pixel sets below 1 IPC (``memories_vs_pixels_subipc``);
- ``dd_*``: DD as in the comparison cells (30 plain GD steps as 3 epochs x 10, learned lrs, a fresh network per
  outer step, Adam 1e-2; 150 outer steps on mnist5k, 200 on digits);
- ``frepo_*``: FRePo as in the comparison cells (pool of 10, LAMB 3e-3 with cosine decay, relative ridge 0.01;
  300 outer steps on mnist5k, 400 on digits; learned labels on pixel sets).

RtP on mnist5k memories is the default job itself, so it is not a member here: its validation run is
``python -m rtp_scale.distill --set data.val_per_class=50 data.eval_split=val`` (the config of
``select_mnist5k_coeff_l2``'s member ``l2_1e-4``). Memories: mnist5k 16 bases at 14x14 (the default's); digits 4 bases at 8x8
(1 IPC) and 16 at 8x8 (10 IPC), the better shapes of ``digits_memories_vs_pixels``.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/compare_default_protocol.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/compare_default_protocol

Scored on the validation split (mnist5k: the last 50 training images per class; digits: the last 18), seed 0;
the starts, RtP's sets and each cell's best sets are then evaluated on the test split (README, "Method comparison under the default
job's protocol"). The digits members at seeds 1 and 2: ``compare_default_protocol_digits_seeds.py``; mnist5k's memory rows and
starts: ``compare_default_protocol_mnist5k_seeds.py``; its distilled pixel sets:
``compare_default_protocol_mnist5k_pixel_seeds.py``.

Hardware: a 2-core Intel Xeon VM, two members side by side on one thread each: digits members under 2 minutes,
mnist5k members 3-12 minutes with their evaluation; the whole sweep about 45 minutes.
"""
NAME = "compare_default_protocol"
DESCRIPTION = "RtP / DD / FRePo on pixels and memories under the default job's network and protocol, validation split"
BASE = "configs/mnist5k_rtp_ipc1.toml"

_PIXELS = ["memory.kind=pixel", "memory.init=real"]
_START = ["meta.steps=0"]
_RTP_PIXELS = ["meta.steps=60"]
_DD = ["method.name=dd", "inner.steps=30", "inner.lr=0.02", "dd.epochs=3", "dd.init=random", "meta.lr=0.01",
       "meta.lr_lr=0.001", "meta.grad_clip=0.0"]
# relative ridge 0.01, not FRePo's 1e-6: these networks have few features (configs/compare/README.md)
_FREPO = ["method.name=frepo", "frepo.pool_size=10", "frepo.max_age=100", "frepo.train_steps=1",
          "frepo.train_lr=0.0003", "frepo.reg=0.01", "meta.optimizer=lamb", "meta.lr=0.003", "meta.schedule=cosine",
          "meta.lr_floor=0.1", "meta.grad_clip=0.0"]
_DATASETS = {
    "mnist5k": ["data.val_per_class=50", "data.eval_split=val"],
    "digits": ["data.name=digits", "data.val_per_class=18", "data.eval_split=val", "eval.num_nets=3"],
}
# (dataset, IPC): the memory's shape, DD's and FRePo's outer steps
_CELLS = {
    ("mnist5k", 1): (["memory.num_bases=16", "memory.downsample=2"], 150, 300),
    ("digits", 1): (["memory.num_bases=4", "memory.downsample=1"], 200, 400),
    ("digits", 10): (["memory.num_bases=16", "memory.downsample=1"], 200, 400),
}


def _cell(dataset: str, ipc: float, memory: list[str], dd_steps: int, frepo_steps: int) -> dict[str, list[str]]:
    """One (dataset, IPC) cell's members: both starts, and RtP, DD and FRePo on pixels and on this memory."""
    common = [*_DATASETS[dataset], f"memory.ipc={ipc}"]
    pixels, memories = [*common, *_PIXELS], [*common, *memory]
    cell = {
        "start_pixels": [*pixels, *_START],
        "start_memories": [*memories, *_START],
        "rtp_pixels": [*pixels, *_RTP_PIXELS],
        "dd_pixels": [*pixels, *_DD, f"meta.steps={dd_steps}"],
        "dd_memories": [*memories, *_DD, f"meta.steps={dd_steps}"],
        "frepo_pixels": [*pixels, *_FREPO, f"meta.steps={frepo_steps}", "memory.learn_labels=true"],
        "frepo_memories": [*memories, *_FREPO, f"meta.steps={frepo_steps}"],
    }
    if dataset == "mnist5k":
        cell["rtp_pixels_lr1e-2"] = [*pixels, *_RTP_PIXELS, "meta.lr=0.01"]
    else:
        cell["rtp_memories"] = memories
    return cell


def _variants() -> dict[str, list[str]]:
    variants = {}
    for (dataset, ipc), (memory, dd_steps, frepo_steps) in _CELLS.items():
        cell = _cell(dataset, ipc, memory, dd_steps, frepo_steps)
        variants.update({f"{dataset}_ipc{ipc}_{name}": overrides for name, overrides in cell.items()})
    # digits first: they finish in minutes, so a partial run already has two whole cells
    return dict(sorted(variants.items(), key=lambda item: not item[0].startswith("digits")))


GRID = {"variant": _variants()}
SEEDS = [0]
OVERRIDES = ["log.image_every=0"]
RESOURCES = {"timeout_min": 90, "cpus_per_task": 1, "mem_gb": 4, "array_parallelism": 2}
