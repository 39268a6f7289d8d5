"""Continual learners under one fixed storage budget: what each keeps after seeing a task.

* :class:`CompressRecallLearner` — RtP's compress-then-recall: one addressable memory with addressing rows
  for every class of the stream. Task t trains only its own classes' rows (and the bases, unless frozen) with
  the RtP meta-gradient on the task's real data; later, recalling the one-hot queries of all seen classes
  gives the training set.
* :class:`PixelLearner` — per-task pixel distillation: ``floor(ipc)`` learned images per class, distilled
  with the same meta-gradient when the class's task arrives, never touched again.
* :class:`ReservoirLearner` — a replay buffer of ``floor(ipc * C)`` real images filled by reservoir
  sampling over the stream (algorithm R, explicit generator): a uniform sample of everything seen.

Budget: ``ipc`` images per class over ALL classes of the stream, i.e. ``ipc * C * D`` floats (labels are
implicit for every learner). Storage counts what a learner holds after each task: the bases plus the
addressing rows of the seen classes; the distilled images of the seen classes; the buffer's images.

Inner loop (``inner_scope``): by default ('seen') a task is distilled with the inner loop on the recalls of
every class seen so far, the old ones fixed, and the outer loss on the current task's real batch (the only
real data left). The new recalls are then learned in the company they will be trained with later, i.e. to
be told apart from the old classes too, not only from each other. 'task' uses the current task's recalls
only (cheaper: n_task * r instead of n_seen * r images per unroll); it measured as good or up to 5 points
worse in final accuracy on split digits and mnist5k (README, "Continual learning").
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtp_scale.builders import build_outer_optimizer
from rtp_scale.config import Config
from rtp_scale.continual.tasks import Task
from rtp_scale.data.augment import Augmenter
from rtp_scale.data.sampler import ClassBalancedSampler
from rtp_scale.errors import UserError
from rtp_scale.eval import build_net
from rtp_scale.memory import AddressableMemory, PixelMemory, addressable_images_per_class
from rtp_scale.memory.budget import StorageReport, storage_report
from rtp_scale.methods.rtp import RtpMethod
from rtp_scale.seeding import make_generator

LEARNERS = ("compress", "reservoir", "pixel")


class Diverged(UserError):
    """A task's meta-loss or meta-gradient stopped being finite."""


@dataclass(frozen=True)
class Budget:
    """The fixed total storage of a stream: ``ipc`` images per class of all ``num_classes`` classes."""

    ipc: float
    num_classes: int
    pixels_per_image: int

    @property
    def floats(self) -> int:
        return math.floor(self.ipc * self.num_classes * self.pixels_per_image + 1e-9)

    def report(self, floats: int) -> StorageReport:
        return storage_report(floats, num_classes=self.num_classes, pixels_per_image=self.pixels_per_image,
                              budget_ipc=self.ipc)


class TaskView:
    """A memory seen as the classes of one task: what :meth:`RtpMethod.meta_gradient` needs.

    ``meta['num_classes']`` is the task's class count (the layout of the unroll's class-balanced batches);
    ``num_classes`` and the labels stay in the stream's label space, so the inner network has one output per
    class of the stream and mixed queries may name any class.
    """

    def __init__(self, memory: nn.Module, classes: tuple[int, ...]):
        self.memory, self.classes = memory, tuple(classes)
        self.num_classes = memory.num_classes
        self.meta = {"num_classes": len(self.classes)}

    def _queries(self) -> Tensor:
        idx = torch.as_tensor(self.classes)
        dtype = next(self.memory.parameters()).dtype
        return F.one_hot(idx, self.num_classes).to(dtype)

    def class_images(self) -> tuple[Tensor, Tensor]:
        x_QR = self.memory.recall(self._queries())
        labels = torch.as_tensor(self.classes, device=x_QR.device).repeat_interleave(x_QR.shape[1])
        return x_QR.reshape(-1, *x_QR.shape[2:]), labels

    def recall(self, queries_QC: Tensor) -> Tensor:
        return self.memory.recall(queries_QC)

    def coefficient_l2(self) -> Tensor:
        addressing = getattr(self.memory, "addressing", None)
        if addressing is None:
            return self.memory.coefficient_l2()
        return addressing[torch.as_tensor(self.classes, device=addressing.device)].pow(2).mean()


INNER_SCOPES = ("task", "seen")


def _check_scope(scope: str) -> str:
    if scope not in INNER_SCOPES:
        raise UserError(f"unknown inner scope {scope!r}; choose from {', '.join(INNER_SCOPES)}")
    return scope


def _inner_classes(scope: str, seen: list[int], task: Task) -> tuple[int, ...]:
    return tuple(task.classes) if scope == "task" else tuple(seen) + tuple(task.classes)


def _task_subset(x: Tensor, y: Tensor, classes: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """(images, labels, position of each label in ``classes``) of the samples of ``classes``."""
    local = torch.full_like(y, -1)
    for i, c in enumerate(classes):
        local[y == c] = i
    keep = local >= 0
    return x[keep], y[keep], local[keep]


def _class_sample(x: Tensor, y: Tensor, classes: tuple[int, ...], per_class: int,
                  generator: torch.Generator) -> Tensor:
    """[len(classes), per_class, C, H, W] distinct random real images of each class (with replacement if few)."""
    x_task, _, local = _task_subset(x, y, classes)
    idx = ClassBalancedSampler(local.cpu(), len(classes), per_class).sample(generator)
    return x_task[idx.to(x.device)].reshape(len(classes), per_class, *x.shape[1:])


def distill_task(memory: nn.Module, rows: nn.Parameter, trainable: list[nn.Parameter], task: Task, x: Tensor,
                 y: Tensor, *, cfg: Config, seed: int, inner_classes: tuple[int, ...] | None = None,
                 progress=None) -> dict:
    """``cfg.meta.steps`` RtP outer steps on the task: real batches from its classes, inner loop on the recalls of
    ``inner_classes`` (default: the task's classes; with inner scope 'seen', every class seen so far).

    Only the task's rows of ``rows`` (the [C, ...] per-class parameter) learn: the other rows are restored after
    every step, so optimisers with weight decay or trust ratios cannot move them either.
    """
    info_shape = x.shape[1:]
    net = build_net(cfg.model, channels=info_shape[0], num_classes=memory.num_classes,
                    image_size=tuple(info_shape[1:])).to(x.device)
    method = RtpMethod(cfg, net, Augmenter(cfg.data.augment))
    view = TaskView(memory, tuple(inner_classes or task.classes))
    x_task, y_task, local = _task_subset(x, y, task.classes)
    sampler = ClassBalancedSampler(local.cpu(), len(task.classes), cfg.data.real_per_class)
    optimizer = build_outer_optimizer(cfg, trainable)
    lrs = torch.full((cfg.inner.steps,), cfg.inner.lr, device=x.device)
    mine = torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device)
    mine[list(task.classes)] = True
    others = rows.detach()[~mine].clone()
    losses = []
    for step in range(cfg.meta.steps):
        generator = make_generator(seed, "continual-unroll", task.index, step)
        optimizer.zero_grad(set_to_none=True)
        idx = sampler.sample(generator).to(x.device)
        metrics, _ = method.meta_gradient(view, x_task[idx], y_task[idx], lrs=lrs, generator=generator)
        limit = cfg.meta.grad_clip if cfg.meta.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, limit))
        if not (math.isfinite(metrics["meta/loss"]) and math.isfinite(grad_norm)):
            raise Diverged(f"task {task.index}: meta-loss became {metrics['meta/loss']} (grad norm {grad_norm}) "
                           f"at outer step {step}; lower meta.lr or inner.lr")
        optimizer.step()
        with torch.no_grad():
            rows[~mine] = others
        losses.append(metrics["meta/loss"])
        if progress is not None:
            progress(metrics)
    return {"meta_loss_first": losses[0] if losses else None, "meta_loss_last": losses[-1] if losses else None}


class CompressRecallLearner:
    """Compress each task into a shared addressable memory; recall all seen classes to retrain.

    Bases: ``cfg.memory.num_bases`` made from real images of the first task (its classes in turn), plus
    ``bases_per_task`` made from each later task's images. r (recalled images per class) is the largest that
    fits the budget with the final number of bases and every class's rows, so storage never exceeds it.
    A new class's rows start as least-squares projections of r of its real images onto the current bases.
    ``freeze_bases``: bases that existed before a task stay fixed during it (old recalls then never change).
    """

    name = "compress"

    def __init__(self, *, cfg: Config, budget: Budget, image_shape: tuple[int, int, int], num_tasks: int,
                 bases_per_task: int, freeze_bases: bool, seed: int, inner_scope: str = "seen"):
        mem = cfg.memory
        self.cfg, self.budget, self.seed = cfg, budget, seed
        self.inner_scope = _check_scope(inner_scope)
        self.image_shape, self.bases_per_task, self.freeze_bases = image_shape, bases_per_task, freeze_bases
        self.final_bases = mem.num_bases + bases_per_task * (num_tasks - 1)
        self.images_per_class = addressable_images_per_class(
            ipc=budget.ipc, num_classes=budget.num_classes, pixels_per_image=budget.pixels_per_image,
            num_bases=self.final_bases, downsample=mem.downsample)
        self.memory: AddressableMemory | None = None
        self.seen: list[int] = []

    def _base_images(self, task: Task, x: Tensor, y: Tensor, count: int, generator: torch.Generator) -> Tensor:
        per_class = -(-count // len(task.classes))
        imgs = _class_sample(x, y, task.classes, per_class, generator)  # [n, p, ...]
        return imgs.transpose(0, 1).reshape(-1, *x.shape[1:])[:count]  # classes in turn

    def learn(self, task: Task, x: Tensor, y: Tensor, *, progress=None) -> dict:
        generator = make_generator(self.seed, "continual-init", task.index)
        if self.memory is None:
            bases = self._base_images(task, x, y, self.cfg.memory.num_bases, generator).cpu()
            self.memory = AddressableMemory(
                num_classes=self.budget.num_classes, image_shape=self.image_shape,
                num_bases=self.cfg.memory.num_bases, images_per_class=self.images_per_class,
                downsample=self.cfg.memory.downsample, generator=generator, init_images_NCHW=bases).to(x.device)
            new_bases = self.cfg.memory.num_bases
        else:
            old = self.memory.num_bases
            if self.bases_per_task:
                self.memory.extend_bases(self._base_images(task, x, y, self.bases_per_task, generator))
            new_bases = self.memory.num_bases - old
        memory = self.memory
        memory.fit_rows(list(task.classes), _class_sample(x, y, task.classes, self.images_per_class, generator))
        old_count = memory.num_bases - new_bases
        train_bases = not self.freeze_bases or new_bases > 0
        trainable: list[nn.Parameter] = [memory.addressing] + ([memory.bases] if train_bases else [])
        frozen_bases = memory.bases.detach()[:old_count].clone() if self.freeze_bases else None
        hook = None
        if self.freeze_bases and new_bases and old_count:
            # only the bases this task added learn: the old ones get no gradient (and are restored below)
            hook = memory.bases.register_hook(lambda g: torch.cat([torch.zeros_like(g[:old_count]), g[old_count:]]))
        memory.bases.requires_grad_(train_bases)
        try:
            stats = distill_task(memory, memory.addressing, trainable, task, x, y, cfg=self.cfg, seed=self.seed,
                                 inner_classes=_inner_classes(self.inner_scope, self.seen, task), progress=progress)
        finally:
            memory.bases.requires_grad_(True)
            if hook is not None:
                hook.remove()
        if frozen_bases is not None:
            with torch.no_grad():
                memory.bases[:old_count] = frozen_bases
        self.seen += list(task.classes)
        return stats

    def training_set(self) -> tuple[Tensor, Tensor]:
        return _recalled_classes(self.memory, self.seen)

    def storage(self) -> StorageReport:
        return self.budget.report(self.memory.storage(stored_classes=len(self.seen)).floats)


def _recalled_classes(memory: nn.Module, classes: list[int]) -> tuple[Tensor, Tensor]:
    """The one-hot recalls of ``classes`` and their labels, detached: what the evaluation networks train on."""
    with torch.no_grad():
        x, y = TaskView(memory, tuple(classes)).class_images()
    return x.detach(), y


class PixelLearner:
    """Per-task pixel distillation: ``floor(ipc)`` images per class, distilled when their task arrives."""

    name = "pixel"

    def __init__(self, *, cfg: Config, budget: Budget, image_shape: tuple[int, int, int], seed: int,
                 inner_scope: str = "seen"):
        self.inner_scope = _check_scope(inner_scope)
        self.ipc = int(math.floor(budget.ipc + 1e-9))
        if self.ipc < 1:
            raise UserError(f"the pixel learner needs a budget of at least 1 image per class, got ipc={budget.ipc}")
        self.cfg, self.budget, self.seed = cfg, budget, seed
        self.memory = PixelMemory(num_classes=budget.num_classes, image_shape=image_shape,
                                  images_per_class=self.ipc, generator=make_generator(seed, "pixel-init"))
        self.seen: list[int] = []

    def learn(self, task: Task, x: Tensor, y: Tensor, *, progress=None) -> dict:
        self.memory = self.memory.to(x.device)
        generator = make_generator(self.seed, "continual-init", task.index)
        with torch.no_grad():  # start from random real images of the task's classes
            self.memory.images[list(task.classes)] = _class_sample(x, y, task.classes, self.ipc, generator)
        stats = distill_task(self.memory, self.memory.images, [self.memory.images], task, x, y, cfg=self.cfg,
                             seed=self.seed, inner_classes=_inner_classes(self.inner_scope, self.seen, task),
                             progress=progress)
        self.seen += list(task.classes)
        return stats

    def training_set(self) -> tuple[Tensor, Tensor]:
        return _recalled_classes(self.memory, self.seen)

    def storage(self) -> StorageReport:
        return self.budget.report(len(self.seen) * self.ipc * self.budget.pixels_per_image)


class ReservoirLearner:
    """A buffer of ``floor(ipc * C)`` real images: reservoir sampling (algorithm R) over the stream.

    Each task's training images arrive in an order drawn from (seed, 'reservoir-order', task); item n of the
    stream (0-based) enters a full buffer with probability M / (n + 1), replacing a uniform slot.
    """

    name = "reservoir"

    def __init__(self, *, budget: Budget, seed: int):
        self.budget, self.seed = budget, seed
        self.capacity = budget.floats // budget.pixels_per_image
        if self.capacity < 1:
            raise UserError(f"a budget of ipc={budget.ipc} holds no whole image")
        self.x: Tensor | None = None
        self.y: Tensor | None = None
        self.count = 0  # items seen so far
        self.filled = 0

    def learn(self, task: Task, x: Tensor, y: Tensor, *, progress=None) -> dict:
        started = time.perf_counter()
        mask = torch.isin(y, torch.as_tensor(task.classes, device=y.device))
        xs, ys = x[mask], y[mask]
        generator = make_generator(self.seed, "reservoir-order", task.index)
        order = torch.randperm(len(ys), generator=generator).tolist()
        u = torch.rand(len(ys), generator=generator).tolist()
        if self.x is None:
            self.x = x.new_zeros((self.capacity, *x.shape[1:]))
            self.y = y.new_zeros(self.capacity)
        M = self.capacity
        for item, ui in zip(order, u):
            if self.filled < M:
                slot = self.filled
                self.filled += 1
            else:
                slot = int(ui * (self.count + 1))  # uniform in [0, count]; kept iff < M
                slot = slot if slot < M else -1
            if slot >= 0:
                self.x[slot], self.y[slot] = xs[item], ys[item]
            self.count += 1
        return {"seconds": time.perf_counter() - started, "stream_items": self.count}

    def training_set(self) -> tuple[Tensor, Tensor]:
        return self.x[:self.filled], self.y[:self.filled]

    def storage(self) -> StorageReport:
        return self.budget.report(self.filled * self.budget.pixels_per_image)


def build_learner(name: str, *, cfg: Config, budget: Budget, image_shape: tuple[int, int, int], num_tasks: int,
                  bases_per_task: int, freeze_bases: bool, seed: int, inner_scope: str = "seen"):
    if name == "compress":
        return CompressRecallLearner(cfg=cfg, budget=budget, image_shape=image_shape, num_tasks=num_tasks,
                                     bases_per_task=bases_per_task, freeze_bases=freeze_bases, seed=seed,
                                     inner_scope=inner_scope)
    if name == "pixel":
        return PixelLearner(cfg=cfg, budget=budget, image_shape=image_shape, seed=seed, inner_scope=inner_scope)
    if name == "reservoir":
        return ReservoirLearner(budget=budget, seed=seed)
    raise UserError(f"unknown learner {name!r}; choose from {', '.join(LEARNERS)}")
