"""The validation split carved out of the training split (data.val_per_class, data.eval_split)."""
from __future__ import annotations

import pytest
import torch

from rtp_scale.config import build_config
from rtp_scale.data import ZCA, load_dataset
from rtp_scale.errors import UserError
from rtp_scale.runtime import prepare_data


def _data(*overrides: str):
    return prepare_data(build_config(None, ["data.name=digits", *overrides]).data)


def test_validation_images_are_the_last_of_each_class_and_leave_training():
    full = _data()
    val = _data("data.val_per_class=5", "data.eval_split=val")
    test = _data("data.val_per_class=5")
    C = full.info.num_classes
    assert len(val.train_y) == len(full.train_y) - 5 * C
    assert torch.equal(val.train_x, test.train_x) and torch.equal(val.train_y, test.train_y)
    # evaluation on 'val' sees exactly the held-out training images, never the test split
    assert torch.bincount(val.test_y, minlength=C).tolist() == [5] * C
    for c in range(C):
        members = torch.nonzero(full.train_y == c).flatten()
        assert torch.equal(val.test_x[val.test_y == c], full.train_x[members[-5:]])
        kept = val.train_x[val.train_y == c]
        assert torch.equal(kept, full.train_x[members[:-5]])
    # 'test' keeps the real test split
    assert torch.equal(test.test_x, full.test_x) and torch.equal(test.test_y, full.test_y)


def test_zca_is_fitted_without_the_validation_images():
    cfg = build_config(None, ["data.name=digits", "data.zca=true", "data.val_per_class=5", "data.eval_split=val"])
    whitened = prepare_data(cfg.data)
    raw = load_dataset("digits")
    keep = torch.ones(len(raw.train_y), dtype=torch.bool)
    for c in range(raw.info.num_classes):
        keep[torch.nonzero(raw.train_y == c).flatten()[-5:]] = False
    zca = ZCA.fit(raw.train_x[keep], reg=cfg.data.zca_reg)
    assert torch.equal(whitened.train_x, zca.apply(raw.train_x[keep]))
    assert torch.equal(whitened.test_x, zca.apply(raw.train_x[~keep][torch.argsort(raw.train_y[~keep], stable=True)]))


@pytest.mark.parametrize("overrides, needle", [
    (["data.eval_split=val"], "needs a validation split"),
    (["data.val_per_class=100000"], "leaves no training image of class 0"),
    (["data.eval_split=train"], "data.eval_split='train' is not allowed"),
])
def test_bad_validation_settings_are_one_line(overrides, needle):
    with pytest.raises(UserError, match=needle):
        _data(*overrides)


def test_the_memory_distilled_for_validation_is_the_one_the_test_split_evaluates(tmp_path):
    """Distillation reads neither evaluation split, so a validation run's artifact evaluated on the test split
    is the test run: the distilled tensors are identical whichever split the run reports on."""
    from safetensors.torch import load_file

    from rtp_scale.distill import run
    from tests.conftest import TINY

    tensors = {}
    for split in ("val", "test"):
        run(build_config(None, [*TINY, "data.val_per_class=10", f"data.eval_split={split}", "memory.init=pca",
                                f"run.out_dir={tmp_path / split}"]))
        tensors[split] = load_file(str(tmp_path / split / "memory.safetensors"))
    assert tensors["val"].keys() == tensors["test"].keys()
    assert all(torch.equal(tensors["val"][k], tensors["test"][k]) for k in tensors["val"])
