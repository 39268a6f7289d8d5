"""The memory and communication planner (rtp_scale.bench.plan) against what a real RtP meta-gradient does."""
from __future__ import annotations

import json
import tempfile

import pytest
import torch
import torch.distributed as dist
from torch.utils._python_dispatch import TorchDispatchMode

from rtp_scale.bench import plan as planner
from rtp_scale.config import build_config
from rtp_scale.data.augment import Augmenter
from rtp_scale.distributed.context import RankContext, make_shard_reducer
from rtp_scale.errors import run_cli
from rtp_scale.eval import build_net
from rtp_scale.meta_step import reduced_meta_gradient
from rtp_scale.methods.rtp import RtpMethod
from rtp_scale.preemption import StopRequest
from tests.conftest import TINY, run_module

# TINY without the keys a plan does not read; inner steps and segments are set per case
SMALL = [o for o in TINY if not o.startswith(("inner.steps", "meta.", "eval.", "log.", "checkpoint."))]
MNIST = ["data.name=mnist5k", "model.width=16", "model.depth=3", "inner.batch_per_class=2",
         "data.real_per_class=4", "memory.ipc=1", "memory.num_bases=8"]


def _plan_and_measure(overrides: list[str]) -> tuple[planner.Plan, dict[str, int]]:
    cfg = build_config(None, overrides)
    plan = planner.make_plan(cfg)
    return plan, planner.measure_step(cfg, plan)


@pytest.mark.parametrize("case", [
    [*SMALL, "inner.steps=4", "unroll.mode=full"],
    [*SMALL, "inner.steps=12", "unroll.mode=full"],
    [*SMALL, "inner.steps=12", "unroll.segment=2"],
    [*SMALL, "inner.steps=12", "unroll.segment=5"],
    [*SMALL, "inner.steps=12", "unroll.mode=truncated", "unroll.window=6", "unroll.segment=3"],
    [*SMALL, "inner.steps=8", "memory.kind=pixel", "memory.ipc=3", "unroll.outer_chunk=16", "inner.learn_lr=true"],
    [*MNIST, "inner.steps=6", "unroll.segment=3"],
    [*MNIST, "inner.steps=6", "unroll.mode=full"],
], ids=["digits-full-T4", "digits-full-T12", "digits-seg-k2", "digits-seg-k5", "digits-truncated", "digits-pixel",
        "mnist5k-seg-k3", "mnist5k-full"])
def test_predicted_graph_peak_is_the_measured_one(case):
    plan, measured = _plan_and_measure(case)
    # the recipes' minibatches (40 and 20 images) are far from the 1-2 images measured: the extrapolation matters
    assert plan.inner_columns >= 20
    assert plan.graph_bytes == pytest.approx(measured["graph_bytes"], rel=0.05)
    # the device-memory figure (each saved storage once) is about half the meter's count for these networks
    assert plan.distinct_graph_bytes == pytest.approx(measured["distinct_graph_bytes"], rel=0.05)
    assert measured["distinct_graph_bytes"] < 0.8 * measured["graph_bytes"]
    assert plan.stored_states * 2 * plan.network_floats * 4 == measured["stored_state_bytes"]


def test_augmented_plan_is_the_worst_op_and_close():
    """One op is drawn per unroll: the plan takes the largest, so it bounds the measured peak from above."""
    plan, measured = _plan_and_measure([*SMALL, "inner.steps=8", "unroll.segment=2",
                                        "data.augment=color_crop_cutout_flip_scale_rotate"])
    assert len(plan.step_graph_by_op) == 6 and plan.step_graph_bytes == max(plan.step_graph_by_op.values())
    assert measured["graph_bytes"] <= plan.graph_bytes <= 1.15 * measured["graph_bytes"]
    assert measured["distinct_graph_bytes"] <= plan.distinct_graph_bytes <= 1.15 * measured["distinct_graph_bytes"]


@pytest.mark.parametrize("budget_mb", [3.0, 5.0])
def test_memory_budget_kept_steps_and_peak(budget_mb):
    plan, measured = _plan_and_measure([*SMALL, "inner.steps=12", "unroll.segment=2",
                                        f"unroll.memory_budget_mb={budget_mb}"])
    assert plan.kept_steps == measured["kept_steps"] > 0
    assert plan.step_graph_bytes == measured["engine_bytes_per_step"]  # the engine measures its step 0 itself
    assert plan.graph_bytes == pytest.approx(measured["graph_bytes"], rel=0.05)
    assert measured["distinct_graph_bytes"] is None  # the engine's own meter hides step 0 from an outer one
    assert plan.stored_states * 2 * plan.network_floats * 4 == measured["stored_state_bytes"]  # kept: not stored


def test_distinct_meter_counts_a_storage_once_and_releases_it():
    x = torch.randn(1000, requires_grad=True)
    with planner.SavedTensorMeter() as counted, planner.DistinctSavedMeter() as distinct:
        y = x * x  # mul saves x twice: once as self, once as other
    assert (counted.peak_bytes, distinct.peak_bytes) == (0, 4000)  # only the innermost hooks apply
    with planner.SavedTensorMeter() as counted:
        z = x * x
    assert counted.peak_bytes == 8000
    with planner.DistinctSavedMeter() as distinct:
        w = (x * 2).exp()  # exp saves its result: a second storage
        assert distinct.live_bytes == 4000
        del w
        assert distinct.live_bytes == 0
    assert distinct.peak_bytes == 4000
    del y, z


def test_offload_moves_the_states_to_the_host():
    cfg = build_config(None, [*SMALL, "inner.steps=9", "unroll.segment=3", "unroll.offload=true"])
    plan = planner.make_plan(cfg)
    assert plan.host_terms == {"boundary states (theta, v), offloaded": 3 * 2 * plan.network_floats * 4}
    assert not any("boundary" in term for term in plan.memory_terms)


class _CountAllReduces(TorchDispatchMode):
    """Records every all-reduce op that runs (the backward's included): the shard reducer's functional one and
    torch.distributed.all_reduce's in-place one, with the number of elements each reduces."""

    def __init__(self) -> None:
        super().__init__()
        self.functional: list[int] = []
        self.in_place: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops._c10d_functional.all_reduce.default:
            self.functional.append(args[0].numel())
        elif func is torch.ops.c10d.allreduce_.default:
            self.in_place.append(sum(t.numel() for t in args[0]))
        return func(*args, **(kwargs or {}))


@pytest.fixture
def one_process_group():
    """A one-process gloo group: the real reducers run, each summing over this process alone."""
    with tempfile.NamedTemporaryFile() as store:
        dist.init_process_group("gloo", init_method=f"file://{store.name}", rank=0, world_size=1)
        try:
            yield dist.group.WORLD
        finally:
            dist.destroy_process_group()


@pytest.mark.parametrize("unroll", [["unroll.mode=full"], ["unroll.segment=4"], ["unroll.segment=2"],
                                    ["unroll.mode=truncated", "unroll.window=3", "unroll.segment=2"]])
def test_all_reduces_of_an_outer_step_are_the_real_ones(unroll, one_process_group):
    """Rank 0 of a 2-shard grid runs distill's outer-step collectives (its world of 2 stood in for by one
    process, so every collective is the real call over a group of one); the plan counts the same calls."""
    cfg = build_config(None, [*SMALL, "inner.steps=8", "dist.inner_shards=2", "inner.learn_lr=true", *unroll])
    plan = planner.make_plan(cfg, processes=2)
    shape = planner.data_shape(cfg)
    net = build_net(cfg.model, channels=shape.channels, num_classes=shape.num_classes,
                    image_size=(shape.height, shape.width))
    memory = planner._memory_at(cfg, shape, plan.images_per_class)
    params = [p for p in memory.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.zeros_like(p)
    ctx = RankContext(rank=0, world_size=2, device=torch.device("cpu"), inner_shards=2,
                      shard_group=one_process_group, _reducer=make_shard_reducer(one_process_group))
    real_x = torch.randn(plan.real_batch, *shape.image_shape, generator=torch.Generator().manual_seed(3))
    real_y = torch.arange(plan.real_batch) % shape.num_classes
    lrs = torch.full((8,), 0.01, requires_grad=True)
    counter = _CountAllReduces()
    with counter:
        metrics, _ = reduced_meta_gradient(cfg, ctx, RtpMethod(cfg, net, Augmenter("none")), memory, params,
                                           lambda generator: (real_x, real_y), step=0, lrs=lrs, learn_lrs=True)
        StopRequest(ctx, first_step=0, last_step=1, checkpoint="unused").requested()
    # a truncated unroll runs a random length in [window, T]; the step's metrics are means over the world of 2,
    # of which this process is the only one here
    steps = round(2 * metrics["inner/steps"])
    inner = planner.communication_calls(mode=plan.mode, steps=steps, span=plan.span, kept=0, inner_shards=2)
    assert counter.functional == [plan.network_floats] * inner and inner > 0
    if plan.mode != "truncated":  # planned at the longest unroll, T
        assert plan.comm_calls["inner-gradient all-reduces (shard group)"] == inner
    # the memory gradient, the learned lrs' gradient and the step's metrics in one all-reduce; then the stop flag
    assert counter.in_place == [plan.memory_floats + 8 + planner.METRIC_KEYS, 1]
    assert plan.comm_calls == {"meta-gradient + metrics all-reduce (all processes)": 1,
                               "preemption check all-reduce": 1,
                               "inner-gradient all-reduces (shard group)": plan.comm_calls[
                                   "inner-gradient all-reduces (shard group)"]}
    assert plan.comm_terms["meta-gradient + metrics all-reduce (all processes)"] == counter.in_place[0] * 4
    assert plan.comm_terms["inner-gradient all-reduces (shard group)"] == (
        plan.comm_calls["inner-gradient all-reduces (shard group)"] * plan.network_floats * 4)  # ring, S = 2


def test_cifar100_recipe_plans_without_data_and_json_has_every_term(tmp_path):
    out = tmp_path / "plan.json"
    with pytest.raises(SystemExit) as exit_:
        run_cli(planner.main, ["--config", "configs/rtp/cifar100_ipc50.toml", "--set", "inner.steps=150",
                               "dist.inner_shards=8", "--json", str(out)])
    assert exit_.value.code == 0
    got = json.loads(out.read_text())
    assert (got["processes"], got["inner_drawn"], got["inner_columns"], got["segment"]) == (8, 3200, 400, 13)
    assert got["device_bytes"] == sum(got["memory_terms"].values())
    assert got["sent_bytes"] == sum(got["comm_terms"].values())
    assert got["comm_calls"]["inner-gradient all-reduces (shard group)"] == 150 * 3


def test_cli_through_bench_prints_the_table():
    done = run_module("rtp_scale.bench", "plan", "--set", *SMALL, "inner.steps=4", "dist.meta_batch=2",
                      "--processes", "2", env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "total (device)" in done.stdout and "meta-gradient + metrics all-reduce" in done.stdout


@pytest.mark.parametrize("argv, message", [
    (["--config", "configs/rtp/no_such_recipe.toml"], "not found"),
    (["--set", "inner.no_such_key=1"], "no_such_key"),
    (["--set", "inner.steps=banana"], "inner.steps"),
    (["--set", "dist.inner_shards=2", "--processes", "3"], "must divide"),
    (["--set", "method.name=frepo", "memory.kind=pixel"], "method.name=rtp"),
    (["--set", "data.name=imagefolder", "data.root=/nonexistent"], "--classes"),
    (["--processes", "0"], "--processes"),
    (["--set", "unroll.memory_budget_mb=100", "dist.inner_shards=2"], "sharded inner batch"),
    (["--set", *SMALL, "unroll.memory_budget_mb=0.5"], "cannot hold"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli(planner.main, argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
