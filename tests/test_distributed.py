"""Multi-process scale-out: the 2-D process grid, its equivalence to one process, and failure behaviour.

Real gloo processes on CPU (one thread each). A process start costs 7-10 s on 2 cores, so one
``torchrun`` launch of tests/dist_worker.py computes all the gradient comparisons, and the end-to-end
runs share a module fixture. The DeepSpeed tests skip without deepspeed (``RTP_REQUIRE_DEEPSPEED=1``, set by
CI, makes that a failure).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rtp_scale.config import build_config
from rtp_scale.distributed import RankContext, setup_ranks
from rtp_scale.distributed.context import TIMEOUT_ENV, check_grid, timeout_seconds
from rtp_scale.errors import UserError
from tests.conftest import ROOT, TINY, logged_steps, skip_unless_required

STEPS3 = [*TINY, "meta.steps=3", "log.image_every=0"]
CPU2 = str(ROOT / "configs/accelerate/cpu_2proc.yaml")
ZERO2 = str(ROOT / "configs/accelerate/deepspeed_zero2.yaml")


# ---------------------------------------------------------------------------------------------- helpers
def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(nproc: int, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(ROOT / "tests/dist_worker.py"), *args]
    return subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)


def _launch_cmd(config: str, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config,
            "--main_process_port", str(_free_port()), "-m", "rtp_scale.distill", "--set", *overrides]


def _accelerate(config: str, overrides: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(_launch_cmd(config, overrides), cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _memory(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "memory.safetensors"))


def _assert_same_memory(a: Path, b: Path) -> None:
    """Equal to float32 rounding (a few ulps accumulated over a few outer steps)."""
    ma, mb = _memory(a), _memory(b)
    assert ma.keys() == mb.keys()
    for key in ma:
        torch.testing.assert_close(mb[key], ma[key], rtol=1e-5, atol=1e-6, msg=key)


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


# ---------------------------------------------------------------------------------------------- the grid (no processes)
def test_grid_places_ranks_and_assigns_unrolls():
    # 6 processes = 3 replicas x 2 inner shards, meta-batch 6: replica q runs unrolls q, q+3
    grid = [RankContext(rank=r, world_size=6, device=torch.device("cpu"), inner_shards=2) for r in range(6)]
    assert [(c.replica, c.shard) for c in grid] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert [c.unrolls(6) for c in grid] == [[0, 3], [0, 3], [1, 4], [1, 4], [2, 5], [2, 5]]
    assert grid[0].grad_scale(6) == pytest.approx(1 / 12)
    # every unroll is run by exactly one replica
    assert sorted(j for c in grid if c.shard == 0 for j in c.unrolls(6)) == list(range(6))
    # per-rank generators differ between ranks and are reproducible
    a, b = grid[0].generator(0, "x", 5), grid[1].generator(0, "x", 5)
    assert not torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))
    assert torch.equal(torch.rand(4, generator=grid[1].generator(0, "x", 5)),
                       torch.rand(4, generator=grid[1].generator(0, "x", 5)))


def test_grid_that_does_not_fit_is_a_user_error():
    assert check_grid(4, 2, 4) == 2
    with pytest.raises(UserError, match="must divide the number of processes"):
        check_grid(4, 3, 3)
    with pytest.raises(UserError, match="multiple of the number of replicas"):
        check_grid(4, 1, 2)
    with pytest.raises(UserError, match="must divide"):
        setup_ranks(build_config(None, [*TINY, "dist.inner_shards=2"]), torch.device("cpu"))
    with pytest.raises(UserError, match="frepo has no unroll"):
        setup_ranks(build_config(None, [*TINY, "method.name=frepo", "memory.kind=pixel", "dist.inner_shards=2"]),
                    torch.device("cpu"))


def test_one_process_context_passes_values_through(monkeypatch):
    ctx = setup_ranks(build_config(None, TINY), torch.device("cpu"))
    assert (ctx.world_size, ctx.rank, ctx.reduce_grad, ctx.deepspeed) == (1, 0, None, False)
    g = torch.ones(3)
    assert ctx.sum_grads_([g], {"meta/loss": 2.0}) == {"meta/loss": 2.0} and torch.equal(g, torch.ones(3))
    assert ctx.divergence([g]) == 0.0
    monkeypatch.setenv(TIMEOUT_ENV, "90")
    assert timeout_seconds() == 90
    monkeypatch.setenv(TIMEOUT_ENV, "soon")
    with pytest.raises(UserError, match="number of seconds"):
        timeout_seconds()


# ---------------------------------------------------------------------------------------------- gradients, 2 processes
@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Per case: each rank's reduced gradient on the 2-process grid and computed alone (see dist_worker.py)."""
    out = tmp_path_factory.mktemp("pairs")
    proc = _torchrun(2, str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def _check_case(ranks: list[dict], name: str, rtol: float) -> None:
    ref = ranks[0][name]["alone"]
    for r, result in enumerate(ranks):
        grid, alone = result[name]["grid"], result[name]["alone"]
        assert grid["grads"].keys() == ref["grads"].keys()
        for key in ref["grads"]:
            assert torch.equal(alone["grads"][key], ref["grads"][key])  # the reference is rank-independent
            # every rank holds the same reduced gradient, bit for bit ...
            assert torch.equal(grid["grads"][key], ranks[0][name]["grid"]["grads"][key]), (name, r, key)
            # ... and it is the one-process gradient, to rounding
            assert _rel(grid["grads"][key], ref["grads"][key]) < rtol, (name, key)
        for key, value in ref["metrics"].items():  # logged metrics are the whole step's, not one rank's
            assert grid["metrics"][key] == pytest.approx(value, rel=1e-5), (name, key)


@pytest.mark.dist
@pytest.mark.parametrize("name, rtol", [("meta_batch", 1e-6), ("meta_batch_f64", 1e-13)])
def test_meta_batch_over_two_ranks_equals_one_rank(pairs, name, rtol):
    _check_case(pairs, name, rtol)


@pytest.mark.dist
@pytest.mark.parametrize("name, rtol", [
    ("inner", 2e-6), ("inner_f64", 1e-13), ("inner_full_aug_f64", 1e-13), ("inner_dd_f64", 1e-13),
    ("inner_two_unrolls", 2e-6)])
def test_inner_batch_split_over_two_ranks_equals_unsplit_unroll(pairs, name, rtol):
    _check_case(pairs, name, rtol)
    assert [p[name]["shard"] for p in pairs] == [0, 1]


@pytest.mark.slow  # ~1 min: a four-process grid and its one-process reference
@pytest.mark.dist
def test_two_by_two_grid_equals_one_process(tmp_path):
    proc = _torchrun(4, str(tmp_path), "grid")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(4)]
    assert [(r["grid_f64"]["replica"], r["grid_f64"]["shard"]) for r in ranks] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    _check_case(ranks, "grid_f64", 1e-13)


def test_release_destroys_the_started_group_and_is_a_no_op_without_one(tmp_path):
    """Every process entry point (distill's main, a sweep task) releases its group before exiting."""
    script = (
        "import torch.distributed as dist\n"
        "from rtp_scale.distributed import release_process_group\n"
        "release_process_group()\n"  # none started: nothing to do
        f"dist.init_process_group('gloo', init_method='file://{tmp_path / 'store'}', rank=0, world_size=1)\n"
        "assert dist.is_initialized()\n"
        "release_process_group()\n"
        "assert not dist.is_initialized()\n"
        "print('released')\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "released", proc.stderr[-2000:]


# ---------------------------------------------------------------------------------------------- whole runs
@pytest.fixture(scope="module")
def plain_runs(tmp_path_factory):
    """3-step runs (meta-batch 2): one process in this process, two under ``accelerate launch``; plus
    pristine copies of both run directories for the resume tests."""
    from rtp_scale.distill import run

    base = tmp_path_factory.mktemp("runs")
    # The reference runs on one thread like every launched rank (_env): with another thread count the
    # PCA start's matmuls sum in another order, and Adam turns those ulps into 1e-5 differences.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run(build_config(None, [*STEPS3, "dist.meta_batch=2", f"run.out_dir={base / 'one'}"]))
        # the one-process reference of a 4th step, resumed from its own checkpoint
        shutil.copytree(base / "one", base / "one_at3")
        run(build_config(None, [*STEPS3, "meta.steps=4", "dist.meta_batch=2", f"run.out_dir={base / 'one_at3'}"]))
    finally:
        torch.set_num_threads(threads)
    launched = _accelerate(CPU2, [*STEPS3, "dist.meta_batch=2", f"run.out_dir={base / 'two'}"])
    shutil.copytree(base / "two", base / "two_at3")
    return base, launched


@pytest.mark.dist
def test_accelerate_two_process_run_ends_replicated_and_equals_one_process(plain_runs):
    base, launched = plain_runs
    two = base / "two"
    res = _results(two)
    assert res["processes"] == 2
    assert res["replica_divergence"] == 0.0  # both ranks end with bitwise the same memory
    _assert_same_memory(base / "one", two)
    # only rank 0 wrote: one TensorBoard file, one metrics line per step, one results file
    assert len(list((two / "tb").glob("events.out.tfevents.*"))) == 1
    rows = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "meta/loss" in r] == [1, 2, 3]
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in (base / "one").iterdir())
    assert launched.stdout.count("test accuracy") == 1
    one_rows = [json.loads(line) for line in (base / "one" / "metrics.jsonl").read_text().splitlines()]
    assert [r["meta/loss"] for r in rows if "meta/loss" in r] == pytest.approx(
        [r["meta/loss"] for r in one_rows if "meta/loss" in r], rel=1e-5)


@pytest.mark.dist
def test_two_process_run_resumes_on_a_different_grid(plain_runs):
    """All ranks load rank 0's checkpoint; the resumed run may even split its unrolls differently."""
    base, _ = plain_runs
    out = base / "two_resumed"
    shutil.copytree(base / "two_at3", out)
    _accelerate(CPU2, [*STEPS3, "meta.steps=4", "dist.meta_batch=2", "dist.inner_shards=2", f"run.out_dir={out}"])
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 4
    assert _results(out)["replica_divergence"] == 0.0
    _assert_same_memory(base / "one_at3", out)


def _needs_deepspeed() -> None:
    for module in ("deepspeed", "transformers"):
        if importlib.util.find_spec(module) is None:
            skip_unless_required("RTP_REQUIRE_DEEPSPEED", f"{module} is not installed (DS_BUILD_OPS=0 pip install -e "
                                 f"'.[deepspeed]'); Accelerate's DeepSpeed plugin needs both")


@pytest.mark.dist
@pytest.mark.slow  # ~2 min: DeepSpeed's import and engine start in 2 processes
def test_deepspeed_zero2_run_equals_plain_run(plain_runs):
    _needs_deepspeed()
    base, _ = plain_runs
    out = base / "zero2"
    # the first DeepSpeed run on a machine compiles a CPU communication op with g++ (~100 s, then cached)
    proc = _accelerate(ZERO2, [*STEPS3, "dist.meta_batch=2", f"run.out_dir={out}"], timeout=420)
    assert _results(out)["replica_divergence"] == 0.0
    # the optimiser state really is sharded: each of the 2 ranks keeps half of SGD's momentum buffer
    shares = re.findall(r"\[rank (\d)\] ZeRO-2: this rank keeps (\d+) of the outer optimiser's (\d+) state", proc.stdout)
    assert sorted(rank for rank, _, _ in shares) == ["0", "1"], proc.stdout[-2000:]
    for _, local, full in shares:
        assert int(local) <= int(full) // 2 + 2  # + ZeRO's alignment padding
    _assert_same_memory(base / "one", out)
    # the ZeRO-sharded optimiser state is gathered into the plain format: equal to the plain run's
    plain = torch.load(base / "one" / "checkpoint.pt", weights_only=True)["optimizer"]
    zero = torch.load(out / "checkpoint.pt", weights_only=True)["optimizer"]
    assert zero["param_groups"] == plain["param_groups"]
    for i, state in plain["state"].items():
        for key, value in state.items():
            torch.testing.assert_close(zero["state"][i][key], value, rtol=1e-5, atol=1e-7)

    # and a ZeRO run resumes a plain run's checkpoint (all ranks load it, then shard the optimiser state)
    resumed = base / "zero2_resumed"
    shutil.copytree(base / "two_at3", resumed)
    _accelerate(ZERO2, [*STEPS3, "meta.steps=4", "dist.meta_batch=2", f"run.out_dir={resumed}"], timeout=420)
    _assert_same_memory(base / "one_at3", resumed)


# ---------------------------------------------------------------------------------------------- failures
FAIL_FAST_S = 20  # from a rank's failure to the launch's non-zero exit; measured 2.9-8.6 s on 2 loaded cores
@pytest.mark.dist
def test_exception_on_one_rank_fails_the_launch_fast(tmp_path):
    proc = _torchrun(2, str(tmp_path), "fail", timeout=120)
    ended = time.time()
    assert proc.returncode != 0
    assert "injected failure on rank 1" in proc.stdout + proc.stderr
    failed_for = ended - float((tmp_path / "failed_at").read_text())
    print(f"launch exited {failed_for:.2f} s after rank 1 failed")
    assert failed_for < FAIL_FAST_S, failed_for


@pytest.mark.dist
def test_finished_rank_exits_cleanly_with_a_thread_still_running(tmp_path):
    # a rank's gloo threads outlive destroy_process_group (DeepSpeed keeps its groups referenced); a C++ thread
    # still running at interpreter teardown aborts a rank whose work is done (SIGABRT: a finished ZeRO-2 run
    # failed its launch). Entry points end a rank before that teardown, with its output flushed.
    proc = _torchrun(2, str(tmp_path), "exit", timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "terminate called" not in proc.stderr
    for rank in (0, 1):
        assert f"rank {rank} finished its work" in proc.stdout


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _rank_of(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"RANK="):
            return int(item[5:])
    return None


def _launch_in_its_loop(out: Path, overrides: list[str]) -> subprocess.Popen:
    """A 2-process `accelerate launch` of a long run, returned once it logged 2 outer steps (both ranks are
    then inside the loop: each step needs both); in its own session, so that the test can clean it up."""
    cmd = _launch_cmd(CPU2, [*TINY, "meta.steps=100000", "log.image_every=0", "dist.meta_batch=2", *overrides,
                             f"run.out_dir={out}"])
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(logged_steps(out)) < 2:
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
    return proc


def _rank_process(launcher: subprocess.Popen, rank: int) -> int:
    victims = [p for p in _descendants(launcher.pid) if _rank_of(p) == rank]
    assert victims, f"rank {rank}'s process not found"
    return victims[0]


@pytest.mark.dist
def test_killing_one_rank_makes_the_launch_exit_non_zero_within_seconds(tmp_path):
    """SIGKILL of rank 1 mid-run: the survivor does not hang in its collective; the launch exits non-zero
    within FAIL_FAST_S, writes no results.json, and the checkpoint (every step here) is intact and at most the
    step in flight behind."""
    out = tmp_path / "run"
    proc = _launch_in_its_loop(out, ["checkpoint.every=1"])
    try:
        killed_at = time.monotonic()
        os.kill(_rank_process(proc, 1), signal.SIGKILL)
        rc = proc.wait(timeout=90)
        print(f"launch exited {time.monotonic() - killed_at:.2f} s after rank 1 was killed")
        assert rc != 0
        assert time.monotonic() - killed_at < FAIL_FAST_S
        assert not (out / "results.json").exists()
        saved = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
        assert logged_steps(out)[-1] - 1 <= saved <= logged_steps(out)[-1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # our own launcher's session, nothing else
            proc.wait()


@pytest.mark.dist
def test_preemption_signal_on_one_rank_stops_all_ranks_after_the_same_step(tmp_path):
    """SIGTERM to rank 1 only (rank 0 never sees it): the ranks agree at the step boundary, both stop after the
    same outer step, rank 0 saves it (no periodic checkpoint: checkpoint.every >> steps), and the launch ends
    non-zero without results.json instead of leaving rank 0 alone in a collective."""
    out = tmp_path / "run"
    proc = _launch_in_its_loop(out, ["checkpoint.every=100000"])
    try:
        os.kill(_rank_process(proc, 1), signal.SIGTERM)
        rc = proc.wait(timeout=90)
        stderr = proc.stderr.read().decode()
        assert rc != 0 and not (out / "results.json").exists()
        saved = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
        assert saved == logged_steps(out)[-1] >= 2, (saved, logged_steps(out)[-3:])
        assert f"stopped by a peer rank after outer step {saved} " in stderr, stderr[-3000:]
        assert f"stopped by SIGTERM after outer step {saved} " in stderr, stderr[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---------------------------------------------------------------------------------------------- Slurm
@pytest.mark.slow  # ~1.5 min: a real sbatch job of two processes
@pytest.mark.slurm
@pytest.mark.dist
def test_multinode_sbatch_runs_a_two_process_accelerate_job(slurm_cluster, tmp_path):
    """slurm/multinode.sbatch (one `accelerate launch` per node) with the CPU accelerate config on the session's
    real local one-node cluster (tests/conftest.py); a run that fails on its ranks fails the job."""
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('[data]\nname = "digits"\n')
    sbatch = ["sbatch", "--wait", "--nodes=1", "--gpus-per-node=0", "--cpus-per-task=2", "--time=10",
              f"--output={tmp_path}/slurm-%j.out", str(ROOT / "slurm/multinode.sbatch"), str(recipe)]
    env = {**_env(), "RTP_ACCELERATE_CONFIG": "configs/accelerate/cpu_2proc.yaml", "RTP_PROCS_PER_NODE": "2",
           "RTP_OUT": str(tmp_path / "run")}
    ok = subprocess.run([*sbatch, "--set", *STEPS3, "dist.meta_batch=2"], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=300)
    log = "".join(p.read_text() for p in tmp_path.glob("slurm-*.out"))
    assert ok.returncode == 0, ok.stderr + log[-3000:]
    res = _results(tmp_path / "run")
    assert res["processes"] == 2 and res["replica_divergence"] == 0.0
    bad = subprocess.run([*sbatch, "--set", *STEPS3, "dist.inner_shards=3"], cwd=ROOT,
                         env={**env, "RTP_OUT": str(tmp_path / "bad")}, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0
