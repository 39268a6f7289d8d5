"""Progress output: sparse plain lines when the stream is a file or a pipe, a tqdm bar on a terminal."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from rtp_scale.errors import UserError
from rtp_scale.logging.progress import PlainProgress, default_interval_s, open_progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _run(total: int, seconds_per_update: float, *, interval_s: float = 30.0, initial: int = 0) -> list[str]:
    stream, clock = io.StringIO(), FakeClock()
    bar = open_progress(total=total, initial=initial, desc="distill", unit="step", stream=stream,
                        interval_s=interval_s, clock=clock)
    assert isinstance(bar, PlainProgress)  # a StringIO is not a terminal
    for step in range(initial, total):
        clock.now += seconds_per_update
        bar.set_postfix(loss=f"{1 / (step + 1):.3f}")
        bar.update(1)
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text and text.endswith("\n")
    return text.splitlines()


def test_lines_first_every_interval_and_last():
    # 1,000 updates 1/8 s apart (125 s; exact in binary): the first, one per 30 s after it, and the last
    lines = _run(1000, 0.125)
    assert [int(re.match(r"distill (\d+)/1000", line).group(1)) for line in lines] == [1, 241, 481, 721, 961, 1000]
    assert lines[0] == "distill 1/1000 (0%) | loss=1.000 | 8.00 step/s | elapsed 0:00 | ETA 2:05"
    assert lines[-1] == "distill 1000/1000 (100%) | loss=0.001 | 8.00 step/s | elapsed 2:05 | ETA 0:00"


def test_line_count_is_bounded_by_the_interval_not_the_updates():
    # 100,000 updates in 10 minutes at the default interval: 1 + 600/30 lines, not 100,000
    lines = _run(100_000, 0.006)
    assert len(lines) == 21


def test_slow_steps_show_seconds_per_step_and_resume_counts_only_new_work():
    lines = _run(10, 45.0, initial=6)  # resumed at step 6; every step 45 s (over the interval)
    assert [line.split(" | ")[0] for line in lines] == [f"distill {n}/10 ({10 * n}%)" for n in (7, 8, 9, 10)]
    assert "45.0 s/step" in lines[0] and "ETA 2:15" in lines[0]  # 3 steps left at 45 s


def test_close_writes_the_last_state_once_and_disabled_writes_nothing():
    stream, clock = io.StringIO(), FakeClock()
    bar = open_progress(total=5, desc="eval", unit="epoch", stream=stream, interval_s=30.0, clock=clock)
    for _ in range(3):
        clock.now += 1
        bar.update(1)
    bar.close()
    bar.close()
    assert [line.split(" | ")[0] for line in stream.getvalue().splitlines()] == ["eval 1/5 (20%)", "eval 3/5 (60%)"]
    quiet = io.StringIO()
    off = open_progress(total=5, desc="eval", unit="epoch", stream=quiet, enabled=False)
    off.update(5)
    off.close()
    assert quiet.getvalue() == ""


def test_terminal_keeps_a_tqdm_bar():
    from tqdm.auto import tqdm

    leader, follower = os.openpty()
    with open(follower, "w", closefd=True) as terminal:
        bar = open_progress(total=3, desc="distill", unit="step", stream=terminal)
        assert isinstance(bar, tqdm)
        bar.update(3)
        bar.close()
    chunks = []
    while True:  # a pty hands its buffer over in pieces; read until the closed follower side reports EOF (EIO)
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    written = b"".join(chunks).decode()
    assert "\r" in written and "3/3" in written


def test_interval_from_environment(monkeypatch):
    monkeypatch.setenv("RTP_PROGRESS_INTERVAL", "5")
    assert default_interval_s() == 5.0
    monkeypatch.setenv("RTP_PROGRESS_INTERVAL", "soon")
    with pytest.raises(UserError, match="RTP_PROGRESS_INTERVAL='soon'"):
        default_interval_s()


def test_distill_log_to_a_file_is_plain_lines(tiny_overrides, tmp_path):
    """A real run with stderr to a file (as under Slurm): no carriage returns, a handful of lines per bar."""
    overrides = [o for o in tiny_overrides if not o.startswith("log.progress=")]
    log_path = tmp_path / "job.err"
    with open(log_path, "wb") as log:  # bytes: text mode would turn a '\r' into a newline and hide it
        proc = subprocess.run([sys.executable, "-m", "rtp_scale.distill", "--set", *overrides, "log.progress=true",
                               "meta.steps=6", "eval.epochs=20", "eval.every=3"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "RTP_PROGRESS_INTERVAL": "30"}, timeout=300)
    raw = log_path.read_bytes()
    assert proc.returncode == 0, raw[-2000:].decode()
    assert b"\r" not in raw
    lines = raw.decode().splitlines()
    distill = [line for line in lines if line.startswith("distill ")]
    final = [line for line in lines if line.startswith("final eval ")]
    # the run takes seconds: the first and the last update of each bar, nothing in between
    assert [line.split(" | ")[0] for line in distill] == ["distill 1/6 (17%)", "distill 6/6 (100%)"]
    assert re.search(r"\| loss=\d+\.\d{3} inner=\d+\.\d{3} \|", distill[-1])
    assert [line.split(" | ")[0] for line in final] == ["final eval 1/20 (5%)", "final eval 20/20 (100%)"]
    # an evaluation during distillation says when it starts and what it found, not minutes of silence
    assert "evaluating at outer step 0/6 on the test split (1 nets)" in lines  # the starting memory
    announced = lines.index("evaluating at outer step 3/6 on the test split (1 nets)")
    assert re.fullmatch(r"outer step 3: test accuracy \d+\.\d\d ± 0\.00 % over 1 nets \(\d+ s\)", lines[announced + 1])
