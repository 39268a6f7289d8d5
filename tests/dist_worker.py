"""Worker of tests/test_distributed.py, started as ``torchrun --standalone --nproc_per_node N tests/dist_worker.py OUT``.

One launch computes several one-outer-step meta-gradients and saves them to ``OUT/rank<r>.pt`` (a process
start costs 7-10 s on 2 cores, so the checks share it). Each case runs the step exactly as
``rtp_scale.distill.run`` does (unroll ``j`` seeded by (seed, step, j), ``scale = ctx.grad_scale``,
``reduce_grad = ctx.reduce_grad``, one ``ctx.sum_grads_``), once on the real process grid and once with a
1-process context (every rank computes the whole meta-batch alone: the reference).
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtp_scale.builders import build_inner_lrs, build_run_memory  # noqa: E402
from rtp_scale.config import build_config  # noqa: E402
from rtp_scale.data.augment import Augmenter  # noqa: E402
from rtp_scale.data.sources import MemorySource  # noqa: E402
from rtp_scale.distributed import RankContext, setup_ranks  # noqa: E402
from rtp_scale.errors import run_cli  # noqa: E402
from rtp_scale.eval import build_net  # noqa: E402
from rtp_scale.meta_step import reduced_meta_gradient  # noqa: E402
from rtp_scale.methods import build_method  # noqa: E402
from rtp_scale.runtime import prepare_data  # noqa: E402

from tests.conftest import TINY  # noqa: E402

# (name, overrides, float64?): every case is computed on the grid and on one process
CASES = [
    ("meta_batch", ["dist.meta_batch=2", "dist.inner_shards=1"], False),
    ("meta_batch_f64", ["dist.meta_batch=2", "dist.inner_shards=1"], True),
    ("inner", ["dist.meta_batch=1", "dist.inner_shards=2"], False),
    ("inner_f64", ["dist.meta_batch=1", "dist.inner_shards=2"], True),
    # full unroll mode and augmentation: the reducer sits inside one big graph
    ("inner_full_aug_f64", ["dist.meta_batch=1", "dist.inner_shards=2", "unroll.mode=full",
                            "data.augment=flip_crop"], True),
    # learned per-step lrs (DD): their gradient goes through the same 1/inner_shards scaling
    ("inner_dd_f64", ["dist.meta_batch=1", "dist.inner_shards=2", "method.name=dd", "inner.steps=4"], True),
    # both axes' bookkeeping on one replica: two unrolls per rank, each split over the two shards
    ("inner_two_unrolls", ["dist.meta_batch=2", "dist.inner_shards=2", "inner.batch_per_class=3"], False),
]
CASES_4 = [  # a 2 x 2 grid (4 processes): two replicas, each an unroll split over two shards
    ("grid_f64", ["dist.meta_batch=2", "dist.inner_shards=2"], True),
]


def step_gradients(cfg, ctx: RankContext, *, float64: bool, step: int = 0) -> dict:
    """One outer step's reduced meta-gradient (memory + learned lrs) and metrics, as distill.run computes it."""
    device = ctx.device
    data = prepare_data(cfg.data, device)
    if float64:
        data.train_x = data.train_x.double()
    memory = build_run_memory(cfg, data)
    if float64:
        memory = memory.double()
    lrs, lr_optimizer = build_inner_lrs(cfg, device)
    if float64:
        lrs = lrs.detach().double().requires_grad_(lr_optimizer is not None)
    info = data.info
    net = build_net(cfg.model, channels=info.channels, num_classes=info.num_classes,
                    image_size=(info.height, info.width)).to(device)
    method = build_method(cfg, net, Augmenter(cfg.data.augment))
    source = MemorySource(data, per_class=cfg.data.real_per_class)
    params = [p for p in memory.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.zeros_like(p)
    metrics, lr_grad = reduced_meta_gradient(cfg, ctx, method, memory, params, source.sample, step=step, lrs=lrs,
                                             learn_lrs=lr_optimizer is not None)
    names = [n for n, p in memory.named_parameters() if p.requires_grad]
    out = {n: p.grad.detach().clone() for n, p in zip(names, params)}
    if lr_optimizer is not None:
        out["lrs"] = lr_grad.detach().clone()
    return {"grads": out, "metrics": metrics}


def main() -> None:
    out, mode = Path(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else "pairs")
    if mode == "fail":
        # rank 1 fails while rank 0 waits in the step's all-reduce: the launch must end non-zero, not hang
        cfg = build_config(None, [*TINY, "run.out_dir=/nonexistent", "dist.meta_batch=2"])
        ctx = setup_ranks(cfg, torch.device("cpu"))
        if ctx.rank == 1:
            (out / "failed_at").write_text(repr(time.time()))  # the test times the launch's exit from here
            raise RuntimeError("injected failure on rank 1")
        ctx.sum_grads_([torch.ones(3)], {"meta/loss": 1.0})
        raise AssertionError("rank 0 completed an all-reduce that rank 1 never joined")
    if mode == "exit":
        # a thread still inside a torch op (GIL released) when the process ends, like the gloo threads that
        # outlive destroy_process_group: the interpreter's teardown would abort this rank after its work is done
        cfg = build_config(None, [*TINY, "run.out_dir=/nonexistent", "dist.meta_batch=2"])
        ctx = setup_ranks(cfg, torch.device("cpu"))
        product = torch.randn(1500, 1500)
        threading.Thread(target=lambda: [product @ product for _ in iter(int, 1)], daemon=True).start()
        time.sleep(0.5)

        def finished(argv):
            print(f"rank {ctx.rank} finished its work", end="")  # no newline: reaches the log only if flushed
            return 0

        run_cli(finished)
    results: dict = {}
    ctx = None
    for name, overrides, float64 in (CASES_4 if mode == "grid" else CASES):
        cfg = build_config(None, [*TINY, "run.out_dir=/nonexistent", *overrides])
        ctx = setup_ranks(cfg, torch.device("cpu"))
        alone = RankContext(rank=0, world_size=1, device=ctx.device, inner_shards=1)
        results[name] = {"grid": step_gradients(cfg, ctx, float64=float64),
                         "alone": step_gradients(cfg, alone, float64=float64),
                         "replica": ctx.replica, "shard": ctx.shard}
    results["world_size"] = ctx.world_size
    torch.save(results, out / f"rank{ctx.rank}.pt")


if __name__ == "__main__":
    main()
