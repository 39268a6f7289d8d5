"""Shared helpers: tiny, fast configurations and a subprocess runner for the entry points."""
from __future__ import annotations

import os
import subprocess
import sys
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


@pytest.fixture
def tiny_overrides(tmp_path):
    return [*TINY, f"run.out_dir={tmp_path / 'run'}"]
