"""Reduced-precision unrolls: the losses under bfloat16 autocast, everything else in float32.

With ``precision="bf16"`` the engine evaluates every inner loss and the outer loss under
``torch.autocast(device_type=<the parameters' device type>, dtype=torch.bfloat16)``: autocast runs the
convolutions and matmuls (and their backward and double-backward kernels, which follow the dtype of the
saved bf16 inputs) in bfloat16 and casts their gradients back to the float32 parameters; the fused ConvNet
blocks (``model.fused``) take the convolutions' bf16 maps as they are and compute in float32 inside. The state
``(theta, v)``, the SGD update, the adjoints and the summed meta-gradient stay float32, so rounding does
not accumulate in the state over a long unroll.

A bf16 meta-gradient is not the exact one: besides the losses' own rounding, a graph-free step and
the same step recomputed with its graph use different backward kernels, whose bf16 roundings differ,
so a recomputed segment starts from a boundary state of a slightly different trajectory. On a short unroll
the direction stays that of the float32 one (cosine >= 0.99 on a ConvNet-16 at T=10, checked in tests); it
degrades with length and width (0.877 measured on ConvNet-128 at T=50 by ``python -m rtp_scale.bench unroll
--precision bf16``), so bf16 is opt-in and experimental.

With ``precision="bf16_reverse"`` (segmented and truncated modes) the forward pass runs in float32 -- the
trajectory, the boundary states and the final weights are float32's, bit for bit -- and only what the reverse
pass computes is under autocast: every recomputed segment (its steps and their double backward) and the outer
loss. The rounding then stays inside one segment instead of compounding along the whole unroll: on the
benchmark's ConvNet-128 at T=50 (segments of 8 steps) the meta-gradient's cosine to float32's on the same outer
step is 0.995 (two runs), against 0.767-0.779 for ``bf16`` (``python -m rtp_scale.bench unroll --precision ...``,
AMD EPYC with AVX512-BF16). It forgoes bf16 on the forward pass, so it is slower than ``bf16`` (6.15 against
5.89 s per step in the same benchmark).

bfloat16 is only faster where the hardware computes it natively (tensor cores on CUDA, AMX or
AVX512-BF16 on x86 CPUs); elsewhere it is emulated and slower than float32:
:func:`fast_bf16_available` says which.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch

PRECISIONS = ("fp32", "bf16", "bf16_reverse")


def fast_bf16_available(device: torch.device | str) -> tuple[bool, str]:
    """Whether ``device`` computes bfloat16 natively (faster than float32), and why in a few words."""
    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return True, f"{torch.cuda.get_device_name(device)} supports bfloat16"
        return False, "this CUDA device has no native bfloat16 support"
    if device.type == "cpu":
        # private probes of torch.backends.cpu; absent in some releases, where we cannot tell
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        avx512_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
        if amx is not None and amx():
            return True, "the CPU has AMX tiles"
        if avx512_bf16 is not None and avx512_bf16():
            return True, "the CPU has AVX512-BF16"
        if amx is None and avx512_bf16 is None:
            return False, f"torch {torch.__version__} cannot tell whether this CPU has AMX or AVX512-BF16"
        return False, "the CPU has neither AMX nor AVX512-BF16, so bfloat16 is emulated"
    return False, f"no bfloat16 fast path is known for device type {device.type!r}"


def under_autocast(fn: Callable, precision: str, device_type: str) -> Callable:
    """``fn`` itself for ``"fp32"`` (bit-for-bit unchanged), else ``fn`` called under bf16 autocast."""
    if precision == "fp32":
        return fn

    def wrapped(*args, **kwargs):
        with autocast(precision, device_type):
            return fn(*args, **kwargs)
    return wrapped


def autocast(precision: str, device_type: str) -> contextlib.AbstractContextManager:
    """The autocast context of ``precision`` (a no-op for ``"fp32"``)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
