"""The ConvNet's ``instance norm -> affine -> ReLU -> 2x2 average pool`` block as one fused function, with hand-written
first AND second derivatives (``model.fused``).

Why: an RtP unroll differentiates the inner gradient itself (a double backward per inner step). Autograd builds
that from the modules' own formulas -- GroupNorm's double backward alone is dozens of full-size elementwise
kernels, each reading and writing the block's largest activation -- so on a CPU the memory-bound ops around the
convolutions cost about as much as the convolutions. Here the block is three pure functions (forward, backward,
and the vector-Jacobian product of the backward), each compiled by ``torch.compile`` into a few fused loops, and
two ``autograd.Function``s wire them together so that autograd's create-graph backward and double backward run
them instead. The block saves only its input ``z`` and the per-channel mean and inverse std (autograd's chain
saves the input, the normalised map, the ReLU output and the pooling input), which halves the graph an inner step
keeps. Same function, same derivatives (float64: equal to autograd's to ~1e-15, ``tests/test_fused_block.py``);
only the float rounding differs.

The derivatives, per image n and channel c over the M = H*W positions, with <.> the mean over positions::

    forward    mu = <z>, s = (<(z - mu)^2> + eps)^-1/2, x = (z - mu) s, a = g x + b, h = pool(relu(a))
    backward   (given dh)  da = [a > 0] * pool^T(dh),  dg = sum_{n,hw} da x,  db = sum_{n,hw} da,
               u = g da,   dz = s P(u)  with P(u) = u - <u> - x <u x>   (P is self-adjoint)
    backward of the backward, given cotangents (Dz, Dg, Db) of (dz, dg, db); w = s Dz:
               cot da = g P(w) + Dg x + Db              cot g  = sum_{n,hw} da P(w)
               cot dh = pool([a > 0] * cot da)          cot b  = 0 (b only moves the ReLU's kink)
               cot z  = s (X - <X> - x <X x>) - S s^2 x / M,
               with X = -w <u x> - u <w x> + Dg da  (the explicit x-dependence) and S = sum_hw Dz (u - <u> - x <u x>)
               (the s-dependence), using d x_i / d z_j = s (delta_ij - 1/M - x_i x_j / M).

Third derivatives are not implemented (the engine never needs them): asking for them raises.

Compilation happens on first use: about 35 s for the default job on a 2-core CPU, cached on disk by torch
(``TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_$USER``), after which a new process spends about 4 s
importing the compiler and loading its kernels. Where compiling fails (no C++ compiler, an unsupported device),
one line says so and the ConvNet runs its plain modules from then on. Under ``torch.func`` transforms (``vmap``
of stacked unrolls) it uses its plain modules too.
"""
from __future__ import annotations

import logging
import sys
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def _mean(t: Tensor) -> Tensor:
    """Per (image, channel) mean over the spatial positions, kept as [N, C, 1, 1]."""
    return t.mean(dim=(2, 3), keepdim=True)


def _channel_sum(t: Tensor) -> Tensor:
    """Per-channel sum over images and positions, [C] (spatial first: inductor vectorises that order)."""
    return t.sum(dim=(2, 3)).sum(0)


def _wide(t: Tensor) -> Tensor:
    """A half-precision map widened to float32 inside a kernel. The maps cross the kernels' boundaries in the dtype
    the convolutions use (under bf16 autocast: bfloat16), so a block costs no separate cast kernels and half the
    memory traffic; the statistics, the reductions and the weights' gradients stay float32 (or float64)."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def _fwd(z_io: Tensor, g: Tensor, b: Tensor, eps: float, pool: bool) -> tuple[Tensor, Tensor, Tensor]:
    """-> (h, mu, s), the statistics as [N, C, 1, 1]."""
    z = _wide(z_io)
    mu = _mean(z)
    zc = z - mu
    s = torch.rsqrt(_mean(zc * zc) + eps)
    r = torch.relu(zc * s * g[:, None, None] + b[:, None, None])
    return (F.avg_pool2d(r, 2) if pool else r).to(z_io.dtype), mu, s


def _normalised(z: Tensor, mu: Tensor, s: Tensor) -> Tensor:
    """x = (z - mu) s, in a kernel of its own: recomputed inside the many reductions of ``_bwd`` and ``_dbl`` it
    makes them about ten times slower (inductor then recomputes it in every loop)."""
    return (_wide(z) - mu) * s


def _bwd(dr_io: Tensor, x: Tensor, s: Tensor, g: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    g4 = g[:, None, None]
    dr = _wide(dr_io)
    da = torch.where(x * g4 + b[:, None, None] > 0, dr, 0.0)
    u = da * g4
    dz = s * (u - _mean(u) - x * _mean(u * x))
    return dz.to(dr_io.dtype), _channel_sum(da * x), _channel_sum(da)


def _dbl(Dz_io: Tensor, Dg: Tensor, Db: Tensor, dr_io: Tensor, x: Tensor, s: Tensor, g: Tensor,
         b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    g4, Dg4 = g[:, None, None], Dg[:, None, None]
    Dz, dr = _wide(Dz_io), _wide(dr_io)
    relu_on = x * g4 + b[:, None, None] > 0
    da = torch.where(relu_on, dr, 0.0)
    u = da * g4
    ux = _mean(u * x)
    w = s * Dz
    wx = _mean(w * x)
    Pw = w - _mean(w) - x * wx
    cot_dr = torch.where(relu_on, g4 * Pw + Dg4 * x + Db[:, None, None], 0.0)
    X = -w * ux - u * wx + Dg4 * da
    S = (Dz * (u - _mean(u) - x * ux)).sum(dim=(2, 3), keepdim=True)
    M = x.shape[2] * x.shape[3]
    cot_z = s * (X - _mean(X) - x * _mean(X * x)) - S * s * s * x / M
    return cot_dr.to(dr_io.dtype), cot_z.to(Dz_io.dtype), _channel_sum(da * Pw)


def _unpool(dh: Tensor, height: int, width: int) -> Tensor:
    """Adjoint of the 2x2 average pool: each pooled gradient over its 2x2 block, / 4; an odd last row/column gets 0.

    Its own compiled function: fused into the reductions of ``_bwd`` its index arithmetic defeats vectorisation."""
    n, c, h2, w2 = dh.shape
    up = (dh * 0.25)[:, :, :, None, :, None].expand(n, c, h2, 2, w2, 2).reshape(n, c, 2 * h2, 2 * w2)
    return F.pad(up, (0, width - 2 * w2, 0, height - 2 * h2))


def _pool(t: Tensor) -> Tensor:
    return F.avg_pool2d(t, 2)


def _use_shape_rules() -> None:
    """Set, for this process, the compile settings under which a kernel call's float rounding depends on its own
    shapes only. Images and channels are symbolic sizes (:func:`_dynamic`), the spatial sizes fixed (the
    vectorised inner loops need them): one graph per kernel, map size, dtype and pooling flag, whatever the batch
    or width. No graph specialised to equal sizes (duck shaping) or to a size of 1, no size made symbolic because
    an earlier call differed (automatic dynamic shapes), and no silent fall-back to uncompiled code after many
    graphs: otherwise a process's earlier calls decide which compiled variant a shape meets, and a resumed run
    differs from an uninterrupted one in the last bits. Set once for the process (torch reads them only while
    compiling) rather than around every call, which would cost 50 us a call; nothing else here compiles."""
    import torch._dynamo.config  # imported on first use: a second to import, and only fused runs need it
    import torch.fx.experimental._config

    torch.fx.experimental._config.use_duck_shape = False
    torch.fx.experimental._config.backed_size_oblivious = True
    torch._dynamo.config.automatic_dynamic_shapes = False
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)


def _dynamic(t: Tensor) -> Tensor:
    """``t`` detached (autograd.Function hands inputs over with their requires_grad flags, which a compiled graph
    would guard on), its first two sizes (images, channels; a [C] vector's only one) marked symbolic."""
    t = t.detach()
    torch._dynamo.mark_dynamic(t, list(range(min(t.dim(), 2))))
    return t


class _Kernel:
    """A pure tensor function, compiled on first call. If compiling fails, the call runs uncompiled, one line says
    so, and :func:`can_fuse` turns the ConvNet back to its plain modules (faster than uncompiled kernels)."""

    failed = False

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self._compiled: Callable | None = None

    def __call__(self, *args):
        if _Kernel.failed:
            return self.fn(*args)  # a graph recorded before the failure still calls its kernels
        if self._compiled is None:
            # torch's C++ build helper logs a warning about CUDA_HOME on CPU-only machines: not ours to show
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
            _use_shape_rules()
            self._compiled = torch.compile(self.fn)
        try:
            return self._compiled(*(_dynamic(a) if isinstance(a, Tensor) else a for a in args))
        except Exception as error:  # compilation failed (no compiler, unsupported device): run it as written
            out = self.fn(*args)  # an error in the kernel itself raises here, uncaught
            _Kernel.failed = True
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            print(f"warning: model.fused: torch.compile failed ({first}); the ConvNet runs its plain modules from "
                  f"here on, as with model.fused=false", file=sys.stderr)
            return out


_FWD, _NORMALISED, _BWD, _DBL, _UNPOOL, _POOL = (_Kernel(f) for f in (_fwd, _normalised, _bwd, _dbl, _unpool, _pool))


class _BlockBackward(torch.autograd.Function):
    """(dh, z, g, b) -> (dz, dg, db): the block's backward, itself differentiable (the double backward)."""

    @staticmethod
    def forward(ctx, dh: Tensor, z: Tensor, g: Tensor, b: Tensor, mu: Tensor, s: Tensor, pool: bool):
        # dh, not its 4x larger unpooled map: a kept inner step's graph is smaller, for one more cheap unpool
        ctx.save_for_backward(dh, z, mu, s, g, b)
        ctx.pool = pool
        return _BWD(_unpooled(dh, z, pool), _NORMALISED(z, mu, s), s, g, b)

    @staticmethod
    def backward(ctx, Dz: Tensor | None, Dg: Tensor | None, Db: Tensor | None):
        if torch.is_grad_enabled():
            raise RuntimeError("model.fused: third derivatives of the fused ConvNet block are not implemented; "
                               "set model.fused=false")
        dh, z, mu, s, g, b = ctx.saved_tensors
        Dz = torch.zeros_like(z) if Dz is None else Dz
        Dg = torch.zeros_like(g) if Dg is None else Dg
        Db = torch.zeros_like(g) if Db is None else Db
        cot_dr, cot_z, cot_g = _DBL(Dz, Dg, Db, _unpooled(dh, z, ctx.pool), _NORMALISED(z, mu, s), s, g, b)
        cot_dh = _POOL(cot_dr) if ctx.pool else cot_dr
        return cot_dh, cot_z, cot_g, None, None, None, None


def _unpooled(dh: Tensor, z: Tensor, pool: bool) -> Tensor:
    return _UNPOOL(dh, z.shape[2], z.shape[3]) if pool else dh


class _Block(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, g: Tensor, b: Tensor, eps: float, pool: bool):
        h, mu, s = _FWD(z, g, b, eps, pool)
        ctx.save_for_backward(z, g, b, mu, s)
        ctx.pool = pool
        return h

    @staticmethod
    def backward(ctx, dh: Tensor):
        z, g, b, mu, s = ctx.saved_tensors
        dz, dg, db = _BlockBackward.apply(dh, z, g, b, mu, s, ctx.pool)
        return dz, dg, db, None, None


def norm_relu_pool(z: Tensor, weight: Tensor, bias: Tensor, *, eps: float, pool: bool) -> Tensor:
    """``avg_pool2d(relu(group_norm(z, C, weight, bias, eps)), 2)`` (no pool when ``pool`` is False), fused.

    A bfloat16 (or float16) ``z``, as a convolution under autocast returns it, is read as it is: the block computes
    in float32, as autocast runs group norm, and returns ``h`` and the gradient for ``z`` in ``z``'s dtype."""
    return _Block.apply(z, weight, bias, float(eps), bool(pool))


def can_fuse(*tensors: Tensor) -> bool:
    """Whether the fused block may run on these tensors: its kernels compile here, and no ``torch.func`` transform
    is active (vmap/grad wrap tensors, and the hand-written autograd.Functions define no vmap rule)."""
    return not _Kernel.failed and not any(torch._C._functorch.is_functorch_wrapped_tensor(t) for t in tensors)
