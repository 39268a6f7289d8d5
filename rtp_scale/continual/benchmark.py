"""The class-incremental loop and its metrics.

For every seed and learner: for each task t, the learner stores the task under the fixed budget (storage is
reported and checked against the budget after every task), then ``eval.num_nets`` fresh networks (one output
per class of the stream) are trained from scratch on the learner's training set — recalls of all seen classes,
distilled images, or the buffer — and tested on the test images of every class seen so far.

Metrics (accuracies in %):

* ``acc[t]`` — accuracy on the test images of all classes seen after task t (mean over the networks);
* ``task_acc[t][j]`` — accuracy on task j's test images after task t (j <= t);
* average accuracy — mean of ``acc`` over tasks; final accuracy — ``acc[T-1]``;
* forgetting — mean over j < T-1 of ``max_{j <= i < T-1} task_acc[i][j] - task_acc[T-1][j]`` (Chaudhry et al.).

Networks after task t draw their initialisation and shuffling from (seed, 'continual-eval', t, i) for every
learner, so learners are compared on the same networks.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from rtp_scale.config import Config
from rtp_scale.continual.learners import Budget, build_learner
from rtp_scale.continual.tasks import Task, task_mask
from rtp_scale.data import SplitDataset
from rtp_scale.data.augment import Augmenter
from rtp_scale.eval import build_net
from rtp_scale.eval.protocol import train_fresh_net
from rtp_scale.logging.progress import open_progress
from rtp_scale.runtime import augment_ops
from rtp_scale.seeding import derive_seed


@dataclass(kw_only=True)
class BenchmarkOptions:
    """The continual-specific knobs (the rest — model, inner loop, outer optimiser, evaluation — is ``Config``)."""

    learners: tuple[str, ...] = ("compress", "reservoir", "pixel")
    seeds: tuple[int, ...] = (0,)
    bases_per_task: int = 0
    freeze_bases: bool = True
    inner_scope: str = "seen"


@torch.no_grad()
def _predict(net: torch.nn.Module, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    net.eval()
    return torch.cat([net(x[s:s + batch]).argmax(1) for s in range(0, len(x), batch)]) if len(x) else \
        torch.zeros(0, dtype=torch.int64, device=x.device)


def evaluate_seen(x: torch.Tensor, y: torch.Tensor, data: SplitDataset, seen: list[Task], *, cfg: Config,
                  seed: int) -> dict:
    """Train ``cfg.eval.num_nets`` fresh nets on (x, y); accuracy on all seen classes and per seen task."""
    info, t = data.info, seen[-1].index
    mask = task_mask(data.test_y, [c for task in seen for c in task.classes])
    test_x, test_y = data.test_x[mask], data.test_y[mask]
    augmenter = Augmenter(augment_ops(cfg.data.augment, cfg.eval.augment))
    overall, per_task = [], []
    for i in range(cfg.eval.num_nets):
        net = build_net(cfg.model, channels=info.channels, num_classes=info.num_classes,
                        image_size=(info.height, info.width))
        train_fresh_net(net, x, y, eval_cfg=cfg.eval, epochs=cfg.eval.epochs, augmenter=augmenter,
                        seed=derive_seed(seed, "continual-eval", t), index=i)
        correct = (_predict(net, test_x) == test_y)
        overall.append(100.0 * float(correct.float().mean()))
        per_task.append([100.0 * float(correct[task_mask(test_y, task.classes)].float().mean()) for task in seen])
    return {"acc": statistics.fmean(overall), "acc_nets": overall,
            "task_acc": [statistics.fmean(col) for col in zip(*per_task)]}


def forgetting(task_acc: list[list[float]]) -> float:
    """Mean over old tasks of (best accuracy before the last task) - (accuracy after the last task)."""
    T = len(task_acc)
    if T < 2:
        return 0.0
    drops = [max(task_acc[i][j] for i in range(j, T - 1)) - task_acc[T - 1][j] for j in range(T - 1)]
    return statistics.fmean(drops)


def run_one(name: str, data: SplitDataset, tasks: list[Task], *, cfg: Config, budget: Budget, seed: int,
            opts: BenchmarkOptions, bar=None) -> tuple[dict, object]:
    """One learner, one seed, the whole stream; returns (its record, the learner)."""
    learner = build_learner(name, cfg=cfg, budget=budget, image_shape=data.info.image_shape, num_tasks=len(tasks),
                            bases_per_task=opts.bases_per_task, freeze_bases=opts.freeze_bases, seed=seed,
                            inner_scope=opts.inner_scope)
    steps = []
    for task in tasks:
        tick = time.perf_counter()
        stats = learner.learn(task, data.train_x, data.train_y)
        learn_s = time.perf_counter() - tick
        storage = learner.storage()
        if storage.floats > budget.floats:  # a bug, not a user error: the accounting promises this never happens
            raise AssertionError(f"{name} stores {storage.floats} floats after task {task.index}, over the budget "
                                 f"of {budget.floats}")
        x, y = learner.training_set()
        tick = time.perf_counter()
        result = evaluate_seen(x, y, data, tasks[:task.index + 1], cfg=cfg, seed=seed)
        steps.append({"task": task.index, "classes": list(task.classes), "storage_floats": storage.floats,
                      "storage_ipc": storage.ipc_equivalent, "train_images": len(y), "learn_seconds": learn_s,
                      "eval_seconds": time.perf_counter() - tick, **stats, **result})
        if bar is not None:
            bar.set_postfix(learner=name, seed=seed, task=task.index, acc=f"{result['acc']:.1f}")
            bar.update(1)
    acc = [s["acc"] for s in steps]
    task_acc = [s["task_acc"] for s in steps]
    record = {"learner": name, "seed": seed, "tasks": steps, "acc": acc, "average_acc": statistics.fmean(acc),
              "final_acc": acc[-1], "forgetting": forgetting(task_acc)}
    return record, learner


def _mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "values": values}


def summarise(records: list[dict], learners: tuple[str, ...]) -> dict:
    """Per learner: mean ± std over seeds of acc after each task, average / final accuracy, forgetting."""
    out = {}
    for name in learners:
        mine = [r for r in records if r["learner"] == name]
        if not mine:
            continue
        out[name] = {"acc": [_mean_std(list(col)) for col in zip(*(r["acc"] for r in mine))],
                     "average_acc": _mean_std([r["average_acc"] for r in mine]),
                     "final_acc": _mean_std([r["final_acc"] for r in mine]),
                     "forgetting": _mean_std([r["forgetting"] for r in mine]),
                     "storage_ipc": [s["storage_ipc"] for s in mine[0]["tasks"]],
                     "train_images": [s["train_images"] for s in mine[0]["tasks"]],
                     "seconds": sum(s["learn_seconds"] + s["eval_seconds"] for r in mine for s in r["tasks"])}
    return out


def run_benchmark(data: SplitDataset, tasks: list[Task], *, cfg: Config, opts: BenchmarkOptions,
                  progress: bool = False, on_learner=None) -> dict:
    """Every learner on every seed; ``on_learner(name, seed, learner)`` sees each finished learner."""
    budget = Budget(ipc=cfg.memory.ipc, num_classes=data.info.num_classes, pixels_per_image=data.info.pixels_per_image)
    for name in opts.learners:  # impossible budgets are user errors, reported before any work starts
        build_learner(name, cfg=cfg, budget=budget, image_shape=data.info.image_shape, num_tasks=len(tasks),
                      bases_per_task=opts.bases_per_task, freeze_bases=opts.freeze_bases, seed=0,
                      inner_scope=opts.inner_scope)
    records = []
    bar = open_progress(total=len(opts.seeds) * len(opts.learners) * len(tasks), desc="continual", unit="task",
                        enabled=progress)
    for seed in opts.seeds:
        for name in opts.learners:
            record, learner = run_one(name, data, tasks, cfg=cfg, budget=budget, seed=seed, opts=opts, bar=bar)
            records.append(record)
            if on_learner is not None:
                on_learner(name, seed, learner)
    bar.close()
    return {"budget": {"ipc": budget.ipc, "floats": budget.floats, "num_classes": budget.num_classes,
                       "pixels_per_image": budget.pixels_per_image},
            "tasks": [{"index": t.index, "classes": list(t.classes), "name": t.name} for t in tasks],
            "records": records, "summary": summarise(records, opts.learners)}
