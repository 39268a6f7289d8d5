"""What the benchmark ran on, and what that machine can do at best (the denominators of "achieved rate").

Peak rates are measured, not looked up: a float32 2048x2048 matmul (the usual yardstick) and the
convolution that dominates the ConvNet's cost (width -> width, 3x3, padding 1, on the second block's
16x16 map) at the real-batch size and at the inner-minibatch size. Each rate is the best of a few
repetitions, so a briefly busy machine lowers it less than it lowers a single measurement.
"""
from __future__ import annotations

import os
import platform
import time
from typing import Callable

import torch
import torch.nn.functional as F

from rtp_scale.unroll.precision import fast_bf16_available


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (how busy the machine was), or None where unavailable."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info(device: torch.device) -> dict:
    """CPU count, threads, versions and device name: enough to know whether two results are comparable."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info = {
        "hostname": platform.node(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "device": str(device),
        "device_name": _cpu_model(),
        "load_average": load_average(),
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda_version"] = torch.version.cuda
        info["device_memory_mb"] = torch.cuda.get_device_properties(device).total_memory / 2**20
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_rate(fn: Callable[[], object], flops: float, device: torch.device, *, min_seconds: float,
               max_reps: int) -> float:
    """Best GFLOP/s of ``fn`` over repetitions (after one warm-up call), stopping after ``min_seconds``."""
    fn()
    _sync(device)
    best, spent, reps = 0.0, 0.0, 0
    while reps < max_reps and (reps < 2 or spent < min_seconds):
        tick = time.perf_counter()
        fn()
        _sync(device)
        dt = time.perf_counter() - tick
        spent += dt
        reps += 1
        best = max(best, flops / dt / 1e9)
    return best


def peak_rates(device: torch.device, *, width: int, real_batch: int, inner_batch: int, quick: bool,
               bf16: bool = False) -> dict:
    """Measured GFLOP/s: float32 matmul 2048^3 and the ConvNet's dominant conv at both batch sizes; with ``bf16``
    also the conv in bfloat16 (channels_last, the layout the fast bf16 kernels use), whether the device has fast
    bfloat16 (``bf16_fast``, ``bf16_why``), and where it does the matmul in bfloat16 too."""
    budget = 0.3 if quick else 2.0
    gen = torch.Generator().manual_seed(0)
    n = 2048
    a = torch.randn(n, n, generator=gen).to(device)
    b = torch.randn(n, n, generator=gen).to(device)
    with torch.no_grad():
        rates = {"matmul_2048_gflops": _best_rate(lambda: a @ b, 2.0 * n**3, device, min_seconds=budget,
                                                   max_reps=200)}
        w = torch.randn(width, width, 3, 3, generator=gen).to(device)
        side = 16  # the second block's map: 28x28 inputs are padded to 32x32, then pooled
        for name, batch in (("conv_real_batch_gflops", real_batch), ("conv_inner_batch_gflops", inner_batch)):
            x = torch.randn(batch, width, side, side, generator=gen).to(device)
            flops = 2.0 * batch * side * side * width * width * 9
            rates[name] = _best_rate(lambda: F.conv2d(x, w, padding=1), flops, device, min_seconds=budget,
                                     max_reps=200)
        if bf16:
            fast, why = fast_bf16_available(device)
            rates["bf16_fast"], rates["bf16_why"] = fast, why
            if fast:
                a16, b16 = a.bfloat16(), b.bfloat16()
                rates["matmul_2048_bf16_gflops"] = _best_rate(lambda: a16 @ b16, 2.0 * n**3, device,
                                                              min_seconds=budget, max_reps=200)
            # else no bf16 matmul: emulated, one 2048^3 product takes about a minute on a 2-core AVX2 machine
            # (~0.3 GFLOP/s), and a peak that low is no yardstick for anything
            w16 = w.bfloat16().contiguous(memory_format=torch.channels_last)
            for name, batch in (("conv_real_batch_bf16_gflops", real_batch),
                                ("conv_inner_batch_bf16_gflops", inner_batch)):
                x16 = torch.randn(batch, width, side, side, generator=gen).to(device).bfloat16().contiguous(
                    memory_format=torch.channels_last)
                flops = 2.0 * batch * side * side * width * width * 9
                rates[name] = _best_rate(lambda: F.conv2d(x16, w16, padding=1), flops, device, min_seconds=budget,
                                         max_reps=200)
    rates["conv_shape"] = f"{width}->{width} 3x3 on 16x16; batches {real_batch} and {inner_batch}"
    return rates
