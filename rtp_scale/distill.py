"""Distill a dataset into a small learned synthetic set (default: RtP addressable memories).

Local, one process (the default: RtP on mnist5k at a 1-IPC storage budget, minutes on a CPU):

    python -m rtp_scale.distill
    python -m rtp_scale.distill --config configs/mnist5k_rtp_ipc10.toml --set run.out_dir=runs/ipc10

Multi-process with Accelerate (GPUs; on a CPU-only machine add ACCELERATE_USE_CPU=1, see README):

    accelerate launch --config_file configs/accelerate/1gpu.yaml -m rtp_scale.distill --config RECIPE

Slurm sweeps: ``python -m launch.sweep`` (see README). Outputs in ``run.out_dir``: ``config.json``,
``checkpoint.pt`` (resumed automatically), ``tb/`` (TensorBoard), ``metrics.jsonl``,
``memory.safetensors`` and, only when everything succeeded, ``results.json``.

Resuming: the same command continues from ``checkpoint.pt`` when every result-changing config key matches the
checkpoint's run (rtp_scale.run_identity lists the few keys that may change, e.g. meta.steps and meta.lr);
otherwise it refuses in one line naming each key, old -> new. ``--fresh`` first moves the previous outputs to
``<out>/previous/<n>/``. A state is checkpointed only once the meta-loss and gradients computed from it proved
finite; a run that diverges (non-finite loss or gradients, or a learned tensor beyond SANE_LIMIT) stops in one
line and keeps the last good checkpoint: lower meta.lr and rerun the same command.
"""
from __future__ import annotations

import errno
import json
import math
import resource
import sys
import time
from pathlib import Path

import torch

from rtp_scale.builders import build_inner_lrs, build_outer_optimizer, build_run_memory, outer_lr
from rtp_scale.checkpoint import TrainingState, load_checkpoint, restore, save_checkpoint, set_aside_outputs
from rtp_scale.cli import config_from_args, config_parser
from rtp_scale.config import Config
from rtp_scale.data.augment import Augmenter
from rtp_scale.data.sources import RealSource, make_real_source
from rtp_scale.distributed import RankContext, prepare_outer_optimizer, release_process_group, setup_ranks
from rtp_scale.errors import UserError, run_cli
from rtp_scale.eval import build_net, evaluate_synthetic
from rtp_scale.eval.protocol import memory_training_set
from rtp_scale.eval.scores import score_distilled
from rtp_scale.logging import open_writer, read_metrics
from rtp_scale.logging.progress import open_progress
from rtp_scale.memory.artifact import evaluation_settings, save_artifact
from rtp_scale.memory.diagnostics import recall_diversity
from rtp_scale.meta_step import reduced_meta_gradient
from rtp_scale.methods import build_method
from rtp_scale.models import check_batch_split
from rtp_scale.models.convnet import ill_conditioned_norm_warning
from rtp_scale.preemption import EXIT_PREEMPTED, Preempted, StepAbandoned, StopRequest
from rtp_scale.run_identity import check_resume, config_identity, describe_changes
from rtp_scale.runtime import augment_ops, prepare_data_and_zca, resolve_device


class Diverged(UserError):
    """The meta-loss or meta-gradient stopped being finite."""


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


SANE_LIMIT = 1e4
"""Largest |value| a learned tensor may reach. Real images are standardised (a few units, tens after ZCA), so a
memory, coefficient or learned lr beyond this comes only from a run that is diverging, even while still finite."""


def _insane(learned: dict[str, torch.Tensor]) -> str | None:
    """What is wrong with the first learned tensor that is not finite or beyond SANE_LIMIT; None when all are sane."""
    for name, tensor in learned.items():
        tensor = tensor.detach()
        if not bool(torch.isfinite(tensor).all()):
            return f"{name} is not finite"
        peak = float(tensor.abs().max()) if tensor.numel() else 0.0
        if peak > SANE_LIMIT:
            return f"{name} reached {peak:.3g} (beyond {SANE_LIMIT:g})"
    return None


def _logged_start_accuracy(out: Path) -> dict | None:
    """A resumed run's starting-memory evaluation (``eval.every``), as its first process logged it."""
    for row in read_metrics(out):
        if row.get("step") == 0 and "eval/acc_mean" in row:
            return {"mean": row["eval/acc_mean"], "std": row.get("eval/acc_std", 0.0)}
    return None


def _evaluate(memory, test: tuple[torch.Tensor, torch.Tensor], cfg: Config, info, *, progress: bool, desc: str):
    x, targets = memory_training_set(memory)  # the same set python -m rtp_scale.evaluate trains on
    return evaluate_synthetic(x, targets, test_x=test[0], test_y=test[1],
                              num_classes=info.num_classes, model_cfg=cfg.model, eval_cfg=cfg.eval,
                              augment_ops=augment_ops(cfg.data.augment, cfg.eval.augment), seed=cfg.run.seed,
                              progress=progress, desc=desc)


def _scores(memory, source: RealSource, cfg: Config, storage: dict, result) -> dict:
    """The final evaluation's scores against random real images (``eval.scores``; see rtp_scale.eval.scores)."""
    x, targets = memory_training_set(memory)
    return score_distilled(x, targets, source=source, storage=storage, model_cfg=cfg.model, eval_cfg=cfg.eval,
                           augment_ops=augment_ops(cfg.data.augment, cfg.eval.augment), seed=cfg.run.seed,
                           distilled=result, progress=cfg.log.progress)


def run(cfg: Config) -> dict:
    """Distill, evaluate and export as configured; returns the results written to ``results.json``.

    This is the one function the launchers call (``launch/`` knows nothing else).
    """
    started = time.perf_counter()
    ctx: RankContext = setup_ranks(cfg, resolve_device(cfg.run.device))
    device = ctx.device
    out = Path(cfg.run.out_dir)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        # a fresh start moves the old run's outputs aside before anything is written, so runs never mix
        if not cfg.checkpoint.resume and (moved := set_aside_outputs(out)) is not None:
            print(f"checkpoint.resume=false: moved the previous run's outputs to {moved}", file=sys.stderr)
        cfg.save(out / "config.json")
        (out / "results.json").unlink(missing_ok=True)  # a results file always means this run finished

    # in memory, or streamed from .beton files (data.backend=ffcv): only sampled batches are ever read
    data, zca = prepare_data_and_zca(cfg.data, device) if cfg.data.backend == "memory" else (None, None)
    source: RealSource = make_real_source(cfg.data, data, device)
    info = source.info
    memory = build_run_memory(cfg, source)
    optimizer = build_outer_optimizer(cfg, [p for p in memory.parameters() if p.requires_grad])
    lrs, lr_optimizer = build_inner_lrs(cfg, device)
    net = build_net(cfg.model, channels=info.channels, num_classes=info.num_classes,
                    image_size=(info.height, info.width)).to(device)
    # FRePo takes the real batch whole and never shards an inner minibatch
    check_batch_split(net, cfg.model.name, real_batch=cfg.data.real_per_class * info.num_classes,
                      outer_chunk=0 if cfg.method.name == "frepo" else cfg.unroll.outer_chunk,
                      inner_shards=cfg.dist.inner_shards)
    method = build_method(cfg, net, Augmenter(cfg.data.augment))
    if ctx.is_main and cfg.meta.steps > 0 and (warning := ill_conditioned_norm_warning(net, (info.height, info.width))):
        print(f"warning: {warning}", file=sys.stderr)

    ckpt_path = out / "checkpoint.pt"
    start_step, history, resumes, on_disk = 0, [], [], []  # on_disk: the outer step that checkpoint.pt holds
    if cfg.checkpoint.resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        # every result-changing key must match; allowed changes (rtp_scale.run_identity) are named, never silent
        changes = check_resume(state.identity, cfg, step=state.step, where=f"checkpoint {ckpt_path}")
        restore(memory, state.memory, what="memory", path=ckpt_path)
        restore(optimizer, state.optimizer, what="outer optimiser", path=ckpt_path)
        if lr_optimizer is not None:
            with torch.no_grad():
                lrs.copy_(state.extra["lrs"])
            restore(lr_optimizer, state.extra["lr_optimizer"], what="learned-lr optimiser", path=ckpt_path)
            for group in lr_optimizer.param_groups:  # meta.lr_lr may change on resume; the state holds the old one
                group["lr"] = cfg.meta.lr_lr
        restore(method, state.extra.get("method", {}), what=f"{cfg.method.name} state", path=ckpt_path)
        start_step, history, resumes, on_disk = state.step, state.history, state.resumes, [state.step]
        if changes:
            resumes = [*resumes, {"step": start_step, "changes": changes}]
            if ctx.is_main:
                print(f"resuming {ckpt_path} at outer step {start_step} with changed settings: "
                      f"{describe_changes(changes)}", file=sys.stderr)
    # every rank read the same checkpoint (or none); make sure, then start from rank 0's exact bits
    ctx.agree(start_step, "the outer step to resume from")
    ctx.broadcast_([*memory.parameters(), *([lrs] if lr_optimizer is not None else [])])
    optimizer = prepare_outer_optimizer(ctx, memory, optimizer)  # itself, or ZeRO-sharded under DeepSpeed

    def learned() -> dict[str, torch.Tensor]:
        found = {f"memory.{name}": p for name, p in memory.named_parameters() if p.requires_grad}
        return {**found, "learned inner lrs": lrs} if lr_optimizer is not None else found

    def kept(failing: int | None = None) -> str:
        if not on_disk:
            return "nothing was checkpointed yet: lower meta.lr (or inner.lr) and rerun"
        if on_disk[0] == failing:  # saved unchecked by a preemption stop, or resumed under other settings
            return (f"{ckpt_path} holds this very state (outer step {failing}), so resuming it fails the same way: "
                    f"start over with --fresh (moves it aside) and a lower meta.lr or inner.lr")
        return (f"{ckpt_path} keeps the last good state (outer step {on_disk[0]}): lower meta.lr (or set "
                f"meta.grad_clip) and rerun the same command to resume from it")

    def checkpoint(step: int) -> None:
        """Save the state after ``step`` outer steps; a state with non-finite or runaway tensors is never saved."""
        if (problem := _insane(learned())) is not None:
            raise Diverged(f"diverged: after outer step {step} {problem}; {kept()}")
        optimizer_state = optimizer.state_dict()  # on every rank: a collective when ZeRO shards the optimiser
        if ctx.is_main:
            extra = {"method": method.state_dict()}
            if lr_optimizer is not None:
                extra.update(lrs=lrs.detach().cpu(), lr_optimizer=lr_optimizer.state_dict())
            save_checkpoint(ckpt_path, TrainingState(step=step, memory=memory.state_dict(), optimizer=optimizer_state,
                                                     identity=config_identity(cfg), extra=extra, history=history,
                                                     resumes=resumes))
        on_disk[:] = [step]

    writer = open_writer(out, enabled=cfg.log.tensorboard, is_main=ctx.is_main, purge_step=start_step or None)
    storage = memory.storage(cfg.memory.ipc).as_dict()
    bar = open_progress(total=cfg.meta.steps, initial=start_step, desc="distill", unit="step",
                        enabled=cfg.log.progress and ctx.is_main)
    params = [p for p in memory.parameters() if p.requires_grad]
    # SIGTERM/SIGUSR2 (preemption, time limit): checkpoint, raise Preempted (rtp_scale.preemption). During the
    # meta-gradient the step is dropped and the state before it saved; elsewhere the step finishes first
    stop = StopRequest(ctx, first_step=start_step, last_step=cfg.meta.steps, checkpoint=str(ckpt_path)).install()
    # a checkpoint is written only from a state whose own loss and gradients were finite: state k is saved
    # during step k, after its meta-gradient (the state a run starts from is saved the same way; a resumed one
    # is on disk already); the last state is saved after the loop, checked for finite, sane values
    due = start_step if cfg.checkpoint.every and not on_disk else None

    def evaluate_during(done: int):
        """``eval.every``: evaluate the memory as it is after ``done`` outer steps (0: the starting memory)."""
        # announced before and after: minutes of evaluation would otherwise be a silent gap in a log
        bar.write(f"evaluating at outer step {done}/{cfg.meta.steps} on the {cfg.data.eval_split} split "
                  f"({cfg.eval.num_nets} nets)", file=sys.stderr)
        eval_started = time.perf_counter()
        result = _evaluate(memory, source.eval_tensors("test"), cfg, info, progress=False, desc="eval")
        writer.scalars({"eval/acc_mean": result.mean, "eval/acc_std": result.std}, done)
        bar.write(f"outer step {done}: {cfg.data.eval_split} accuracy {result} "
                  f"({time.perf_counter() - eval_started:.0f} s)", file=sys.stderr)
        return result

    start_result = None
    try:
        # the starting memory's accuracy: every distilled row can then say what the distillation itself added
        if cfg.eval.every and ctx.is_main and cfg.meta.steps > 0:
            start_result = evaluate_during(0).as_dict() if start_step == 0 else _logged_start_accuracy(out)
        for step in range(start_step, cfg.meta.steps):
            tick, cpu_tick = time.perf_counter(), time.process_time()
            optimizer.zero_grad(set_to_none=False)
            try:
                with stop.abandonable():  # changes only .grad: the state is still the one after `step` steps
                    step_metrics, lr_grad = reduced_meta_gradient(cfg, ctx, method, memory, params, source.sample,
                                                                  step=step, lrs=lrs,
                                                                  learn_lrs=lr_optimizer is not None)
            except StepAbandoned:
                stop.abandon(step, checkpoint)
            loss = step_metrics["meta/loss"]
            clip = cfg.meta.grad_clip if cfg.meta.grad_clip > 0 else math.inf
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
            health = {"meta-loss": loss, "meta-gradient norm": grad_norm}
            if lr_optimizer is not None:  # the learned lrs' gradient is clipped (on its own) and checked as well
                lrs.grad = lr_grad
                health["learned-lr gradient norm"] = step_metrics["meta/lr_grad_norm"] = float(
                    torch.nn.utils.clip_grad_norm_([lrs], clip))
            if bad := [f"{name} {value}" for name, value in health.items() if not math.isfinite(value)]:
                raise Diverged(f"diverged at outer step {step}: {', '.join(bad)}; {kept(failing=step)}")
            if step == due:  # state `step` is kept only now that its own loss and gradients proved finite
                checkpoint(step)
            for group in optimizer.param_groups:  # the schedule is a pure function of the step: exact on resume
                group["lr"] = outer_lr(cfg, step)
            optimizer.step()
            if lr_optimizer is not None:
                lr_optimizer.step()
                with torch.no_grad():
                    lrs.clamp_(min=0.0)  # a negative step size would ascend the inner loss
            if (problem := _insane(learned())) is not None:
                raise Diverged(f"diverged at outer step {step}: after the update {problem}; {kept()}")
            if hasattr(method, "end_step"):  # e.g. FRePo trains its model pool on the updated memory
                method.end_step(memory, done=step + 1)
            done = step + 1
            step_metrics.update({"meta/grad_norm": grad_norm, "meta/lr": outer_lr(cfg, step),
                                 "sys/step_time": time.perf_counter() - tick,
                                 # CPU seconds of this process (all its threads): the ablations' x axis, which
                                 # other jobs on a shared machine inflate far less than the wall time
                                 "sys/cpu_time": time.process_time() - cpu_tick,
                                 "sys/peak_mem": _peak_memory_mb(device)})
            if lr_optimizer is not None:
                step_metrics["inner/lr_mean"] = float(lrs.detach().mean())
            logged = done % cfg.log.every == 0 or done == cfg.meta.steps
            if logged:  # are the slots different images, or copies of a few? (memory/diagnostics.py; an SVD a class)
                with torch.no_grad():
                    step_metrics.update(recall_diversity(*memory.class_images(), info.num_classes))
            history.append({"step": done, **step_metrics})
            if logged:
                writer.scalars(step_metrics, done)
            if cfg.log.image_every and (done % cfg.log.image_every == 0 or done == cfg.meta.steps):
                with torch.no_grad():
                    x, _ = memory.class_images()
                writer.images("memory/recalled", x[:: max(1, len(x) // 100)], done, nrow=info.num_classes)
            if cfg.eval.every and done % cfg.eval.every == 0 and done < cfg.meta.steps and ctx.is_main:
                evaluate_during(done)
            if cfg.checkpoint.every and done % cfg.checkpoint.every == 0:
                due = done  # written at the next step, once the meta-gradient FROM this state is known finite
            stop.after_step(done, checkpoint)
            bar.set_postfix(loss=f"{loss:.3f}", inner=f"{step_metrics['inner/loss_last']:.3f}")
            bar.update(1)
        bar.close()
        replica_divergence = ctx.divergence(params)  # 0.0: all ranks end with bitwise the same memory
        checkpoint(cfg.meta.steps)
        distill_seconds = time.perf_counter() - started
        results: dict = {}
        if ctx.is_main:
            meta = {"dataset": cfg.data.name, "class_names": list(info.class_names), "mean": list(info.mean),
                    "std": list(info.std), "zca": cfg.data.zca, "budget_ipc": cfg.memory.ipc}
            save_artifact(out / "memory.safetensors", memory, dataset_meta=meta,
                          evaluation=evaluation_settings(cfg.to_dict()), zca=zca)
            result = _evaluate(memory, source.eval_tensors("test"), cfg, info, progress=cfg.log.progress,
                               desc="final eval")
            scores = _scores(memory, source, cfg, storage, result) if cfg.eval.scores else None
            writer.scalars({"eval/acc_mean": result.mean, "eval/acc_std": result.std}, cfg.meta.steps)
            results = {"recipe": vars(cfg.recipe), "dataset": cfg.data.name, "method": cfg.method.name,
                       "eval_split": cfg.data.eval_split,
                       "memory": memory.meta, "storage": storage, "accuracy": result.as_dict(), "scores": scores,
                       "start_accuracy": start_result,
                       "final_meta_loss": history[-1]["meta/loss"] if history else None,
                       "distill_seconds": distill_seconds, "total_seconds": time.perf_counter() - started,
                       "processes": ctx.world_size, "replica_divergence": replica_divergence,
                       "device": str(device), "config": cfg.to_dict(), "resumed_with_changes": resumes}
            tmp = out / "results.json.tmp"
            tmp.write_text(json.dumps(results, indent=2) + "\n")
            tmp.replace(out / "results.json")
            gain = "" if start_result is None else f" ({result.mean - start_result['mean']:+.2f} over the start)"
            print(f"{cfg.data.name} {cfg.method.name} ipc={cfg.memory.ipc:g}: {cfg.data.eval_split} accuracy "
                  f"{result}{gain} | storage {storage['ipc_equivalent']:.3f} IPC | distill {distill_seconds:.0f} s "
                  f"| {out}")
        # no barrier: the other ranks return now instead of waiting out rank 0's evaluation in a collective
        # (which a long evaluation would time out); their launcher waits for rank 0's exit status
        return results
    finally:
        stop.restore()
        writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = config_parser("python -m rtp_scale.distill", __doc__)
    parser.add_argument("--out", metavar="DIR", help="shorthand for --set run.out_dir=DIR")
    parser.add_argument("--fresh", action="store_true", help="start over: move the previous run's outputs to "
                        "<out>/previous/<n>/ first (checkpoint.resume=false)")
    args = parser.parse_args(argv)
    shorthands = ([f"run.out_dir={args.out}"] if args.out else []) + (["checkpoint.resume=false"] if args.fresh else [])
    cfg = config_from_args(args, shorthands)
    try:
        run(cfg)
    except Preempted as stopped:  # checkpoint saved, no results.json: a requeue (or the same command) resumes
        print(f"preempted: {stopped}", file=sys.stderr)
        return EXIT_PREEMPTED
    except OSError as err:  # a full disk under metrics, events or the artifact (checkpoint writes say so themselves)
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise UserError(f"the disk under {cfg.run.out_dir} is full ({err.strerror}); checkpoint.pt, when there is "
                        f"one, holds the last good state — free space and rerun the same command") from None
    finally:
        release_process_group()  # this process ends here: a gloo group left alive can abort its exit
    return 0


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
