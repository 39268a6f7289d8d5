"""Faults a run survives without losing work: a preemption signal (SIGTERM / SIGUSR2) stops it with a checkpoint
(after the current outer step, or at once with the state before it when the signal comes during the step's
meta-gradient), and a SIGKILL at any step loses only what the last checkpoint did not hold; either way the
resumed run ends bit-identical to an uninterrupted one.

``checkpoint.every`` is far above ``meta.steps`` here, so the only checkpoint a stopped run can have is the
one the signal made it write. The Slurm paths of the same guarantee (submitit, slurm/distill.sbatch) are in
tests/test_slurm.py.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, TINY, logged_steps
from rtp_scale.config import build_config
from rtp_scale.distill import run
from rtp_scale.preemption import EXIT_PREEMPTED

STEPS = 8
NO_PERIODIC_CHECKPOINT = [f"meta.steps={STEPS}", "checkpoint.every=1000"]


def start_run(out: Path, extra: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rtp_scale.distill", "--set", *TINY, *extra, f"run.out_dir={out}"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def signal_after(proc: subprocess.Popen, out: Path, step: int, signum: int, timeout: float = 240) -> None:
    """Send ``signum`` to the run as soon as this attempt has logged outer step ``step``."""
    earlier = len(logged_steps(out))  # lines of previous attempts (metrics.jsonl is appended to)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and max(logged_steps(out)[earlier:], default=0) < step:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be signalled: " + proc.stderr.read()[-800:]
    proc.send_signal(signum)


def artifact(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "memory.safetensors")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    run(build_config(None, [*TINY, *NO_PERIODIC_CHECKPOINT, f"run.out_dir={out}"]))
    return out


def assert_same_run(got: Path, want: Path) -> None:
    """Every artifact tensor bitwise equal, and the same per-step losses and final accuracies."""
    a, b = artifact(got), artifact(want)
    assert a.keys() == b.keys()
    for key in b:
        assert torch.equal(a[key], b[key]), key
    got_r, want_r = (json.loads((d / "results.json").read_text()) for d in (got, want))
    assert got_r["accuracy"]["accuracies"] == want_r["accuracy"]["accuracies"]
    got_h, want_h = (torch.load(d / "checkpoint.pt", weights_only=True)["history"] for d in (got, want))
    assert [h["meta/loss"] for h in got_h] == [h["meta/loss"] for h in want_h]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR2], ids=["SIGTERM", "SIGUSR2"])
def test_preemption_signal_checkpoints_the_current_step_and_the_resumed_run_is_identical(
        tmp_path, uninterrupted, signum):
    out = tmp_path / "run"
    proc = start_run(out, NO_PERIODIC_CHECKPOINT)
    signal_after(proc, out, 2, signum)
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == EXIT_PREEMPTED, stderr[-2000:]
    assert "Traceback" not in stderr and not (out / "results.json").exists()
    done_before_stop = logged_steps(out)
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    # the step in flight when the signal came was either finished and saved, or (a signal during its
    # meta-gradient) dropped and the state before it saved: every saved step is logged, none beyond
    assert 2 <= saved < STEPS and done_before_stop == list(range(1, saved + 1)), (saved, done_before_stop)
    assert f"preempted: stopped by {signal.Signals(signum).name} after outer step {saved} of {STEPS}" in stderr

    run(build_config(None, [*TINY, *NO_PERIODIC_CHECKPOINT, f"run.out_dir={out}"]))
    assert logged_steps(out) == list(range(1, STEPS + 1))  # every step logged exactly once over both attempts
    assert_same_run(out, uninterrupted)


def test_signal_during_a_meta_gradient_saves_the_state_before_that_step_at_once(tmp_path, uninterrupted, monkeypatch):
    """A step can outlast the seconds Slurm leaves before SIGKILL: a signal arriving inside step 3's meta-gradient
    must not wait for it to finish (that step is neither completed nor logged); the state after step 2 is saved
    and the run stops. The resumed run recomputes step 3 and ends bit-identical to an uninterrupted one."""
    import rtp_scale.distill as distill_mod
    from rtp_scale.preemption import Preempted

    real_meta_gradient = distill_mod.reduced_meta_gradient
    finished: list[int] = []

    def signalled_in_step_3(*args, step: int, **kwargs):
        if step == 2:  # 0-based: outer step 3; the signal lands as the meta-gradient starts
            os.kill(os.getpid(), signal.SIGTERM)
        result = real_meta_gradient(*args, step=step, **kwargs)
        finished.append(step)
        return result

    out = tmp_path / "run"
    cfg = [*TINY, *NO_PERIODIC_CHECKPOINT, f"run.out_dir={out}"]
    monkeypatch.setattr(distill_mod, "reduced_meta_gradient", signalled_in_step_3)
    handler_before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Preempted, match=f"stopped by SIGTERM after outer step 2 of {STEPS}"):
        run(build_config(None, cfg))
    assert finished == [0, 1] and logged_steps(out) == [1, 2]  # step 3 was dropped, not finished
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 2
    assert signal.getsignal(signal.SIGTERM) == handler_before  # the run gave the process its handler back
    monkeypatch.undo()
    run(build_config(None, cfg))
    assert logged_steps(out) == list(range(1, STEPS + 1))
    assert_same_run(out, uninterrupted)


@pytest.mark.slow  # ~1 min: four process starts
def test_sigkill_at_random_steps_resumes_to_the_same_run(tmp_path, uninterrupted):
    """SIGKILL (no chance to save) at three seeded-random steps, with a checkpoint every step: each attempt
    loses at most the step in flight, and the run that finally completes equals the uninterrupted one."""
    out = tmp_path / "run"
    every_step = [f"meta.steps={STEPS}", "checkpoint.every=1"]  # same result: checkpoint.every changes no draw
    kill_after = sorted(random.Random(14).sample(range(1, STEPS - 1), 3))
    for after in kill_after:
        proc = start_run(out, every_step)
        signal_after(proc, out, after, signal.SIGKILL)
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL and not (out / "results.json").exists()
        ckpt = out / "checkpoint.pt"  # absent when the kill came between step 1's log line and its checkpoint
        saved = torch.load(ckpt, weights_only=True)["step"] if ckpt.exists() else 0
        last_logged = logged_steps(out)[-1]  # a step is logged, then checkpointed: a kill may fall in between
        assert after - 1 <= saved and last_logged - 1 <= saved <= last_logged, (after, saved, last_logged)
    run(build_config(None, [*TINY, *every_step, f"run.out_dir={out}"]))
    assert_same_run(out, uninterrupted)


@pytest.mark.slow  # ~40 s: two 400-epoch evaluations
def test_signal_during_the_final_evaluation_keeps_the_last_step_and_resume_only_evaluates(tmp_path, uninterrupted):
    """After the last outer step is saved the signals act as they would without the run's handlers (the final
    export and evaluation are not resumable step by step): SIGTERM there kills the run, the checkpoint holds
    every step, and the rerun goes straight to export and evaluation with the same artifact."""
    out = tmp_path / "run"
    long_eval = ["eval.epochs=400"]  # evaluation does not touch the memory: the artifact is the fixture's
    proc = start_run(out, [*NO_PERIODIC_CHECKPOINT, *long_eval])
    signal_after(proc, out, STEPS, signal.SIGTERM)
    stderr = proc.communicate(timeout=120)[1]
    # -SIGTERM: killed in the final phase; EXIT_PREEMPTED: the signal beat the last step's hand-back
    assert proc.returncode in (-signal.SIGTERM, EXIT_PREEMPTED), stderr[-2000:]
    assert not (out / "results.json").exists()
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == STEPS
    run(build_config(None, [*TINY, *NO_PERIODIC_CHECKPOINT, *long_eval, f"run.out_dir={out}"]))
    assert logged_steps(out) == list(range(1, STEPS + 1))  # no step ran again
    a, b = artifact(out), artifact(uninterrupted)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b)
