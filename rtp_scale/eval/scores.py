"""Scores of a distilled set that soft labels and augmentation cannot inflate (after DD-Ranking, Li et al. 2025).

Soft labels and augmentation raise the accuracy of *random* real subsets too, so a raw accuracy flatters the
methods that use them. Beside the accuracy, :func:`score_distilled` therefore reports the gain over random real
images of the same storage, trained under the same protocol, with and without augmentation, and, for learned
labels, the accuracy with hard labels. All numbers are test accuracies in % (gains in percentage points), each
``{"mean", "std"}`` over the ``eval.num_nets`` networks:

``acc``
    A(S, Y; aug): networks trained on the distilled images S with their labels Y (learned rows, or hard class
    labels) and the protocol's augmentation ``aug`` (``eval.augment``, 'same' = ``data.augment``).
``random_acc``
    A(R_k, hard; aug): the same protocol on k random real images per class with their hard labels. Network i
    trains on its own subset, drawn from the generator (run.seed, "random-real", i) -- the same subsets as
    ``python -m rtp_scale.evaluate --baseline random --ipc k``.
``gain_over_random``
    acc - random_acc. Network i of both sets starts from the same initialisation (seed, "eval-init", i), so
    the std is that of the per-network differences acc_i - random_acc_i.
``acc_no_aug``, ``random_acc_no_aug``, ``gain_over_random_no_aug``
    The same three with augmentation 'none'. When ``aug`` already is 'none' they are the runs above (the same
    function of the same inputs), not trained again.
``hard_label_acc``, ``hard_label_gain_over_random`` (learned labels only)
    A(S, argmax Y; aug), and hard_label_acc - random_acc: what the images are worth without their learned labels.

Same storage: k is the nearest whole number of images per class to the set's ``ipc_equivalent`` (stored floats
/ (classes x values per image), learned labels included), and at least 1. Not the floor: addressable memories
fill their budget from below (0.99 IPC at a budget of 1, 9.99 at 10) and the floor would give the baseline 0 or 9
images. Not the ceiling: learned labels put a pixel memory slightly above a whole IPC (MNIST, IPC 1: 1.013) and
the ceiling would double the baseline. Storage below half an image per class still gets k = 1, because a
random subset that leaves some classes out cannot predict them at all; the baseline then holds more storage than
the set (``random_baseline.storage_ratio`` > 1), which can only understate the set's gain. The random images are
counted as pixels only (their hard labels are implicit in the class-major layout).

Cost: every random baseline costs as much as the set's own evaluation (same epochs, same networks); with
augmentation on, the no-augmentation pair doubles that again, and learned labels add one more run.
"""
from __future__ import annotations

import math

import torch

from rtp_scale.config import EvalConfig, ModelConfig
from rtp_scale.data.sources import RealSource
from rtp_scale.eval.baselines import random_real
from rtp_scale.eval.protocol import EvalResult, evaluate_synthetic

NO_AUGMENT = "none"


def random_baseline_ipc(ipc_equivalent: float) -> int:
    """Images per class of the random subset that matches a storage of ``ipc_equivalent`` (see module doc)."""
    if not ipc_equivalent > 0 or not math.isfinite(ipc_equivalent):
        raise ValueError(f"ipc_equivalent must be a positive number, got {ipc_equivalent}")
    return max(1, math.floor(ipc_equivalent + 0.5))


def _summary(result: EvalResult) -> dict[str, float]:
    return {"mean": result.mean, "std": result.std}


def paired_gain(ours: EvalResult, random: EvalResult) -> dict[str, float]:
    """Mean and std of the per-network differences (network i of both runs shares its initialisation)."""
    diffs = torch.tensor(ours.accuracies, dtype=torch.float64) - torch.tensor(random.accuracies, dtype=torch.float64)
    std = float(diffs.std(unbiased=False)) if len(diffs) > 1 else 0.0
    return {"mean": float(diffs.mean()), "std": std}


def _no_augment(ops: str) -> bool:
    return ops in ("", NO_AUGMENT)


def score_distilled(x_NCHW: torch.Tensor, targets: torch.Tensor, *, source: RealSource, storage: dict,
                    model_cfg: ModelConfig, eval_cfg: EvalConfig, augment_ops: str, seed: int,
                    distilled: EvalResult | None = None, progress: bool = False) -> dict:
    """The scores of the module doc for the set ``(x, targets)`` of ``storage`` (a ``StorageReport.as_dict()``).

    ``targets`` are int class labels [N] or learned label rows [N, C] (as
    :func:`~rtp_scale.eval.protocol.memory_training_set` gives them); ``distilled`` is the set's own evaluation
    under ``augment_ops`` when the caller already has it (it is then not trained again). Random subsets come
    from ``source`` and are tested on its test split, like the set.
    """
    test_x, test_y = source.eval_tensors("test")
    info = source.info
    common = dict(model_cfg=model_cfg, eval_cfg=eval_cfg, seed=seed, progress=progress)

    def train_set(set_targets: torch.Tensor, ops: str, desc: str) -> EvalResult:
        return evaluate_synthetic(x_NCHW, set_targets, test_x=test_x, test_y=test_y, num_classes=info.num_classes,
                                  augment_ops=ops, desc=desc, **common)

    ipc = random_baseline_ipc(float(storage["ipc_equivalent"]))
    random_floats = ipc * info.num_classes * info.channels * info.height * info.width
    trained: list[EvalResult] = []  # the runs trained here, for the cost report

    def fresh(result: EvalResult) -> EvalResult:
        trained.append(result)
        return result

    runs: dict[str, EvalResult] = {}
    runs["distilled"] = distilled if distilled is not None else fresh(train_set(targets, augment_ops, "distilled"))
    runs["random"] = fresh(random_real(source, ipc=ipc, augment_ops=augment_ops, **common))
    if _no_augment(augment_ops):
        runs["distilled_no_aug"], runs["random_no_aug"] = runs["distilled"], runs["random"]
    else:
        runs["distilled_no_aug"] = fresh(train_set(targets, NO_AUGMENT, "distilled, no aug"))
        runs["random_no_aug"] = fresh(random_real(source, ipc=ipc, augment_ops=NO_AUGMENT, **common))
    scores = {
        "acc": _summary(runs["distilled"]), "random_acc": _summary(runs["random"]),
        "gain_over_random": paired_gain(runs["distilled"], runs["random"]),
        "acc_no_aug": _summary(runs["distilled_no_aug"]), "random_acc_no_aug": _summary(runs["random_no_aug"]),
        "gain_over_random_no_aug": paired_gain(runs["distilled_no_aug"], runs["random_no_aug"]),
    }
    if targets.is_floating_point():
        runs["hard_label"] = fresh(train_set(targets.argmax(1), augment_ops, "distilled, hard labels"))
        scores["hard_label_acc"] = _summary(runs["hard_label"])
        scores["hard_label_gain_over_random"] = paired_gain(runs["hard_label"], runs["random"])
    return {
        "augment": augment_ops or NO_AUGMENT,
        "random_baseline": {"ipc": ipc, "floats": random_floats, "labels": "hard",
                            "storage_ratio": random_floats / float(storage["floats"])},
        "scores": scores,
        "runs": {name: result.as_dict() for name, result in runs.items()},
        "seconds": sum(result.seconds for result in trained),
    }
