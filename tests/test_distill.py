"""End-to-end distillation runs: reproducibility, kill + resume, TensorBoard, outputs, failure paths."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from rtp_scale.config import build_config
from rtp_scale.distill import run
from rtp_scale.errors import UserError
from rtp_scale.memory.artifact import load_artifact
from tests.conftest import ROOT, TINY, run_module


def _memory(out):
    return load_file(str(out / "memory.safetensors"))


def test_run_writes_outputs_and_is_bitwise_reproducible(tmp_path):
    results = []
    for name in ("a", "b"):
        results.append(run(build_config(None, [*TINY, f"run.out_dir={tmp_path / name}"])))
    a, b = _memory(tmp_path / "a"), _memory(tmp_path / "b")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    for name in ("a", "b"):
        out = tmp_path / name
        for f in ("config.json", "checkpoint.pt", "metrics.jsonl", "results.json", "memory.safetensors"):
            assert (out / f).exists(), f
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert res["accuracy"]["accuracies"] == results[1]["accuracy"]["accuracies"]
    assert res["storage"]["ipc_equivalent"] <= 1.0 + 1e-9
    # the memory actually moved away from its initialisation
    first = json.loads((tmp_path / "a" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["meta/grad_norm"] > 0


def test_different_seed_gives_different_memory(tmp_path):
    run(build_config(None, [*TINY, f"run.out_dir={tmp_path / 'a'}", "meta.steps=2"]))
    run(build_config(None, [*TINY, f"run.out_dir={tmp_path / 'b'}", "meta.steps=2", "run.seed=1"]))
    assert not torch.equal(_memory(tmp_path / "a")["images_NCHW"], _memory(tmp_path / "b")["images_NCHW"])


def test_distilling_8x8_digits_with_a_depth_3_convnet_warns_once_and_depth_2_does_not(tmp_path, capsys):
    run(build_config(None, [*TINY, f"run.out_dir={tmp_path / 'a'}", "meta.steps=1", "model.depth=3"]))
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "block 3's instance norm normalises a 2x2 map" in warnings[0], warnings
    run(build_config(None, [*TINY, f"run.out_dir={tmp_path / 'b'}", "meta.steps=1"]))  # TINY: depth 2
    assert "warning:" not in capsys.readouterr().err


def test_tensorboard_events_contain_meta_loss(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    run(build_config(None, [*TINY, f"run.out_dir={out}"]))
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    tags = acc.Tags()
    assert {"meta/loss", "meta/grad_norm", "inner/loss_first", "inner/loss_last", "sys/step_time", "sys/cpu_time",
            "sys/peak_mem", "eval/acc_mean"} <= set(tags["scalars"])
    losses = acc.Scalars("meta/loss")
    assert [e.step for e in losses] == [1, 2, 3, 4]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [row["meta/loss"] for row in rows if "meta/loss" in row]
    assert [e.value for e in losses] == pytest.approx(logged, rel=1e-6)
    assert "memory/recalled" in tags["images"]


def test_killed_run_resumes_to_the_same_memory(tmp_path):
    steps = ["meta.steps=8", "eval.num_nets=1"]
    run(build_config(None, [*TINY, *steps, f"run.out_dir={tmp_path / 'straight'}"]))

    out = tmp_path / "killed"
    args = ["-m", "rtp_scale.distill", "--set", *TINY, *steps, f"run.out_dir={out}"]
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    metrics = out / "metrics.jsonl"
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed: " + proc.stderr.read().decode()[-500:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "results.json").exists()
    killed_at = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    assert 1 <= killed_at < 8

    run(build_config(None, [*TINY, *steps, f"run.out_dir={out}"]))
    straight, resumed = _memory(tmp_path / "straight"), _memory(out)
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_checkpoint_from_another_run_is_refused(tmp_path):
    out = tmp_path / "run"
    run(build_config(None, [*TINY, "meta.steps=1", f"run.out_dir={out}"]))
    with pytest.raises(UserError, match="differently configured run: run.seed 0 → 5;"):
        run(build_config(None, [*TINY, "meta.steps=2", "run.seed=5", f"run.out_dir={out}"]))
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="is truncated or not a checkpoint"):
        run(build_config(None, [*TINY, "meta.steps=2", f"run.out_dir={out}"]))
    # divergence, every other refusal and load error, --fresh and a full disk: tests/test_resume.py


@pytest.mark.parametrize("args, needle", [
    (["--set", "nosuch.key=1"], "unknown config section"),
    (["--set", "memory.ipc=-2"], "memory.ipc=-2.0 must be > 0"),
    (["--set", "data.name=imagenet9000"], "unknown dataset 'imagenet9000'"),
    (["--set", "memory.ipc=0.1", "memory.num_bases=64"], "too small"),
    (["--set", "inner.steps=10", "unroll.segment=20"], "larger than inner.steps"),
    (["--config", "configs/does-not-exist.toml"], "config file not found"),
    (["--bogus-flag"], "unrecognized arguments"),
])
def test_bad_input_is_one_line_without_traceback(args, needle):
    proc = run_module("rtp_scale.distill", *args, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_downsampled_pixel_memory_distills_below_one_image_per_class(tmp_path):
    """memory.pixel_downsample=2 at 0.5 IPC on 8x8 digits: 2 images per class stored at 4x4, every class held."""
    out = tmp_path / "px"
    result = run(build_config(None, [*TINY, "memory.kind=pixel", "memory.ipc=0.5", "memory.pixel_downsample=2",
                                     "meta.steps=2", f"run.out_dir={out}"]))
    assert result["storage"]["floats"] == 10 * 2 * 16 and result["storage"]["ipc_equivalent"] == 0.5
    memory, meta = load_artifact(out / "memory.safetensors")
    assert list(memory.images.shape) == [10, 2, 1, 4, 4] and meta["memory_meta"]["downsample"] == 2
