"""Memory and communication planner of an RtP recipe on a process grid, without running it at full size.

    python -m rtp_scale.bench plan --config configs/rtp/cifar100_ipc50.toml --set dist.inner_shards=8
    python -m rtp_scale.bench plan --config RECIPE --processes 16 --json plan.json
    python -m rtp_scale.bench plan --config configs/compare/digits_rtp_memories_ipc1.toml --measure

It answers "how much memory does one rank hold, and how many bytes does it send per outer step":

- **Autograd graph**, counted twice: every save, as :class:`rtp_scale.unroll.SavedTensorMeter` (and so the
  engine's memory budget) counts it, and every saved storage once (:class:`DistinctSavedMeter`; about half as
  much for these networks, since autograd saves many tensors for several nodes), which is what the device holds
  and what the memory table adds up. One inner step's graph with
  ``create_graph=True`` is *measured*, not derived: the recipe's network, augmentation and loss are run on this
  CPU on 1 and 2 images (and once with 2 drawn / 1 computed, which separates what the augmentation saves for the
  whole minibatch from what the network saves for a shard's columns), for every augmentation op (one op is drawn
  per unroll; the largest is planned). Every tensor these networks save is either per image or per parameter, so
  the bytes are exactly ``a + b * images``, and two points extrapolate them to the recipe's minibatch. The same
  for one part of the real-batch meta-loss (``unroll.outer_chunk`` images, forward and backward) and the
  memory's recall (linear in the images per class). The unroll engine then holds, at its peak:
  ``full``: all T steps' graphs and the whole real batch's; ``segmented`` / ``truncated``: the larger of one
  recomputed segment (k steps) and one outer part; under ``unroll.memory_budget_mb`` the larger of the kept
  tail (m steps) plus one outer part and one recomputed segment of the rest (the engine's own rule).
- **Tensors**: ``ceil(span / k)`` stored boundary states ``(theta, v)`` (host memory with ``unroll.offload``),
  the unroll's live state and adjoints, the recalled images and their gradient, the memory's parameters with
  their gradient and outer-optimiser state, the real batch, and the dataset when it is held on the device.
- **Communication** (ring all-reduce: ``2 n (S - 1) / S`` bytes sent per rank for ``n`` bytes over ``S``
  ranks): every outer step one all-reduce of the memory gradient and metrics over all processes plus the
  one-integer preemption check; with ``dist.inner_shards > 1`` one all-reduce of the inner gradient (every
  network parameter) in every inner step of the forward pass, every recomputed step, and the backward of every
  differentiated step.

The allocator's cache, kernels' workspaces and the temporaries between saves come on top of the table.
``--measure`` runs one meta-gradient of the recipe on this CPU (random images of the recipe's shapes; only
sensible for small recipes) and prints both meters' peaks and the stored-state bytes next to the prediction.
"""
from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from rtp_scale.cli import OneLineParser, config_parser
from rtp_scale.config import Config, load_config
from rtp_scale.data.augment import OPS, Augmenter
from rtp_scale.data.imagefolder import DEFAULT_RESOLUTION
from rtp_scale.distributed.context import check_grid
from rtp_scale.errors import UserError, run_cli
from rtp_scale.eval import build_net
from rtp_scale.memory import addressable_images_per_class, build_memory
from rtp_scale.methods import rtp as rtp_method
from rtp_scale.methods.rtp import real_batch_loss, shard_columns, unroll_policy
from rtp_scale.models import check_batch_split, init_params
from rtp_scale.unroll import SavedTensorMeter, UnrollPolicy, unroll_meta_grad
from rtp_scale.unroll.meter import DistinctSavedMeter

FLOAT_BYTES = 4  # every planned tensor is float32 (the engine's state stays float32 under bf16 too)
METRIC_KEYS = 5  # meta/loss, meta/regulariser, inner/loss_first, inner/loss_last, inner/steps (RtpMethod)
MEASURE_SEED = 0

# (channels, height, width, classes, train images, test images) of the registered datasets, so that a plan
# needs no download; data.resolution replaces height and width.
KNOWN_SHAPES: dict[str, tuple[int, int, int, int, int, int]] = {
    "mnist5k": (1, 28, 28, 10, 4000, 1000),
    "digits": (1, 8, 8, 10, 1433, 364),
    "mnist": (1, 28, 28, 10, 60000, 10000),
    "fashion_mnist": (1, 28, 28, 10, 60000, 10000),
    "cifar10": (3, 32, 32, 10, 50000, 10000),
    "cifar100": (3, 32, 32, 100, 50000, 10000),
    "svhn": (3, 32, 32, 10, 73257, 26032),
}


@dataclass(frozen=True, kw_only=True)
class DataShape:
    """What the plan needs to know of the dataset."""

    channels: int
    height: int
    width: int
    num_classes: int
    images: int | None
    """Train + test images held as tensors (None: unknown without reading the folder)."""

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def pixels(self) -> int:
        return self.channels * self.height * self.width


def data_shape(cfg: Config, classes: int | None = None) -> DataShape:
    """The recipe's image shape and class count, from the table above, an FFCV manifest or the image folder's
    class folders; ``classes`` (``--classes``) answers for an image folder that is not on this machine."""
    data = cfg.data
    if data.name in KNOWN_SHAPES:
        c, h, w, k, train, test = KNOWN_SHAPES[data.name]
        if data.resolution:
            h = w = data.resolution
        return DataShape(channels=c, height=h, width=w, num_classes=k, images=train + test)
    if data.name != "imagefolder":
        raise UserError(f"the planner knows the shapes of {', '.join([*KNOWN_SHAPES, 'imagefolder'])}, not of "
                        f"data.name={data.name!r}")
    if data.backend == "ffcv" and (Path(data.root) / "manifest.json").is_file():
        from rtp_scale.data.ffcv_io import read_manifest

        manifest = read_manifest(data.root)
        return DataShape(channels=manifest.channels, height=manifest.height, width=manifest.width,
                         num_classes=len(manifest.classes), images=None)
    side = data.resolution or DEFAULT_RESOLUTION
    if classes is None:
        train = Path(data.root) / "train"
        if not train.is_dir():
            raise UserError(f"cannot tell the number of classes of the image folder {data.root!r} (neither "
                            f"{Path(data.root) / 'manifest.json'} nor {train} is here); pass --classes N")
        classes = sum(1 for p in train.iterdir() if p.is_dir() and not p.name.startswith("."))
    return DataShape(channels=3, height=side, width=side, num_classes=classes, images=None)


# --------------------------------------------------------------------------------------------------- measuring


@dataclass(frozen=True, kw_only=True)
class Linear:
    """Bytes ``fixed + per_image * n`` (and, for an inner step, ``+ per_drawn * drawn``)."""

    fixed: int
    per_image: int
    per_drawn: int = 0

    def at(self, images: int, drawn: int = 0) -> int:
        return self.fixed + self.per_image * images + self.per_drawn * drawn


METERS = {"counted": SavedTensorMeter, "distinct": DistinctSavedMeter}
"""The two counts of a graph: every save (what the engine and its budget see) and every storage once."""


def _meter(fn, count: str) -> int:
    with METERS[count]() as meter:
        fn()
    return meter.peak_bytes


def _random_images(n: int, shape: DataShape, generator: torch.Generator) -> Tensor:
    return torch.randn(n, *shape.image_shape, generator=generator)


def measure_inner_step(cfg: Config, net: nn.Module, shape: DataShape, op: str | None, count: str) -> Linear:
    """Saved bytes of one inner step (create_graph=True) as the RtP unroll runs it: ``drawn`` recalled images
    indexed and augmented, the shard's columns through the network, cross-entropy summed over the minibatch.

    Measured as a one-step ``full`` unroll whose outer loss saves nothing, so the meter's peak is the step's graph.
    """
    generator = torch.Generator().manual_seed(MEASURE_SEED)
    params0 = init_params(net, generator)
    augmenter = Augmenter(op) if op is not None else Augmenter("none")
    lrs = torch.full((1,), cfg.inner.lr, requires_grad=cfg.inner.learn_lr)

    def step_bytes(drawn: int, shards: int) -> int:
        images = _random_images(drawn, shape, generator).requires_grad_(True)
        labels = torch.arange(drawn) % shape.num_classes
        idx = torch.arange(drawn)
        draw = augmenter.draw(drawn, generator, device=torch.device("cpu"), dtype=torch.float32) \
            if augmenter.enabled else None
        columns = shard_columns(drawn, 0, shards)

        def inner_loss(params, t, meta):  # the computation of RtpMethod.meta_gradient's inner loss
            xb = meta[0][idx]
            if draw is not None:
                xb = augmenter.apply(xb, draw)
            logits = functional_call(net, params, (xb[columns],))
            return F.cross_entropy(logits, labels[columns], reduction="sum") / drawn

        def outer_loss(params):  # sums save nothing: the peak is the inner step's graph alone
            return sum(p.sum() for p in params.values())

        return _meter(lambda: unroll_meta_grad(
            inner_loss=inner_loss, outer_loss=outer_loss, params0=params0, meta=(images,), steps=1, lrs=lrs,
            momentum=cfg.inner.momentum, weight_decay=cfg.inner.weight_decay, policy=UnrollPolicy(mode="full")),
            count)

    one, two, two_drawn_one_computed = step_bytes(1, 1), step_bytes(2, 1), step_bytes(2, 2)
    per_image = two - two_drawn_one_computed   # the network's share: one more computed column
    per_drawn = two_drawn_one_computed - one   # indexing and augmentation: one more drawn image
    return Linear(fixed=one - per_image - per_drawn, per_image=per_image, per_drawn=per_drawn)


def measure_outer_part(net: nn.Module, shape: DataShape, count: str) -> Linear:
    """Saved bytes of one part of the real-batch meta-loss (its forward; the backward only frees them)."""
    generator = torch.Generator().manual_seed(MEASURE_SEED)
    params = {n: p.requires_grad_(True) for n, p in init_params(net, generator).items()}

    def part_bytes(n: int) -> int:
        real_x, real_y = _random_images(n, shape, generator), torch.arange(n) % shape.num_classes
        part = real_batch_loss(net, real_x, real_y, 0).parts[0]
        return _meter(lambda: torch.autograd.grad(part(params), list(params.values()), allow_unused=True), count)

    one, two = part_bytes(1), part_bytes(2)
    return Linear(fixed=2 * one - two, per_image=two - one)


def _memory_at(cfg: Config, shape: DataShape, per_class: int) -> nn.Module:
    """The recipe's memory kind at ``per_class`` images per class, randomly initialised (shapes are what count)."""
    generator = torch.Generator().manual_seed(MEASURE_SEED)
    mem = cfg.memory
    if mem.kind == "pixel":
        return build_memory("pixel", num_classes=shape.num_classes, image_shape=shape.image_shape,
                            images_per_class=per_class, generator=generator, learn_labels=mem.learn_labels)
    return build_memory("addressable", num_classes=shape.num_classes, image_shape=shape.image_shape,
                        num_bases=mem.num_bases, images_per_class=per_class, downsample=mem.downsample,
                        generator=generator)


def images_per_class(cfg: Config, shape: DataShape) -> int:
    """Recalled images per class at the recipe's storage budget (rtp_scale.builders.build_run_memory's rule)."""
    mem = cfg.memory
    if mem.kind == "pixel":
        return int(mem.ipc)
    return addressable_images_per_class(ipc=mem.ipc, num_classes=shape.num_classes, pixels_per_image=shape.pixels,
                                        num_bases=mem.num_bases, downsample=mem.downsample)


def measure_memory(cfg: Config, shape: DataShape) -> tuple[Linear, dict[str, Linear]]:
    """(trainable memory floats, saved bytes of the recall graph by count), linear in the images per class."""
    floats, graph = [], {count: [] for count in METERS}
    for r in (1, 2):
        memory = _memory_at(cfg, shape, r)
        floats.append(sum(p.numel() for p in memory.parameters() if p.requires_grad))
        for count, values in graph.items():
            values.append(_meter(lambda: memory.class_images(), count))
    return (Linear(fixed=2 * floats[0] - floats[1], per_image=floats[1] - floats[0]),
            {count: Linear(fixed=2 * one - two, per_image=two - one) for count, (one, two) in graph.items()})


# ----------------------------------------------------------------------------------------------------- the plan


@dataclass(kw_only=True)
class Plan:
    """Every term of one rank's memory (bytes) and communication (bytes sent per outer step)."""

    recipe: str
    processes: int
    inner_shards: int
    replicas: int
    unrolls_per_rank: int
    mode: str
    steps: int
    span: int
    """Differentiated steps (``unroll.window`` in truncated mode)."""
    segment: int
    kept_steps: int
    """Final steps kept from the forward pass under ``unroll.memory_budget_mb`` (0 without a budget)."""
    stored_states: int
    network_floats: int
    memory_floats: int
    images_per_class: int
    inner_drawn: int
    """Recalled images drawn per inner step (the whole minibatch)."""
    inner_columns: int
    """Of those, the images this rank's network computes (the largest shard)."""
    outer_part: int
    real_batch: int
    step_graph_bytes: int
    """One inner step's graph at the recipe's minibatch (the largest augmentation op: ``step_graph_op``)."""
    step_graph_op: str
    step_graph_by_op: dict[str, int]
    """One inner step's graph for every augmentation op the recipe may draw."""
    outer_graph_bytes: int
    """One outer part's graph (the whole real batch's in full mode)."""
    recall_graph_bytes: int
    unroll_graph_bytes: int
    distinct_graph: dict[str, int]
    """The same graphs (step, outer, recall, unroll) counting every saved storage once (DistinctSavedMeter):
    what the device holds for them, and the figures in ``memory_terms``."""
    memory_terms: dict[str, int] = field(default_factory=dict)
    host_terms: dict[str, int] = field(default_factory=dict)
    comm_terms: dict[str, int] = field(default_factory=dict)
    comm_calls: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def device_bytes(self) -> int:
        return sum(self.memory_terms.values())

    @property
    def sent_bytes(self) -> int:
        return sum(self.comm_terms.values())

    @property
    def graph_bytes(self) -> int:
        """What SavedTensorMeter's peak over one meta-gradient should read: recall graph + unroll graph."""
        return self.recall_graph_bytes + self.unroll_graph_bytes

    @property
    def distinct_graph_bytes(self) -> int:
        """What DistinctSavedMeter's peak over one meta-gradient should read (at most: steps may share storages)."""
        return self.distinct_graph["recall"] + self.distinct_graph["unroll"]

    def as_dict(self) -> dict:
        return {**asdict(self), "device_bytes": self.device_bytes, "sent_bytes": self.sent_bytes,
                "graph_bytes": self.graph_bytes, "distinct_graph_bytes": self.distinct_graph_bytes}


def ring_sent(nbytes: int, ranks: int) -> int:
    """Bytes one rank sends in a ring all-reduce of ``nbytes`` over ``ranks`` ranks."""
    return 0 if ranks <= 1 else math.ceil(2 * nbytes * (ranks - 1) / ranks)


def unroll_graph_peak(*, mode: str, span: int, segment: int, kept: int, step: int, outer_part: int,
                      outer_whole: int) -> int:
    """The engine's peak of saved bytes (module docstring; rtp_scale.unroll.engine)."""
    if mode == "full":
        return span * step + outer_whole
    return max(kept * step + (outer_part if kept else 0), min(segment, span - kept) * step, outer_part)


def communication_calls(*, mode: str, steps: int, span: int, kept: int, inner_shards: int) -> int:
    """All-reduces of the inner gradient in one unroll: forward steps + recomputed steps + their backwards."""
    if inner_shards <= 1:
        return 0
    recomputed = 0 if mode == "full" else span - kept
    return steps + recomputed + span


def _kept_steps(policy: UnrollPolicy, *, steps: int, step: int, outer: int) -> int:
    """Final steps whose forward-pass graph ``unroll.memory_budget_mb`` keeps (0 without a budget): the engine's
    own rule, which also refuses a budget too small."""
    if not policy.memory_budget_mb or policy.mode != "segmented":
        return 0
    return policy.kept_steps(steps, per_step=step, outer=outer)


def make_plan(cfg: Config, *, processes: int | None = None, classes: int | None = None,
              recipe: str = "") -> Plan:
    """The plan of ``cfg`` on ``processes`` processes (default: ``dist.inner_shards``, one replica)."""
    if cfg.method.name != "rtp":
        raise UserError(f"the planner models method.name=rtp (its unroll engine), not {cfg.method.name!r}")
    shards = cfg.dist.inner_shards
    world = processes if processes is not None else shards
    replicas = check_grid(world, shards, cfg.dist.meta_batch)
    policy = unroll_policy(cfg)
    shape = data_shape(cfg, classes)
    net = build_net(cfg.model, channels=shape.channels, num_classes=shape.num_classes,
                    image_size=(shape.height, shape.width))
    r = images_per_class(cfg, shape)
    T = cfg.inner.steps
    span = policy.differentiated_steps(T)
    k = policy.segment_length(T)
    drawn = shape.num_classes * min(cfg.inner.batch_per_class, r)
    columns = max(shard_columns(drawn, s, shards).stop - shard_columns(drawn, s, shards).start
                  for s in range(shards))  # the busiest shard sets the peak
    real = cfg.data.real_per_class * shape.num_classes
    # what distill and the engine refuse, the plan refuses too
    check_batch_split(net, cfg.model.name, real_batch=real, outer_chunk=cfg.unroll.outer_chunk, inner_shards=shards)
    if policy.memory_budget_mb > 0 and shards > 1:
        raise UserError("an unroll memory budget cannot be combined with a sharded inner batch "
                        "(dist.inner_shards > 1): every shard must recompute the same steps")
    chunk = cfg.unroll.outer_chunk or real
    parts = [min(chunk, real - s) for s in range(0, real, chunk)]

    ops = [op for op in OPS if op in cfg.data.augment.split("_")] if cfg.data.augment != "none" else []
    memory_floats_fn, recall = measure_memory(cfg, shape)
    graphs: dict[str, dict] = {}
    for count in METERS:
        by_op = {op or "none": measure_inner_step(cfg, net, shape, op, count).at(columns, drawn)
                 for op in (ops or [None])}
        outer = measure_outer_part(net, shape, count)
        graphs[count] = dict(by_op=by_op, step=max(by_op.values()), outer_part=outer.at(parts[0]),
                             outer_whole=sum(outer.at(n) for n in parts), recall=recall[count].at(r))
    counted, distinct = graphs["counted"], graphs["distinct"]
    # the engine decides what to keep from its SavedTensorMeter counts
    kept = _kept_steps(policy, steps=T, step=counted["step"], outer=counted["outer_part"])
    for graph in graphs.values():
        graph["unroll"] = unroll_graph_peak(mode=policy.mode, span=span, segment=k, kept=kept, step=graph["step"],
                                            outer_part=graph["outer_part"], outer_whole=graph["outer_whole"])
    step_op = max(counted["by_op"], key=counted["by_op"].get)
    outer_key = "outer_whole" if policy.mode == "full" else "outer_part"
    P = sum(p.numel() for p in net.parameters())
    M = memory_floats_fn.at(r)
    stored = 0 if policy.mode == "full" else math.ceil((span - kept) / k)
    plan = Plan(recipe=recipe, processes=world, inner_shards=shards, replicas=replicas,
                unrolls_per_rank=cfg.dist.meta_batch // replicas, mode=policy.mode, steps=T, span=span, segment=k,
                kept_steps=kept, stored_states=stored, network_floats=P, memory_floats=M, images_per_class=r,
                inner_drawn=drawn, inner_columns=columns, outer_part=parts[0], real_batch=real,
                step_graph_bytes=counted["step"], step_graph_op=step_op, step_graph_by_op=counted["by_op"],
                outer_graph_bytes=counted[outer_key], recall_graph_bytes=counted["recall"],
                unroll_graph_bytes=counted["unroll"],
                distinct_graph={"step": distinct["step"], "outer": distinct[outer_key], "recall": distinct["recall"],
                                "unroll": distinct["unroll"]})

    state_bytes = stored * 2 * P * FLOAT_BYTES
    optimizer_states = {"adam": 2, "lamb": 2, "sgd": 1 if cfg.meta.momentum else 0}[cfg.meta.optimizer]
    recalled = shape.num_classes * r * shape.pixels * FLOAT_BYTES
    terms = plan.memory_terms
    terms["unroll graph (distinct saved storages)"] = distinct["unroll"]
    terms["recall graph (distinct saved storages)"] = distinct["recall"]
    if policy.offload:
        plan.host_terms["boundary states (theta, v), offloaded"] = state_bytes
    else:
        terms["boundary states (theta, v)"] = state_bytes
    # theta_0, the current (theta, v), the adjoints (a_theta, a_v) and the final theta
    terms["unroll state and adjoints (6 x params)"] = 6 * P * FLOAT_BYTES
    terms["recalled images + their gradient"] = 2 * recalled
    terms[f"memory params + grad + {cfg.meta.optimizer} state"] = (2 + optimizer_states) * M * FLOAT_BYTES
    if cfg.inner.learn_lr:
        terms["learned lrs + grad + Adam state"] = 4 * T * FLOAT_BYTES
    terms["real batch"] = real * (shape.pixels * FLOAT_BYTES + 8)
    if cfg.data.backend == "memory":
        if shape.images is None:
            plan.notes.append("the image folder's size is unknown here: its tensors (held on the device with "
                              "data.backend=memory) are not counted")
        else:
            terms["dataset tensors (train + test)"] = shape.images * (shape.pixels * FLOAT_BYTES + 8)

    comm, calls = plan.comm_terms, plan.comm_calls
    if world > 1:
        grad_floats = M + (T if cfg.inner.learn_lr else 0) + METRIC_KEYS
        calls["meta-gradient + metrics all-reduce (all processes)"] = 1
        comm["meta-gradient + metrics all-reduce (all processes)"] = ring_sent(grad_floats * FLOAT_BYTES, world)
        calls["preemption check all-reduce"] = 1
        comm["preemption check all-reduce"] = ring_sent(8, world)
    inner_calls = communication_calls(mode=policy.mode, steps=T, span=span, kept=kept, inner_shards=shards)
    if inner_calls:
        calls["inner-gradient all-reduces (shard group)"] = inner_calls * plan.unrolls_per_rank
        comm["inner-gradient all-reduces (shard group)"] = (
            inner_calls * plan.unrolls_per_rank * ring_sent(P * FLOAT_BYTES, shards))
        if policy.mode == "truncated":
            plan.notes.append("truncated unrolls run a random length in [window, T]: the forward all-reduces are "
                              "planned at T (the most)")
    if cfg.memory.query_mix > 0:
        plan.notes.append("memory.query_mix > 0 recalls mixed queries: their extra recall graph is not planned")
    if cfg.unroll.precision != "fp32":
        plan.notes.append(f"unroll.precision={cfg.unroll.precision}: graphs are measured in float32 (an upper bound)")
    return plan


# ------------------------------------------------------------------------------------------------------ measuring


@contextlib.contextmanager
def _recording_unrolls(results: list):
    """Record the UnrollResult of every unroll RtpMethod runs (it returns only metrics)."""
    original = rtp_method.unroll_meta_grad

    def recording(**kwargs):
        result = original(**kwargs)
        results.append(result)
        return result

    rtp_method.unroll_meta_grad = recording
    try:
        yield
    finally:
        rtp_method.unroll_meta_grad = original


def measure_step(cfg: Config, plan: Plan, classes: int | None = None) -> dict[str, int]:
    """Run one meta-gradient of rank 0's share (shard 0 of ``dist.inner_shards``, no all-reduce) on this CPU with
    random images of the recipe's shapes, once under each meter (the same draws); return both peaks and the stored
    boundary-state bytes. Under ``unroll.memory_budget_mb`` the distinct peak is left out (None): the engine's own
    SavedTensorMeter, nested inside, hides its step-0 measurement from the outer hooks."""
    shape = data_shape(cfg, classes)
    net = build_net(cfg.model, channels=shape.channels, num_classes=shape.num_classes,
                    image_size=(shape.height, shape.width))
    method = rtp_method.RtpMethod(cfg, net, Augmenter(cfg.data.augment))
    peaks: dict[str, int | None] = {}
    results: list = []
    for count, meter_type in METERS.items():
        generator = torch.Generator().manual_seed(MEASURE_SEED)
        memory = _memory_at(cfg, shape, plan.images_per_class)
        real_x = _random_images(plan.real_batch, shape, generator)
        real_y = torch.arange(plan.real_batch) % shape.num_classes
        lrs = torch.full((cfg.inner.steps,), cfg.inner.lr, requires_grad=cfg.inner.learn_lr)
        with _recording_unrolls(results), meter_type() as meter:
            method.meta_gradient(memory, real_x, real_y, lrs=lrs, generator=generator, shard=0,
                                 num_shards=cfg.dist.inner_shards)
        peaks[count] = meter.peak_bytes
    if plan.kept_steps or method.policy.memory_budget_mb:
        peaks["distinct"] = None
    result = results[0]
    return {"graph_bytes": peaks["counted"], "distinct_graph_bytes": peaks["distinct"],
            "stored_state_bytes": result.stored_states * 2 * plan.network_floats * FLOAT_BYTES,
            # what the engine measured itself under unroll.memory_budget_mb (0 otherwise)
            "engine_bytes_per_step": result.bytes_per_step,
            "kept_steps": result.kept_steps}


# ------------------------------------------------------------------------------------------------------ the CLI


def _mib(nbytes: int) -> str:
    """Bytes in the unit that keeps three significant figures readable (KiB, MiB or GiB)."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.2f} {unit}"
    return f"{nbytes / 2**10:,.2f} KiB"


def format_plan(plan: Plan, measured: dict[str, int] | None = None) -> str:
    lines = [f"{plan.recipe or 'defaults'}: {plan.processes} process(es) = {plan.replicas} replica(s) x "
             f"{plan.inner_shards} inner shard(s); {plan.mode} unroll T={plan.steps} (span {plan.span}, segment "
             f"{plan.segment}, kept {plan.kept_steps}); network {plan.network_floats:,} floats; memory "
             f"{plan.memory_floats:,} floats ({plan.images_per_class} images/class); inner step "
             f"{plan.inner_columns} of {plan.inner_drawn} images; real batch {plan.real_batch} in parts of "
             f"{plan.outer_part}",
             f"one inner step's graph {_mib(plan.step_graph_bytes)} saved, {_mib(plan.distinct_graph['step'])} "
             f"distinct (augmentation {plan.step_graph_op}); outer-loss graph {_mib(plan.outer_graph_bytes)} saved, "
             f"{_mib(plan.distinct_graph['outer'])} distinct; unroll + recall graphs "
             f"{_mib(plan.graph_bytes)} saved (SavedTensorMeter), {_mib(plan.distinct_graph_bytes)} distinct", ""]
    width = max(len(t) for t in [*plan.memory_terms, *plan.host_terms, *plan.comm_terms, "total"]) + 2
    lines.append(f"{'memory per rank':<{width}}{'bytes':>16}")
    for term, value in plan.memory_terms.items():
        lines.append(f"{term:<{width}}{_mib(value):>16}")
    lines.append(f"{'total (device)':<{width}}{_mib(plan.device_bytes):>16}")
    for term, value in plan.host_terms.items():
        lines.append(f"{term:<{width}}{_mib(value):>16}  (host)")
    lines += ["", f"{'sent per outer step and rank':<{width}}{'bytes':>16}  calls"]
    if not plan.comm_terms:
        lines.append("nothing (one process)")
    for term, value in plan.comm_terms.items():
        lines.append(f"{term:<{width}}{_mib(value):>16}  {plan.comm_calls[term]}")
    lines.append(f"{'total (sent)':<{width}}{_mib(plan.sent_bytes):>16}")
    if measured is not None:
        lines.append("")
        for what, predicted, key in (("graph peak (SavedTensorMeter)", plan.graph_bytes, "graph_bytes"),
                                     ("graph peak (distinct storages)", plan.distinct_graph_bytes,
                                      "distinct_graph_bytes"),
                                     ("stored boundary states", plan.stored_states * 2 * plan.network_floats
                                      * FLOAT_BYTES, "stored_state_bytes")):
            got = measured[key]
            if got is None:
                continue
            error = f"{(predicted - got) / got:+.1%}" if got else "n/a"
            lines.append(f"measured {what}: {_mib(got)}, predicted {_mib(predicted)} (error {error})")
        if measured["engine_bytes_per_step"]:
            lines.append(f"the engine measured one inner step's graph at {_mib(measured['engine_bytes_per_step'])} "
                         f"and kept {measured['kept_steps']} steps; predicted {_mib(plan.step_graph_bytes)} and "
                         f"{plan.kept_steps}")
    lines += [f"note: {note}" for note in plan.notes]
    return "\n".join(lines)


def build_parser() -> OneLineParser:
    parser = config_parser("python -m rtp_scale.bench plan", __doc__)
    parser.add_argument("--processes", type=int, default=None, metavar="N",
                        help="processes in the grid (default: dist.inner_shards, one replica)")
    parser.add_argument("--classes", type=int, default=None, metavar="N",
                        help="classes of an image-folder dataset that is not on this machine")
    parser.add_argument("--json", metavar="OUT", default=None, help="also write every term to OUT (JSON)")
    parser.add_argument("--measure", action="store_true",
                        help="run one meta-gradient of the recipe on this CPU and compare (small recipes only)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for flag, value in (("--processes", args.processes), ("--classes", args.classes)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be >= 1, got {value}")
    cfg = load_config(args.config, list(args.overrides))
    plan = make_plan(cfg, processes=args.processes, classes=args.classes, recipe=args.config or "")
    measured = measure_step(cfg, plan, args.classes) if args.measure else None
    print(format_plan(plan, measured))
    if args.json:
        out = {**plan.as_dict(), **({"measured": measured} if measured is not None else {})}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_cli(main)
