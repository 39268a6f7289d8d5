"""The one submitit task of the launcher: run one sweep member (one distillation) inside a job.

A :class:`DistillTask` holds plain data only (the member's resolved config as a dict and its name), so
it pickles small and unpickles in the job without importing torch. ``__call__`` imports
``rtp_scale.distill`` lazily and calls its ``run(cfg)``; the run directory (``run.out_dir``) is stable per
member, so whatever restarts the member -- submitit's requeue after a timeout or preemption signal,
``scontrol requeue``, a node failure requeue, or ``python -m launch.sweep --resubmit`` -- resumes from
``<run_dir>/checkpoint.pt``. A preemption or time-limit signal (SIGTERM, submitit's USR2) first makes the run
save (``rtp_scale.preemption``: the step it is in, or the state before it when the signal came during the
step's meta-gradient), and only then does submitit requeue, so at most that one step is recomputed; a kill
without warning recomputes at most ``checkpoint.every`` outer steps.

Besides what ``run`` writes, the task keeps two small files in the run directory for ``launch.collect``:

- ``status.json``: ``state`` (running / requeued / completed / failed / interrupted) and one entry per
  attempt (job id, Slurm restart count, host, start/end time, whether a checkpoint was there to resume);
- ``error.json`` (``error.rank<N>.json`` on other ranks): exception type, message and traceback of a
  failed attempt. The exception is re-raised, so the job itself still fails (non-zero exit, Slurm state
  FAILED) and ``results.json`` is never written.

With several tasks per job (``tasks_per_node`` > 1, e.g. one per GPU, or several nodes) every task runs
``__call__``; it first exports the torch.distributed rendezvous that Accelerate reads (``MASTER_ADDR``,
``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``NODE_RANK``) from
submitit's :class:`~submitit.JobEnvironment`.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"
ERROR_FILE = "error.json"
RESULTS_FILE = "results.json"
CHECKPOINT_FILE = "checkpoint.pt"


def job_environment() -> Any | None:
    """submitit's JobEnvironment of the running job, or None outside one (e.g. a DebugExecutor run)."""
    import submitit

    try:
        return submitit.JobEnvironment()
    except RuntimeError:  # "Could not figure out which environment the job is running in"
        return None


def submitit_preemption_signal() -> int:
    """The signal submitit requeues on (USR2 unless ``SUBMITIT_PREEMPT_SIGNAL`` says otherwise)."""
    import submitit

    return submitit.JobEnvironment._usr_sig()


def distributed_env(env: Any) -> dict[str, str]:
    """The torch.distributed variables of this task, derived from a submitit JobEnvironment.

    The rendezvous host is the job's first node; the port is derived from the job id so that jobs
    sharing a node (array members) do not collide.
    """
    digits = "".join(ch for ch in str(env.raw_job_id) if ch.isdigit()) or "0"
    num_nodes = max(1, int(env.num_nodes))
    return {
        "MASTER_ADDR": str(env.hostnames[0]),
        "MASTER_PORT": str(20000 + int(digits) % 20000),
        "RANK": str(env.global_rank),
        "WORLD_SIZE": str(env.num_tasks),
        "LOCAL_RANK": str(env.local_rank),
        "LOCAL_WORLD_SIZE": str(max(1, int(env.num_tasks) // num_nodes)),
        "NODE_RANK": str(env.node),
    }


def _write_json(path: Path, payload: dict) -> None:
    """Write-then-rename, so a reader (collect, a resubmission) never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


def read_json(path: Path) -> dict | None:
    """A JSON file written by the launcher or the run, or None when absent or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


class DistillTask:
    """Picklable submitit callable that distills one sweep member: ``executor.submit(DistillTask(cfg))``.

    ``config`` is a full config dict (``Config.to_dict()``, or any recipe dict ``build_config`` accepts)
    whose ``run.out_dir`` is the member's run directory.
    """

    def __init__(self, config: dict[str, dict[str, Any]], *, name: str = "") -> None:
        out_dir = config.get("run", {}).get("out_dir")
        if not out_dir:
            raise ValueError("DistillTask needs config['run']['out_dir'], the member's stable run directory")
        self.config = config
        self.name = name or Path(out_dir).name

    @property
    def run_dir(self) -> Path:
        return Path(self.config["run"]["out_dir"])

    def __repr__(self) -> str:
        return f"DistillTask({self.name!r}, run_dir={str(self.run_dir)!r})"

    # ------------------------------------------------------------------ the job
    def __call__(self) -> dict[str, Any]:
        env = job_environment()
        rank = int(env.global_rank) if env is not None else 0
        if env is not None and int(env.num_tasks) > 1:
            os.environ.update(distributed_env(env))
        run_dir = self.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        if rank == 0:
            self._start_attempt(env)
        from rtp_scale.preemption import Preempted  # no torch: the module imports it only where it needs it

        # submitit's checkpoint-and-requeue handler of this job (None outside one). The run replaces it while
        # it distills, so that a signal first finishes and saves the outer step; then it is called below.
        requeue_signal = submitit_preemption_signal()
        requeue = signal.getsignal(requeue_signal) if env is not None else None
        try:
            # lazy: unpickling the task must not import torch; only the job pays for it
            from rtp_scale.config import build_config
            from rtp_scale.distill import run

            cfg = build_config(self.config, origin=f"sweep member {self.name}")
            results = run(cfg)
        except Preempted:
            if callable(requeue):  # rank 0: calls checkpoint() below, requeues and exits; other ranks return
                try:
                    requeue(requeue_signal, None)
                except subprocess.CalledProcessError:  # `scontrol requeue` refused: Slurm itself is requeueing
                    # (preemption, an outside `scontrol requeue`) or cancelling the job; either way it is saved
                    print(f"{self.name}: saved; Slurm refused submitit's requeue (the job is already being "
                          f"requeued or cancelled)", file=sys.stderr, flush=True)
            if rank == 0:  # not requeued by submitit (no job environment): the next submission resumes
                self._end_attempt("interrupted")
            raise
        except Exception as err:  # recorded for collect, then re-raised: the job must fail loudly
            self._record_error(err, env, rank)
            raise
        except KeyboardInterrupt:  # the local executor's cancel; a requeue signal exits via SystemExit
            if rank == 0:
                self._end_attempt("interrupted")
            raise
        finally:  # the job's process ends after this call: a gloo group left alive can abort its exit
            if (distributed := sys.modules.get("rtp_scale.distributed")) is not None:  # a run started ranks
                distributed.release_process_group()
        if rank == 0:
            self._end_attempt("completed")
        accuracy = results.get("accuracy", {})
        return {"member": self.name, "run_dir": str(run_dir), "accuracy_mean": accuracy.get("mean"),
                "accuracy_std": accuracy.get("std")}

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Called by submitit on timeout / preemption: requeue the same task.

        The run's own ``checkpoint.pt`` carries the progress: the signal made the run finish its outer step
        and save it before this is called (``__call__``; during the final export and evaluation submitit calls
        it directly, after the last step's checkpoint). The requeued task finds it and resumes.
        """
        import submitit

        env = job_environment()
        if env is None or int(env.global_rank) == 0:
            self._end_attempt("requeued")
        return submitit.helpers.DelayedSubmission(DistillTask(self.config, name=self.name), *args, **kwargs)

    # ------------------------------------------------------------------ bookkeeping for collect
    def _status(self) -> dict[str, Any]:
        return read_json(self.run_dir / STATUS_FILE) or {"member": self.name, "attempts": []}

    def _start_attempt(self, env: Any | None) -> None:
        status = self._status()
        (self.run_dir / ERROR_FILE).unlink(missing_ok=True)
        for stale in self.run_dir.glob("error.rank*.json"):
            stale.unlink()
        status["attempts"].append({
            "job_id": env.job_id if env is not None else None,
            "cluster": env.cluster if env is not None else "none",
            "restart_count": int(os.environ.get("SLURM_RESTART_COUNT", "0")),
            "host": socket.gethostname(),
            "started": time.time(),
            "resumed_from_checkpoint": (self.run_dir / CHECKPOINT_FILE).exists(),
        })
        status.update(state="running", job_id=status["attempts"][-1]["job_id"])
        _write_json(self.run_dir / STATUS_FILE, status)

    def _end_attempt(self, state: str, error: str | None = None) -> None:
        status = self._status()
        if status["attempts"] and "ended" not in status["attempts"][-1]:
            status["attempts"][-1].update(ended=time.time(), outcome=state)
        status["state"] = state
        if error is not None:
            status["error"] = error
        _write_json(self.run_dir / STATUS_FILE, status)

    def _record_error(self, err: Exception, env: Any | None, rank: int) -> None:
        message = f"{type(err).__name__}: {err}"
        payload = {"member": self.name, "type": type(err).__name__, "message": str(err), "error": message,
                   "job_id": env.job_id if env is not None else None, "rank": rank, "time": time.time(),
                   "traceback": traceback.format_exc()}
        _write_json(self.run_dir / (ERROR_FILE if rank == 0 else f"error.rank{rank}.json"), payload)
        if rank == 0:
            self._end_attempt("failed", error=message)
