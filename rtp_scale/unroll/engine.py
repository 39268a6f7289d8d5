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

A memory budget (``policy.memory_budget_mb``, segmented mode) makes the last ``m`` steps one more
segment whose graph is recorded in the forward pass itself: from step ``T - m`` the forward pass
re-leafs the state (requiring grad, exactly as a recomputed segment starts) and runs with
``create_graph=True``; the reverse pass back-propagates that tail first, with one
``autograd.grad`` to ``(theta_{T-m}, v_{T-m}, meta, lrs)``, frees it, and recomputes the segments
of ``[0, T - m)`` as above. The recursion is the same, so the gradient is the same. ``m`` is the
number of steps whose graphs fit in the budget next to the outer loss's graph (see
:meth:`UnrollPolicy.kept_steps`). Both are measured with :class:`SavedTensorMeter` at the start of every
unroll: the forward pass's step 0 runs with its graph (its result is the forward value) and the
outer loss's first part is evaluated once at ``theta_0`` without a backward (the measurements'
extra work: that forward, and step 0's graph when it is not kept). ``m = T`` is ``full`` mode.
The budget bounds autograd's saved tensors of the unroll, not the process's resident memory
(boundary states, adjoints, parameters and the allocator's cache come on top).

``policy.precision = "bf16"`` evaluates every ``inner_loss`` and ``outer_loss`` (forward pass and
recomputations alike) under bfloat16 autocast (:mod:`.precision`); the rest stays float32.

``reduce_grad`` (e.g. a differentiable all-reduce of the inner gradient over inner-batch
shards) is applied in the forward pass and in every recomputation, so all ranks call it the
same number of times in the same order; its backward sums the adjoints across ranks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from rtp_scale.errors import UserError
from rtp_scale.unroll.inner import Params, sgd_momentum_step, zeros_like_params
from rtp_scale.unroll.meter import SavedTensorMeter
from rtp_scale.unroll.policy import UnrollPolicy
from rtp_scale.unroll.precision import under_autocast

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
    kept_steps: int = 0
    """Final steps whose graph the forward pass kept under a memory budget (not recomputed)."""
    bytes_per_step: int = 0
    """Saved-tensor bytes of one inner step's graph, as measured under a memory budget (else 0)."""
    outer_graph_bytes: int = 0
    """Saved-tensor bytes of the outer loss's (first part's) graph, as measured under a memory budget (else 0)."""


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


def _check_budget_and_precision(policy: UnrollPolicy, params0: Params, meta: tuple[Tensor, ...],
                                reduce_grad: GradReducer) -> None:
    if policy.precision != "fp32" and any(x.dtype == torch.float64 for x in [*params0.values(), *meta]):
        raise UserError(f"unroll precision {policy.precision!r} would silently compute this float64 unroll's losses "
                        "in bfloat16; use precision 'fp32' for float64")
    if policy.memory_budget_mb > 0 and reduce_grad is not None:
        # each shard measures its own graph and could keep another number of steps, which would pair
        # different steps' all-reduces across shards
        raise UserError("an unroll memory budget cannot be combined with a sharded inner batch "
                        "(reduce_grad, dist.inner_shards > 1): every shard must recompute the same steps")


def _with_precision(inner_loss: InnerLoss, outer_loss: OuterLoss, precision: str,
                    device_type: str) -> tuple[InnerLoss, InnerLoss, OuterLoss]:
    """(forward-pass inner loss, recomputed inner loss, outer loss) under ``precision``'s autocast.

    fp32: the very same functions (the default path is untouched); bf16: all three under autocast;
    bf16_reverse: the forward pass in float32, the recomputed segments and the outer loss under autocast.
    ChunkedLoss parts stay parts."""
    if precision == "fp32":
        return inner_loss, inner_loss, outer_loss
    if isinstance(outer_loss, ChunkedLoss):
        outer: OuterLoss = ChunkedLoss(tuple(under_autocast(p, "bf16", device_type) for p in outer_loss.parts))
    else:
        outer = under_autocast(outer_loss, "bf16", device_type)
    reduced = under_autocast(inner_loss, "bf16", device_type)
    return (inner_loss if precision == "bf16_reverse" else reduced), reduced, outer


def _outer_graph_bytes(outer_loss: OuterLoss, theta: Params) -> int:
    """Saved-tensor bytes of the outer loss's graph at ``theta`` (its first part for a ChunkedLoss: parts are
    differentiated one at a time, and a batch cut into equal parts and a remainder has its largest part first)."""
    first = outer_loss.parts[0] if isinstance(outer_loss, ChunkedLoss) else outer_loss
    with SavedTensorMeter() as meter:
        value = first(theta)
    del value  # forward only: the backward frees saved tensors, it never adds any
    return meter.peak_bytes


def _segment_vjp(end: tuple[Params, Params], start: tuple[Params, Params], names: list[str],
                 a_theta: list[Tensor], a_v: list[Tensor] | None, wrt: list[Tensor], need_state_grad: bool,
                 ) -> tuple[list[Tensor], list[Tensor] | None, tuple[Tensor | None, ...]]:
    """One segment's vector-Jacobian product: the adjoint ``(a_theta, a_v)`` at its start (unchanged when
    ``need_state_grad`` is False) and its contributions to the gradients of ``wrt``."""
    th, vv = end
    outputs = [th[n] for n in names]
    grad_out = list(a_theta)
    if a_v is not None:  # None == all zeros: v_T is left out of the first backward
        outputs += [vv[n] for n in names]
        grad_out += a_v
    # an output without graph (e.g. v of a loss linear in theta and free of meta) adds nothing
    keep = [i for i, o in enumerate(outputs) if o.requires_grad]
    outputs, grad_out = [outputs[i] for i in keep], [grad_out[i] for i in keep]
    inputs = ([start[0][n] for n in names] + [start[1][n] for n in names]) if need_state_grad else []
    grads = torch.autograd.grad(outputs, inputs + wrt, grad_outputs=grad_out, allow_unused=True)
    if not need_state_grad:
        return a_theta, a_v, grads
    n = len(names)
    state_grads = [g if g is not None else torch.zeros_like(x) for g, x in zip(grads[:2 * n], inputs)]
    return state_grads[:n], state_grads[n:], grads[2 * n:]


def _unroll(*, inner_loss: InnerLoss, outer_loss: OuterLoss, params0: Params, meta: tuple[Tensor, ...],
            steps: int, lrs: Tensor, momentum: float, weight_decay: float, policy: UnrollPolicy,
            reduce_grad: GradReducer) -> UnrollResult:
    _check_inputs(params0, meta, steps, lrs)
    k = policy.segment_length(steps)  # validates the policy against `steps`
    n_diff = policy.differentiated_steps(steps)
    _check_budget_and_precision(policy, params0, meta, reduce_grad)
    device_type = next(iter(params0.values())).device.type
    forward_loss, recomputed_loss, outer_loss = _with_precision(inner_loss, outer_loss, policy.precision,
                                                                device_type)
    step = dict(inner_loss=forward_loss, momentum=momentum, weight_decay=weight_decay,
                reduce_grad=reduce_grad)
    recomputed_step = {**step, "inner_loss": recomputed_loss}
    want_meta = [i for i, m in enumerate(meta) if m.requires_grad]
    wrt: list[Tensor] = [meta[i] for i in want_meta] + ([lrs] if lrs.requires_grad else [])
    lrs_const = lrs.detach()
    meta_const = tuple(m.detach() for m in meta)
    losses: list[Tensor] = []
    measured = dict(kept_steps=0, bytes_per_step=0, outer_graph_bytes=0)

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
            steps_run=steps, steps_differentiated=n_diff, stored_states=stored, **measured)

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

    start = steps - n_diff
    first_step = None  # step 0 run with its graph, to measure it (memory budget only)
    if policy.memory_budget_mb > 0 and wrt:
        measured["outer_graph_bytes"] = _outer_graph_bytes(outer_loss, theta)
        with SavedTensorMeter() as meter:
            first_step = _inner_step(theta, v, 0, meta, lrs[0], create_graph=True, **step)
        measured["bytes_per_step"] = meter.peak_bytes
        measured["kept_steps"] = policy.kept_steps(steps, per_step=meter.peak_bytes,
                                                   outer=measured["outer_graph_bytes"])
    tail_start = steps - measured["kept_steps"]  # steps >= tail_start keep their graph from the forward pass

    # ---- forward: graph-free before the tail, keep (theta, v) at segment starts inside the differentiated span
    bounds = list(range(start, tail_start, k))  # segment b covers [bounds[b], min(bounds[b]+k, tail_start))
    bound_set = set(bounds)
    store = _StateStore(policy.offload)
    tail_in: tuple[Params, Params] | None = None
    for t in range(steps):
        if t == tail_start:
            # the tail starts like a recomputed segment: from leaves (the fixed init at t = 0 needs no adjoint)
            if t > start:
                theta, v = _leaves(theta, True), _leaves(v, True)
            tail_in = (theta, v)
        elif t in bound_set:
            store.put(t, theta, v)
        if first_step is not None:  # t == 0: the measured step is the forward's step 0
            theta, v, loss = first_step
            first_step = None
        elif t >= tail_start:
            theta, v, loss = _inner_step(theta, v, t, meta, lrs[t], create_graph=True, **step)
        else:
            theta, v, loss = _inner_step(theta, v, t, meta_const, lrs_const[t], create_graph=False, **step)
        if t < tail_start:
            theta, v = _leaves(theta, True), _leaves(v, False)  # no graph before the tail
        losses.append(loss)
    n_stored = len(store)

    # ---- adjoint at the end: a_theta = dL/dtheta_T, a_v = 0 (L does not read v_T)
    tail_out = (theta, v)  # with the tail's graph when steps are kept
    theta_T = _leaves(theta, True) if tail_in is not None else theta
    del theta, v
    names = list(theta_T)
    loss_T, a_theta = _outer_value_and_grad(outer_loss, theta_T, names)
    a_v: list[Tensor] | None = None

    acc: list[Tensor | None] = [None] * len(wrt)

    def accumulate(grads: tuple[Tensor | None, ...]) -> None:
        for j, g in enumerate(grads):
            if g is not None:
                acc[j] = g if acc[j] is None else acc[j] + g

    if tail_in is not None:  # ---- reverse, first the kept tail from its forward-pass graph
        a_theta, a_v, grads = _segment_vjp(tail_out, tail_in, names, a_theta, a_v, wrt, tail_start > start)
        del tail_out, tail_in  # free the tail's graph before any segment is recomputed
        accumulate(grads)

    # ---- reverse: one recomputed segment at a time, last to first
    for b in reversed(range(len(bounds)) if wrt else []):  # nothing to differentiate: no reverse pass
        t0, t1 = bounds[b], min(bounds[b] + k, tail_start)
        theta_b, v_b = store.pop(t0)
        # The first segment of a full unroll starts from the fixed init (theta_0, v_0 = 0): no
        # adjoint is needed there; a truncated window's first segment also ends the recursion.
        need_state_grad = b > 0
        th_start, v_start = _leaves(theta_b, True), _leaves(v_b, need_state_grad)
        th, vv = th_start, v_start
        for t in range(t0, t1):
            th, vv, _ = _inner_step(th, vv, t, meta, lrs[t], create_graph=True, **recomputed_step)
        a_theta, a_v, grads = _segment_vjp((th, vv), (th_start, v_start), names, a_theta, a_v, wrt,
                                           need_state_grad)
        del th, vv, th_start, v_start  # free this segment's graph before the next one
        accumulate(grads)
    return finish(acc, theta_T, loss_T.detach(), n_stored)
