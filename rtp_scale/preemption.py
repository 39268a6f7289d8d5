"""Preemption that saves: SIGTERM or SIGUSR2 stops a run at the next outer-step boundary, after a checkpoint.

Slurm announces the end of a job with a signal: SIGTERM on preemption (then SIGKILL after the partition's
GraceTime), the ``--signal`` one (USR2 in ``slurm/distill.sbatch`` and submitit) before the time limit.
Killing the run there would lose every outer step since the last periodic checkpoint (up to
``checkpoint.every``). Instead :class:`StopRequest` turns either signal into a stop that saves first:

- a signal during an outer step's meta-gradient (nearly all of a step's time) abandons that step at once:
  nothing of the state has changed yet, so the state *before* the step is written and :class:`Preempted`
  raised. A step may take longer than the time Slurm leaves between its signal and SIGKILL (KillWait,
  GraceTime: seconds), and finishing it would then lose everything since the last periodic checkpoint;
- a signal anywhere else in the step (the update, logging, a checkpoint write) raises a flag that the loop asks
  after the step, then writes the checkpoint of the step that just finished and raises :class:`Preempted`.

Either way at most the interrupted step is recomputed by the resumed run, which then ends bit-identical to an
uninterrupted one (every draw comes from (seed, step, unroll) generators).

Who turns :class:`Preempted` into a requeue:

- ``python -m rtp_scale.distill`` exits with :data:`EXIT_PREEMPTED` (75, ``EX_TEMPFAIL``: "try again") and
  writes no ``results.json``; ``slurm/distill.sbatch`` forwards its signal to the run, waits for that exit,
  then requeues the job;
- ``launch.task.DistillTask`` (submitit) hands over to submitit's own requeue (``checkpoint()``, then
  ``scontrol requeue``) only after the run has stopped and saved.

The final phase (artifact export and evaluation) is not resumable step by step: once the last step's
checkpoint is on disk the previous signal handlers are back, so a signal then acts as it would without
this module (kills the run, or submitit requeues it) and the resumed run only re-exports and re-evaluates.

With several processes the ranks agree (one all-reduce of one flag per outer step) so that all of them
stop after the same step: a rank that stopped alone would leave the others waiting in a collective. So with
several processes a signal only raises the flag, also during the meta-gradient.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:
    from rtp_scale.distributed import RankContext

EXIT_PREEMPTED = 75
"""Exit status of ``python -m rtp_scale.distill`` stopped by a preemption signal (checkpoint saved)."""

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


class Preempted(Exception):
    """A preemption signal stopped the run after ``step`` outer steps; their checkpoint is on disk."""

    def __init__(self, *, step: int, total: int, signal_name: str, checkpoint: str) -> None:
        super().__init__(f"stopped by {signal_name} after outer step {step} of {total}; checkpoint saved to "
                         f"{checkpoint}: run the same command again to resume (exit {EXIT_PREEMPTED})")
        self.step = step
        self.signal_name = signal_name


class StepAbandoned(BaseException):
    """Raised by the signal handler inside :meth:`StopRequest.abandonable`: the outer step in progress is dropped.

    A BaseException, like KeyboardInterrupt: no ``except Exception`` between the handler and the loop (e.g. a
    method's own error handling) may swallow it."""


class StopRequest:
    """SIGTERM/SIGUSR2 handlers that raise a flag, asked at outer-step boundaries by the distill loop, or inside
    :meth:`abandonable` (one process) drop the step in progress at once.

    ``ctx`` is the run's :class:`~rtp_scale.distributed.RankContext` (for the agreement between ranks);
    ``first_step`` / ``last_step`` the outer steps the run starts from / ends at (``meta.steps``);
    ``checkpoint`` the path named in the stop message.
    """

    def __init__(self, ctx: RankContext, *, first_step: int, last_step: int, checkpoint: str) -> None:
        self._ctx = ctx
        self._has_steps = first_step < last_step  # a run resumed at its end goes straight to the final phase
        self._last_step = last_step
        self._checkpoint = checkpoint
        self._signal: int | None = None
        self._previous: dict[int, object] = {}
        self._abandonable = False  # inside abandonable(): a signal drops the step instead of raising the flag

    # ------------------------------------------------------------------ handlers
    def install(self) -> StopRequest:
        """Replace the handlers of :data:`PREEMPTION_SIGNALS`; a no-op outside the main thread (where Python
        cannot install handlers), so a run started from a worker thread keeps the process's behaviour."""
        if self._has_steps and threading.current_thread() is threading.main_thread():
            for signum in PREEMPTION_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def restore(self) -> None:
        """Put the handlers back that were there before :meth:`install` (idempotent)."""
        while self._previous:
            signum, handler = self._previous.popitem()
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: object) -> None:
        first = self._signal is None
        if first:
            self._signal = signum
        # os.write, not print: a handler may run in the middle of another write to the same stream
        if self._abandonable:
            self._abandonable = False  # raised once: a second signal must not interrupt the save below
            os.write(2, f"received {signal.Signals(signum).name}: the run drops the outer step in progress, saves "
                        f"the state before it and stops\n".encode())
            raise StepAbandoned
        if first:
            os.write(2, f"received {signal.Signals(signum).name}: the run stops after the current outer step and "
                        f"saves its checkpoint\n".encode())

    @contextlib.contextmanager
    def abandonable(self) -> Iterator[None]:
        """Around the part of an outer step that changes no state (its meta-gradient): a signal in there raises
        :class:`StepAbandoned` at once (one process only; module docstring). A signal that came just before
        raises it on entry."""
        if self._ctx.world_size > 1 or not self._previous:  # several ranks, or no handlers installed
            yield
            return
        if self._signal is not None:
            raise StepAbandoned
        self._abandonable = True
        try:
            yield
        finally:
            self._abandonable = False

    def abandon(self, step: int, save: Callable[[int], None]) -> None:
        """After :class:`StepAbandoned` in outer step ``step`` + 1: save the ``step`` steps done, raise Preempted."""
        save(step)
        raise self._stopped(step)

    def _stopped(self, step: int) -> Preempted:
        name = signal.Signals(self._signal).name if self._signal else "a peer rank"  # none here: another rank's
        return Preempted(step=step, total=self._last_step, checkpoint=self._checkpoint, signal_name=name)

    # ------------------------------------------------------------------ the loop's side
    def requested(self) -> bool:
        """Whether any rank received a preemption signal (a collective when there are several ranks)."""
        flag = self._signal is not None
        if self._ctx.world_size == 1:
            return flag
        import torch  # not at the top: launch.task imports this module before the job has loaded torch

        any_rank = torch.tensor([int(flag)], dtype=torch.int64, device=self._ctx.device)
        torch.distributed.all_reduce(any_rank, op=torch.distributed.ReduceOp.MAX)
        return bool(any_rank.item())

    def after_step(self, done: int, save: Callable[[int], None]) -> None:
        """Called by every rank after outer step ``done``: on a stop request save ``done`` steps and raise
        :class:`Preempted`; after the last step save and give the signals back (module docstring)."""
        if self.requested():
            save(done)
            raise self._stopped(done)
        if done == self._last_step:
            save(done)  # the final phase may now be killed outright: its starting point must be on disk first
            self.restore()
            if self._signal is not None and self._ctx.world_size == 1:  # arrived between check and restore
                raise self._stopped(done)
