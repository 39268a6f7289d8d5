"""One benchmark configuration in its own process: ``python -m rtp_scale.bench._worker SPEC.json RESULT.json``.

Started by :mod:`rtp_scale.bench.unroll`, one fresh process per configuration, so that the process's peak
resident memory (``ru_maxrss``) belongs to that configuration alone. It builds exactly what one outer step
of ``rtp_scale.distill`` builds (config, the real dataset, the run's memory, the inner network,
:class:`~rtp_scale.methods.rtp.RtpMethod`, the class-balanced real-batch sampler, per-step generators
derived like distill's) and then runs, in this order:

1. one warm-up outer step (allocator, oneDNN/cuDNN kernel selection; not timed);
2. ``timed`` outer steps, each timed around ``RtpMethod.meta_gradient`` (device synchronised);
3. reads the peak memory: ``ru_maxrss`` (CPU) or ``torch.cuda.max_memory_allocated`` since setup (CUDA);
4. unless ``count`` is false, one more outer step under ``torch.utils.flop_counter.FlopCounterMode`` and
   :class:`~rtp_scale.unroll.SavedTensorMeter` (FLOPs of conv/matmul ops, double backward included, and
   the peak bytes of autograd's saved tensors). It runs after step 3 because the instrumentation itself
   holds a little memory (about 1-2 % of the peak) and slows the step.

The memory is not updated between steps (no outer optimiser step): its cost is negligible and the work of
a meta-gradient does not depend on the memory's values. Gradients are cleared between steps.
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch

import rtp_scale.methods.rtp as rtp_module
from rtp_scale.builders import build_inner_lrs, build_run_memory
from rtp_scale.config import build_config
from rtp_scale.data.augment import Augmenter
from rtp_scale.data.sampler import ClassBalancedSampler
from rtp_scale.eval import build_net
from rtp_scale.methods.rtp import RtpMethod
from rtp_scale.runtime import prepare_data, resolve_device
from rtp_scale.seeding import make_generator
from rtp_scale.unroll import SavedTensorMeter


def max_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB, macOS bytes)."""
    raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return raw / 2**20 if sys.platform == "darwin" else raw / 1024


def current_rss_mb() -> float | None:
    """Resident set size now, MiB (Linux only)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


class _EngineRecorder:
    """Keeps the :class:`~rtp_scale.unroll.UnrollResult` of every unroll RtpMethod runs.

    ``meta_gradient`` does not return the engine's result (stored states, steps run), so the worker wraps
    the engine function where rtp.py looks it up. Only this benchmark process is affected.
    """

    def __init__(self) -> None:
        self.results: list = []
        self._engine = rtp_module.unroll_meta_grad

    def __enter__(self) -> "_EngineRecorder":
        def recording(**kwargs):
            result = self._engine(**kwargs)
            self.results.append(result)
            return result

        rtp_module.unroll_meta_grad = recording
        return self

    def __exit__(self, *exc: object) -> None:
        rtp_module.unroll_meta_grad = self._engine


class OuterStep:
    """The benchmark's outer step, built from a row's overrides. Calling it with an outer-step index ``i`` draws the
    real batch as distill does (from ``(seed, "unroll", i, 0)``) and computes one meta-gradient into the memory's
    ``.grad``, returning (seconds, metrics)."""

    def __init__(self, overrides: list[str]) -> None:
        self.overrides = overrides
        self.cfg = cfg = build_config(None, overrides)
        self.device = device = resolve_device(cfg.run.device)
        self.data = data = prepare_data(cfg.data, device)
        info = data.info
        self.memory = build_run_memory(cfg, data)
        self.lrs, _ = build_inner_lrs(cfg, device)
        self.net = build_net(cfg.model, channels=info.channels, num_classes=info.num_classes,
                             image_size=(info.height, info.width)).to(device)
        self.method = RtpMethod(cfg, self.net, Augmenter("none"))
        self.sampler = ClassBalancedSampler(data.train_y.cpu(), info.num_classes, cfg.data.real_per_class)
        self.params = [p for p in self.memory.parameters() if p.requires_grad]

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __call__(self, step: int, step_method: RtpMethod | None = None) -> tuple[float, dict[str, float]]:
        for p in self.params:
            p.grad = None
        # the same derivation as distill's: the unroll's randomness depends on (seed, step, unroll index)
        generator = make_generator(self.cfg.run.seed, "unroll", step, 0)
        idx = self.sampler.sample(generator).to(self.device)
        real_x, real_y = self.data.train_x[idx], self.data.train_y[idx]
        self.sync()
        tick = time.perf_counter()
        metrics, _ = (step_method or self.method).meta_gradient(self.memory, real_x, real_y, lrs=self.lrs,
                                                                generator=generator)
        self.sync()
        return time.perf_counter() - tick, metrics


def run_configuration(spec: dict) -> dict:
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    setup_tick = time.perf_counter()
    outer_step = OuterStep(spec["overrides"])
    cfg, device, memory, method, params = (outer_step.cfg, outer_step.device, outer_step.memory, outer_step.method,
                                           outer_step.params)
    info = outer_step.data.info
    images_per_class = memory.meta["images_per_class"]
    inner_batch = info.num_classes * min(cfg.inner.batch_per_class, images_per_class)

    def cosine_to_fp32(step: int) -> float:
        """Cosine between this row's meta-gradient and the float32 one of the same outer step (bf16 rows)."""
        fp32 = RtpMethod(build_config(None, [*spec["overrides"], "unroll.precision=fp32"]), outer_step.net,
                         Augmenter("none"))
        grads = []
        for step_method in (method, fp32):
            outer_step(step, step_method)
            grads.append(torch.cat([p.grad.flatten() for p in params]))
        return float(torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0))

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    out: dict = {
        "setup_s": time.perf_counter() - setup_tick,
        "rss_setup_mb": current_rss_mb(),
        "max_rss_setup_mb": max_rss_mb(),
        "inner_batch": inner_batch,
        "real_batch": int(cfg.data.real_per_class * info.num_classes),
        "memory_meta": memory.meta,
        "segment": method.policy.segment_length(cfg.inner.steps),
        "threads": torch.get_num_threads(),
    }
    with _EngineRecorder() as engine:
        warm_s, _ = outer_step(0)
        times, losses = [], []
        for step in range(1, 1 + int(spec["timed"])):
            dt, metrics = outer_step(step)
            times.append(dt)
            losses.append(metrics["meta/loss"])
        out.update(warmup_s=warm_s, step_times_s=times, meta_losses=losses, peak_rss_mb=max_rss_mb())
        if device.type == "cuda":
            out["peak_device_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
            out["peak_device_reserved_mb"] = torch.cuda.max_memory_reserved(device) / 2**20
        last = engine.results[-1]
        if cfg.unroll.precision != "fp32":
            out["cosine_to_fp32"] = cosine_to_fp32(1)
        out.update(stored_states=last.stored_states, steps_run=last.steps_run,
                   steps_differentiated=last.steps_differentiated, kept_steps=last.kept_steps,
                   bytes_per_step=last.bytes_per_step, outer_graph_bytes=last.outer_graph_bytes)
        if spec.get("count", True):
            from torch.utils.flop_counter import FlopCounterMode

            counter = FlopCounterMode(display=False)
            with contextlib.ExitStack() as stack:
                stack.enter_context(counter)
                meter = stack.enter_context(SavedTensorMeter())
                out["counted_step_s"], _ = outer_step(1 + int(spec["timed"]))
            out["flops"] = int(counter.get_total_flops())
            out["flops_by_op"] = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
            out["saved_tensors_peak_mb"] = meter.peak_bytes / 2**20
    return out


def main(argv: list[str]) -> int:
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    result = run_configuration(json.loads(spec_path.read_text()))
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
