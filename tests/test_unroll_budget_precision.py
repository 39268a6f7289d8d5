"""The unroll engine's two opt-in settings: a memory budget (keep the last steps' graphs from the forward pass)
and a bfloat16 unroll (losses under autocast, state and gradients in float32).

- a budget changes no gradient: float64 equals plain autograd and the unbudgeted segmented mode (rel. 1e-12)
  whether it keeps no step, some, or all of them;
- the saved tensors of an unroll under a budget never exceed it, and keeping one step more would;
- an impossible budget, a budget outside segmented mode, a float64 bf16 unroll: one-line UserErrors;
- bf16 changes the meta-gradient (autocast is on) but keeps its direction (cosine >= 0.99), fp32 changes nothing;
- bf16_reverse keeps the float32 trajectory bit for bit and autocasts exactly the recomputations and outer loss.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call
from torch.nn import functional as F

from rtp_scale.errors import UserError
from rtp_scale.unroll import ChunkedLoss, SavedTensorMeter, UnrollPolicy, fast_bf16_available, unroll_meta_grad
from tests.conftest import run_module
from tests.test_unroll import MU, T, Problem, rel_err, uneven_chunked_loss

MIB = 2**20


def grads_of(res) -> list[torch.Tensor]:
    return [*res.meta_grads, res.lr_grad]


@pytest.fixture(scope="module")
def p64():
    return Problem(torch.float64)


@pytest.fixture(scope="module")
def sizes(p64):
    """(bytes of one inner step's graph, bytes of the outer loss's graph), as the engine measures them."""
    probe = p64.run(UnrollPolicy(segment=3, memory_budget_mb=1e6))
    assert probe.kept_steps == T and probe.bytes_per_step > 0 and probe.outer_graph_bytes > 0
    return probe.bytes_per_step, probe.outer_graph_bytes


def budget_for(kept: int, sizes) -> float:
    """A budget (MiB) half a step above what ``kept`` steps and the outer loss need: the engine keeps ``kept``."""
    per_step, outer = sizes
    return (outer + (kept + 0.5) * per_step) / MIB


# ---------------------------------------------------------------------------------------------
# 1. a budget changes no gradient


@pytest.mark.parametrize("segment,kept,offload", [(1, 0, False), (3, 5, False), (5, 7, False), (2, 11, False),
                                                  (3, T, False), (0, T, False), (4, 6, True)])
def test_float64_budget_tail_equals_plain_autograd_and_segmented(p64, sizes, segment, kept, offload):
    ref_loss, ref_grads = p64.reference()
    plain = p64.run(UnrollPolicy(segment=segment))
    policy = UnrollPolicy(segment=segment, offload=offload,
                          memory_budget_mb=1e6 if kept == T else budget_for(kept, sizes))
    res = p64.run(policy)
    assert res.kept_steps == kept
    k = policy.segment_length(T)
    assert res.stored_states == math.ceil((T - kept) / k)
    for got, want, seg in zip(grads_of(res), ref_grads, grads_of(plain)):  # meta (images, labels) and learned lrs
        assert rel_err(got, want) < 1e-12
        assert rel_err(got, seg) < 1e-12
    assert res.outer_loss == pytest.approx(ref_loss, rel=1e-12)
    assert res.inner_losses == pytest.approx(plain.inner_losses, rel=1e-12)
    for n, p in plain.final_params.items():
        torch.testing.assert_close(res.final_params[n], p, rtol=1e-12, atol=0)


def test_float64_budget_with_weight_decay_and_chunked_outer_loss(p64, sizes):
    _, ref_grads = p64.reference(weight_decay=0.01)
    chunked = uneven_chunked_loss(p64)
    res = unroll_meta_grad(inner_loss=p64.inner_loss, outer_loss=chunked, params0=p64.params0, meta=p64.meta,
                           steps=T, lrs=p64.lrs, momentum=MU, weight_decay=0.01,
                           policy=UnrollPolicy(segment=2, memory_budget_mb=budget_for(6, sizes)))
    assert 6 <= res.kept_steps < T  # the first part's graph is smaller than the whole loss's
    assert max(rel_err(g, r) for g, r in zip(grads_of(res), ref_grads)) < 1e-12


# ---------------------------------------------------------------------------------------------
# 2. the budget bounds the saved tensors, tightly


@pytest.mark.parametrize("kept", [2, 6])
def test_saved_tensors_stay_within_the_budget_and_one_more_step_would_not(p64, sizes, kept):
    per_step, _ = sizes
    budget = budget_for(kept, sizes)
    with SavedTensorMeter() as meter:
        res = p64.run(UnrollPolicy(segment=2, memory_budget_mb=budget))
    assert res.kept_steps == kept and meter.live_bytes == 0  # every graph, the measured ones too, was freed
    assert meter.peak_bytes <= budget * MIB
    assert meter.peak_bytes > budget * MIB - per_step  # the kept tail is really alive at the peak
    with SavedTensorMeter() as meter:  # the next budget keeps one step more: its peak is above this budget
        more = p64.run(UnrollPolicy(segment=2, memory_budget_mb=budget_for(kept + 1, sizes)))
    assert more.kept_steps == kept + 1
    assert meter.peak_bytes > budget * MIB


def test_nested_meters_count_in_every_enclosing_meter():
    x = torch.randn(1000, dtype=torch.float64, requires_grad=True)
    with SavedTensorMeter() as outer:
        with SavedTensorMeter() as inner:
            y = x.exp()  # saves its 8000-byte result
        z = y.sin()  # saves y (only the outer meter is active)
    assert (inner.peak_bytes, outer.peak_bytes) == (8000, 16000)
    del y, z  # a graph dropped without a backward is freed too
    assert inner.live_bytes == outer.live_bytes == 0


def test_an_enclosing_meter_sees_the_engines_measured_step(p64):
    with SavedTensorMeter() as meter:  # keeps all T steps: the measured step 0 is part of the kept tail
        res = p64.run(UnrollPolicy(segment=3, memory_budget_mb=1e6))
    assert res.kept_steps == T
    assert meter.peak_bytes > (T - 1) * res.bytes_per_step + res.outer_graph_bytes


def test_bench_rows_pass_the_settings_through():
    from rtp_scale.bench.unroll import Settings, overrides_for
    from rtp_scale.config import build_config

    s = Settings(precision="bf16", memory_budget_mb=64.0)
    seg, full = (build_config(None, overrides_for(m, 50, s)).unroll for m in ("segmented", "full"))
    assert (seg.precision, seg.memory_budget_mb) == ("bf16", 64.0)
    assert (full.precision, full.memory_budget_mb) == ("bf16", 0.0)  # full mode takes no budget


# ---------------------------------------------------------------------------------------------
# 3. budgets that cannot work, and where a budget does not apply


def test_budget_too_small_for_a_segment_is_refused(p64, sizes):
    per_step, outer = sizes
    with pytest.raises(UserError, match=r"cannot hold one recomputed segment of 4 inner steps .*raise it to at least"):
        p64.run(UnrollPolicy(segment=4, memory_budget_mb=(outer + 1.5 * per_step) / MIB))
    with pytest.raises(UserError, match="cannot hold the outer loss's graph"):
        p64.run(UnrollPolicy(segment=1, memory_budget_mb=0.5 * outer / MIB))


@pytest.mark.parametrize("make", [
    lambda: UnrollPolicy(mode="full", memory_budget_mb=10),
    lambda: UnrollPolicy(mode="truncated", window=4, memory_budget_mb=10),
    lambda: UnrollPolicy(memory_budget_mb=-1),
    lambda: UnrollPolicy(precision="fp16"),
])
def test_policy_refuses_bad_budget_and_precision(make):
    with pytest.raises(UserError):
        make()


def test_budget_with_sharded_inner_batch_and_bf16_float64_are_refused(p64):
    with pytest.raises(UserError, match="sharded inner batch"):
        p64.run(UnrollPolicy(memory_budget_mb=10), reduce_grad=lambda g: g)
    with pytest.raises(UserError, match="float64"):
        p64.run(UnrollPolicy(precision="bf16"))


@pytest.mark.parametrize("override,message", [
    ("unroll.precision=fp16", "unroll.precision='fp16' is not allowed"),
    ("unroll.memory_budget_mb=-2", "unroll.memory_budget_mb=-2.0 must be >= 0"),
])
def test_cli_refuses_bad_settings_in_one_line(tmp_path, override, message):
    proc = run_module("rtp_scale.distill", "--set", override, "--set", f"run.out_dir={tmp_path}", timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {message}")


def test_config_refuses_budget_outside_segmented_mode():
    from rtp_scale.config import build_config

    with pytest.raises(UserError, match="unroll.memory_budget_mb needs unroll.mode=segmented"):
        build_config(None, ["unroll.mode=full", "unroll.memory_budget_mb=100"])
    cfg = build_config(None, ["unroll.memory_budget_mb=100", "unroll.precision=bf16"])
    assert (cfg.unroll.memory_budget_mb, cfg.unroll.precision) == (100.0, "bf16")
    with pytest.raises(UserError, match="bf16_reverse needs unroll.mode=segmented or truncated"):
        build_config(None, ["unroll.mode=full", "unroll.precision=bf16_reverse"])
    assert build_config(None, ["unroll.precision=bf16_reverse"]).unroll.precision == "bf16_reverse"


# ---------------------------------------------------------------------------------------------
# 4. precision


def test_explicit_fp32_and_zero_budget_are_bit_identical_to_the_defaults():
    p = Problem(torch.float32, seed=2)
    for mode_kw in (dict(mode="full"), dict(segment=4), dict(mode="truncated", window=5)):
        default = p.run(UnrollPolicy(**mode_kw))
        explicit = p.run(UnrollPolicy(**mode_kw, precision="fp32", memory_budget_mb=0.0))
        assert all(torch.equal(a, b) for a, b in zip(grads_of(default), grads_of(explicit)))
        assert default.inner_losses == explicit.inner_losses and default.outer_loss == explicit.outer_loss
    # and fp32 is plain float32: full mode performs plain autograd's very operations, bit for bit
    ref_loss, ref_grads = p.reference()
    full = p.run(UnrollPolicy(mode="full", precision="fp32"))
    assert all(torch.equal(a, b) for a, b in zip(grads_of(full), ref_grads)) and full.outer_loss == ref_loss


def convnet_problem(device: str = "cpu"):
    """ConvNet-16-2 (instance norm) on 1x16x16: 10 synthetic images (meta), 40 real ones, T = 10, learned lrs."""
    from rtp_scale.models import ConvNet

    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = ConvNet(channels=1, num_classes=10, image_size=(16, 16), width=16, depth=2).to(device)
    params0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    y_real = torch.arange(10).repeat(4).to(device)
    # class-dependent means so that the meta-gradient has a direction to agree on
    centers = torch.randn(10, 1, 16, 16, generator=gen)
    x_real = (centers[y_real.cpu()] + 0.5 * torch.randn(40, 1, 16, 16, generator=gen)).to(device)
    x_syn = (centers + 0.5 * torch.randn(10, 1, 16, 16, generator=gen)).to(device).requires_grad_()
    y_syn = torch.arange(10, device=device)
    lrs = torch.full((10,), 0.01, device=device).requires_grad_()

    def inner_loss(params, t, meta):
        return F.cross_entropy(functional_call(net, params, (meta[0],)), y_syn)

    def outer_loss(params):
        return F.cross_entropy(functional_call(net, params, (x_real,)), y_real)

    def run(precision: str, **policy):
        return unroll_meta_grad(inner_loss=inner_loss, outer_loss=outer_loss, params0=params0, meta=(x_syn,),
                                steps=10, lrs=lrs, momentum=0.9, policy=UnrollPolicy(precision=precision, **policy))
    return run


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten(), b.flatten(), dim=0))


@pytest.mark.parametrize("policy", [dict(segment=3), dict(mode="full"), dict(segment=3, memory_budget_mb=1e3)])
def test_bf16_meta_gradient_keeps_its_direction_but_is_computed_in_bf16(policy):
    run = convnet_problem()
    fp32, bf16 = run("fp32", **policy), run("bf16", **policy)
    for a, b in zip(grads_of(fp32), grads_of(bf16)):
        assert a.dtype == b.dtype == torch.float32  # state and accumulation stay float32
        assert cosine(a, b) >= 0.99, cosine(a, b)
        assert not torch.equal(a, b)  # autocast really ran the losses in bfloat16
    assert bf16.outer_loss == pytest.approx(fp32.outer_loss, rel=0.02) and bf16.outer_loss != fp32.outer_loss
    assert all(p.dtype == torch.float32 for p in bf16.final_params.values())


def test_bf16_reverse_keeps_the_float32_trajectory_and_the_meta_gradient_closer_than_bf16():
    """bf16_reverse: the forward pass is float32's bit for bit (same inner losses, same final weights), the
    meta-gradient is computed in bf16 (not equal) and points where float32's does, closer than all-bf16's."""
    run = convnet_problem()
    fp32, bf16, rev = run("fp32", segment=3), run("bf16", segment=3), run("bf16_reverse", segment=3)
    assert rev.inner_losses == fp32.inner_losses and bf16.inner_losses != fp32.inner_losses
    assert all(torch.equal(rev.final_params[n], fp32.final_params[n]) for n in fp32.final_params)
    for a, b, c in zip(grads_of(fp32), grads_of(rev), grads_of(bf16)):
        assert not torch.equal(a, b) and cosine(a, b) >= 0.999, cosine(a, b)
        assert 1 - cosine(a, b) < 1 - cosine(a, c)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "bf16_reverse"])
@pytest.mark.parametrize("policy", [dict(segment=5), dict(mode="full"), dict(mode="truncated", window=6),
                                    dict(segment=3, memory_budget_mb=1e3)])
def test_bf16_autocast_covers_every_loss_evaluation(precision, policy):
    """bf16: every inner-loss call (forward pass and recomputations) and every outer-loss part runs under bf16
    autocast; bf16_reverse: exactly the recomputations and the outer loss; fp32: none. The engine's own arithmetic
    (updates, adjoints) runs outside it."""
    if precision == "bf16_reverse" and policy.get("mode") == "full":
        with pytest.raises(UserError, match="needs a recomputing mode"):
            UnrollPolicy(precision=precision, **policy)
        return
    p = Problem(torch.float32, seed=1)
    seen: dict[str, list[bool]] = {"inner": [], "outer": []}
    forward_calls = T  # the forward pass calls the inner loss once per step, before any recomputation

    def inner_loss(params, t, meta):
        seen["inner"].append(torch.is_autocast_enabled("cpu"))
        return p.inner_loss(params, t, meta)

    def outer_part(params):
        seen["outer"].append(torch.is_autocast_enabled("cpu"))
        return p.outer_loss(params) / 2

    res = unroll_meta_grad(inner_loss=inner_loss, outer_loss=ChunkedLoss((outer_part, outer_part)),
                           params0=p.params0, meta=p.meta, steps=T, lrs=p.lrs, momentum=MU,
                           policy=UnrollPolicy(precision=precision, **policy))
    assert len(seen["inner"]) >= T and len(seen["outer"]) >= 1
    if precision == "bf16_reverse":
        forward, recomputed = seen["inner"][:forward_calls], seen["inner"][forward_calls:]
        kept = res.kept_steps  # a kept tail is not recomputed
        assert set(forward) == {False} and set(seen["outer"]) == {True}
        assert recomputed == [True] * (res.steps_differentiated - kept)
    else:
        assert set(seen["inner"]) == set(seen["outer"]) == {precision == "bf16"}
    assert not torch.is_autocast_enabled("cpu")
    assert all(g.dtype == torch.float32 for g in grads_of(res))


def test_fast_bf16_probe_and_the_one_line_warning(monkeypatch, capsys):
    from rtp_scale.config import build_config
    from rtp_scale.methods.rtp import unroll_policy

    fast, why = fast_bf16_available("cpu")
    assert isinstance(fast, bool) and why
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert fast_bf16_available("cpu") == (False, "the CPU has neither AMX nor AVX512-BF16, so bfloat16 is emulated")
    policy = unroll_policy(build_config(None, ["run.device=cpu", "unroll.precision=bf16"]))
    assert policy.precision == "bf16"
    assert capsys.readouterr().err.splitlines() == [
        "warning: unroll.precision=bf16 will be slower than fp32 here: the CPU has neither AMX nor AVX512-BF16, "
        "so bfloat16 is emulated"]
    unroll_policy(build_config(None, ["run.device=cpu"]))  # fp32: nothing to say
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert fast_bf16_available("cpu") == (True, "the CPU has AMX tiles")
    unroll_policy(build_config(None, ["run.device=cpu", "unroll.precision=bf16", "unroll.memory_budget_mb=64"]))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("method", ["rtp", "dd"])
def test_methods_hand_both_settings_to_the_engine(method):
    from rtp_scale.config import build_config
    from rtp_scale.data.augment import Augmenter
    from rtp_scale.eval import build_net
    from rtp_scale.methods.dd import DDMethod
    from rtp_scale.methods.rtp import RtpMethod

    cfg = build_config(None, ["model.width=8", "model.depth=1", "inner.steps=6", "run.device=cpu",
                              f"method.name={method}", "unroll.precision=bf16", "unroll.memory_budget_mb=64"])
    net = build_net(cfg.model, channels=1, num_classes=10, image_size=(8, 8))
    built = (RtpMethod if method == "rtp" else DDMethod)(cfg, net, Augmenter("none"))
    assert built.policy == UnrollPolicy(mode="segmented", precision="bf16", memory_budget_mb=64.0)


# ---------------------------------------------------------------------------------------------
# 5. on CUDA (benchmarks/gpu_check.sh runs the tests marked gpu)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("kept", [0, 5, T])
def test_cuda_float64_budget_tail_equals_plain_autograd(kept):
    from tests.test_gpu import _on_cuda

    p = _on_cuda(Problem(torch.float64))
    _, ref_grads = p.reference()
    probe = p.run(UnrollPolicy(segment=1, memory_budget_mb=1e6))
    sizes = (probe.bytes_per_step, probe.outer_graph_bytes)
    res = p.run(UnrollPolicy(segment=1, memory_budget_mb=1e6 if kept == T else budget_for(kept, sizes)))
    assert res.kept_steps == kept and all(g.is_cuda for g in res.meta_grads)
    assert max(rel_err(g, r) for g, r in zip(grads_of(res), ref_grads)) < 1e-12


@pytest.mark.gpu
@needs_cuda
def test_cuda_bf16_meta_gradient_on_tensor_cores():
    fast, why = fast_bf16_available("cuda")
    assert fast, why
    run = convnet_problem("cuda")
    fp32, bf16 = run("fp32", segment=3), run("bf16", segment=3)
    for a, b in zip(grads_of(fp32), grads_of(bf16)):
        assert a.is_cuda and a.dtype == b.dtype == torch.float32
        assert cosine(a, b) >= 0.99 and not torch.equal(a, b)
