"""The field's evaluation protocol: train N fresh networks from scratch on a (synthetic) training set and
report test accuracy mean ± std over them.

Each network ``i`` draws its initialisation, shuffling and augmentation from generators derived from
(seed, "eval", i), so an evaluation is a pure function of its inputs and its seed.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from rtp_scale.config import EvalConfig, ModelConfig
from rtp_scale.data.augment import Augmenter
from rtp_scale.logging.progress import open_progress
from rtp_scale.models import build_configured, init_params, load_params_, uses_batch_statistics
from rtp_scale.seeding import make_generator


@dataclass(kw_only=True)
class EvalResult:
    """Accuracies (in %) of the fresh networks and their summary."""

    accuracies: list[float]
    mean: float
    std: float
    num_train: int
    epochs: int
    seconds: float
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_accuracies(cls, accuracies: list[float], **kw) -> "EvalResult":
        acc = torch.tensor(accuracies, dtype=torch.float64)
        std = float(acc.std(unbiased=False)) if len(accuracies) > 1 else 0.0
        return cls(accuracies=accuracies, mean=float(acc.mean()), std=std, **kw)

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.mean:.2f} ± {self.std:.2f} % over {len(self.accuracies)} nets"


def build_net(model_cfg: ModelConfig, *, channels: int, num_classes: int, image_size: tuple[int, int]) -> nn.Module:
    return build_configured(model_cfg, channels=channels, num_classes=num_classes, image_size=image_size)


def _lr_at(eval_cfg: EvalConfig, epoch: int, epochs: int) -> float:
    if eval_cfg.schedule == "step":
        return eval_cfg.lr * (0.1 if epoch >= epochs // 2 else 1.0)
    if eval_cfg.schedule == "cosine":
        return eval_cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
    return eval_cfg.lr


@torch.no_grad()
def accuracy(net: nn.Module, x_NCHW: torch.Tensor, y_N: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy in % of ``net`` (in eval mode) on a labelled set."""
    net.eval()
    correct = 0
    for start in range(0, len(y_N), batch_size):
        logits = net(x_NCHW[start:start + batch_size])
        correct += int((logits.argmax(1) == y_N[start:start + batch_size]).sum())
    return 100.0 * correct / max(len(y_N), 1)


def train_fresh_net(net: nn.Module, x_NCHW: torch.Tensor, targets: torch.Tensor, *, eval_cfg: EvalConfig,
                    epochs: int, augmenter: Augmenter, seed: int, index: int, on_step=None) -> nn.Module:
    """Train ``net`` from a fresh init (drawn from the derived generator) with SGD on ``(x, targets)``.

    ``targets`` are class indices [N] or soft label vectors [N, C] (learned labels, mixed queries).
    """
    device = x_NCHW.device
    load_params_(net, init_params(net, make_generator(seed, "eval-init", index)))
    net.to(device).train()
    shuffle_gen = make_generator(seed, "eval-shuffle", index)
    aug_gen = make_generator(seed, "eval-augment", index, device=device)
    opt = torch.optim.SGD(net.parameters(), lr=eval_cfg.lr, momentum=eval_cfg.momentum,
                          weight_decay=eval_cfg.weight_decay)
    n = len(x_NCHW)
    batch = min(eval_cfg.batch_size, n)
    # Batch norm couples the images of a minibatch, so only the whole minibatch gives its loss.
    piece = batch if uses_batch_statistics(net) else (eval_cfg.micro_batch or batch)
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = _lr_at(eval_cfg, epoch, epochs)
        order = torch.randperm(n, generator=shuffle_gen).to(device)
        # drop no sample: the last partial batch is trained on too
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            xb = x_NCHW[idx]
            if augmenter.enabled:
                xb = augmenter(xb, aug_gen)
            tb = targets[idx]
            opt.zero_grad(set_to_none=True)
            # The minibatch's mean loss as a sum over pieces, each back-propagated on its own: the same
            # gradient with one piece's activations alive at a time, which the CPU's caches hold.
            for lo in range(0, len(idx), piece):
                loss = F.cross_entropy(net(xb[lo:lo + piece]), tb[lo:lo + piece], reduction="sum") / len(idx)
                loss.backward()
            opt.step()
        if on_step is not None:
            on_step()
    return net


def simplex_targets(targets_NC: torch.Tensor) -> torch.Tensor:
    """Soft targets as cross-entropy needs them: negative entries clipped to 0, rows rescaled to sum 1.

    Learned labels can be regression targets with negative entries (FRePo's, which FRePo trains with MSE);
    cross-entropy against a negative target weight is unbounded below (it rewards driving that probability to
    0 without limit), which wrecks training. A row with no positive entry falls back to its argmax one-hot.
    Probability vectors (one-hot, mixed queries) are unchanged.
    """
    clipped = targets_NC.clamp(min=0)
    total = clipped.sum(dim=1, keepdim=True)
    one_hot = torch.nn.functional.one_hot(targets_NC.argmax(1), targets_NC.shape[1]).to(targets_NC)
    return torch.where(total > 0, clipped / total.clamp(min=torch.finfo(targets_NC.dtype).tiny), one_hot)


@torch.no_grad()
def memory_training_set(memory: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, targets) a memory's evaluation networks train on: its class images with int class labels, or
    with its soft label rows when the labels are learned (``memory.meta["learn_labels"]``).

    Distillation's own evaluation and ``python -m rtp_scale.evaluate`` both use this, so a saved artifact is
    trained on exactly what its run evaluated (one-hot rows as float targets would take another code path in
    cross-entropy and need not give the same bits).
    """
    x_NCHW, _ = memory.class_images()
    targets_NC = memory.targets()
    targets = targets_NC if memory.meta.get("learn_labels") else targets_NC.argmax(1)
    return x_NCHW.detach(), targets.detach()


def evaluate_synthetic(x_NCHW: torch.Tensor, targets: torch.Tensor, *, test_x: torch.Tensor, test_y: torch.Tensor,
                       num_classes: int, model_cfg: ModelConfig, eval_cfg: EvalConfig, augment_ops: str,
                       seed: int, epochs: int | None = None, progress: bool = False, desc: str = "eval",
                       train_sets=None) -> EvalResult:
    """Train ``eval_cfg.num_nets`` fresh networks on ``(x, targets)`` and test each on ``(test_x, test_y)``.

    ``train_sets(i) -> (x, targets)`` may give network ``i`` its own training set (the random-real
    baseline draws a new subset per network); otherwise all networks share ``(x, targets)``. Soft targets go
    through :func:`simplex_targets`.
    """
    epochs = epochs or eval_cfg.epochs
    if targets.is_floating_point():
        targets = simplex_targets(targets)
    augmenter = Augmenter(augment_ops)
    _, channels, height, width = x_NCHW.shape
    start = time.perf_counter()
    accuracies = []
    bar = open_progress(total=eval_cfg.num_nets * epochs, desc=desc, unit="epoch", enabled=progress, leave=False)
    for i in range(eval_cfg.num_nets):
        xs, ts = train_sets(i) if train_sets is not None else (x_NCHW, targets)
        net = build_net(model_cfg, channels=channels, num_classes=num_classes, image_size=(height, width))
        train_fresh_net(net, xs, ts, eval_cfg=eval_cfg, epochs=epochs, augmenter=augmenter, seed=seed, index=i,
                        on_step=bar.update)
        accuracies.append(accuracy(net, test_x, test_y))
        bar.set_postfix(last=f"{accuracies[-1]:.1f}%")
    bar.close()
    return EvalResult.from_accuracies(accuracies, num_train=len(x_NCHW), epochs=epochs,
                                      seconds=time.perf_counter() - start)
