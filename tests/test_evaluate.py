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
from tests.conftest import DIGITS_TEST_IMAGES, TINY, assert_accuracies_recompute, run_module

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
    assert len(record["accuracy"]["accuracies"]) == 2
    assert_accuracies_recompute(record["accuracy"]["accuracies"], record["accuracy"]["mean"],
                                test_images=DIGITS_TEST_IMAGES)
    assert "test accuracy" in proc.stdout


# a ZCA run whose recorded settings all differ from evaluate's defaults: width, seed, augmentation, eval.*
ZCA_RUN = [*TINY, "data.zca=true", "model.width=12", "run.seed=3", "data.augment=flip", "eval.epochs=15",
           "eval.num_nets=2", "eval.scores=true"]


@pytest.fixture(scope="module")
def zca_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("zca") / "run"
    return out, run(build_config(None, [*ZCA_RUN, f"run.out_dir={out}"]))


def test_cli_reproduces_a_zca_artifacts_own_evaluation_from_its_recorded_settings(zca_run, tmp_path):
    out, results = zca_run
    proc = run_module("rtp_scale.evaluate", "--artifact", str(out / "memory.safetensors"), "--out", str(tmp_path),
                      "--set", "log.progress=false")
    assert proc.returncode == 0, proc.stderr
    assert "overriding" not in proc.stdout and "note:" not in proc.stdout, proc.stdout
    record = json.loads((tmp_path / "eval.json").read_text())
    # same protocol, same seed, same whitening, same memory: the run's own accuracies and scores, exactly
    assert record["accuracy"]["accuracies"] == results["accuracy"]["accuracies"]
    assert record["scores"]["scores"] == results["scores"]["scores"]
    assert record["storage"] == results["storage"]
    assert record["artifact_settings"] == {"recorded": True, "overridden": {}, "zca": "stored"}
    assert record["config"]["model"]["width"] == 12 and record["config"]["run"]["seed"] == 3


def test_cli_prints_every_recorded_setting_it_overrides(zca_run, tmp_path, capsys):
    from rtp_scale.evaluate import main

    out, results = zca_run
    assert main(["--artifact", str(out / "memory.safetensors"), "--out", str(tmp_path), "--no-scores", "--seed", "3",
                 "--set", "log.progress=false", "data.zca=false", "model.width=16", "eval.epochs=15"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # --seed 3 and eval.epochs=15 are the recorded values: set, but nothing is overridden
    assert lines[:2] == ["overriding artifact's data.zca=true with false",
                         "overriding artifact's model.width=12 with 16"], lines
    assert not any(line.startswith("overriding") for line in lines[2:]), lines
    record = json.loads((tmp_path / "eval.json").read_text())
    assert record["scores"] is None
    assert record["artifact_settings"]["overridden"] == {"data.zca": [True, False], "model.width": [12, 16]}
    assert record["accuracy"]["accuracies"] != results["accuracy"]["accuracies"]


def _resave(out, path, *, zca_reg=None, max_dim=None, monkeypatch=None):
    """The run's memory saved again: with its ZCA too large to store, or with a ZCA fitted with another reg."""
    from rtp_scale.data.zca import ZCA
    from rtp_scale.memory import artifact

    memory, meta = artifact.load_artifact(out / "memory.safetensors")
    cfg = build_config(json.loads((out / "config.json").read_text()))
    data = prepare_data(build_config(None, ["data.name=digits"]).data)  # not whitened
    zca = ZCA.fit(data.train_x, reg=cfg.data.zca_reg if zca_reg is None else zca_reg)
    if max_dim is not None:
        monkeypatch.setattr(artifact, "ZCA_STORE_MAX_DIM", max_dim)
    artifact.save_artifact(path, memory, dataset_meta=meta["dataset"],
                           evaluation=artifact.evaluation_settings(cfg.to_dict()), zca=zca)


def test_a_zca_too_large_to_store_is_refitted_and_gives_the_same_numbers(zca_run, tmp_path, monkeypatch):
    from rtp_scale.evaluate import main

    out, results = zca_run
    path = tmp_path / "memory.safetensors"
    _resave(out, path, max_dim=0, monkeypatch=monkeypatch)
    assert main(["--artifact", str(path), "--no-scores", "--set", "log.progress=false"]) == 0
    record = json.loads((tmp_path / "eval.json").read_text())
    assert record["artifact_settings"]["zca"] == "refitted"
    assert record["accuracy"]["accuracies"] == results["accuracy"]["accuracies"]


def test_a_refitted_zca_that_differs_from_the_runs_is_refused(zca_run, tmp_path, monkeypatch):
    from rtp_scale.errors import UserError
    from rtp_scale.evaluate import main

    out, _ = zca_run
    path = tmp_path / "memory.safetensors"
    _resave(out, path, zca_reg=0.5, max_dim=0, monkeypatch=monkeypatch)  # says zca_reg=0.1, was fitted with 0.5
    with pytest.raises(UserError, match="ZCA transform refitted on this training set differs from the run's"):
        main(["--artifact", str(path), "--no-scores", "--set", "log.progress=false"])


def test_an_artifact_without_recorded_settings_is_evaluated_with_a_one_line_note(tmp_path, capsys):
    from rtp_scale.evaluate import main
    from rtp_scale.memory import build_memory
    from rtp_scale.memory.artifact import save_artifact

    data = prepare_data(build_config(None, ["data.name=digits"]).data)
    memory = build_memory("pixel", num_classes=10, image_shape=(1, 8, 8), images_per_class=1,
                          init_images_NCHW=data.train_x[:10])
    path = tmp_path / "memory.safetensors"
    save_artifact(path, memory, dataset_meta={"name": "digits", "mean": list(data.info.mean),
                                              "std": list(data.info.std), "zca": False})
    assert main(["--artifact", str(path), "--no-scores", "--set", *FAST_EVAL]) == 0
    stdout = capsys.readouterr().out
    notes = [line for line in stdout.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "records no evaluation settings" in notes[0], stdout
    assert json.loads((tmp_path / "eval.json").read_text())["artifact_settings"]["recorded"] is False


def test_an_artifact_normalised_otherwise_than_the_dataset_is_refused(tmp_path):
    from rtp_scale.errors import UserError
    from rtp_scale.evaluate import main
    from rtp_scale.memory import build_memory
    from rtp_scale.memory.artifact import save_artifact

    memory = build_memory("pixel", num_classes=10, image_shape=(1, 8, 8), images_per_class=1)
    path = tmp_path / "memory.safetensors"
    save_artifact(path, memory, dataset_meta={"name": "digits", "mean": [0.3], "std": [0.4]})
    with pytest.raises(UserError, match=r"normalised with mean \[0.3\]"):
        main(["--artifact", str(path), "--set", *FAST_EVAL])


def test_no_scores_is_refused_for_a_baseline():
    from rtp_scale.errors import UserError
    from rtp_scale.evaluate import main

    with pytest.raises(UserError, match="--no-scores is only used with --artifact"):
        main(["--dataset", "digits", "--baseline", "full", "--no-scores"])


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


def _trained_params(norm: str, micro_batch: int, augment: str = "none") -> list:
    """Parameters of one float64 evaluation network after 3 epochs on 37 images in minibatches of 16."""
    import dataclasses

    import torch

    from rtp_scale.config import EvalConfig, ModelConfig
    from rtp_scale.data.augment import Augmenter
    from rtp_scale.eval import build_net, train_fresh_net

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(37, 1, 8, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (37,), generator=gen)
    eval_cfg = EvalConfig(batch_size=16, micro_batch=micro_batch)
    model_cfg = dataclasses.replace(ModelConfig(), width=8, depth=2, norm=norm)
    net = build_net(model_cfg, channels=1, num_classes=10, image_size=(8, 8)).double()
    train_fresh_net(net, x, y, eval_cfg=eval_cfg, epochs=3, augmenter=Augmenter(augment), seed=1, index=0)
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("micro_batch", [1, 5, 16])
def test_micro_batched_training_takes_the_whole_minibatchs_steps(micro_batch):
    """eval.micro_batch splits each minibatch's forward/backward into pieces (and the last, partial minibatch of
    5 into pieces too): the SGD steps are the whole minibatch's, to float64 rounding, with augmentation on."""
    import torch

    whole = _trained_params("instance", 0, "crop_flip")
    pieces = _trained_params("instance", micro_batch, "crop_flip")
    for a, b in zip(whole, pieces):
        torch.testing.assert_close(b, a, rtol=1e-11, atol=1e-12)


def test_batch_norm_networks_always_train_on_the_whole_minibatch():
    """Batch statistics couple a minibatch's images: pieces would train another network, so none are cut."""
    assert all(bool((a == b).all()) for a, b in zip(_trained_params("batch", 0), _trained_params("batch", 4)))
