"""Distill a dataset into a small learned synthetic set (default: RtP addressable memories).

Local, one process (the default: RtP on mnist5k at a 1-IPC storage budget, minutes on a CPU):

    python -m rtp_scale.distill
    python -m rtp_scale.distill --config configs/mnist5k_rtp_ipc10.toml --set run.out_dir=runs/ipc10

Multi-process with Accelerate (GPUs; on a CPU-only machine add ACCELERATE_USE_CPU=1, see README):

    accelerate launch --config_file configs/accelerate/1gpu.yaml -m rtp_scale.distill --config RECIPE

Slurm sweeps: ``python -m launch.sweep`` (see README). Outputs in ``run.out_dir``: ``config.json``,
``checkpoint.pt`` (resumed automatically), ``tb/`` (TensorBoard), ``metrics.jsonl``,
``memory.safetensors`` and, only when everything succeeded, ``results.json``.
"""
from __future__ import annotations

import json
import math
import resource
import time
from pathlib import Path

import torch

from rtp_scale.builders import build_inner_lrs, build_outer_optimizer, build_run_memory, outer_lr
from rtp_scale.checkpoint import TrainingState, load_checkpoint, save_checkpoint
from rtp_scale.cli import config_from_args, config_parser
from rtp_scale.config import Config
from rtp_scale.data.augment import Augmenter
from rtp_scale.data.sources import RealSource, make_real_source
from rtp_scale.distributed import RankContext, prepare_outer_optimizer, setup_ranks
from rtp_scale.errors import UserError, run_cli
from rtp_scale.eval import build_net, evaluate_synthetic
from rtp_scale.logging import open_writer
from rtp_scale.memory.artifact import save_artifact
from rtp_scale.meta_step import reduced_meta_gradient
from rtp_scale.methods import build_method
from rtp_scale.runtime import augment_ops, prepare_data, resolve_device


class Diverged(UserError):
    """The meta-loss or meta-gradient stopped being finite."""


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _identity(cfg: Config) -> dict:
    """Config fields a resumed run must share with the checkpoint's run (shapes and the random stream)."""
    return {"data": cfg.data.name, "seed": cfg.run.seed, "method": cfg.method.name, "memory": {
        k: v for k, v in vars(cfg.memory).items() if k != "coeff_l2"}, "inner_steps": cfg.inner.steps,
        "learn_lr": cfg.inner.learn_lr, "optimizer": cfg.meta.optimizer}


def _evaluate(memory, test: tuple[torch.Tensor, torch.Tensor], cfg: Config, info, *, progress: bool, desc: str):
    with torch.no_grad():
        x, _ = memory.class_images()
        targets = memory.targets()
    labels_or_targets = targets.argmax(1) if not memory.meta.get("learn_labels") else targets
    return evaluate_synthetic(x.detach(), labels_or_targets.detach(), test_x=test[0], test_y=test[1],
                              num_classes=info.num_classes, model_cfg=cfg.model, eval_cfg=cfg.eval,
                              augment_ops=augment_ops(cfg.data.augment, cfg.eval.augment), seed=cfg.run.seed,
                              progress=progress, desc=desc)


def run(cfg: Config) -> dict:
    """Distill, evaluate and export as configured; returns the results written to ``results.json``.

    This is the one function the launchers call (``launch/`` knows nothing else).
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    ctx: RankContext = setup_ranks(cfg, resolve_device(cfg.run.device))
    device = ctx.device
    out = Path(cfg.run.out_dir)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "config.json")
        (out / "results.json").unlink(missing_ok=True)  # a results file always means this run finished

    # in memory, or streamed from .beton files (data.backend=ffcv): only sampled batches are ever read
    source: RealSource = make_real_source(cfg.data, prepare_data(cfg.data, device) if cfg.data.backend == "memory"
                                          else None, device)
    info = source.info
    memory = build_run_memory(cfg, source)
    optimizer = build_outer_optimizer(cfg, [p for p in memory.parameters() if p.requires_grad])
    lrs, lr_optimizer = build_inner_lrs(cfg, device)
    net = build_net(cfg.model, channels=info.channels, num_classes=info.num_classes,
                    image_size=(info.height, info.width)).to(device)
    method = build_method(cfg, net, Augmenter(cfg.data.augment))

    ckpt_path = out / "checkpoint.pt"
    start_step, history = 0, []
    if cfg.checkpoint.resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, identity=_identity(cfg))
        memory.load_state_dict(state.memory)
        optimizer.load_state_dict(state.optimizer)
        if lr_optimizer is not None:
            with torch.no_grad():
                lrs.copy_(state.extra["lrs"])
            lr_optimizer.load_state_dict(state.extra["lr_optimizer"])
        method.load_state_dict(state.extra.get("method", {}))
        start_step, history = state.step, state.history
    # every rank read the same checkpoint (or none); make sure, then start from rank 0's exact bits
    ctx.agree(start_step, "the outer step to resume from")
    ctx.broadcast_([*memory.parameters(), *([lrs] if lr_optimizer is not None else [])])
    optimizer = prepare_outer_optimizer(ctx, memory, optimizer)  # itself, or ZeRO-sharded under DeepSpeed

    def checkpoint(step: int) -> None:
        optimizer_state = optimizer.state_dict()  # on every rank: a collective when ZeRO shards the optimiser
        if not ctx.is_main:
            return
        extra = {"method": method.state_dict()}
        if lr_optimizer is not None:
            extra.update(lrs=lrs.detach().cpu(), lr_optimizer=lr_optimizer.state_dict())
        save_checkpoint(ckpt_path, TrainingState(step=step, memory=memory.state_dict(),
                                                 optimizer=optimizer_state, identity=_identity(cfg),
                                                 extra=extra, history=history))

    writer = open_writer(out, enabled=cfg.log.tensorboard, is_main=ctx.is_main, purge_step=start_step or None)
    storage = memory.storage(cfg.memory.ipc).as_dict()
    bar = tqdm(total=cfg.meta.steps, initial=start_step, desc="distill", unit="step",
               disable=not (cfg.log.progress and ctx.is_main))
    params = [p for p in memory.parameters() if p.requires_grad]
    try:
        for step in range(start_step, cfg.meta.steps):
            tick = time.perf_counter()
            optimizer.zero_grad(set_to_none=False)
            step_metrics, lr_grad = reduced_meta_gradient(cfg, ctx, method, memory, params, source.sample, step=step,
                                                          lrs=lrs, learn_lrs=lr_optimizer is not None)
            loss = step_metrics["meta/loss"]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.meta.grad_clip if cfg.meta.grad_clip > 0
                                                             else math.inf))
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                raise Diverged(f"meta-loss became {loss} (grad norm {grad_norm}) at outer step {step}; the last good "
                               f"checkpoint is kept in {ckpt_path} — lower meta.lr or inner.lr and resume")
            for group in optimizer.param_groups:  # the schedule is a pure function of the step: exact on resume
                group["lr"] = outer_lr(cfg, step)
            optimizer.step()
            if lr_optimizer is not None:
                lrs.grad = lr_grad
                lr_optimizer.step()
                with torch.no_grad():
                    lrs.clamp_(min=0.0)  # a negative step size would ascend the inner loss
            if hasattr(method, "end_step"):  # e.g. FRePo trains its model pool on the updated memory
                method.end_step(memory, done=step + 1)
            done = step + 1
            step_metrics.update({"meta/grad_norm": grad_norm, "sys/step_time": time.perf_counter() - tick,
                                 "sys/peak_mem": _peak_memory_mb(device)})
            if lr_optimizer is not None:
                step_metrics["inner/lr_mean"] = float(lrs.detach().mean())
            history.append({"step": done, **step_metrics})
            if done % cfg.log.every == 0 or done == cfg.meta.steps:
                writer.scalars(step_metrics, done)
            if cfg.log.image_every and (done % cfg.log.image_every == 0 or done == cfg.meta.steps):
                with torch.no_grad():
                    x, _ = memory.class_images()
                writer.images("memory/recalled", x[:: max(1, len(x) // 100)], done, nrow=info.num_classes)
            if cfg.eval.every and done % cfg.eval.every == 0 and done < cfg.meta.steps and ctx.is_main:
                result = _evaluate(memory, source.eval_tensors("test"), cfg, info, progress=False, desc="eval")
                writer.scalars({"eval/acc_mean": result.mean, "eval/acc_std": result.std}, done)
            if cfg.checkpoint.every and done % cfg.checkpoint.every == 0:
                checkpoint(done)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", inner=f"{step_metrics['inner/loss_last']:.3f}")
        bar.close()
        replica_divergence = ctx.divergence(params)  # 0.0: all ranks end with bitwise the same memory
        checkpoint(cfg.meta.steps)
        distill_seconds = time.perf_counter() - started
        results: dict = {}
        if ctx.is_main:
            meta = {"dataset": cfg.data.name, "class_names": list(info.class_names), "mean": list(info.mean),
                    "std": list(info.std), "zca": cfg.data.zca, "budget_ipc": cfg.memory.ipc}
            save_artifact(out / "memory.safetensors", memory, dataset_meta=meta)
            result = _evaluate(memory, source.eval_tensors("test"), cfg, info, progress=cfg.log.progress,
                               desc="final eval")
            writer.scalars({"eval/acc_mean": result.mean, "eval/acc_std": result.std}, cfg.meta.steps)
            results = {"recipe": vars(cfg.recipe), "dataset": cfg.data.name, "method": cfg.method.name,
                       "memory": memory.meta, "storage": storage, "accuracy": result.as_dict(),
                       "final_meta_loss": history[-1]["meta/loss"] if history else None,
                       "distill_seconds": distill_seconds, "total_seconds": time.perf_counter() - started,
                       "processes": ctx.world_size, "replica_divergence": replica_divergence,
                       "device": str(device), "config": cfg.to_dict()}
            tmp = out / "results.json.tmp"
            tmp.write_text(json.dumps(results, indent=2) + "\n")
            tmp.replace(out / "results.json")
            print(f"{cfg.data.name} {cfg.method.name} ipc={cfg.memory.ipc:g}: test accuracy {result} | storage "
                  f"{storage['ipc_equivalent']:.3f} IPC | distill {distill_seconds:.0f} s | {out}")
        # no barrier: the other ranks return now instead of waiting out rank 0's evaluation in a collective
        # (which a long evaluation would time out); their launcher waits for rank 0's exit status
        return results
    finally:
        writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = config_parser("python -m rtp_scale.distill", __doc__)
    parser.add_argument("--out", metavar="DIR", help="shorthand for --set run.out_dir=DIR")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint (checkpoint.resume=false)")
    args = parser.parse_args(argv)
    shorthands = ([f"run.out_dir={args.out}"] if args.out else []) + (["checkpoint.resume=false"] if args.fresh else [])
    run(config_from_args(args, shorthands))
    return 0


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
