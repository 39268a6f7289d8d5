"""``model.fused``: the ConvNet's instance norm -> ReLU -> avg-pool block with hand-written first and second
derivatives equals the plain modules in float64 -- in value, gradient and double backward, alone and inside whole
meta-gradients -- and says clearly what it does not do (third derivatives, no compiler)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rtp_scale.config import build_config
from rtp_scale.distributed import RankContext
from rtp_scale.eval import build_net
from rtp_scale.models import fused_block
from rtp_scale.models.fused_block import norm_relu_pool
from tests.conftest import TINY
from tests.dist_worker import step_gradients

ALONE = RankContext(rank=0, world_size=1, device=torch.device("cpu"), inner_shards=1)
EPS = 1e-5


def plain(z, g, b, pool):
    r = torch.relu(F.group_norm(z, z.shape[1], g, b, EPS))
    return F.avg_pool2d(r, 2) if pool else r


def block_inputs(size: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(3, 4, size, size, generator=gen, dtype=torch.float64) * 2 + 1
    g = torch.randn(4, generator=gen, dtype=torch.float64)
    b = 0.5 * torch.randn(4, generator=gen, dtype=torch.float64)  # some ReLUs off, some on
    return [t.requires_grad_() for t in (z, g, b)]


def derivatives(block, z, g, b, pool, seed: int = 1):
    """value, first derivatives w.r.t. (z, g, b) for a random dh, and the derivatives of a random combination of
    those first derivatives w.r.t. (z, g, dh) -- what an unroll's reverse pass asks of the block."""
    gen = torch.Generator().manual_seed(seed)
    out = block(z, g, b, pool)
    dh = torch.randn(out.shape, generator=gen, dtype=out.dtype).to(out.device).requires_grad_()
    first = torch.autograd.grad(out, (z, g, b), dh, create_graph=True)
    cotangents = [torch.randn(t.shape, generator=gen, dtype=t.dtype).to(t.device) for t in first]
    second = torch.autograd.grad(first, (z, g, dh), cotangents)
    return out, first, second


def fused(z, g, b, pool):
    return norm_relu_pool(z, g, b, eps=EPS, pool=pool)


def assert_same_derivatives(z, g, b, pool) -> None:
    got, want = derivatives(fused, z, g, b, pool), derivatives(plain, z, g, b, pool)
    assert torch.allclose(got[0], want[0], rtol=0, atol=1e-14)
    for order in (1, 2):
        for a, w in zip(got[order], want[order]):
            assert w.abs().max() > 1e-3  # a derivative that is really there
            assert (a - w).abs().max() <= 1e-12 * w.abs().max(), order


@pytest.mark.parametrize("size, pool", [(8, True), (7, True), (5, False)], ids=["even_pooled", "odd_pooled", "unpooled"])
def test_the_fused_block_equals_the_modules_in_value_gradient_and_double_backward(size, pool):
    assert_same_derivatives(*block_inputs(size), pool)


def test_under_bf16_autocast_the_block_reads_and_writes_bf16_maps_and_computes_in_float32():
    """The convolutions around the block run in bfloat16 under autocast: the block takes their bf16 output as it is and
    hands back bf16 maps (h, dz, and the double backward's cotangents of z and dh) but float32 weight gradients, each
    the float64 result of the same bf16 inputs up to the bf16 roundings of its output -- no separate cast kernels, no
    bf16 sums."""
    z64, g64, b64 = (t.detach() for t in block_inputs(8))
    z = z64.bfloat16().requires_grad_()
    g, b = g64.float().requires_grad_(), b64.float().requires_grad_()
    gen = torch.Generator().manual_seed(1)
    dh = torch.randn(3, 4, 4, 4, generator=gen).bfloat16().requires_grad_()
    Dz = torch.randn(3, 4, 8, 8, generator=gen).bfloat16()
    Dg, Db = torch.randn(4, generator=gen), torch.randn(4, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fused(z, g, b, True)
        first = torch.autograd.grad(out, (z, g, b), dh, create_graph=True)
        second = torch.autograd.grad(first, (z, g, dh), (Dz, Dg, Db))
    assert [t.dtype for t in (out, *first, *second)] == [torch.bfloat16, torch.bfloat16, torch.float32, torch.float32,
                                                         torch.bfloat16, torch.float32, torch.bfloat16]

    wide = [t.double().requires_grad_() for t in (z, g, b, dh)]
    want_out = plain(*wide[:3], True)
    want_first = torch.autograd.grad(want_out, wide[:3], wide[3], create_graph=True)
    want_second = torch.autograd.grad(want_first, (wide[0], wide[1], wide[3]), (Dz.double(), Dg.double(), Db.double()))
    for got, want in zip((out, *first, *second), (want_out, *want_first, *want_second)):
        # at most two bf16 roundings (dh's cotangent is rounded, then pooled and rounded), or float32 arithmetic
        bound = 2.0**-7 if got.dtype == torch.bfloat16 else 1e-5
        assert (got.double() - want).abs().max() <= bound * want.abs().max()


def test_the_fused_block_passes_gradcheck_and_gradgradcheck():
    z, g, b = block_inputs(4, seed=3)
    assert torch.autograd.gradcheck(lambda *t: fused(*t, True), (z, g, b))
    assert torch.autograd.gradgradcheck(lambda *t: fused(*t, True), (z, g, b))


def test_third_derivatives_are_refused_not_silently_zero():
    z, g, b = block_inputs(4)
    out = fused(z, g, b, True)
    (dz,) = torch.autograd.grad(out.square().sum(), (z,), create_graph=True)
    with pytest.raises(RuntimeError, match="third derivatives.*model.fused=false"):
        torch.autograd.grad(dz.square().sum(), (z,), create_graph=True)


def fused_blocks_in_graph(overrides: list[str]) -> int:
    """How many fused blocks the autograd graph of the configured network's output holds."""
    cfg = build_config(None, [*TINY, *overrides])
    net = build_net(cfg.model, channels=1, num_classes=10, image_size=(8, 8))
    seen, stack, found = set(), [net(torch.randn(2, 1, 8, 8)).grad_fn], 0
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        found += type(node).__name__ == "_BlockBackward"
        stack += [next_node for next_node, _ in node.next_functions]
    return found


def test_the_config_fuses_the_instance_norm_convnet_only():
    assert fused_blocks_in_graph([]) == 2  # TINY's ConvNet has depth 2
    assert fused_blocks_in_graph(["model.fused=false"]) == 0
    assert fused_blocks_in_graph(["model.pooling=max"]) == 0
    assert fused_blocks_in_graph(["model.norm=batch"]) == 0


@pytest.mark.parametrize("overrides, rtol", [
    ([], 1e-11),  # RtP, segmented (the default mode)
    (["unroll.mode=full", "data.augment=flip_crop", "inner.weight_decay=0.01", "inner.learn_lr=true"], 1e-11),
    (["unroll.memory_budget_mb=4.5", "unroll.segment=2", "unroll.outer_chunk=7"], 1e-11),  # 4 / 2 of 6 steps kept
    (["method.name=dd"], 1e-11),
    # FRePo runs its pool networks in the network's dtype, float32 here: a float32 comparison
    (["method.name=frepo", "memory.kind=pixel"], 1e-4),
], ids=["rtp_segmented", "rtp_full_aug_lrs", "rtp_budget_chunked", "dd", "frepo"])
def test_fused_meta_gradients_equal_the_plain_modules(overrides, rtol):
    def grads(flag: str) -> dict:
        cfg = build_config(None, [*TINY, "run.out_dir=/nonexistent", *overrides, f"model.fused={flag}"])
        return step_gradients(cfg, ALONE, float64=True)

    got, want = grads("true"), grads("false")
    assert got["grads"].keys() == want["grads"].keys()
    for name, w in want["grads"].items():
        assert w.abs().max() > 0, name
        assert (got["grads"][name] - w).abs().max() <= rtol * w.abs().max(), name
    for key, value in want["metrics"].items():
        assert got["metrics"][key] == pytest.approx(value, rel=rtol, abs=1e-300), key


def test_where_compiling_fails_the_call_runs_uncompiled_and_the_convnet_goes_back_to_its_modules(monkeypatch, capsys):
    def no_compiler(fn, **kwargs):
        def compiled(*args):
            raise RuntimeError("InductorError: CppCompileError: no C++ compiler\nmore lines")
        return compiled

    monkeypatch.setattr(fused_block.torch, "compile", no_compiler)
    monkeypatch.setattr(fused_block._Kernel, "failed", False)
    kernel = fused_block._Kernel(fused_block._fwd)
    z, g, b = (t.detach() for t in block_inputs(6))
    assert fused_block.can_fuse(z)
    h, _, _ = kernel(z, g, b, EPS, True)  # the failing call itself still returns the block's value
    assert torch.allclose(h, plain(z, g, b, True), rtol=0, atol=1e-14)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no C++ compiler" in err[0] and "plain modules" in err[0]
    assert not fused_block.can_fuse(z)
    assert fused_blocks_in_graph([]) == 0
    assert capsys.readouterr().err == ""  # said once


def test_a_kernel_error_that_is_not_the_compilers_is_raised(monkeypatch):
    monkeypatch.setattr(fused_block.torch, "compile", lambda fn, **kwargs: fn)
    kernel = fused_block._Kernel(fused_block._fwd)
    z, g, b = (t.detach() for t in block_inputs(6))
    with pytest.raises(RuntimeError):
        kernel(z, g[:3], b, EPS, True)  # a wrong shape fails uncompiled too, and that error is the caller's


def test_an_artifact_from_before_model_fused_is_evaluated_with_the_plain_modules_as_its_run_was():
    from rtp_scale.memory.artifact import config_for_artifact

    recorded = build_config(None, []).to_dict()
    new = {"evaluation": {section: recorded[section] for section in ("data", "model", "eval", "run")}}
    old = {"evaluation": {**new["evaluation"], "model": {k: v for k, v in recorded["model"].items() if k != "fused"}}}
    assert config_for_artifact("a.safetensors", new, recipe=None, overrides=[])[0].model.fused is True
    cfg, overridden, _ = config_for_artifact("a.safetensors", old, recipe=None, overrides=[])
    assert cfg.model.fused is False and overridden == []


def test_resuming_with_the_other_kind_of_block_is_allowed_and_named_also_from_before_the_key():
    from rtp_scale.run_identity import check_resume, config_identity

    fused_now = build_config(None, TINY)
    plain = config_identity(build_config(None, [*TINY, "model.fused=false"]))
    predating = config_identity(fused_now)
    del predating["config"]["model.fused"]  # a checkpoint written before the key: its run used the plain modules
    for saved in (plain, predating):
        assert check_resume(saved, fused_now, step=1, where="checkpoint") == {"model.fused": [False, True]}
    assert check_resume(config_identity(fused_now), fused_now, step=1, where="checkpoint") == {}
