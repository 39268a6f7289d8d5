"""The unroll engine: exact meta-gradients through a long inner SGD-momentum loop.

Inner loop (t = 0 .. T-1, ``s_t = (theta_t, v_t)``, ``v_0 = 0``)::

    g_t         = R( grad_theta inner_loss(theta_t, t, meta) )     R = reduce_grad (or identity)
    v_{t+1}     = mu * v_t + g_t + wd * theta_t
    theta_{t+1} = theta_t - lrs[t] * v_{t+1}

and the meta-objective is ``L = outer_loss(theta_T)``. We want ``dL/dmeta`` and ``dL/dlrs``.

Why the segmented reverse pass is exact
---------------------------------------
Write the whole unroll as a composition of segment maps ``s_{b+1} = F_b(s_b, meta, lrs)``
over boundaries ``0 = t_0 < t_1 < ... < t_n = T``. By the chain rule, with adjoints
``a_b = dL/ds_b`` (a pair: ``(dL/dtheta, dL/dv)``)::

    a_n        = (dL/dtheta_T, 0)                       (L does not read v_T)
    a_b        = a_{b+1} . dF_b/ds_b                    (vector-Jacobian product)
    dL/dmeta   = sum_b a_{b+1} . dF_b/dmeta             (and the same for lrs)

Every term is a vector-Jacobian product of ONE segment evaluated at its input state ``s_b``.
So it suffices to store ``s_b`` (without graph) during a graph-free forward pass, and in the
reverse pass, for ``b = n-1 .. 0``: reload ``s_b`` as fresh leaves, recompute ``F_b`` with
``create_graph=True`` inner gradients (so the graph contains ``dg/dtheta`` and the mixed term
``dg/dmeta``), and call ``torch.autograd.grad(F_b outputs, (s_b, meta, lrs), grad_outputs=a_{b+1})``
once. The gradient of the loss through the state is exactly ``a_b``; the gradients w.r.t.
``meta`` / ``lrs`` are this segment's contributions, summed over segments. Nothing is
approximated: the recomputation evaluates the same deterministic function at the same point
(``inner_loss`` must be a pure function of ``(params, t, meta)``, with all randomness
pre-drawn per ``t``), so the result equals back-propagation through one big graph up to
floating-point summation order (float64: relative error ~1e-15, checked in tests).

Costs: segment length ``k`` gives device memory of one segment's graph plus ``ceil(T/k)``
stored states (on host with ``offload``), and about two inner forwards + one double backward
per step. ``full`` mode records one graph for all T steps and back-propagates once.
``truncated`` mode (RaT-BPTT) runs the first ``T - W`` steps graph-free, treats ``s_{T-W}`` as
a constant and differentiates the last ``W`` steps with the same segmented recursion.

``reduce_grad`` (e.g. a differentiable all-reduce of the inner gradient over inner-batch
shards) is applied in the forward pass and in every recomputation, so all ranks call it the
same number of times in the same order; its backward sums the adjoints across ranks.
"""
from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from rtp_scale.unroll.inner import Params, sgd_momentum_step, zeros_like_params
from rtp_scale.unroll.policy import UnrollPolicy

InnerLoss = Callable[[Params, int, tuple[Tensor, ...]], Tensor]
OuterLoss = Callable[[Params], Tensor]
GradReducer = Callable[[Params], Params] | None


@dataclass(frozen=True)
class ChunkedLoss:
    """An outer loss given as parts whose sum is the loss (e.g. chunks of a large real batch).

    Calling it returns the whole loss, which ``full`` mode differentiates inside its one graph. The
    ``segmented`` and ``truncated`` modes take ``dL/dtheta_T`` one part at a time and add the parts'
    gradients, so only one part's activations are alive at once: the same gradient (up to summation
    order) at a fraction of the peak memory when the real batch is large.
    """

    parts: tuple[OuterLoss, ...]

    def __call__(self, params: Params) -> Tensor:
        return sum(part(params) for part in self.parts)


def _outer_value_and_grad(outer_loss: OuterLoss, theta: Params, names: list[str]) -> tuple[Tensor, list[Tensor]]:
    """``(L(theta), dL/dtheta)`` for the given parameter names, one :class:`ChunkedLoss` part at a time."""
    parts = outer_loss.parts if isinstance(outer_loss, ChunkedLoss) else (outer_loss,)
    inputs = [theta[n] for n in names]
    total: Tensor | None = None
    grads: list[Tensor] | None = None
    for part in parts:
        value = part(theta)
        part_grads = [g if g is not None else torch.zeros_like(x)
                      for g, x in zip(torch.autograd.grad(value, inputs, allow_unused=True), inputs)]
        grads = part_grads if grads is None else [a + b for a, b in zip(grads, part_grads)]
        total = value.detach() if total is None else total + value.detach()
        del value  # this part's graph (its activations) goes before the next part is computed
    assert total is not None and grads is not None, "a ChunkedLoss needs at least one part"
    return total, grads


@dataclass
class UnrollResult:
    """What one unroll returns. All tensors are detached."""

    outer_loss: float
    meta_grads: tuple[Tensor | None, ...]
    """``dL/dmeta[i]``; ``None`` exactly when ``meta[i].requires_grad`` is False, otherwise a
    tensor (zeros if L does not depend on ``meta[i]`` within the differentiated steps)."""
    lr_grad: Tensor | None
    """``dL/dlrs`` (same shape as ``lrs``; zero outside the truncation window) when
    ``lrs.requires_grad``, else ``None``."""
    inner_losses: list[float]
    """Inner loss of every executed step, from the forward pass."""
    final_params: Params
    steps_run: int
    steps_differentiated: int
    stored_states: int = 0
    """How many boundary (theta, v) states the reverse pass kept (0 in full mode)."""


# --------------------------------------------------------------------------------------------
# one inner step


def _inner_step(
    theta: Params, v: Params, t: int, meta: tuple[Tensor, ...], lr: Tensor, *,
    inner_loss: InnerLoss, momentum: float, weight_decay: float,
    reduce_grad: GradReducer, create_graph: bool,
) -> tuple[Params, Params, Tensor]:
    """``(theta, v) -> (theta', v')`` for step ``t``; ``theta`` tensors must require grad.

    With ``create_graph=False`` the returned state carries no graph (the caller re-leafs it)."""
    loss = inner_loss(theta, t, meta)
    names = list(theta)
    raw = torch.autograd.grad(loss, [theta[n] for n in names], create_graph=create_graph,
                              allow_unused=True)
    grads = {n: (torch.zeros_like(theta[n]) if g is None else g) for n, g in zip(names, raw)}
    if reduce_grad is not None:
        grads = reduce_grad(grads)
    if create_graph:
        new_theta, new_v = sgd_momentum_step(theta, v, grads, lr=lr, momentum=momentum,
                                             weight_decay=weight_decay)
    else:
        with torch.no_grad():
            new_theta, new_v = sgd_momentum_step({n: p.detach() for n, p in theta.items()}, v, grads,
                                                 lr=lr, momentum=momentum, weight_decay=weight_decay)
    return new_theta, new_v, loss.detach()


def _leaves(state: Params, requires_grad: bool) -> Params:
    return {n: x.detach().requires_grad_(requires_grad) for n, x in state.items()}


# --------------------------------------------------------------------------------------------
# boundary-state storage


class _StateStore:
    """Boundary states, on the device or (``offload``) in host memory, pinned for CUDA."""

    def __init__(self, offload: bool) -> None:
        self.offload = offload
        self._states: dict[int, tuple[Params, Params, dict[str, torch.device]]] = {}

    def _to_host(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu":
            return x.detach()  # already in host memory
        host = torch.empty(x.shape, dtype=x.dtype, device="cpu", pin_memory=x.is_cuda)
        host.copy_(x.detach(), non_blocking=True)
        return host

    def put(self, t: int, theta: Params, v: Params) -> None:
        devices = {n: x.device for n, x in theta.items()}
        if self.offload:
            theta = {n: self._to_host(x) for n, x in theta.items()}
            v = {n: self._to_host(x) for n, x in v.items()}
        else:
            theta = {n: x.detach() for n, x in theta.items()}
            v = {n: x.detach() for n, x in v.items()}
        self._states[t] = (theta, v, devices)

    def pop(self, t: int) -> tuple[Params, Params]:
        theta, v, devices = self._states.pop(t)
        if self.offload:
            theta = {n: x.to(devices[n], non_blocking=True) for n, x in theta.items()}
            v = {n: x.to(devices[n], non_blocking=True) for n, x in v.items()}
        return theta, v

    def __len__(self) -> int:
        return len(self._states)


# --------------------------------------------------------------------------------------------
# the engine


def _check_inputs(params0: Params, meta: tuple[Tensor, ...], steps: int, lrs: Tensor) -> None:
    if not isinstance(meta, tuple):
        raise TypeError(f"meta must be a tuple of tensors, got {type(meta).__name__}")
    if lrs.dim() != 1 or lrs.shape[0] != steps:
        raise ValueError(f"lrs must be a 1-D tensor of length steps={steps}, got shape {tuple(lrs.shape)}")
    if not params0:
        raise ValueError("params0 is empty")


def unroll_meta_grad(
    *,
    inner_loss: InnerLoss,
    outer_loss: OuterLoss,
    params0: Params,
    meta: tuple[Tensor, ...],
    steps: int,
    lrs: Tensor,
    momentum: float,
    weight_decay: float = 0.0,
    policy: UnrollPolicy = UnrollPolicy(),
    reduce_grad: GradReducer = None,
) -> UnrollResult:
    """Run ``steps`` inner SGD-momentum steps from ``params0`` (velocity 0) and return the exact
    gradient of ``outer_loss(theta_T)`` w.r.t. ``meta`` and ``lrs`` (see the module docstring).

    ``inner_loss(params, t, meta)`` must be deterministic given its arguments (pre-draw
    minibatches / augmentation per ``t``) and must read the meta-parameters only through
    ``meta``. ``outer_loss`` must not depend on ``meta``. ``lrs[t]`` is the learning rate of
    step ``t``; it is differentiated when ``lrs.requires_grad``. Runs with autograd enabled even
    when called under ``torch.no_grad()``.
    """
    with torch.enable_grad():
        return _unroll(inner_loss=inner_loss, outer_loss=outer_loss, params0=params0, meta=meta,
                       steps=steps, lrs=lrs, momentum=momentum, weight_decay=weight_decay,
                       policy=policy, reduce_grad=reduce_grad)


def _unroll(*, inner_loss: InnerLoss, outer_loss: OuterLoss, params0: Params, meta: tuple[Tensor, ...],
            steps: int, lrs: Tensor, momentum: float, weight_decay: float, policy: UnrollPolicy,
            reduce_grad: GradReducer) -> UnrollResult:
    _check_inputs(params0, meta, steps, lrs)
    k = policy.segment_length(steps)  # validates the policy against `steps`
    n_diff = policy.differentiated_steps(steps)
    step = dict(inner_loss=inner_loss, momentum=momentum, weight_decay=weight_decay,
                reduce_grad=reduce_grad)
    want_meta = [i for i, m in enumerate(meta) if m.requires_grad]
    wrt: list[Tensor] = [meta[i] for i in want_meta] + ([lrs] if lrs.requires_grad else [])
    lrs_const = lrs.detach()
    meta_const = tuple(m.detach() for m in meta)
    losses: list[Tensor] = []

    def finish(flat_grads: list[Tensor | None], theta_T: Params, loss_T: Tensor, stored: int) -> UnrollResult:
        meta_grads: list[Tensor | None] = [None] * len(meta)
        for j, i in enumerate(want_meta):
            g = flat_grads[j]
            meta_grads[i] = torch.zeros_like(meta[i]) if g is None else g.detach()
        lr_grad = None
        if lrs.requires_grad:
            g = flat_grads[len(want_meta)]
            lr_grad = torch.zeros_like(lrs) if g is None else g.detach()
        return UnrollResult(
            outer_loss=float(loss_T), meta_grads=tuple(meta_grads), lr_grad=lr_grad,
            inner_losses=torch.stack(losses).tolist(), final_params=_leaves(theta_T, False),
            steps_run=steps, steps_differentiated=n_diff, stored_states=stored)

    theta = _leaves(params0, True)
    v = zeros_like_params(params0)

    if policy.mode == "full":
        # One graph over all steps, one backward: the reference and the fastest for short T.
        for t in range(steps):
            theta, v, loss = _inner_step(theta, v, t, meta, lrs[t], create_graph=True, **step)
            losses.append(loss)
        loss_T = outer_loss(theta)
        flat = list(torch.autograd.grad(loss_T, wrt, allow_unused=True)) if wrt else []
        return finish(flat, theta, loss_T.detach(), 0)

    # ---- forward: graph-free, keep (theta, v) at segment starts inside the differentiated span
    start = steps - n_diff
    bounds = list(range(start, steps, k))  # segment b covers [bounds[b], min(bounds[b]+k, steps))
    bound_set = set(bounds)
    store = _StateStore(policy.offload)
    for t in range(steps):
        if t in bound_set:
            store.put(t, theta, v)
        theta, v, loss = _inner_step(theta, v, t, meta_const, lrs_const[t], create_graph=False, **step)
        theta = _leaves(theta, True)
        losses.append(loss)
    n_stored = len(store)

    # ---- adjoint at the end: a_theta = dL/dtheta_T, a_v = 0 (L does not read v_T)
    theta_T = theta
    names = list(theta_T)
    loss_T, a_theta = _outer_value_and_grad(outer_loss, theta_T, names)
    a_v: list[Tensor] | None = None  # None == all zeros: v_T is left out of the first backward

    # ---- reverse: one segment at a time, last to first
    acc: list[Tensor | None] = [None] * len(wrt)
    for b in reversed(range(len(bounds)) if wrt else []):  # nothing to differentiate: no reverse pass
        t0, t1 = bounds[b], min(bounds[b] + k, steps)
        theta_b, v_b = store.pop(t0)
        # The first segment of a full unroll starts from the fixed init (theta_0, v_0 = 0): no
        # adjoint is needed there; a truncated window's first segment also ends the recursion.
        need_state_grad = b > 0
        th = _leaves(theta_b, True)
        vv = _leaves(v_b, need_state_grad)
        th_start, v_start = th, vv
        for t in range(t0, t1):
            th, vv, _ = _inner_step(th, vv, t, meta, lrs[t], create_graph=True, **step)
        outputs = [th[n] for n in names]
        grad_out = list(a_theta)
        if a_v is not None:
            outputs += [vv[n] for n in names]
            grad_out += a_v
        # an output without graph (e.g. v of a loss linear in theta and free of meta) adds nothing
        keep = [i for i, o in enumerate(outputs) if o.requires_grad]
        outputs, grad_out = [outputs[i] for i in keep], [grad_out[i] for i in keep]
        inputs = ([th_start[n] for n in names] + [v_start[n] for n in names]) if need_state_grad else []
        inputs += wrt
        grads = torch.autograd.grad(outputs, inputs, grad_outputs=grad_out, allow_unused=True)
        del th, vv, outputs, th_start, v_start  # free this segment's graph before the next one
        if need_state_grad:
            n = len(names)
            a_theta = [g if g is not None else torch.zeros_like(theta_T[nm])
                       for nm, g in zip(names, grads[:n])]
            a_v = [g if g is not None else torch.zeros_like(theta_T[nm])
                   for nm, g in zip(names, grads[n:2 * n])]
            grads = grads[2 * n:]
        for j, g in enumerate(grads):
            if g is not None:
                acc[j] = g if acc[j] is None else acc[j] + g
    return finish(acc, theta_T, loss_T.detach(), n_stored)


# --------------------------------------------------------------------------------------------
# memory sanity meter (CPU-friendly): peak bytes held by autograd's saved tensors


class SavedTensorMeter:
    """Context manager measuring the peak bytes of tensors saved for backward while active.

    Works on any device (it hooks ``torch.autograd.graph.saved_tensors_hooks``): every saved
    tensor is wrapped in a small holder whose lifetime is the graph's, so ``peak_bytes`` is the
    largest amount of graph memory alive at once. Tensors saved several times are counted each
    time (an upper bound on real memory; the ratio between policies is what matters)::

        with SavedTensorMeter() as meter:
            unroll_meta_grad(...)
        meter.peak_bytes
    """

    def __init__(self) -> None:
        self.live_bytes = 0
        self.peak_bytes = 0
        self._ctx: contextlib.AbstractContextManager | None = None

    def _release(self, nbytes: int) -> None:
        self.live_bytes -= nbytes

    def _pack(self, x: Tensor) -> object:
        holder = _Held(x)
        nbytes = x.numel() * x.element_size()
        self.live_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        weakref.finalize(holder, self._release, nbytes)
        return holder

    @staticmethod
    def _unpack(holder: object) -> Tensor:
        return holder.tensor  # type: ignore[attr-defined]

    def __enter__(self) -> "SavedTensorMeter":
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._ctx is not None
        self._ctx.__exit__(*exc)


class _Held:
    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor
