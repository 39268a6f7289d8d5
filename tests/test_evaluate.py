"""The evaluation protocol and `python -m rtp_scale.evaluate`."""
from __future__ import annotations

import json

import pytest

from rtp_scale.config import build_config
from rtp_scale.data.sampler import random_subset_per_class
from rtp_scale.distill import run
from rtp_scale.eval import evaluate_synthetic, random_real
from rtp_scale.runtime import prepare_data
from rtp_scale.seeding import make_generator
from tests.conftest import TINY, run_module

FAST_EVAL = ["model.width=16", "model.depth=2", "eval.num_nets=2", "eval.epochs=15", "eval.batch_size=64",
             "log.progress=false"]


def _digits_subset(cfg, per_class=5):
    data = prepare_data(cfg.data)
    idx = random_subset_per_class(data.train_y, 10, per_class, make_generator(0))
    return data, data.train_x[idx], data.train_y[idx]


def test_protocol_is_deterministic_given_the_seed():
    cfg = build_config(None, ["data.name=digits", *FAST_EVAL])
    data, x, y = _digits_subset(cfg)
    kw = dict(test_x=data.test_x, test_y=data.test_y, num_classes=10, model_cfg=cfg.model, eval_cfg=cfg.eval,
              augment_ops="crop_flip")
    a = evaluate_synthetic(x, y, seed=3, **kw)
    b = evaluate_synthetic(x, y, seed=3, **kw)
    c = evaluate_synthetic(x, y, seed=4, **kw)
    assert a.accuracies == b.accuracies
    assert a.accuracies != c.accuracies
    assert len(a.accuracies) == 2 and a.std >= 0 and min(a.accuracies) <= a.mean <= max(a.accuracies)


@pytest.mark.slow  # ~2 min: trains on the whole mnist5k training set
def test_trained_net_beats_chance_by_a_wide_margin_on_mnist5k():
    cfg = build_config(None, ["data.name=mnist5k", "model.width=16", "eval.num_nets=1", "eval.epochs=30",
                              "eval.batch_size=100", "log.progress=false"])
    result = random_real(prepare_data(cfg.data), ipc=20, model_cfg=cfg.model, eval_cfg=cfg.eval,
                         augment_ops="none", seed=0)
    assert result.mean > 70.0, result  # chance is 10 %


def test_cli_random_baseline_writes_eval_json(tmp_path):
    proc = run_module("rtp_scale.evaluate", "--dataset", "digits", "--baseline", "random", "--ipc", "2",
                      "--out", str(tmp_path), "--set", *FAST_EVAL)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "eval.json").read_text())
    assert record["dataset"] == "digits" and record["storage"]["ipc_equivalent"] == 2.0
    assert len(record["accuracy"]["accuracies"]) == 2 and 0 <= record["accuracy"]["mean"] <= 100
    assert "test accuracy" in proc.stdout


def test_cli_evaluates_a_distilled_artifact(tmp_path):
    out = tmp_path / "run"
    results = run(build_config(None, [*TINY, f"run.out_dir={out}"]))
    proc = run_module("rtp_scale.evaluate", "--artifact", str(out / "memory.safetensors"), "--set",
                      *TINY[:5], "eval.num_nets=1", "eval.epochs=3", "eval.batch_size=64", "log.progress=false")
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / "eval.json").read_text())
    # same protocol, same seed, same memory: the same accuracy as the run's own final evaluation
    assert record["accuracy"]["accuracies"] == results["accuracy"]["accuracies"]
    assert record["storage"]["ipc_equivalent"] == results["storage"]["ipc_equivalent"]


@pytest.mark.parametrize("args, needle", [
    (["--dataset", "cifar10", "--baseline", "full", "--set", "data.root=/nonexistent/cifar"], "cifar-10-batches-py"),
    (["--dataset", "cifar10", "--baseline", "full"], "data.root"),
    (["--dataset", "imagenet9000", "--baseline", "full"], "unknown dataset 'imagenet9000'"),
    (["--dataset", "digits", "--baseline", "random", "--ipc", "-1"], "--ipc must be a positive"),
    (["--dataset", "digits", "--baseline", "random"], "needs --ipc"),
    (["--dataset", "digits", "--baseline", "full", "--set", "eval.nosuch=3"], "unknown config key 'eval.nosuch'"),
    (["--artifact", "/nonexistent/memory.safetensors"], "/nonexistent/memory.safetensors"),
    (["--dataset", "digits"], "one of the arguments --artifact --baseline is required"),
])
def test_bad_input_is_one_line_without_traceback(args, needle):
    proc = run_module("rtp_scale.evaluate", *args, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
