"""Class-incremental benchmark: compress-then-recall (RtP memories) vs reservoir replay vs per-task pixel
distillation, all under one fixed storage budget.

    python -m rtp_scale.continual --dataset mnist5k --tasks 5 --seeds 0 1 --out runs/continual/mnist5k
    python -m rtp_scale.continual --dataset digits --tasks 5 --seeds 0 1 2
    python -m rtp_scale.continual --dataset cifar10 --tasks 5 --set data.root=/data      # split CIFAR-10
    python -m rtp_scale.continual --dataset cifar100 --tasks 10 --set data.root=/data    # split CIFAR-100
    python -m rtp_scale.continual --dataset mnist,fashion_mnist,svhn,cifar10 --tasks 1 --set data.root=/data

A comma-separated --dataset is a multi-dataset sequence (in the spirit of RtP's MANY benchmark): one label
space, images resized to one resolution (--resolution, default the largest), each dataset split into --tasks
tasks. Per task each learner stores the task (distills it into the memory / into pixels, or streams it
through the reservoir); then fresh networks are trained on what the learner holds for all tasks seen so far
and tested on all seen classes. The storage budget is ``memory.ipc`` images per class over ALL classes.

Knobs: the continual ones are flags; everything else is the usual config tree (``--config RECIPE``,
``--set section.key=value``): ``memory.ipc`` (budget), ``memory.num_bases`` / ``memory.downsample``,
``meta.steps`` (outer steps per task), ``inner.*``, ``model.*``, ``eval.*`` (networks per evaluation,
epochs), ``memory.query_mix``. CPU-sized defaults for the dataset (DEFAULTS below) sit under the recipe and
--set. One process; ``run.device=auto`` uses a GPU when there is one (no multi-process / Slurm launcher).

Hardware and expected results (README, "Continual learning"): split mnist5k, 2 seeds, all three learners: 16 min on a
loaded 2-core CPU, final accuracy 74.6 (compress) / 43.5 (reservoir) / 59.8 (pixel) %; split digits,
3 seeds: 5 min, 72.8 / 60.6 / 80.9 %.

Outputs in --out: results.json (per seed and learner: accuracy after each task, per-task accuracies, storage
after each task, times; summary mean ± std over seeds; written last, only on success), results.md (table),
accuracy.png, and memory_seed<S>.safetensors (the compress learner's final memory, for rtp_scale.recall).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

from rtp_scale.cli import OneLineParser
from rtp_scale.config import build_config, read_recipe
from rtp_scale.continual.benchmark import BenchmarkOptions, run_benchmark
from rtp_scale.continual.learners import LEARNERS
from rtp_scale.continual.report import markdown_table, write_results
from rtp_scale.continual.tasks import load_stream, make_tasks
from rtp_scale.data.zca import ZCA
from rtp_scale.errors import UserError, run_cli
from rtp_scale.memory.artifact import save_artifact
from rtp_scale.runtime import resolve_device

# CPU-sized defaults (below a recipe and --set). One outer step trains on a real batch of 32 images per class
# of the task and unrolls 10 inner steps from a fresh network.
_COMMON = {
    "data": {"real_per_class": 32},
    "memory": {"ipc": 1.0, "num_bases": 16, "downsample": 2},
    "inner": {"steps": 10, "lr": 0.01, "momentum": 0.9, "batch_per_class": 10},
    "unroll": {"mode": "full"},
    "meta": {"steps": 50, "optimizer": "sgd", "lr": 0.1, "momentum": 0.5, "grad_clip": 2.0},
    "eval": {"num_nets": 3, "epochs": 100, "lr": 0.01, "schedule": "step"},
    "log": {"progress": True, "tensorboard": False, "image_every": 0},
}
# digits: a full-resolution 8x8 base costs as much as an image, so its default budget is 2 images per class
# (10 bases, 2 per task, and 6 recalls per class); see README, "Continual learning".
DEFAULTS = {
    "digits": {"model": {"width": 32, "depth": 2}, "memory": {"ipc": 2.0, "num_bases": 2, "downsample": 1},
               "eval": {"epochs": 200, "num_nets": 2}, "meta": {"steps": 30, "optimizer": "adam", "lr": 0.01}},
    "mnist5k": {"model": {"width": 16, "depth": 3}, "memory": {"num_bases": 4}},
    "mnist": {"model": {"width": 32, "depth": 3}},
    "fashion_mnist": {"model": {"width": 32, "depth": 3}},
}
_DEFAULT_MODEL = {"model": {"width": 64, "depth": 3}}
# --bases-per-task when not given: every task brings bases made from its own images (K = 16 at the end on mnist5k)
DEFAULT_BASES_PER_TASK = {"digits": 2, "mnist5k": 3}


def _merge(*tables: dict) -> dict:
    out: dict = {}
    for table in tables:
        for section, values in table.items():
            out.setdefault(section, {}).update(values)
    return out


def _parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m rtp_scale.continual", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist5k", help="registered dataset, or several joined by commas")
    parser.add_argument("--tasks", type=int, default=None,
                        help="tasks per dataset (default: 5 for one dataset, 1 per dataset for a sequence)")
    parser.add_argument("--learners", nargs="+", choices=LEARNERS, default=list(LEARNERS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="run seeds (results: mean ± std)")
    parser.add_argument("--ipc", type=float, help="storage budget in images per class of all classes (memory.ipc)")
    parser.add_argument("--steps", type=int, help="outer distillation steps per task (meta.steps)")
    parser.add_argument("--bases-per-task", type=int, default=None,
                        help="bases added from each later task's real images (memory.num_bases are made at task 1; "
                             "default: 3 on mnist5k, 2 on digits, else 0)")
    parser.add_argument("--no-freeze-bases", dest="freeze_bases", action="store_false",
                        help="let every task train all bases (old recalls then drift); default: bases are frozen "
                             "after the task that made them")
    parser.add_argument("--inner-scope", choices=("task", "seen"), default="seen",
                        help="inner loop of a task's distillation on the recalls of every class seen so far (seen, "
                             "the default) or on the task's own recalls only (task); the real batch is always the "
                             "current task's")
    parser.add_argument("--class-order", choices=("natural", "random"), default="natural")
    parser.add_argument("--resolution", type=int, help="image side of a multi-dataset sequence")
    parser.add_argument("--out", metavar="DIR", default=None, help="output folder (default runs/continual/<dataset>)")
    parser.add_argument("--config", metavar="RECIPE", help="TOML recipe with the usual sections")
    parser.add_argument("--set", dest="overrides", metavar="SECTION.KEY=VALUE", nargs="+", action="extend",
                        default=[], help="override config keys, e.g. --set eval.num_nets=5 inner.steps=20")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    names = [n.strip() for n in args.dataset.split(",") if n.strip()]
    if not names:
        raise UserError("--dataset is empty")
    tasks_per = args.tasks if args.tasks is not None else (5 if len(names) == 1 else 1)
    if tasks_per < 1:
        raise UserError(f"--tasks must be >= 1, got {tasks_per}")
    if args.bases_per_task is None:
        args.bases_per_task = DEFAULT_BASES_PER_TASK.get(names[0], 0) if len(names) == 1 else 0
    if args.bases_per_task < 0:
        raise UserError(f"--bases-per-task must be >= 0, got {args.bases_per_task}")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise UserError(f"--seeds must be distinct non-negative integers, got {args.seeds}")
    defaults = _merge(_COMMON, DEFAULTS.get(names[0], _DEFAULT_MODEL) if len(names) == 1 else _DEFAULT_MODEL,
                      {"data": {"name": names[0]}})
    recipe = _merge(defaults, read_recipe(args.config) if args.config else {})
    flags = ([f"memory.ipc={args.ipc}"] if args.ipc is not None else []) + \
        ([f"meta.steps={args.steps}"] if args.steps is not None else [])
    cfg = build_config(recipe, flags + list(args.overrides), origin=args.config or "defaults")
    if cfg.method.name != "rtp":
        raise UserError(f"the continual learners distill with method.name=rtp, not {cfg.method.name!r}")
    if cfg.memory.learn_labels:
        raise UserError("memory.learn_labels is not used by the continual learners")
    out = Path(args.out or f"runs/continual/{'+'.join(names)}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").unlink(missing_ok=True)  # a results file always means this run finished

    started = time.perf_counter()
    device = resolve_device(cfg.run.device)
    data, groups = load_stream(names, root=cfg.data.root or None, download=cfg.data.download,
                               resolution=args.resolution or cfg.data.resolution or None)
    if cfg.data.zca:
        zca = ZCA.fit(data.train_x, reg=cfg.data.zca_reg)
        data.train_x, data.test_x = zca.apply(data.train_x), zca.apply(data.test_x)
    data = data.to(device)
    tasks = make_tasks(data, tasks_per_group=tasks_per, order=args.class_order, seed=cfg.run.seed, groups=groups)
    opts = BenchmarkOptions(learners=tuple(dict.fromkeys(args.learners)), seeds=tuple(args.seeds),
                            bases_per_task=args.bases_per_task, freeze_bases=args.freeze_bases,
                            inner_scope=args.inner_scope)
    info = data.info
    meta = {"dataset": info.name, "class_names": list(info.class_names), "mean": list(info.mean),
            "std": list(info.std), "zca": cfg.data.zca, "budget_ipc": cfg.memory.ipc}

    def keep_memory(name: str, seed: int, learner) -> None:
        if name == "compress":
            save_artifact(out / f"memory_seed{seed}.safetensors", learner.memory.cpu(), dataset_meta=meta)

    results = run_benchmark(data, tasks, cfg=cfg, opts=opts, progress=cfg.log.progress, on_learner=keep_memory)
    results.update({"dataset": info.name, "command": shlex.join(["python", "-m", "rtp_scale.continual", *argv]),
                    "options": vars(opts), "class_order": args.class_order, "device": str(device),
                    "total_seconds": time.perf_counter() - started, "threads": torch.get_num_threads(),
                    "config": cfg.to_dict()})
    write_results(out, results)
    print(markdown_table(results), end="")
    print(f"wrote {out}/results.json, results.md, accuracy.png ({results['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    run_cli(main)
