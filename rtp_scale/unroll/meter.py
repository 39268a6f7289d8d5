"""Peak bytes held by autograd's saved tensors (CPU-friendly): every save counted (memory sanity checks, the memory
budget) or every saved storage once (what a device holds; the planner in rtp_scale.bench.plan)."""
from __future__ import annotations

import contextlib
import weakref

import torch
from torch import Tensor


class _SavedTensorHooks:
    """The hook plumbing both meters share: ``_pack`` wraps each saved tensor (subclasses count it), ``_unpack``
    returns it, and the hooks are active between ``__enter__`` and ``__exit__``."""

    _ctx: contextlib.AbstractContextManager | None = None

    def _pack(self, x: Tensor) -> object:
        raise NotImplementedError

    @staticmethod
    def _unpack(holder: object) -> Tensor:
        return holder.tensor  # type: ignore[attr-defined]

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._ctx is not None
        self._ctx.__exit__(*exc)


class SavedTensorMeter(_SavedTensorHooks):
    """Context manager measuring the peak bytes of tensors saved for backward while active.

    Works on any device (it hooks ``torch.autograd.graph.saved_tensors_hooks``): every saved
    tensor is wrapped in a small holder whose lifetime is the graph's, so ``peak_bytes`` is the
    largest amount of graph memory alive at once. Tensors saved several times are counted each
    time (an upper bound on real memory; the ratio between policies is what matters)::

        with SavedTensorMeter() as meter:
            unroll_meta_grad(...)
        meter.peak_bytes

    Meters nest: a meter entered inside another (the engine measures one inner step under a
    memory budget) counts its tensors in every enclosing meter too, although autograd applies
    only the innermost hooks.
    """

    _active: list["SavedTensorMeter"] = []
    """Meters entered and not yet exited, outermost first."""

    def __init__(self) -> None:
        self.live_bytes = 0
        self.peak_bytes = 0
        self._counted_in: list[SavedTensorMeter] = [self]

    def _release(self, nbytes: int) -> None:
        self.live_bytes -= nbytes

    def _add(self, nbytes: int) -> None:
        self.live_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)

    def _pack(self, x: Tensor) -> object:
        # a tensor saved as its node's output would, held as itself, keep that node (and the whole graph)
        # alive through the holder: a reference cycle outside Python's collector whenever a graph is
        # dropped without a backward (the engine's measurements). Its detached alias holds the same
        # storage, and autograd restores the autograd metadata on unpack.
        holder = _Held(x.detach())
        nbytes = x.numel() * x.element_size()
        for meter in self._counted_in:
            meter._add(nbytes)
            weakref.finalize(holder, meter._release, nbytes)
        return holder

    def __enter__(self) -> "SavedTensorMeter":
        self._counted_in = [*SavedTensorMeter._active, self]
        SavedTensorMeter._active.append(self)
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        SavedTensorMeter._active.remove(self)


class DistinctSavedMeter(_SavedTensorHooks):
    """Peak bytes of the distinct storages that autograd's saved tensors hold while active.

    :class:`SavedTensorMeter` counts every save (a tensor saved by two nodes, or two views of one buffer, count
    twice), which is what the engine budgets; the device holds each storage once, so this count is the one
    that sizes memory. The same hooks as SavedTensorMeter's, keyed by storage; it does not nest with it."""

    def __init__(self) -> None:
        self.live_bytes = 0
        self.peak_bytes = 0
        self._live: dict[int, list[int]] = {}  # storage address -> [live saves, bytes]

    def _pack(self, x: Tensor) -> object:
        storage = x.untyped_storage()
        entry = self._live.get(storage.data_ptr())
        if entry is None:
            entry = self._live[storage.data_ptr()] = [0, storage.nbytes()]
            self.live_bytes += entry[1]
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        entry[0] += 1
        holder = _Held(x.detach())  # detached, as SavedTensorMeter does: no reference cycle through the node
        weakref.finalize(holder, self._release, storage.data_ptr())
        return holder

    def _release(self, address: int) -> None:
        entry = self._live[address]
        entry[0] -= 1
        if entry[0] == 0:
            del self._live[address]
            self.live_bytes -= entry[1]


class _Held:
    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor
