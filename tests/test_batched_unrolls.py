"""``dist.batch_unrolls``: a step's unrolls as one unroll of stacked networks equal the unrolls one by one.

Each case computes one outer step's meta-gradient (memory and learned lrs) and metrics exactly as
``distill.run`` does, once with the unrolls one by one and once stacked, in float64 (equal to ~1e-13) and in
float32 (equal to float rounding).
"""
from __future__ import annotations

import pytest
import torch

from rtp_scale.config import build_config
from rtp_scale.distributed import RankContext
from rtp_scale.errors import UserError
from tests.conftest import TINY
from tests.dist_worker import step_gradients

ALONE = RankContext(rank=0, world_size=1, device=torch.device("cpu"), inner_shards=1)


def both(overrides: list[str], *, float64: bool) -> tuple[dict, dict]:
    def step(batched: bool) -> dict:
        cfg = build_config(None, [*TINY, "run.out_dir=/nonexistent", *overrides,
                                  f"dist.batch_unrolls={str(batched).lower()}"])
        return step_gradients(cfg, ALONE, float64=float64)
    return step(False), step(True)


def assert_same(one_by_one: dict, stacked: dict, rtol: float) -> None:
    assert one_by_one["grads"].keys() == stacked["grads"].keys()
    for name, g in one_by_one["grads"].items():
        scale = g.abs().max()
        assert scale > 0, name
        assert (stacked["grads"][name] - g).abs().max() <= rtol * scale, name
    assert one_by_one["metrics"].keys() == stacked["metrics"].keys()
    for key, value in one_by_one["metrics"].items():
        assert stacked["metrics"][key] == pytest.approx(value, rel=rtol, abs=1e-300), key


@pytest.mark.parametrize("overrides", [
    ["dist.meta_batch=3"],  # segmented, the default mode
    # one graph for the whole unroll, a differentiable augmentation draw per unroll, weight decay,
    # learned per-step lrs (their gradient is the sum over the stacked networks) and a regulariser that counts
    ["dist.meta_batch=2", "unroll.mode=full", "data.augment=flip_crop", "inner.weight_decay=0.01",
     "inner.learn_lr=true", "memory.coeff_l2=10"],
    # the outer loss in parts, segments of 2 steps
    ["dist.meta_batch=2", "unroll.outer_chunk=7", "unroll.segment=2"],
], ids=["segmented", "full_aug_lrs_l2", "chunked"])
def test_stacked_unrolls_equal_the_unrolls_one_by_one_in_float64(overrides):
    one_by_one, stacked = both(overrides, float64=True)
    if "inner.learn_lr=true" in overrides:
        assert "lrs" in stacked["grads"]
    assert_same(one_by_one, stacked, rtol=1e-12)


def test_stacked_unrolls_equal_the_unrolls_one_by_one_to_float32_rounding():
    one_by_one, stacked = both(["dist.meta_batch=2", "data.augment=flip_crop"], float64=False)
    assert_same(one_by_one, stacked, rtol=1e-4)


@pytest.mark.parametrize("overrides, names", [
    (["method.name=dd"], "method.name=dd"),
    (["unroll.mode=truncated", "unroll.window=3"], "unroll.mode=truncated"),
    (["memory.query_mix=0.5"], "memory.query_mix"),
])
def test_batch_unrolls_refuses_unrolls_of_different_shapes_in_one_line(overrides, names):
    with pytest.raises(UserError) as refused:
        build_config(None, [*TINY, *overrides, "dist.batch_unrolls=true"])
    message = str(refused.value)
    assert names in message and "dist.batch_unrolls" in message and "\n" not in message
