"""Shared helpers: tiny, fast configurations, a subprocess runner for the entry points, and the session's real
one-node Slurm cluster (``slurm_cluster``), started on first use by the project's slurm/start-local-cluster.sh."""
from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A distillation small enough for a unit test on 2 CPU cores (digits 8x8, a narrow ConvNet, 6 inner steps).
TINY = [
    "data.name=digits", "data.real_per_class=8", "model.width=8", "model.depth=2", "memory.ipc=1",
    "memory.num_bases=6", "memory.downsample=2", "inner.steps=6", "inner.batch_per_class=4", "meta.steps=4",
    "eval.num_nets=1", "eval.epochs=3", "eval.batch_size=64", "log.image_every=2", "log.progress=false",
    "checkpoint.every=1", "run.device=cpu",
]


def run_module(module: str, *args: str, cwd: Path | None = None, timeout: float = 300,
               env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` with this interpreter and capture its output."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or ROOT, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def logged_steps(out: Path) -> list[int]:
    """The outer steps the run in ``out`` has logged, in order, over all its attempts (metrics.jsonl is
    appended to; one line per step with log.every=1 and log.tensorboard=true)."""
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    if lines and not lines[-1].endswith("}"):
        lines.pop()  # a line being written right now
    return [row["step"] for row in map(json.loads, lines) if "meta/loss" in row]


DIGITS_TEST_IMAGES = 364  # scikit-learn digits: the last 20 % of each class


def assert_accuracies_recompute(accuracies: list[float], mean: float, *, test_images: int) -> None:
    """Each accuracy (%) is a whole number of correctly classified images out of ``test_images`` (so every
    test image was scored, the last partial batch included), and ``mean`` is their mean."""
    for acc in accuracies:
        correct = acc * test_images / 100
        assert abs(correct - round(correct)) < 1e-6 and 0 <= round(correct) <= test_images, (acc, test_images)
    assert mean == pytest.approx(statistics.fmean(accuracies), rel=1e-12, abs=1e-12)


@pytest.fixture
def tiny_overrides(tmp_path):
    return [*TINY, f"run.out_dir={tmp_path / 'run'}"]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def skip_unless_required(switch: str, reason: str) -> None:
    """Skip with ``reason``, or fail when the environment sets ``switch=1`` (CI sets RTP_REQUIRE_SLURM,
    RTP_REQUIRE_FFCV and RTP_REQUIRE_DEEPSPEED, so that a missing component cannot turn the suite green)."""
    if os.environ.get(switch) == "1":
        pytest.fail(f"{switch}=1 but {reason}")
    pytest.skip(reason)


def _cannot_run(reason: str) -> None:
    skip_unless_required("RTP_REQUIRE_SLURM", reason)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A private one-node cluster with accounting; yields its SLURM_CONF (also exported for this process)."""
    script = ROOT / "slurm" / "start-local-cluster.sh"
    if os.name != "posix" or os.geteuid() != 0:
        _cannot_run("the local Slurm cluster needs root (it installs Debian packages and runs the daemons)")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        _cannot_run("Slurm is not installed and there is no apt-get to install it (Debian/Ubuntu only)")
    # a directory every daemon user can traverse (MariaDB runs as 'mysql'; pytest's tmp dirs are 0700)
    slurm_dir = Path(tempfile.mkdtemp(prefix="rtp-slurm-test-", dir="/tmp"))
    ctld, slurmd, dbd, mysql = _free_ports(4)
    env = {**os.environ, "SLURM_DIR": str(slurm_dir), "SLURM_ACCOUNTING": "1", "SLURM_FRESH": "1",
           "SLURMCTLD_PORT": str(ctld), "SLURMD_PORT": str(slurmd), "SLURMDBD_PORT": str(dbd),
           "MYSQL_PORT": str(mysql), "SLURM_CLUSTER_NAME": f"rtptest{os.getpid()}",
           "SLURM_CRED_EXPIRE": "5"}  # a requeued job may restart after 5 s (Slurm default: 120)
    stop = ROOT / "slurm" / "stop-local-cluster.sh"
    started = time.monotonic()
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        subprocess.run(["bash", str(stop)], env={**env, "SLURM_WIPE": "1"}, capture_output=True, timeout=120)
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-8:]
        if "apt-get install failed" in proc.stderr:
            _cannot_run("slurm/start-local-cluster.sh could not install Slurm: " + " | ".join(tail))
        pytest.fail("slurm/start-local-cluster.sh failed:\n" + "\n".join(tail))
    print(f"local Slurm cluster up in {time.monotonic() - started:.1f} s ({slurm_dir})")
    conf = str(slurm_dir / "etc" / "slurm.conf")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    try:
        yield conf
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        subprocess.run(["bash", str(stop)], env={**env, "SLURM_WIPE": "1"}, capture_output=True, timeout=120)
