"""Scores against random real images of the same storage (rtp_scale.eval.scores)."""
from __future__ import annotations

import pytest
import torch

from rtp_scale.config import build_config
from rtp_scale.data.sampler import random_subset_per_class
from rtp_scale.data.sources import MemorySource
from rtp_scale.eval import evaluate_synthetic, random_real
from rtp_scale.eval.scores import random_baseline_ipc, score_distilled
from rtp_scale.runtime import prepare_data
from rtp_scale.seeding import make_generator

FAST_EVAL = ["data.name=digits", "model.width=16", "model.depth=2", "eval.num_nets=2", "eval.epochs=12",
             "eval.batch_size=64", "log.progress=false"]


@pytest.mark.parametrize("ipc_equivalent, ipc", [
    (0.994, 1),    # an addressable memory at a budget of 1 (floor would give 0)
    (9.991, 10),   # ... at a budget of 10 (floor would give 9: less storage than the memory)
    (1.0128, 1),   # a pixel memory with learned labels at IPC 1 (ceil would give 2)
    (0.3, 1),      # below one image per class: the smallest subset that holds every class
    (2.5, 3), (2.49, 2), (50.0, 50),
])
def test_random_baseline_ipc_is_the_nearest_whole_ipc_and_at_least_one(ipc_equivalent, ipc):
    assert random_baseline_ipc(ipc_equivalent) == ipc


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_random_baseline_ipc_rejects_impossible_storage(bad):
    with pytest.raises(ValueError, match="positive"):
        random_baseline_ipc(bad)


@pytest.fixture(scope="module")
def digits():
    cfg = build_config(None, FAST_EVAL)
    data = prepare_data(cfg.data)
    idx = random_subset_per_class(data.train_y, 10, 2, make_generator(7))
    # a stand-in for a distilled set: 2 real images per class, i.e. 2 IPC of storage
    storage = {"floats": 20 * 64, "ipc_equivalent": 2.0}
    return cfg, data, data.train_x[idx], data.train_y[idx], storage


def _kw(cfg, data, ops):
    return dict(test_x=data.test_x, test_y=data.test_y, num_classes=10, model_cfg=cfg.model, eval_cfg=cfg.eval,
                augment_ops=ops, seed=5)


def test_scores_are_the_documented_differences_of_runs_under_one_protocol(digits):
    cfg, data, x, y, storage = digits
    report = score_distilled(x, y, source=MemorySource(data, per_class=1), storage=storage, model_cfg=cfg.model,
                             eval_cfg=cfg.eval, augment_ops="flip_crop", seed=5)
    runs, scores = report["runs"], report["scores"]
    # each run is exactly what the protocol gives on its own, with the same seed
    assert runs["distilled"]["accuracies"] == evaluate_synthetic(x, y, **_kw(cfg, data, "flip_crop")).accuracies
    assert runs["distilled_no_aug"]["accuracies"] == evaluate_synthetic(x, y, **_kw(cfg, data, "none")).accuracies
    rand = random_real(data, ipc=2, model_cfg=cfg.model, eval_cfg=cfg.eval, augment_ops="flip_crop", seed=5)
    rand_plain = random_real(data, ipc=2, model_cfg=cfg.model, eval_cfg=cfg.eval, augment_ops="none", seed=5)
    assert runs["random"]["accuracies"] == rand.accuracies
    assert runs["random_no_aug"]["accuracies"] == rand_plain.accuracies
    assert rand.accuracies != rand_plain.accuracies  # the augmentation was really on in one and off in the other
    # gains are per-network differences (mean and population std)
    diffs = torch.tensor(runs["distilled"]["accuracies"], dtype=torch.float64) - torch.tensor(rand.accuracies,
                                                                                              dtype=torch.float64)
    assert scores["gain_over_random"] == {"mean": float(diffs.mean()), "std": float(diffs.std(unbiased=False))}
    assert scores["gain_over_random_no_aug"]["mean"] == pytest.approx(
        runs["distilled_no_aug"]["mean"] - rand_plain.mean, abs=1e-12)
    assert scores["acc"]["mean"] == runs["distilled"]["mean"] and scores["random_acc"]["mean"] == rand.mean
    assert report["random_baseline"] == {"ipc": 2, "floats": 2 * 10 * 64, "labels": "hard", "storage_ratio": 1.0}
    assert "hard_label_acc" not in scores  # hard labels already


def test_learned_labels_add_the_hard_label_accuracy_and_reuse_the_given_evaluation(digits):
    cfg, data, x, y, storage = digits
    # soft rows whose argmax is the class, but with mass on another class: training on them differs
    soft = 0.6 * torch.nn.functional.one_hot(y, 10).float() + 0.4 * torch.nn.functional.one_hot((y + 1) % 10, 10)
    given = evaluate_synthetic(x, soft, **_kw(cfg, data, "none"))
    report = score_distilled(x, soft, source=MemorySource(data, per_class=1), storage=storage, model_cfg=cfg.model,
                             eval_cfg=cfg.eval, augment_ops="none", seed=5, distilled=given)
    hard = evaluate_synthetic(x, y, **_kw(cfg, data, "none"))
    assert report["runs"]["distilled"] == given.as_dict()
    assert report["runs"]["hard_label"]["accuracies"] == hard.accuracies != given.accuracies
    assert report["scores"]["hard_label_gain_over_random"]["mean"] == pytest.approx(
        hard.mean - report["scores"]["random_acc"]["mean"], abs=1e-12)
    # without augmentation the no-aug pair is the same pair of runs, not trained twice
    assert report["runs"]["distilled_no_aug"] == report["runs"]["distilled"]
    assert report["runs"]["random_no_aug"] == report["runs"]["random"]
    assert report["seconds"] == pytest.approx(report["runs"]["random"]["seconds"]
                                              + report["runs"]["hard_label"]["seconds"])
