"""The benchmark entry point: the quick run end to end, its JSON and table, bad flags, and the FLOP counting it
relies on. Nothing here asserts on a wall-clock value (the machines are shared)."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from rtp_scale.bench.unroll import Settings, overrides_for, plan_rows
from rtp_scale.config import build_config
from tests.conftest import TINY, run_module


def test_quick_run_of_the_pixel_configuration(tmp_path):
    out = tmp_path / "bench"
    proc = run_module("rtp_scale.bench", "unroll", "--quick", "--memory", "pixel", "--modes", "segmented",
                      "--steps", "4", "--no-count", "--out", str(out), timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "bench_unroll.json").read_text())
    assert result["settings"]["memory"] == "pixel" and "memory: pixel at 1 IPC" in proc.stdout
    (row,) = result["rows"]
    assert "error" not in row, row.get("error")
    assert row["config"]["memory"]["kind"] == "pixel" and row["inner_batch"] == 10 and row["steps_run"] == 4


def test_repeated_comparisons_pool_each_sides_steps_and_give_one_ratio_per_repeat():
    from rtp_scale.bench.unroll import compare_rows, merged_runs

    def run(times, peak):
        return {"mode": "segmented", "steps": 10, "overrides": [], "step_times_s": times, "peak_rss_mb": peak}

    # two repeats of (other, this, this, other); this side twice as fast in the first repeat, as fast in the second
    base = merged_runs([run([4.0, 4.0], 900), run([4.0, 4.0], 950), run([3.0, 3.0], 900), run([3.0, 3.0], 900)])
    this = merged_runs([run([2.0, 2.0], 800), run([2.0, 2.0], 800), run([3.0, 3.0], 700), run([3.0, 3.0], 700)])
    assert this["step_s_mean"] == 2.5 and this["peak_mb"] == 800 and len(this["runs_step_times_s"]) == 4
    cmp = compare_rows(this, base)
    assert cmp["speedup"] == pytest.approx(3.5 / 2.5) and cmp["speedup_per_repeat"] == pytest.approx([2.0, 1.0])
    assert cmp["peak_ratio"] == pytest.approx(800 / 950)
    failed = merged_runs([run([1.0], 1), {"mode": "segmented", "steps": 10, "error": "worker exited with status 1"}])
    assert failed["error"].startswith("worker exited")


def test_bf16_peaks_skip_the_emulated_matmul_and_bf16_rows_are_measured_against_the_higher_peak(monkeypatch):
    """Emulated bfloat16 multiplies 2048^3 at ~0.3 GFLOP/s (a minute per product on an AVX2 machine): it is not
    measured, and a bf16 row's fractions use the higher of each float32 and bf16 peak, so emulation never flatters."""
    from rtp_scale.bench import machine
    from rtp_scale.bench.unroll import _rate_fractions

    monkeypatch.setattr(machine, "fast_bf16_available", lambda device: (False, "emulated here"))
    rates = machine.peak_rates(torch.device("cpu"), width=8, real_batch=20, inner_batch=10, quick=True, bf16=True)
    assert rates["bf16_fast"] is False and rates["bf16_why"] == "emulated here"
    assert "matmul_2048_bf16_gflops" not in rates
    assert rates["conv_real_batch_bf16_gflops"] > 0 and rates["conv_inner_batch_bf16_gflops"] > 0

    rates = {"matmul_2048_gflops": 400.0, "conv_real_batch_gflops": 300.0, "conv_inner_batch_gflops": 100.0,
             "conv_real_batch_bf16_gflops": 2000.0, "conv_inner_batch_bf16_gflops": 50.0}
    bf16 = _rate_fractions({"achieved_gflops": 200.0, "precision": "bf16"}, rates)
    assert bf16 == {"fraction_of_matmul_2048": 0.5, "fraction_of_conv_real_batch": 0.1,
                    "fraction_of_conv_inner_batch": 2.0}
    fp32 = _rate_fractions({"achieved_gflops": 200.0, "precision": "fp32"}, rates)
    assert fp32 == {"fraction_of_matmul_2048": 0.5, "fraction_of_conv_real_batch": 2 / 3,
                    "fraction_of_conv_inner_batch": 2.0}
    with_matmul = _rate_fractions({"achieved_gflops": 200.0, "precision": "bf16"},
                                  {**rates, "matmul_2048_bf16_gflops": 2500.0})
    assert with_matmul["fraction_of_matmul_2048"] == 200.0 / 2500.0


@pytest.mark.slow  # ~2 min: four benchmark processes, one of them in bf16
def test_against_runs_each_row_twice_each_way_with_the_other_checkouts_default_engine(tmp_path):
    """--against with this very checkout: the opt-in settings apply to this side only, each side runs twice (other,
    this, this, other) and pools its timed steps, the ratios come out."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "bench"
    proc = run_module("rtp_scale.bench", "unroll", "--quick", "--modes", "segmented", "--steps", "4", "--no-count",
                      "--precision", "bf16", "--memory-budget-mb", "2000", "--against", str(root), "--out", str(out),
                      timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "bench_unroll.json").read_text())
    (row,) = result["rows"]
    assert result["against"] == str(root) and "error" not in row["against"], row["against"]
    assert row["precision"] == "bf16" and row["kept_steps"] == 4  # this side: bf16, the whole tail kept
    assert not any(o.startswith(("unroll.precision=", "unroll.memory_budget_mb=", "model.fused="))
                   for o in row["against"]["overrides"])
    assert len(row["runs_step_times_s"]) == 2 and len(row["step_times_s"]) == len(row["against"]["step_times_s"]) == 2
    assert row["against"]["speedup"] == pytest.approx(row["against"]["step_s_mean"] / row["step_s_mean"])
    assert row["against"]["peak_ratio"] == pytest.approx(row["peak_mb"] / row["against"]["peak_mb"])
    assert "speedup" in proc.stdout and f"{row['against']['speedup']:.2f}x" in proc.stdout
    assert "precision bf16" in proc.stdout and "bf16 peak rates" in proc.stdout
    if not result["rates"]["bf16_fast"]:
        assert f"matmul not measured ({result['rates']['bf16_why']})" in proc.stdout
    assert 0.99 <= row["cosine_to_fp32"] < 1.0  # close to the float32 direction, and not float32 itself
    assert f"cosine to the float32 one of the same step: {row['cosine_to_fp32']:.5f}" in proc.stdout


@pytest.mark.slow  # ~1.5 min: three benchmark rows with FLOP counting
def test_quick_run_writes_json_and_table(tmp_path):
    out = tmp_path / "bench"
    proc = run_module("rtp_scale.bench", "unroll", "--quick", "--out", str(out), timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "bench_unroll.json").read_text())
    assert result["complete"] is True
    assert [(r["mode"], r["steps"]) for r in result["rows"]] == [("full", 4), ("segmented", 4), ("segmented", 8)]

    machine = result["machine"]
    assert machine["cpu_count"] >= 1 and machine["torch_threads"] == 1 and machine["torch_version"] == torch.__version__
    assert machine["device"] == "cpu" and machine["device_name"]
    for key in ("matmul_2048_gflops", "conv_real_batch_gflops", "conv_inner_batch_gflops"):
        assert result["rates"][key] > 0

    table = proc.stdout
    for row in result["rows"]:
        assert "error" not in row, row.get("error")
        # each row is its own process that really ran the configuration it names
        assert row["config"]["inner"]["steps"] == row["steps"] and row["config"]["unroll"]["mode"] == row["mode"]
        assert row["config"]["model"]["width"] == 16 and row["config"]["model"]["norm"] == "instance"
        assert row["inner_batch"] == 10 and row["real_batch"] == 640
        assert row["steps_run"] == row["steps"] and len(row["step_times_s"]) == 1
        for key in ("step_s_mean", "step_s_min", "inner_step_ms", "peak_mb", "peak_rss_mb", "rss_setup_mb",
                    "gflop", "achieved_gflops", "fraction_of_matmul", "saved_tensors_peak_mb"):
            assert row[key] > 0, key
        assert row["peak_rss_mb"] >= row["rss_setup_mb"]
        assert all(v == v and abs(v) < 1e6 for v in row["meta_losses"])  # finite
        line = next((ln.split() for ln in table.splitlines()
                     if ln.split()[:2] == [row["mode"], str(row["steps"])]), None)
        assert line is not None, f"no table line for {row['mode']} T={row['steps']}:\n{table}"
    full, seg4, seg8 = result["rows"]
    assert full["stored_states"] == 0
    assert seg4["segment"] == 2 and seg4["stored_states"] == 2  # k = ceil(sqrt(4)), T/k boundary states
    assert seg8["segment"] == 3 and seg8["stored_states"] == 3
    # FLOPs are exact counts: segmented recomputes every step, and a longer unroll does more work
    assert seg4["flops"] > full["flops"] and seg8["flops"] > seg4["flops"]
    assert result["fits"]["segmented"]["per_inner_step_gflop"] > 0
    assert result["checks"]["applicable"] is False


@pytest.mark.parametrize("args", [["unroll", "--modes", "nope"], ["unroll", "--steps", "0,5"], ["unroll", "--bogus"],
                                  ["nope"], ["unroll", "--device", "tpu"], ["unroll", "--timed", "0"],
                                  ["unroll", "--against", "/nonexistent/checkout"]])
def test_bad_flag_is_one_line_exit_2(args, tmp_path):
    proc = run_module("rtp_scale.bench", *args, "--out", str(tmp_path), timeout=60) if args[0] == "unroll" \
        else run_module("rtp_scale.bench", *args, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert not (tmp_path / "bench_unroll.json").exists()


def test_rows_and_overrides_are_the_issue_setting():
    from rtp_scale.bench import __main__ as cli
    from rtp_scale.bench import unroll

    assert cli.MODES == unroll.MODES
    assert plan_rows(["full", "segmented"], [1000, 50, 150, 500], None) == [
        ("full", 50), ("segmented", 50), ("segmented", 150), ("segmented", 500), ("segmented", 1000)]
    assert plan_rows(["segmented", "full"], [50, 150], 150) == [
        ("segmented", 50), ("full", 50), ("segmented", 150), ("full", 150)]
    cfg = build_config(None, overrides_for("segmented", 50, Settings()))
    assert (cfg.model.width, cfg.model.depth, cfg.model.norm) == (128, 3, "instance")
    assert (cfg.data.name, cfg.data.real_per_class, cfg.data.augment) == ("mnist5k", 64, "none")
    assert (cfg.inner.steps, cfg.inner.batch_per_class, cfg.inner.momentum) == (50, 1, 0.9)
    assert (cfg.memory.kind, cfg.memory.ipc, cfg.unroll.mode) == ("addressable", 1.0, "segmented")


def test_flop_counter_counts_double_backward_of_a_conv():
    """What the benchmark's FLOP column rests on: FlopCounterMode sees the ops of a create_graph backward and of
    the backward through it (conv y = w * x; inner grad of sum(y^2) w.r.t. w; grad of its norm w.r.t. x)."""
    from torch.utils.flop_counter import FlopCounterMode

    n, c_in, c_out, side = 2, 3, 4, 6
    x = torch.randn(n, c_in, side, side, dtype=torch.float64, requires_grad=True)
    w = torch.randn(c_out, c_in, 3, 3, dtype=torch.float64, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        y = F.conv2d(x, w, padding=1)
        (g_w,) = torch.autograd.grad((y**2).sum(), w, create_graph=True)
        torch.autograd.grad((g_w**2).sum(), x)
    one_conv = 2 * n * c_out * side * side * c_in * 9
    # forward, weight grad, then through the weight grad: d/dx, d/d(dy) and dy -> x: five convolutions
    assert counter.get_total_flops() == 5 * one_conv


def test_eval_benchmark_quick_run_writes_a_row_per_micro_batch(tmp_path):
    proc = run_module("rtp_scale.bench", "eval", "--quick", "--micro-batches", "0,8", "--out", str(tmp_path),
                      timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "bench_eval.json").read_text())
    assert [row["micro_batch"] for row in result["rows"]] == [0, 8]
    assert result["rows"][0]["speedup_vs_first_row"] == 1.0
    assert all(row["seconds_per_epoch"] > 0 and len(row["all_seconds_per_epoch"]) == 1 for row in result["rows"])
    assert result["images"] == 40 and result["model"]["width"] == 8
    assert "whole" in proc.stdout and "speedup" in proc.stdout


@pytest.mark.parametrize("benchmark, args", [
    ("eval", ["--micro-batches", "-1"]), ("eval", ["--micro-batches", "a"]), ("eval", ["--epochs", "0"]),
    ("eval", ["--set", "eval.nope=1"]),
    ("batched", ["--meta-batches", "1"]), ("batched", ["--meta-batches", "x"]), ("batched", ["--repeats", "0"]),
    ("batched", ["--set", "dist.nope=1"]),
    ("agreement", ["--unrolls", "1"]), ("agreement", ["--step", "-1"]), ("agreement", ["--set", "dist.nope=1"]),
    ("agreement", ["--artifact", "/nonexistent/memory.safetensors"]),
    ("profile", ["--steps", "0"]), ("profile", ["--precision", "fp16"]), ("profile", ["--set", "unroll.nope=1"]),
])
def test_eval_and_batched_benchmarks_bad_input_is_one_line(benchmark, args, tmp_path):
    proc = run_module("rtp_scale.bench", benchmark, *args, "--out", str(tmp_path), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing written: no JSON, no profile


def test_batched_benchmark_quick_run_times_both_ways_and_checks_their_gradients_agree(tmp_path):
    proc = run_module("rtp_scale.bench", "batched", "--quick", "--out", str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "bench_batched.json").read_text())
    (row,) = result["rows"]
    assert row["meta_batch"] == 2 and len(row["all_one_by_one_s"]) == len(row["all_stacked_s"]) == 1
    assert row["one_by_one_unrolls_per_s"] == pytest.approx(2 / row["one_by_one_s"])
    # both ways compute the same step: they differ by float32 rounding, not by an unroll
    assert 0 <= row["max_rel_grad_difference"] < 1e-4
    assert result["inner_steps"] == 3 and result["model"]["width"] == 8
    assert "stacked" in proc.stdout and "speedup" in proc.stdout


def test_agreement_of_known_vectors():
    from rtp_scale.bench.agreement import agreement

    v = torch.tensor([3.0, -4.0], dtype=torch.float64)
    same = agreement([v, v.clone(), v.clone()])
    assert (same["cosine_mean"], same["cosine_std"], same["norm"]) == (pytest.approx(1.0), pytest.approx(0.0), 5.0)
    assert same["kept"] == pytest.approx(1.0)
    orthogonal = agreement(list(torch.eye(4, dtype=torch.float64)))  # independent noise of equal size
    assert orthogonal["cosine_mean"] == pytest.approx(0.0) and orthogonal["kept"] == pytest.approx(0.5)
    opposite = agreement([v, -v])
    assert opposite["cosine_mean"] == pytest.approx(-1.0) and opposite["kept"] == pytest.approx(0.0)


def test_agreement_measures_the_unrolls_distill_averages_with_meta_batch(tmp_path):
    """The N per-unroll meta-gradients, averaged, are the step distill takes with dist.meta_batch=N."""
    from rtp_scale.bench.agreement import unroll_gradients
    from rtp_scale.bench.scaling import _build_on
    from rtp_scale.config import build_config
    from rtp_scale.distributed import RankContext
    from rtp_scale.meta_step import reduced_meta_gradient
    from rtp_scale.runtime import prepare_data

    cfg = build_config(None, [*TINY, "dist.meta_batch=3"])
    data = prepare_data(cfg.data, torch.device("cpu"))
    alone = RankContext(rank=0, world_size=1, device=torch.device("cpu"), inner_shards=1)
    source, memory, params, _, lrs, method = _build_on(cfg, alone, data)
    per_unroll = unroll_gradients(cfg, method, memory, params, source.sample, lrs=lrs, step=2, unrolls=3)
    for p in params:
        p.grad = torch.zeros_like(p)
    reduced_meta_gradient(cfg, alone, method, memory, params, source.sample, step=2, lrs=lrs, learn_lrs=False)
    for i, p in enumerate(params):  # float32 sums in another order: equal to rounding
        mean = sum(g[i] for g in per_unroll) / 3
        assert torch.allclose(mean, p.grad.flatten().double(), rtol=1e-5, atol=1e-7 * float(mean.abs().max()))
    # and the three unrolls differ: each its own network, plan and real batch
    assert not torch.allclose(per_unroll[0][0], per_unroll[1][0], rtol=1e-2)


@pytest.mark.slow  # ~1 min: a distillation, then unrolls at its artifact
def test_agreement_at_a_distilled_artifact_and_at_one_of_another_shape(tmp_path):
    tiny = [*TINY, "meta.steps=2", "inner.steps=3"]
    distilled = run_module("rtp_scale.distill", "--set", *tiny, f"run.out_dir={tmp_path / 'run'}", timeout=300)
    assert distilled.returncode == 0, distilled.stderr
    artifact = str(tmp_path / "run" / "memory.safetensors")
    runs = {}
    for name, extra in (("start", []), ("distilled", ["--artifact", artifact])):
        proc = run_module("rtp_scale.bench", "agreement", "--unrolls", "2", *extra, "--set", *tiny,
                          "--out", str(tmp_path / name), timeout=120)
        assert proc.returncode == 0, proc.stderr
        runs[name] = json.loads((tmp_path / name / "bench_agreement.json").read_text())
    assert runs["distilled"]["artifact"] == artifact and runs["start"]["artifact"] is None
    # the distilled memory is another point, so its meta-gradients differ from the start's
    assert runs["distilled"]["tensors"]["all"]["norm"] != pytest.approx(runs["start"]["tensors"]["all"]["norm"], rel=1e-6)
    other = run_module("rtp_scale.bench", "agreement", "--unrolls", "2", "--artifact", artifact,
                       "--set", *tiny, "memory.num_bases=5", "--out", str(tmp_path / "other"), timeout=120)
    assert other.returncode == 2 and len(other.stderr.strip().splitlines()) == 1
    assert "pass the config it was distilled with" in other.stderr


def test_the_profile_benchmark_profiles_the_benchmarks_step_and_names_its_configuration(tmp_path):
    proc = run_module("rtp_scale.bench", "profile", "--steps", "3", "--out", str(tmp_path),
                      "--set", "model.width=8", "inner.batch_per_class=1", timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "profile_fp32.txt").read_text()
    assert "inner.steps=3" in text.splitlines()[0] and "model.width=8" in text.splitlines()[0]
    assert "profiled step" in text.splitlines()[1]
    assert text.count("aten::convolution_backward") >= 2  # in the op table and in the by-shape table
