"""The launcher against a REAL one-node Slurm cluster (slurmctld + slurmd + slurmdbd for sacct), started for
this test session by the project's own ``slurm/start-local-cluster.sh`` in a private directory on free ports,
and stopped (and wiped) at the end.

The fixture ``slurm_cluster`` lives in tests/conftest.py (tests/test_distributed.py uses it too). Skipped,
with the reason, only where Slurm cannot be installed or started (not root, no apt-get, the package
install fails); set ``RTP_REQUIRE_SLURM=1`` (.ci/run does) to turn that skip into a failure. Run alone with
``python -m pytest -m slurm tests/test_slurm.py``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY, logged_steps, run_module
from launch import sweep as sweep_mod
from launch.collect import collect, slurm_states, sweep_status

pytestmark = pytest.mark.slurm

SMOKE = ROOT / "configs" / "sweeps" / "smoke.py"
# one CPU per member: the test machine's node has 2, so an array runs 2 members at a time
RESOURCES = {"partition": "debug", "timeout_min": 10, "cpus_per_task": 1, "mem_gb": 1, "array_parallelism": 2}


def wait_until(predicate, timeout: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def sacct_ids() -> set[str]:
    out = subprocess.run(["sacct", "-n", "-X", "-a", "-P", "-o", "JobID"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def tiny_recipe(path: Path, grid: dict, seeds: list[int], extra: list[str]) -> Path:
    swept = {k for k in grid}
    overrides = [o for o in TINY if o.partition("=")[0] not in swept]
    overrides += ["log.tensorboard=false", "log.image_every=0", *extra]
    path.write_text(textwrap.dedent(f"""
        NAME = {path.stem!r}
        GRID = {grid!r}
        SEEDS = {seeds!r}
        OVERRIDES = {overrides!r}
        """))
    return path


def states_by_name(sweep_dir: Path) -> dict:
    return {s.name: s for s in sweep_status(sweep_dir)}


# ---------------------------------------------------------------------------------------------- tests
def test_dry_run_submits_nothing(slurm_cluster, tmp_path, capsys):
    before = sacct_ids()
    out = tmp_path / "smoke"
    assert sweep_mod.main([str(SMOKE), "--cluster", "slurm", "--partition", "debug", "--dry-run", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 member(s) -> ONE Slurm job array" in printed and "dry run: nothing submitted" in printed
    assert not out.exists()
    assert subprocess.run(["squeue", "-h"], capture_output=True, text=True, check=True).stdout.strip() == ""
    assert sacct_ids() == before


@pytest.mark.slow  # ~1.5 min: four real Slurm array tasks
def test_four_member_sweep_runs_as_one_array_and_collects(slurm_cluster, tmp_path):
    out = tmp_path / "smoke"
    manifest = sweep_mod.start_sweep(SMOKE, cluster="slurm", sweep_dir=out, resources=RESOURCES)
    ids = [str(job.job_id) for job in manifest["jobs"]]
    array = ids[0].split("_")[0]
    assert ids == [f"{array}_{k}" for k in range(4)]  # ONE job array, one task per member
    script = next(out.glob("submitit/**/*_submission.sh")).read_text()
    assert "#SBATCH --array=0-3%2" in script and "#SBATCH --partition=debug" in script

    statuses = sweep_mod.wait_for(out, poll_s=1, timeout_s=240)
    assert [s.state for s in statuses] == ["completed"] * 4, [(s.name, s.state, s.error) for s in statuses]
    report = collect(out)
    assert report["counts"]["completed"] == 4
    assert "| digits | rtp | 1 | 2/2 |" in report["markdown"] and "| digits | rtp | 2 | 2/2 |" in report["markdown"]
    for member in manifest["members"]:
        results = json.loads((out / member["name"] / "results.json").read_text())
        assert results["config"]["memory"]["ipc"] == member["grid"]["memory.ipc"]
    # Slurm's own accounting agrees (sacct lags squeue by a few seconds)
    wait_until(lambda: slurm_states(ids) and all(slurm_states(ids).get(i) == "COMPLETED" for i in ids), 60,
               "sacct to record 4 COMPLETED array tasks")


def test_failing_member_is_reported_and_resubmitted_alone(slurm_cluster, tmp_path):
    recipe = tiny_recipe(tmp_path / "mixed.py", {"data.name": ["digits", "cifar10"]}, [0],
                         [f"data.root={tmp_path / 'no-such-data'}", "meta.steps=2"])
    out = tmp_path / "mixed"
    manifest = sweep_mod.start_sweep(recipe, cluster="slurm", sweep_dir=out, resources=RESOURCES)
    first_ids = [str(j.job_id) for j in manifest["jobs"]]
    statuses = {s.name: s for s in sweep_mod.wait_for(out, poll_s=1, timeout_s=180)}
    assert statuses["digits_s0"].state == "completed"
    failed = statuses["cifar10_s0"]
    assert failed.state == "failed" and failed.error.startswith("UserError: cifar10") and "no-such-data" in failed.error
    assert not (out / "cifar10_s0" / "results.json").exists()
    report = collect(out)
    assert f"- `cifar10_s0` (job {first_ids[1]}): {failed.error}" in report["markdown"]
    assert "| cifar10 | rtp | 1 | 0/1 |  |" in report["markdown"]  # listed, never counted as a result
    wait_until(lambda: (slurm_states(first_ids) or {}).get(first_ids[1]) == "FAILED", 60, "sacct to say FAILED")

    again = sweep_mod.resubmit(out)
    assert again["resubmitted"] == ["cifar10_s0"]
    new_id = str(again["jobs"][0].job_id)
    assert new_id.split("_")[0] != first_ids[0].split("_")[0]  # a new array holding only the failed member
    statuses = {s.name: s for s in sweep_mod.wait_for(out, poll_s=1, timeout_s=120)}
    assert statuses["cifar10_s0"].state == "failed" and statuses["cifar10_s0"].job_id == new_id
    members = {m["name"]: m for m in json.loads((out / "sweep.json").read_text())["members"]}
    assert members["digits_s0"]["jobs"] == first_ids[:1] and members["cifar10_s0"]["jobs"] == [first_ids[1], new_id]


@pytest.mark.slow  # ~3-4 min: two members signalled mid-run, requeued and resumed
def test_interrupted_members_resume_from_checkpoint_with_the_same_result(slurm_cluster, tmp_path):
    """Member s0 is preempted through submitit (SIGTERM + USR2), member s1 is requeued from outside
    (`scontrol requeue`: Slurm sends SIGTERM, then kills after KillWait, 5 s here). There is no periodic
    checkpoint (checkpoint.every >> meta.steps): each run saves at once (dropping the outer step in progress when
    the signal lands in its meta-gradient; a step under load can outlast KillWait) and only then does submitit
    requeue (s0: DistillTask.checkpoint()). Both resume, recompute no step, and end bit-identical to the same sweep run
    uninterrupted (in this process, --cluster debug)."""
    from safetensors.torch import load_file

    recipe = tiny_recipe(tmp_path / "resume.py", {}, [0, 1],
                         ["meta.steps=20", "checkpoint.every=1000", "log.tensorboard=true"])
    out = tmp_path / "resume"
    manifest = sweep_mod.start_sweep(recipe, cluster="slurm", sweep_dir=out, resources=RESOURCES)
    preempted, requeued = manifest["jobs"]
    interrupts = {  # each member is interrupted as soon as it logged its second outer step
        "s0": preempted._interrupt,  # what Slurm does on preemption: SIGTERM, then the USR2 submitit requeues on
        "s1": lambda: subprocess.run(["scontrol", "requeue", str(requeued.job_id)], check=True)}

    def interrupt_ready() -> bool:
        for name in [n for n in interrupts if len(logged_steps(out / n)) >= 2]:
            assert not (out / name / "results.json").exists(), f"{name} finished too fast to be interrupted"
            interrupts.pop(name)()
        return not interrupts

    wait_until(interrupt_ready, 150, "both members to log their second outer step", poll=0.1)
    statuses = {s.name: s for s in sweep_mod.wait_for(out, poll_s=1, timeout_s=240)}
    assert [statuses[n].state for n in ("s0", "s1")] == ["completed", "completed"], statuses
    # the same members, never interrupted, in this process -- only now: run while the interrupted step finishes,
    # they slowed it past Slurm's KillWait (5 s) on a 2-core machine, and SIGKILL then repeats that step
    reference = tmp_path / "reference"
    sweep_mod.start_sweep(recipe, cluster="debug", sweep_dir=reference)

    for name in ("s0", "s1"):
        status = json.loads((out / name / "status.json").read_text())
        attempts = status["attempts"]
        assert len(attempts) >= 2 and attempts[-1]["resumed_from_checkpoint"], attempts
        assert attempts[-1]["restart_count"] >= 1 and attempts[-1]["job_id"] == attempts[0]["job_id"]
        assert logged_steps(out / name) == list(range(1, 21)), name  # every step ran exactly once
        got, want = load_file(out / name / "memory.safetensors"), load_file(reference / name / "memory.safetensors")
        assert got.keys() == want.keys() and all(got[k].equal(want[k]) for k in want), name
        got_r = json.loads((out / name / "results.json").read_text())
        want_r = json.loads((reference / name / "results.json").read_text())
        assert got_r["accuracy"]["accuracies"] == want_r["accuracy"]["accuracies"]
        assert got_r["final_meta_loss"] == want_r["final_meta_loss"]
    s0 = json.loads((out / "s0" / "status.json").read_text())["attempts"]
    assert s0[0]["outcome"] == "requeued"  # submitit called DistillTask.checkpoint() before requeueing


@pytest.mark.slow  # ~3 min: a real sbatch job signalled, requeued and resumed
def test_sbatch_template_saves_on_usr2_requeues_and_resumes_identically(slurm_cluster, tmp_path):
    """slurm/distill.sbatch (no submitit): the time-limit signal reaches the run, which saves the outer step it
    was in (no periodic checkpoint: checkpoint.every >> meta.steps); the script requeues, the same job id
    restarts, resumes that step, recomputes none, and ends bit-identical to an uninterrupted run."""
    from safetensors.torch import load_file

    run_dir, reference, log = tmp_path / "run", tmp_path / "reference", tmp_path / "job.out"
    recipe = str(ROOT / "configs" / "rtp" / "mnist_ipc1.toml")
    overrides = [*TINY, "meta.steps=12", "checkpoint.every=1000", "log.image_every=0", "log.progress=false",
                 "data.root="]
    job = subprocess.run(
        ["sbatch", "--parsable", f"--chdir={ROOT}", f"--output={log}", "--partition=debug", "--gpus-per-node=0",
         "--cpus-per-task=1", "--mem=1G", "--time=10", str(ROOT / "slurm" / "distill.sbatch"), recipe,
         "--set", *overrides],
        env={**os.environ, "RTP_OUT": str(run_dir), "PYTHONPATH": str(ROOT),  # the job's `python` is this one
             "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True, text=True,
        check=True).stdout.strip()
    wait_until(lambda: len(logged_steps(run_dir)) >= 2, 150, "the sbatch job's second outer step")
    subprocess.run(["scancel", "--batch", "--signal=USR2", job], check=True)  # what --signal=B:USR2@300 sends
    straight = run_module("rtp_scale.distill", "--config", recipe, "--out", str(reference), "--set", *overrides)
    assert straight.returncode == 0, straight.stderr[-2000:]
    wait_until(lambda: (run_dir / "results.json").exists(), 180, "the requeued sbatch job to finish", poll=1)
    wait_until(lambda: (slurm_states([job]) or {}).get(job) == "COMPLETED", 60, "sacct to say COMPLETED")
    text = log.read_text()
    assert "caught USR2: the run saves" in text and "run stopped (exit 75): requeueing" in text
    assert f"job {job} on" in text and "restart 1:" in text and "Traceback" not in text, text[-2000:]
    stopped_at = int(text.split("after outer step ")[1].split()[0])
    assert 2 <= stopped_at < 12, text[-2000:]
    assert logged_steps(run_dir) == list(range(1, 13))  # over both attempts every step ran exactly once
    got, want = load_file(run_dir / "memory.safetensors"), load_file(reference / "memory.safetensors")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    got_r, want_r = (json.loads((d / "results.json").read_text()) for d in (run_dir, reference))
    assert got_r["accuracy"]["accuracies"] == want_r["accuracy"]["accuracies"]
    assert got_r["final_meta_loss"] == want_r["final_meta_loss"]
