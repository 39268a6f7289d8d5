"""The submitit launcher without Slurm: sweep expansion and validation, the task, collect, and the same
sweeps run with ``--cluster local`` (processes) and ``--cluster debug`` (in this process).

The real-cluster counterparts (one job array, requeue/resume) are in tests/test_slurm.py.
"""
from __future__ import annotations

import csv
import json
import pickle
import re
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import ROOT, TINY, logged_steps, run_module
from launch import collect as collect_mod
from launch import sweep as sweep_mod
from launch.task import DistillTask, distributed_env
from rtp_scale.config import load_config
from rtp_scale.memory.budget import addressable_images_per_class

SMOKE = ROOT / "configs" / "sweeps" / "smoke.py"


def write_recipe(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


def tiny_recipe(tmp_path: Path, grid: str = '{"memory.ipc": [1, 2]}', seeds: str = "[0, 1]", extra: tuple = (),
                name: str = "t") -> Path:
    # TINY minus the keys this grid sweeps (a recipe may not both fix and sweep a key)
    overrides = [o for o in TINY if f'"{o.partition("=")[0]}"' not in grid]
    overrides += ["log.tensorboard=false", "log.image_every=0", *extra]
    return write_recipe(tmp_path / f"{name}.py", f"""
        NAME = {name!r}
        GRID = {grid}
        SEEDS = {seeds}
        OVERRIDES = {overrides!r}
        RESOURCES = {{"timeout_min": 5, "cpus_per_task": 1, "mem_gb": 1, "array_parallelism": 2}}
        """)


# ---------------------------------------------------------------------------------------------- expansion
def test_grid_times_seeds_expands_to_validated_members(tmp_path):
    recipe = sweep_mod.load_sweep(tiny_recipe(
        tmp_path, grid='{"memory.ipc": [1, 2], ("model.width", "model.depth"): [(8, 2), (16, 1)]}', seeds="[0, 3]"))
    members = sweep_mod.expand(recipe, tmp_path / "sw", ["eval.epochs=2"])
    assert len(members) == 2 * 2 * 2
    names = [m["name"] for m in members]
    assert len(set(names)) == len(names) and names[0] == "ipc1_width8_depth2_s0" and names[-1] == "ipc2_width16_depth1_s3"
    last = members[-1]["config"]
    assert (last["memory"]["ipc"], last["model"]["width"], last["model"]["depth"], last["run"]["seed"]) == (2.0, 16, 1, 3)
    assert last["eval"]["epochs"] == 2 and last["data"]["name"] == "digits" and last["log"]["progress"] is False
    assert all(m["config"]["run"]["out_dir"] == str((tmp_path / "sw" / m["name"]).resolve()) for m in members)
    assert members[1]["grid"] == {"memory.ipc": 1, "model.width": 8, "model.depth": 2, "run.seed": 3}


def test_recipe_axis_and_shipped_budget_sweep_dry_run(tmp_path, capsys):
    out = tmp_path / "budget"
    assert sweep_mod.main([str(ROOT / "configs/sweeps/budget.py"), "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "54 member(s) -> ONE Slurm job array" in text and "mnist_ipc1_s0" in text and "cifar100_ipc50_s2" in text
    assert "gpus_per_node=1" in text and "slurm_array_parallelism=8" in text
    assert not out.exists()  # a dry run writes nothing


def shipped_members(tmp_path: Path, name: str) -> list[dict]:
    """The members (with their built configs) of the shipped sweep ``configs/sweeps/<name>.py``."""
    return sweep_mod.expand(sweep_mod.load_sweep(ROOT / f"configs/sweeps/{name}.py"), tmp_path / name)


def test_shipped_method_comparison_validates(tmp_path):
    members = shipped_members(tmp_path, "methods")
    assert len(members) == 3 * 4 * 3
    by_name = {m["name"]: m["config"] for m in members}
    frepo, pixels = by_name["cifar10_ipc10_frepo_s1"], by_name["cifar10_ipc10_rtp_pixels_s1"]
    assert (frepo["method"]["name"], frepo["memory"]["kind"], frepo["meta"]["optimizer"]) == ("frepo", "pixel", "lamb")
    assert (pixels["method"]["name"], pixels["memory"]["kind"], pixels["memory"]["ipc"]) == ("rtp", "pixel", 10.0)
    assert frepo["data"]["zca"] is True  # everything else comes from the shared per-budget recipe


@pytest.mark.parametrize("path", sorted((ROOT / "configs/sweeps").glob("*.py")), ids=lambda p: p.stem)
def test_every_shipped_sweep_expands_into_valid_configs(tmp_path, path):
    members = sweep_mod.expand(sweep_mod.load_sweep(path), tmp_path / path.stem)
    assert members and len({m["name"] for m in members}) == len(members)


def test_digits_seed_sweep_repeats_the_comparisons_digits_members_at_seeds_1_and_2(tmp_path):
    def configs(name):
        members = shipped_members(tmp_path, name)
        by_member = {}
        for m in members:
            run = {k: v for k, v in m["config"]["run"].items() if k not in ("seed", "out_dir")}
            by_member[(m["grid"]["variant"], m["config"]["run"]["seed"])] = {**m["config"], "run": run}
        return by_member

    parent, seeds = configs("compare_default_protocol"), configs("compare_default_protocol_digits_seeds")
    digits = {variant for variant, _ in parent if variant.startswith("digits")}
    assert len(digits) == 16 and set(seeds) == {(v, s) for v in digits for s in (1, 2)}
    assert all(config == parent[(variant, 0)] for (variant, _), config in seeds.items())


def test_mnist5k_seed_sweeps_repeat_every_mnist5k_member_and_run_the_default_job_on_validation(tmp_path):
    def configs(name):
        members = shipped_members(tmp_path, name)
        return {(m["grid"]["variant"], m["config"]["run"]["seed"]): m["config"] for m in members}

    def without_run(config):  # and without the recipe's notes
        return {k: v for k, v in config.items() if k not in ("run", "recipe")}

    parent, seeds = configs("compare_default_protocol"), configs("compare_default_protocol_mnist5k_seeds")
    pixel_seeds = configs("compare_default_protocol_mnist5k_pixel_seeds")
    assert not set(seeds) & set(pixel_seeds)
    seeds.update(pixel_seeds)
    # together: every mnist5k member of the parent, and the default job, at seeds 1 and 2
    repeated = {variant for variant, _ in parent if variant.startswith("mnist5k")}
    assert len(repeated) == 8
    assert set(seeds) == {(v, s) for v in repeated | {"mnist5k_ipc1_rtp_memories"} for s in (1, 2)}
    assert all(without_run(seeds[(v, s)]) == without_run(parent[(v, 0)]) for v in repeated for s in (1, 2))
    # the default job, scored on validation: what README's command distils, with the sweep's log override
    default_job = load_config(None, ["data.val_per_class=50", "data.eval_split=val", "log.image_every=0"]).to_dict()
    assert all(without_run(seeds[("mnist5k_ipc1_rtp_memories", s)]) == without_run(default_job) for s in (1, 2))

def test_unroll_ablation_spends_the_same_inner_steps_in_every_member(tmp_path):
    members = shipped_members(tmp_path, "ablation_unroll_mnist5k")
    cells = {(m["config"]["inner"]["steps"], m["config"]["inner"]["momentum"]) for m in members}
    assert cells == {(t, mom) for t in (10, 20, 50, 100) for mom in (0.0, 0.9)}
    assert {m["config"]["inner"]["steps"] * m["config"]["meta"]["steps"] for m in members} == {1200}
    assert {m["config"]["data"]["eval_split"] for m in members} == {"val"}


@pytest.mark.parametrize("sweep, seed", [("ablation_unroll_mnist5k_seeds", 1), ("ablation_unroll_mnist5k_seed2", 2)])
def test_unroll_ablation_seeds_repeat_every_cell_and_score_the_start(tmp_path, sweep, seed):
    def configs(name):
        return {m["name"]: m["config"] for m in shipped_members(tmp_path, name)}

    def without_run_and_eval_every(config):
        return {**{k: v for k, v in config.items() if k != "run"}, "eval": {**config["eval"], "every": 0}}

    parent, seeds = configs("ablation_unroll_mnist5k"), configs(sweep)
    cells = {name.rsplit("_", 1)[0] for name in parent}
    assert len(cells) == 8 and set(seeds) == {f"{c}_s{seed}" for c in cells | {"start"}}
    for name, config in seeds.items():
        assert config["run"]["seed"] == int(name[-1]) and config["eval"]["every"] == 0
        if not name.startswith("start"):  # the parent's member of that cell but for its seed and evaluations
            assert without_run_and_eval_every(config) == without_run_and_eval_every(parent[f"{name[:-3]}_s0"])
    # the start: any cell's memory before its first outer step, scored on the same split by the same networks
    start, cell = seeds[f"start_s{seed}"], parent["T50_momentum0.9_s0"]
    assert start["meta"]["steps"] == 0 and start["memory"] == cell["memory"] and start["eval"] == {**cell["eval"], "every": 0}
    assert start["data"] == cell["data"] and start["model"] == cell["model"]


def test_digits_budget_crossover_compares_starts_at_equal_storage_and_scores_its_choices_on_test(tmp_path):
    selection = {m["name"]: m["config"] for m in shipped_members(tmp_path, "digits_budget_crossover")}
    for name, config in selection.items():
        assert config["meta"]["steps"] == 0 and config["data"]["name"] == "digits", name
        assert (config["data"]["val_per_class"], config["data"]["eval_split"]) == (18, "val"), name
        assert config["memory"]["ipc"] == int(name.split("_")[0][3:]), name
    # every memory fits its budget with at least 3 slots per class, at full 8x8 resolution
    memories = [c["memory"] for c in selection.values() if c["memory"]["kind"] == "addressable"]
    assert len(memories) == 9 and {m["downsample"] for m in memories} == {1}
    assert all((m["ipc"] * 640 - 64 * m["num_bases"]) // (10 * m["num_bases"]) >= 3 for m in memories)
    # IPC 1's memory is the method comparison's digits start, so its test row is that table's
    compare = {m["name"]: m["config"] for m in shipped_members(tmp_path, "compare_default_protocol")}
    assert selection["ipc1_memory_K4_s0"]["memory"] == compare["digits_ipc1_start_memories_s0"]["memory"]
    test = {m["name"]: m["config"] for m in shipped_members(tmp_path, "digits_budget_crossover_test")}
    assert len(test) == 18
    for name, config in test.items():  # the selection member but for its seed and the split it reports on
        twin = selection[name[:-1] + "0"]
        assert config["run"]["seed"] == int(name[-1]) and config["data"]["eval_split"] == "test", name
        assert {**config["data"], "eval_split": "val"} == twin["data"], name
        assert {k: v for k, v in config.items() if k not in ("run", "data")} == \
            {k: v for k, v in twin.items() if k not in ("run", "data")}, name
    # the distilled sets: the starts' storage under the schedule the method comparison gives RtP on digits
    distilled = {m["name"]: m["config"] for m in shipped_members(tmp_path, "digits_budget_crossover_distilled")}
    assert len(distilled) == 6
    for name, config in distilled.items():
        start, kind = selection[name[len("rtp_"):]], "pixels" if "pixels" in name else "memories"
        schedule = compare[f"digits_ipc1_rtp_{kind}_s0"]
        assert config["memory"] == start["memory"] and config["data"] == start["data"], name
        for section in ("inner", "meta", "unroll", "eval", "model", "method"):
            assert config[section] == schedule[section], (name, section)
    # the IPC-5 pixel member that diverged, again at lower outer lrs: only the lr differs
    rerun = {m["name"]: m["config"] for m in shipped_members(tmp_path, "digits_budget_crossover_distilled_ipc5_pixels")}
    assert {c["meta"]["lr"] for c in rerun.values()} == {2e-3, 1e-3}
    diverged = distilled["rtp_ipc5_pixels_s0"]
    assert diverged["meta"]["lr"] > max(c["meta"]["lr"] for c in rerun.values())
    for name, config in rerun.items():
        assert {**config, "meta": {**config["meta"], "lr": diverged["meta"]["lr"]}, "run": diverged["run"]} == diverged, name


def test_digits_depth2_probe_is_the_comparisons_digits_members_with_only_the_depth_changed(tmp_path):
    compare = {m["name"]: m["config"] for m in shipped_members(tmp_path, "compare_default_protocol")}
    for sweep, seeds, kinds in (("digits_depth2_probe", (0,), ("start", "rtp")),
                                ("digits_depth2_probe_seeds", (1, 2), ("start", "rtp")),
                                ("digits_depth2_probe_methods", (0, 1, 2), ("dd", "frepo"))):
        probe = {m["name"]: m["config"] for m in shipped_members(tmp_path, sweep)}
        cells = {f"digits_ipc{ipc}_{kind}_{sets}" for ipc in (1, 10) for kind in kinds
                 for sets in ("pixels", "memories")}
        assert set(probe) == {f"{cell}_s{seed}" for cell in cells for seed in seeds}
        for name, config in probe.items():
            twin = compare[name.rsplit("_", 1)[0] + "_s0"]
            assert twin["model"]["depth"] == 3 and config["model"] == {**twin["model"], "depth": 2}, name
            assert config["run"]["seed"] == int(name[-1]), name
            assert {k: v for k, v in config.items() if k not in ("model", "run")} == \
                {k: v for k, v in twin.items() if k not in ("model", "run")}, name


def test_digits_depth2_crossover_is_the_depth3_one_at_depth_2_and_distils_the_memories_validation_chose(tmp_path):
    depth3 = {m["name"]: m["config"] for m in shipped_members(tmp_path, "digits_budget_crossover")}
    starts = {m["name"]: m["config"] for m in shipped_members(tmp_path, "digits_depth2_crossover")}
    assert set(starts) == {name for name in depth3 if not name.startswith("ipc1_")}
    for name, config in starts.items():
        twin = depth3[name]
        assert config["model"] == {**twin["model"], "depth": 2}, name
        assert {k: v for k, v in config.items() if k not in ("model", "run")} == \
            {k: v for k, v in twin.items() if k not in ("model", "run")}, name
    # K per budget: the best start on validation in the committed selection
    with open(ROOT / "benchmarks/results/digits_depth2_crossover/members.csv") as f:
        scored = {row["member"]: float(row["acc_mean"]) for row in csv.DictReader(f)}
    assert set(scored) == set(starts)
    chosen = {ipc: max((n for n in scored if n.startswith(f"ipc{ipc}_memory")), key=scored.get) for ipc in (2, 3, 5)}
    distilled = {m["name"]: m["config"] for m in shipped_members(tmp_path, "digits_depth2_crossover_methods")}
    compare = {m["name"]: m["config"] for m in shipped_members(tmp_path, "compare_default_protocol")}
    kinds = [name[len("digits_ipc1_"):-len("_s0")] for name in compare if name.startswith("digits_ipc1_")]
    assert len(kinds) == 8
    assert set(distilled) == {f"digits_ipc{ipc}_{kind}_s{seed}" for ipc in (2, 3, 5) for kind in kinds
                              for seed in (0, 1, 2)}
    for name, config in distilled.items():
        ipc, kind, seed = int(name.split("_")[1][3:]), name[len("digits_ipcN_"):-len("_sS")], int(name[-1])
        # each method as the comparison's 1-IPC digits cell runs it, at depth 2, from the chosen start
        schedule = compare[f"digits_ipc1_{kind}_s0"]
        for section in ("inner", "meta", "unroll", "eval", "method", "data"):
            assert config[section] == schedule[section], (name, section)
        assert config["model"] == {**schedule["model"], "depth": 2} and config["run"]["seed"] == seed, name
        start = starts[f"ipc{ipc}_pixels_s0" if kind.endswith("pixels") else chosen[ipc]]
        assert config["memory"] == {**start["memory"], "learn_labels": schedule["memory"]["learn_labels"]}, name


def test_digits_ipc10_horizon_is_the_comparisons_member_under_the_mnist5k_ipc10_recipes_schedule(tmp_path):
    probe = {m["name"]: m["config"] for m in shipped_members(tmp_path, "digits_depth2_probe")}
    member = probe["digits_ipc10_rtp_memories_s0"]
    recipe = load_config(ROOT / "configs/mnist5k_rtp_ipc10.toml")
    horizon = {m["name"]: m["config"] for m in shipped_members(tmp_path, "digits_depth2_ipc10_horizon")}
    assert set(horizon) == {f"T{steps}_s{seed}" for steps in (600, 1200) for seed in (0, 1, 2)}
    for name, config in horizon.items():
        assert config["inner"] == {**member["inner"], "steps": int(name[1:].split("_")[0])}, name
        assert (config["unroll"]["mode"], config["unroll"]["window"]) == (recipe.unroll.mode, recipe.unroll.window)
        assert config["meta"] == {**member["meta"], "steps": recipe.meta.steps, "lr": recipe.meta.lr,
                                  "grad_clip": recipe.meta.grad_clip}, name
        assert config["run"]["seed"] == int(name[-1]), name
        assert {k: v for k, v in config.items() if k not in ("inner", "unroll", "meta", "run")} == \
            {k: v for k, v in member.items() if k not in ("inner", "unroll", "meta", "run")}, name


def test_digits_crossover_horizons_are_the_rtp_memories_of_their_budgets_under_the_10ipc_horizon_schedule(tmp_path):
    crossover = {m["name"]: m["config"] for m in shipped_members(tmp_path, "digits_depth2_crossover_methods")}
    probe = {m["name"]: m["config"] for m in shipped_members(tmp_path, "digits_depth2_probe")}
    at_10ipc = {m["name"]: m["config"] for m in shipped_members(tmp_path, "digits_depth2_ipc10_horizon")}
    horizon = {m["name"]: m["config"] for m in shipped_members(tmp_path, "digits_depth2_crossover_horizon")}
    assert set(horizon) == {f"ipc{ipc}_T{steps}_s{seed}" for ipc in (2, 3, 5) for steps in (300, 1200)
                            for seed in (0, 1, 2)}
    at_1ipc = {m["name"]: m["config"] for m in shipped_members(tmp_path, "digits_depth2_ipc1_horizon")}
    assert set(at_1ipc) == {f"T300_s{seed}" for seed in (0, 1, 2)}
    horizon.update({f"ipc1_{name}": config for name, config in at_1ipc.items()})
    for name, config in horizon.items():
        ipc, steps, seed = (int(part[1:] if part[0] in "Ts" else part[3:]) for part in name.split("_"))
        member = probe["digits_ipc1_rtp_memories_s0"] if ipc == 1 else \
            crossover[f"digits_ipc{ipc}_rtp_memories_s{seed}"]
        schedule = at_10ipc[f"T1200_s{seed}"]  # the 10-IPC horizon's schedule, T aside
        assert (config["unroll"], config["meta"]) == (schedule["unroll"], schedule["meta"]), name
        assert config["inner"] == {**schedule["inner"], "steps": steps} and config["run"]["seed"] == seed, name
        # the budget's memory (K chosen in the crossover), data, network and evaluation
        assert {k: v for k, v in config.items() if k not in ("inner", "unroll", "meta", "run")} == \
            {k: v for k, v in member.items() if k not in ("inner", "unroll", "meta", "run")}, name


def test_final_ipc10_runs_are_the_selected_recipe_on_the_whole_training_split_scored_on_test(tmp_path):
    members = {m["name"]: m["config"] for m in shipped_members(tmp_path, "final_mnist5k_ipc10_whole_train")}
    assert list(members) == [f"{v}_s{s}" for v in ("recipe", "start") for s in (0, 1, 2)]
    selection = {m["name"]: m["config"] for m in shipped_members(tmp_path, "select_mnist5k_ipc10_horizon_seeds")}
    for name, config in members.items():
        twin = selection[("T1200_lr5e-4" if name.startswith("recipe") else "pca_no_distill") + "_s1"]
        assert config["run"]["seed"] == int(name[-1])
        # the selection run's config but for its data split: no images held out, scored on test
        assert (config["data"]["val_per_class"], config["data"]["eval_split"]) == (0, "test")
        assert {k: v for k, v in config["data"].items() if k not in ("val_per_class", "eval_split")} == \
            {k: v for k, v in twin["data"].items() if k not in ("val_per_class", "eval_split")}
        assert {k: v for k, v in config.items() if k not in ("run", "data")} == \
            {k: v for k, v in twin.items() if k not in ("run", "data")}, name


def test_ipc10_gain_sweep_distils_the_10ipc_recipes_pca_start_at_equal_inner_steps_on_validation(tmp_path):
    members = shipped_members(tmp_path, "select_mnist5k_ipc10_gain")
    cells = {(m["config"]["inner"]["steps"], m["config"]["meta"]["lr"]) for m in members}
    assert cells == {(t, lr) for t in (60, 150) for lr in (5e-4, 2e-4)}
    assert {m["config"]["inner"]["steps"] * m["config"]["meta"]["steps"] for m in members} == {1800}
    recipe = load_config(ROOT / "configs/mnist5k_rtp_ipc10.toml").to_dict()
    for m in members:  # only the schedule differs from the 10-IPC recipe's storage and start
        assert m["config"]["memory"] == {**recipe["memory"], "init": "pca"}
        assert (m["config"]["data"]["eval_split"], m["config"]["data"]["val_per_class"]) == ("val", 50)


def test_ipc10_horizon_sweep_truncates_long_unrolls_of_the_10ipc_recipes_pca_start_on_validation(tmp_path):
    members = shipped_members(tmp_path, "select_mnist5k_ipc10_horizon")
    cells = {(m["config"]["inner"]["steps"], m["config"]["meta"]["steps"], m["config"]["meta"]["lr"]) for m in members}
    assert cells == {(t, steps, lr) for t, steps in ((300, 125), (1200, 75)) for lr in (5e-4, 1e-3)}
    recipe = load_config(ROOT / "configs/mnist5k_rtp_ipc10.toml").to_dict()
    for m in members:  # the storage, start, inner loop and network are the 10-IPC recipe's
        config = m["config"]
        assert config["memory"] == {**recipe["memory"], "init": "pca"}
        assert (config["unroll"]["mode"], config["unroll"]["window"]) == ("truncated", 60)
        assert {k: v for k, v in config["inner"].items() if k != "steps"} == {
            k: v for k, v in recipe["inner"].items() if k != "steps"}
        assert config["model"] == recipe["model"]
        assert (config["data"]["eval_split"], config["data"]["val_per_class"]) == ("val", 50)
    # the 10-IPC recipe is the member selected on validation; only the evaluation's split and size differ
    selected = next(m["config"] for m in members if m["name"] == "lr0.0005_T1200_s0")
    assert {k: v for k, v in selected.items() if k not in ("data", "eval", "run", "log")} == \
        {k: v for k, v in recipe.items() if k not in ("data", "eval", "run", "log")}
    assert {k: v for k, v in selected["data"].items() if k not in ("eval_split", "val_per_class")} == \
        {k: v for k, v in recipe["data"].items() if k not in ("eval_split", "val_per_class")}


def test_ipc10_pixel_horizon_members_are_the_comparisons_rtp_pixels_under_the_memory_recipes_schedule(tmp_path):
    compare = {m["name"]: m["config"] for m in shipped_members(tmp_path, "compare_default_protocol_mnist5k_ipc10")}
    pixels = compare["mnist5k_ipc10_rtp_pixels_s0"]
    recipe = load_config(ROOT / "configs/mnist5k_rtp_ipc10.toml").to_dict()
    members = {m["name"]: m["config"] for m in shipped_members(tmp_path, "select_mnist5k_ipc10_pixels_horizon")}
    assert {name: config["meta"]["lr"] for name, config in members.items()} == {
        "pixels_T1200_lr1e-2_s0": 0.01, "pixels_T1200_lr4e-3_s0": 0.004}
    for name, config in members.items():
        # the memory recipe's horizon and number of outer steps
        assert config["unroll"] == {**pixels["unroll"], "mode": recipe["unroll"]["mode"],
                                    "window": recipe["unroll"]["window"]}, name
        assert config["inner"] == {**pixels["inner"], "steps": recipe["inner"]["steps"]}, name
        assert config["meta"] == {**pixels["meta"], "steps": recipe["meta"]["steps"], "lr": config["meta"]["lr"]}, name
        # the comparison's pixel set, network, evaluation and validation split
        assert {k: v for k, v in config.items() if k not in ("inner", "unroll", "meta", "run")} == \
            {k: v for k, v in pixels.items() if k not in ("inner", "unroll", "meta", "run")}, name
        assert (config["memory"]["kind"], config["data"]["eval_split"], config["eval"]["num_nets"]) == ("pixel", "val", 5)


def test_ipc10_horizon_seeds_repeat_the_selected_member_and_its_start_at_other_seeds(tmp_path):
    parent = {m["name"]: m["config"] for m in shipped_members(tmp_path, "select_mnist5k_ipc10_horizon")}
    seeds = {m["name"]: m["config"] for m in shipped_members(tmp_path, "select_mnist5k_ipc10_horizon_seeds")}
    assert set(seeds) == {f"{v}_s{s}" for v in ("T1200_lr5e-4", "pca_no_distill") for s in (1, 2)}
    selected = parent["lr0.0005_T1200_s0"]
    for name, config in seeds.items():
        assert config["run"]["seed"] == int(name[-1])
        if name.startswith("T1200"):  # the selected member but for its seed
            assert {k: v for k, v in config.items() if k != "run"} == {k: v for k, v in selected.items() if k != "run"}
        else:  # its start: the same memory, no outer step
            assert config["meta"]["steps"] == 0 and config["memory"] == selected["memory"]


def test_ipc10_shapes_sweep_scores_starts_of_equal_storage_that_differ_only_in_shape(tmp_path):
    sweeps = ("select_mnist5k_ipc10_shapes", "select_mnist5k_ipc10_shapes_more_bases")
    members = {m["name"]: m["config"] for name in sweeps for m in shipped_members(tmp_path, name)}
    shapes = {(c["memory"]["num_bases"], c["memory"]["downsample"]) for c in members.values()}
    assert len(members) == 7 and shapes == {(32, 2), (48, 2), (64, 2), (96, 2), (128, 2), (32, 1), (64, 1)}
    recipe = load_config(ROOT / "configs/mnist5k_rtp_ipc10.toml").to_dict()
    reference = members["K64_14x14_s0"]  # the recipe's start (its shape), as the horizon seeds score it
    assert reference["memory"] == {**recipe["memory"], "init": "pca"}
    for name, config in members.items():  # no outer step, validation split, the same network and evaluation
        assert config["meta"]["steps"] == 0 and config["memory"]["init"] == "pca", name
        assert (config["data"]["eval_split"], config["data"]["val_per_class"]) == ("val", 50), name
        assert {k: v for k, v in config.items() if k not in ("memory", "run")} == \
            {k: v for k, v in reference.items() if k not in ("memory", "run")}, name
        memory = config["memory"]
        slots = addressable_images_per_class(ipc=memory["ipc"], num_classes=10, pixels_per_image=784,
                                             num_bases=memory["num_bases"], downsample=memory["downsample"])
        floats = memory["num_bases"] * 784 // memory["downsample"] ** 2 + 10 * slots * memory["num_bases"]
        # each spends the 10-IPC budget to within one slot per class, and every slot is its own real image
        assert 78_400 - 10 * memory["num_bases"] < floats <= 78_400 and slots <= 350, name


def test_earlier_ipc10_sweeps_keep_the_exact_unrolls_they_ran_with(tmp_path):
    for name in ("select_mnist5k_ipc10", "select_mnist5k_ipc10_gain", "select_mnist5k_ipc10_signal"):
        for m in shipped_members(tmp_path, name):
            assert m["config"]["unroll"]["mode"] == "segmented", m["name"]
            if m["config"]["meta"]["steps"] > 0:
                assert m["config"]["inner"]["steps"] in (20, 60, 150), m["name"]


def test_subipc_shapes_sweep_changes_only_the_memorys_bases_against_its_parent(tmp_path):
    def configs(name):
        members = shipped_members(tmp_path, name)
        return {m["grid"]["variant"]: m["config"] for m in members}

    parent, shapes = configs("memories_vs_pixels_subipc"), configs("memories_vs_pixels_subipc_shapes")
    assert len(shapes) == 9
    for variant, config in shapes.items():
        ipc, bases, _, schedule = variant.split("_")
        # the parent's memory member of that budget and schedule (its lr1e-3 member is named "memory")
        twin = parent[f"{ipc}_memory{'_start' if schedule == 'start' else ''}"]
        expected = {**twin, "memory": {**twin["memory"], "num_bases": int(bases[1:]), "downsample": 4},
                    "meta": {**twin["meta"], "lr": {"start": twin["meta"]["lr"], "lr1e-3": 1e-3, "lr1e-2": 1e-2}[schedule]}}
        assert {k: v for k, v in config.items() if k != "run"} == {k: v for k, v in expected.items() if k != "run"}


@pytest.mark.parametrize("seeds_sweep, parent, count", [
    ("memories_vs_pixels_subipc_pixel_seeds", "memories_vs_pixels_subipc", 4),
    ("memories_vs_pixels_subipc_memory_seeds", "memories_vs_pixels_subipc_shapes", 4),
])
def test_subipc_seed_sweeps_repeat_their_parents_members_at_seeds_1_and_2(tmp_path, seeds_sweep, parent, count):
    def configs(name):
        members = shipped_members(tmp_path, name)
        return {(m["grid"]["variant"], m["config"]["run"]["seed"]): m["config"] for m in members}

    def without_run(config):
        return {k: v for k, v in config.items() if k != "run"}

    parents, seeds = configs(parent), configs(seeds_sweep)
    variants = {variant for variant, _ in seeds}
    assert len(variants) == count and set(seeds) == {(v, s) for v in variants for s in (1, 2)}
    assert all(without_run(config) == without_run(parents[(variant, 0)]) for (variant, _), config in seeds.items())
    # each budget's start and its distilled set
    assert {v.rsplit("_", 1)[1] for v in variants} == {"start", "lr1e-2"}


def test_mnist5k_memories_vs_pixels_test_members_are_the_chosen_sets_of_their_sweeps_scored_on_test(tmp_path):
    def configs(name):
        return {(m["grid"]["variant"], m["config"]["run"]["seed"]): m["config"] for m in shipped_members(tmp_path, name)}

    def on_test(config):  # the same distillation with the score on the test split (the recipe's notes aside)
        return {**{k: v for k, v in config.items() if k not in ("run", "recipe")},
                "data": {**config["data"], "eval_split": "test"}}

    figure = configs("mnist5k_memories_vs_pixels_test")
    shapes, subipc = configs("memories_vs_pixels_subipc_shapes"), configs("memories_vs_pixels_subipc")
    ipc1, ipc10 = configs("compare_default_protocol"), configs("compare_default_protocol_mnist5k_ipc10")
    default_job = load_config(None, ["data.val_per_class=50", "data.eval_split=val", "log.image_every=0"]).to_dict()
    sources = {
        "ipc0.2_memories": shapes[("ipc0.2_K8_7x7_lr1e-2", 0)], "ipc0.2_memories_start": shapes[("ipc0.2_K8_7x7_start", 0)],
        "ipc0.5_memories": shapes[("ipc0.5_K16_7x7_lr1e-2", 0)], "ipc0.5_memories_start": shapes[("ipc0.5_K16_7x7_start", 0)],
        "ipc0.2_pixels": subipc[("ipc0.2_pixels_lr1e-2", 0)], "ipc0.2_pixels_start": subipc[("ipc0.2_pixels_start", 0)],
        "ipc0.5_pixels": subipc[("ipc0.5_pixels_lr1e-2", 0)], "ipc0.5_pixels_start": subipc[("ipc0.5_pixels_start", 0)],
        "ipc1_rtp_memories": default_job, "ipc1_memories_start": ipc1[("mnist5k_ipc1_start_memories", 0)],
        "ipc1_dd_pixels": ipc1[("mnist5k_ipc1_dd_pixels", 0)], "ipc1_pixels_start": ipc1[("mnist5k_ipc1_start_pixels", 0)],
        "ipc10_frepo_pixels": ipc10[("mnist5k_ipc10_frepo_pixels", 0)],
    }
    assert set(figure) == {(variant, seed) for variant in sources for seed in (0, 1, 2)}
    for (variant, seed), config in figure.items():
        source = sources[variant]
        assert source["data"]["eval_split"] == "val" and config["data"]["val_per_class"] == 50, variant
        assert on_test(config) == on_test(source) and config["run"]["seed"] == seed, variant
        assert (config["meta"]["steps"] == 0) == variant.endswith("_start"), variant


def test_ipc10_comparison_is_the_parents_mnist5k_cell_at_10_ipc(tmp_path):
    def configs(name):
        members = shipped_members(tmp_path, name)
        return {m["grid"]["variant"].replace("_ipc10_", "_ipc1_"): m["config"] for m in members}

    parent, ipc10 = configs("compare_default_protocol"), configs("compare_default_protocol_mnist5k_ipc10")
    recipe = load_config(ROOT / "configs/mnist5k_rtp_ipc10.toml").to_dict()
    assert len(ipc10) == 7
    for variant, config in ipc10.items():
        expected = parent[variant]
        memory = {**expected["memory"], "ipc": 10.0}
        if config["memory"]["kind"] == "addressable":  # the 10-IPC recipe's storage: 64 bases at 14x14
            memory.update(num_bases=recipe["memory"]["num_bases"], downsample=recipe["memory"]["downsample"])
        assert config["memory"] == memory
        assert {k: v for k, v in config.items() if k not in ("memory", "run")} == \
            {k: v for k, v in expected.items() if k not in ("memory", "run")}


def test_variant_axis_names_members_and_keeps_other_keys(tmp_path):
    recipe = sweep_mod.load_sweep(tiny_recipe(
        tmp_path, grid='{"variant": {"mem": [], "pix": ["memory.kind=pixel"]}, "memory.ipc": [1, 2]}', seeds="[0]"))
    members = sweep_mod.expand(recipe, tmp_path / "sw")
    assert [m["name"] for m in members] == ["mem_ipc1_s0", "mem_ipc2_s0", "pix_ipc1_s0", "pix_ipc2_s0"]
    assert [m["config"]["memory"]["kind"] for m in members] == ["addressable"] * 2 + ["pixel"] * 2
    assert members[2]["grid"] == {"variant": "pix", "memory.ipc": 2 - 1, "run.seed": 0}


@pytest.mark.parametrize("body, message", [
    ('GRID = {"memory.ipcc": [1, 2]}', "unknown grid key 'memory.ipcc'"),
    ('GRID = {"nosection.ipc": [1]}', "unknown grid key 'nosection.ipc'"),
    ('GRID = {"memory.ipc": []}', "is empty: the sweep would have no members"),
    ('GRID = {"memory.ipc": [1]}\nSEEDS = []', "SEEDS is empty"),
    ('GIRD = {"memory.ipc": [1]}', "unknown name GIRD (did you mean GRID?)"),
    ('GRID = {"memory.ipc": [1, -3]}', "sweep member ipc-3_s0 (memory.ipc=-3): memory.ipc=-3.0 must be > 0"),
    ('GRID = {"run.out_dir": ["a"]}', "run.out_dir cannot be swept"),
    ('GRID = {"memory.ipc": [1]}\nRESOURCES = {"gpu": 1}', "unknown resource 'gpu'"),
    ('raise ValueError("oops")', "cannot load sweep recipe"),
    ('GRID = {"variant": {"a": ["memory.ipcc=2"]}}', "sweep member a_s0 (memory.ipcc=2): unknown config key"),
    ('GRID = {"variant": {}}', "GRID['variant'] is empty"),
    ('GRID = {"memory.ipc": [1], "variant": {"a": ["memory.ipc=2"]}}', "variant 'a' sets memory.ipc, which the grid"),
])
def test_bad_recipes_fail_on_one_line_before_anything_is_written(tmp_path, body, message):
    recipe = write_recipe(tmp_path / "bad.py", body)
    out = tmp_path / "sw"
    proc = run_module("launch.sweep", str(recipe), "--cluster", "local", "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_cli_errors_are_one_line(tmp_path):
    missing = run_module("launch.sweep", str(tmp_path / "nope.py"))
    assert missing.returncode == 2 and missing.stderr.strip() == f"error: sweep recipe not found: {tmp_path / 'nope.py'}"
    bad_flag = run_module("launch.sweep", str(SMOKE), "--cluster", "moon")
    assert bad_flag.returncode == 2 and bad_flag.stderr.count("\n") == 1 and "--cluster" in bad_flag.stderr
    swept = run_module("launch.sweep", str(SMOKE), "--set", "memory.ipc=3", "--dry-run")
    assert swept.returncode == 2 and "memory.ipc: that key is swept" in swept.stderr
    no_slurm = run_module("launch.sweep", str(SMOKE), "--out", str(tmp_path / "s"), env={"PATH": "/nonexistent"})
    assert no_slurm.returncode == 2 and "sbatch/srun not found" in no_slurm.stderr and no_slurm.stderr.count("\n") == 1
    no_sweep = run_module("launch.collect", str(tmp_path))
    assert no_sweep.returncode == 2 and "no sweep manifest" in no_sweep.stderr


def test_executor_parameters_map_resources():
    res = sweep_mod.merged_resources({"gpus_per_node": 4, "partition": "gpu", "mem_gb": 64},
                                     {"array_parallelism": 3, "timeout_min": 90, "slurm_extra": {"reservation": "r"}})
    params = sweep_mod.executor_parameters("slurm", res, "rtp-x")
    assert params["tasks_per_node"] == 4 and params["gpus_per_node"] == 4  # one process per GPU
    assert params["slurm_partition"] == "gpu" and params["slurm_array_parallelism"] == 3
    assert params["timeout_min"] == 90 and params["mem_gb"] == 64.0 and params["cpus_per_task"] == 1
    assert params["slurm_additional_parameters"] == {"reservation": "r"}
    assert str(ROOT) in params["slurm_setup"][0]
    local = sweep_mod.executor_parameters("local", sweep_mod.merged_resources({}, {}), "rtp-x")
    assert "cpus_per_task" not in local and local["tasks_per_node"] == 1


# ---------------------------------------------------------------------------------------------- the task
def test_task_pickles_small_and_imports_rtp_scale_lazily(tmp_path):
    code = textwrap.dedent(f"""
        import pickle, sys
        from launch.task import DistillTask
        task = DistillTask({{"run": {{"out_dir": {str(tmp_path / 'm')!r}}}, "data": {{"name": "digits"}}}})
        blob = pickle.dumps(task)
        again = pickle.loads(blob)
        assert again.config == task.config and again.name == "m", again
        heavy = [m for m in ("torch", "rtp_scale.distill", "accelerate") if m in sys.modules]
        assert not heavy, heavy
        print(len(blob))
        """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) < 2000


def test_checkpoint_requeues_the_same_task(tmp_path):
    task = DistillTask({"run": {"out_dir": str(tmp_path / "m")}}, name="m")
    (tmp_path / "m").mkdir()
    delayed = task.checkpoint()
    assert isinstance(delayed.function, DistillTask) and delayed.function.config == task.config
    assert delayed.function.name == "m" and delayed.args == () and pickle.loads(pickle.dumps(delayed.function))
    assert json.loads((tmp_path / "m" / "status.json").read_text())["state"] == "requeued"


def fake_env(**kw):
    base = dict(raw_job_id="4242", job_id="4242", hostnames=["node-a", "node-b"], num_tasks=4, num_nodes=2,
                global_rank=3, local_rank=1, node=1, cluster="slurm")
    return SimpleNamespace(**{**base, **kw})


def test_distributed_env_from_job_environment():
    env = distributed_env(fake_env())
    assert env == {"MASTER_ADDR": "node-a", "MASTER_PORT": str(20000 + 4242), "RANK": "3", "WORLD_SIZE": "4",
                   "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "NODE_RANK": "1"}


def test_multi_process_job_exports_torch_distributed_env(tmp_path, monkeypatch):
    import launch.task as task_mod
    import rtp_scale.distill

    seen = {}

    def fake_run(cfg):
        seen.update({k: task_mod.os.environ[k] for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE",
                                                        "LOCAL_RANK")}, out=cfg.run.out_dir)
        return {"accuracy": {"mean": 1.0, "std": 0.0}}

    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK"):
        monkeypatch.setenv(key, "placeholder")  # so that monkeypatch removes what the task exports
    monkeypatch.setattr(task_mod, "job_environment", lambda: fake_env(global_rank=0, local_rank=0, node=0))
    monkeypatch.setattr(rtp_scale.distill, "run", fake_run)
    out = tmp_path / "m"
    result = DistillTask({"run": {"out_dir": str(out)}, "data": {"name": "digits"}})()
    assert seen == {"MASTER_ADDR": "node-a", "MASTER_PORT": "24242", "RANK": "0", "WORLD_SIZE": "4", "LOCAL_RANK": "0",
                    "out": str(out)}
    assert result["accuracy_mean"] == 1.0
    assert json.loads((out / "status.json").read_text())["state"] == "completed"


# ---------------------------------------------------------------------------------------------- collect
def _fake_member(sweep: Path, name: str, ipc: float, seed: int, *, acc: float | None = None, error: str = "",
                 job: str = "", split: str = "test") -> dict:
    cfg = {"data": {"name": "digits", "eval_split": split}, "method": {"name": "rtp"}, "memory": {"ipc": ipc},
           "run": {"seed": seed}}
    run_dir = sweep / name
    run_dir.mkdir(parents=True)
    if acc is not None:
        (run_dir / "results.json").write_text(json.dumps({
            "accuracy": {"mean": acc, "std": 0.5}, "storage": {"ipc_equivalent": ipc * 0.99}, "total_seconds": 12.0}))
    if error:
        (run_dir / "error.json").write_text(json.dumps({"error": error}))
    return {"name": name, "grid": {"memory.ipc": ipc, "run.seed": seed}, "config": cfg, "jobs": [job] if job else []}


def test_collect_averages_completed_members_only(tmp_path):
    from submitit.core.utils import cloudpickle_dump

    sweep = tmp_path / "sw"
    members = [_fake_member(sweep, f"ipc1_s{s}", 1, s, acc=a) for s, a in enumerate([90.0, 92.0, 94.0])]
    members += [_fake_member(sweep, "ipc1_s3", 1, 3, error="UserError: cifar10: no such folder /x"),
                _fake_member(sweep, "ipc10_s0", 10, 0, acc=97.0), _fake_member(sweep, "ipc10_s1", 10, 1),
                _fake_member(sweep, "ipc10_s2", 10, 2, job="77")]
    pickled = sweep / "submitit" / "77" / "77_0_result.pkl"  # a job that died before the task could record it
    pickled.parent.mkdir(parents=True)
    cloudpickle_dump(("error", "Traceback (most recent call last):\n  ...\nModuleNotFoundError: No module x\n"), pickled)
    (sweep / "sweep.json").write_text(json.dumps({"name": "fake", "cluster": "debug", "members": members}))

    proc = run_module("launch.collect", str(sweep), "--plot", "--check")
    assert proc.returncode == 1, proc.stderr  # --check: not every member completed
    md = (sweep / "summary.md").read_text()
    assert proc.stdout == md
    assert "| digits | rtp | 1 | 3/4 | 92.00 ± 1.63 | 0.990 | 12 |" in md  # the failed seed is not averaged in
    assert "| digits | rtp | 10 | 1/3 | 97.00 ± 0.00 | 9.900 | 12 |" in md
    assert "- `ipc1_s3` (job None): UserError: cifar10: no such folder /x" in md
    assert "- `ipc10_s2` (job 77): ModuleNotFoundError: No module x" in md
    assert "- `ipc10_s1`: missing (never submitted)" in md
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [(r["budget_ipc"], r["completed"], r["members"], r["acc_mean"]) for r in rows] == [
        ("1", "3", "4", "92.0000"), ("10", "1", "3", "97.0000")]
    states = {r["member"]: (r["status"], r["error"]) for r in csv.DictReader((sweep / "members.csv").open())}
    assert states["ipc1_s3"][0] == "failed" and states["ipc10_s2"] == ("failed", "ModuleNotFoundError: No module x")
    assert (sweep / "accuracy_vs_budget.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Test accuracy in %" in md and "| test acc. (%) |" in md


def test_collect_names_the_validation_split_of_a_selection_sweep(tmp_path):
    sweep = tmp_path / "sel"
    members = [_fake_member(sweep, f"s{s}", 1, s, acc=a, split="val") for s, a in enumerate([88.0, 90.0])]
    (sweep / "sweep.json").write_text(json.dumps({"name": "sel", "cluster": "debug", "members": members}))
    md = run_module("launch.collect", str(sweep)).stdout
    assert "Validation accuracy in %" in md and "| validation acc. (%) |" in md and "test acc" not in md.lower()
    assert "| s0 | completed | digits | rtp | 1 | 0 | val | 88.00 |" in md
    assert [r["split"] for r in csv.DictReader((sweep / "members.csv").open())] == ["val", "val"]


def test_curves_put_each_evaluation_at_the_cpu_seconds_of_the_steps_before_it(tmp_path):
    """A resumed member logs steps 3-4 twice (the last row wins); a member with a step missing before an
    evaluation gives no point for it (its cost is unknown)."""
    sweep = tmp_path / "abl"
    members = [_fake_member(sweep, "T10", 1, 0, acc=80.0), _fake_member(sweep, "T20", 1, 0, acc=85.0)]
    def step(n, cpu, wall=1.0):
        return {"step": n, "meta/loss": 1.0, "sys/step_time": wall, "sys/cpu_time": cpu}
    def ev(n, acc):
        return {"step": n, "eval/acc_mean": acc, "eval/acc_std": 1.0}
    t10 = [step(1, 2.0), step(2, 2.0), ev(2, 70.0), step(3, 9.0), step(3, 2.5), step(4, 2.5), ev(4, 80.0)]
    t20 = [step(1, 4.0), ev(1, 75.0), step(3, 4.0), ev(3, 85.0)]  # step 2 never logged
    for name, rows in (("T10", t10), ("T20", t20)):
        (sweep / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 5, "me')
    (sweep / "sweep.json").write_text(json.dumps({"name": "abl", "cluster": "debug", "members": members}))

    proc = run_module("launch.collect", str(sweep), "--plot")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((sweep / "curves.csv").open()))
    assert [(r["member"], r["step"], r["cpu_seconds"], r["wall_seconds"], r["acc_mean"]) for r in rows] == [
        ("T10", "2", "4.0", "2.0", "70.0000"), ("T10", "4", "9.0", "4.0", "80.0000"), ("T20", "1", "4.0", "1.0", "75.0000")]
    assert (sweep / "accuracy_vs_cpu_seconds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _curves_csv(path: Path, rows: list[tuple]) -> Path:
    """A curves.csv as launch.collect writes it: (member, seed, step, cpu_seconds, acc_mean) per evaluation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["member,variant,seed,split,step,cpu_seconds,wall_seconds,acc_mean,acc_std"]
    lines += [f"{m},v,{seed},val,{step},{cpu},{cpu},{acc},1.0" for m, seed, step, cpu, acc in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pool_takes_each_seeds_final_evaluation_and_its_gain_over_that_seeds_start(tmp_path):
    """Seed 0 from a sweep with eval.every (its start logged by a member at step 0, its half-way point not the
    final one), seeds 1-2 from a seeds sweep with only final evaluations and a meta.steps=0 start member."""
    parent = _curves_csv(tmp_path / "a" / "curves.csv", [
        ("T50_s0", 0, 0, 0.0, 86.0), ("T50_s0", 0, 12, 150.0, 95.0), ("T50_s0", 0, 24, 300.0, 90.0),
        ("T10_s0", 0, 120, 200.0, 80.0)])
    seeds = _curves_csv(tmp_path / "b" / "curves.csv", [
        ("T50_s1", 1, 24, 320.0, 91.0), ("T50_s2", 2, 24, 340.0, 92.0), ("T10_s1", 1, 120, 220.0, 82.0),
        ("start_s1", 1, 0, 0.0, 88.0), ("start_s2", 2, 0, 0.0, 87.0)])
    out = tmp_path / "pooled"
    proc = run_module("launch.pool", str(parent), str(seeds), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = {r["cell"]: r for r in csv.DictReader((out / "pooled.csv").open())}
    assert list(rows) == ["start", "T10", "T50"]
    assert (rows["start"]["seeds"], rows["start"]["acc_mean"]) == ("0 1 2", "87.00")
    t50 = rows["T50"]  # 90, 91, 92: seed 0's final point, not its better half-way one
    assert (t50["acc_per_seed"], t50["acc_mean"], t50["acc_std_over_seeds"], t50["cpu_seconds_mean"]) == (
        "90.00 91.00 92.00", "91.00", "0.82", "320")
    assert t50["gain_over_start"] == "+4.00"  # (90-86 + 91-88 + 92-87) / 3
    assert (rows["T10"]["gain_over_start"], rows["T10"]["gain_seeds"]) == ("-6.00", "0 1")  # (80-86 + 82-88) / 2
    assert proc.stdout == (out / "pooled.md").read_text()
    assert (out / "final_accuracy_vs_cpu_seconds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pool_refuses_starts_that_disagree_and_mixed_splits_in_one_line(tmp_path):
    a = _curves_csv(tmp_path / "a.csv", [("T50_s0", 0, 0, 0.0, 86.0), ("T50_s0", 0, 24, 300.0, 90.0)])
    b = _curves_csv(tmp_path / "b.csv", [("start_s0", 0, 0, 0.0, 85.0)])  # seed 0's start, other networks
    proc = run_module("launch.pool", str(a), str(b), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "seed 0's start was evaluated twice" in proc.stderr
    c = tmp_path / "c.csv"
    c.write_text(_curves_csv(tmp_path / "c0.csv", [("T10_s1", 1, 10, 5.0, 80.0)]).read_text().replace(",val,", ",test,"))
    proc = run_module("launch.pool", str(a), str(c), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "mix evaluation splits ['test', 'val']" in proc.stderr
    assert not (tmp_path / "o").exists()


def _eval_json(path: Path, accuracy: float, *, split: str = "test", budget: float | None = 2.0,
               used: float = 1.925) -> Path:
    """An evaluation file with the keys ``rtp_scale.evaluate`` writes (a baseline's has no budget_ipc)."""
    storage = {"floats": 1232, "ipc_equivalent": used, **({} if budget is None else {"budget_ipc": budget})}
    path.write_text(json.dumps({"dataset": "digits", "eval_split": split, "storage": storage,
                                "accuracy": {"mean": accuracy, "std": 1.0}}))
    return path


def test_storage_plot_pools_each_budgets_files_over_seeds_at_the_storage_they_use(tmp_path):
    shipped = ROOT / "benchmarks/results/digits_depth2_crossover_test"  # files rtp_scale.evaluate wrote
    dd = sorted(shipped.glob("digits_ipc[23]_dd_pixels_s*.json"))
    assert len(dd) == 6
    by_budget = {}
    for path in dd:
        record = json.loads(path.read_text())
        by_budget.setdefault(record["storage"]["budget_ipc"], []).append(record["accuracy"]["mean"])
    mine = tmp_path / "mine"
    mine.mkdir()
    for seed, accuracy in enumerate((80.0, 82.0, 84.0)):
        _eval_json(mine / f"m_s{seed}.json", accuracy)
    _eval_json(mine / "m5_s0.json", 90.0, budget=5.0, used=4.85)
    full = _eval_json(tmp_path / "full.json", 96.5, budget=None, used=143.3)
    out = tmp_path / "plot"
    proc = run_module("launch.storage_plot", "--out", str(out),
                      "--series", "DD pixels", str(shipped / "digits_ipc[23]_dd_pixels_s*.json"),
                      "--series", "my memory", str(mine / "m_s*.json"), str(mine / "m5_*.json"),
                      str(mine / "m_s0.json"), "--reference", "full training set", str(full))
    assert proc.returncode == 0, proc.stderr
    rows = [(r["series"], r["budget_ipc"], r["storage_ipc"], r["files"], r["acc_mean"], r["acc_std"])
            for r in csv.DictReader((out / "accuracy_vs_storage.csv").open())]
    expected_dd = [("DD pixels", f"{b:g}", f"{b:.3f}", "3", f"{statistics.fmean(a):.2f}",
                    f"{statistics.pstdev(a):.2f}") for b, a in sorted(by_budget.items())]
    # a file named twice counts once; budgets pool apart, each at its own storage
    assert rows == expected_dd + [("my memory", "2", "1.925", "3", "82.00", "1.63"),
                                  ("my memory", "5", "4.850", "1", "90.00", "0.00")]
    assert proc.stdout == (out / "accuracy_vs_storage.md").read_text()
    assert (out / "accuracy_vs_storage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_storage_plot_refuses_in_one_line_what_one_figure_cannot_compare(tmp_path):
    val, test = _eval_json(tmp_path / "v.json", 80.0, split="val"), _eval_json(tmp_path / "t.json", 81.0)
    (tmp_path / "bad.json").write_text(json.dumps({"dataset": "digits"}))
    out = tmp_path / "o"
    for args, message in (
            (["--series", "a", str(val), "--series", "b", str(test)], "digits on test, digits on val"),
            (["--series", "a", str(test), "--reference", "full", str(val)], "digits on test, digits on val"),
            (["--series", "a", str(tmp_path / "none_*.json")], "series 'a': no file matches"),
            (["--series", "a"], "--series 'a': give a label, then at least one file"),
            (["--series", "a", str(test), "--series", "a", str(test)], "--series labels must differ"),
            (["--series", "a", str(tmp_path / "bad.json")], "bad.json: not an evaluation")):
        proc = run_module("launch.storage_plot", "--out", str(out), *args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, (args, proc.stderr)
    assert not out.exists()


def test_collect_orders_numbered_variants_by_value(tmp_path):
    sweep = tmp_path / "abl"
    members = [_fake_member(sweep, name, 1, 0, acc=80.0) for name in ("T100", "T20", "T10")]
    for m in members:
        m["grid"]["variant"] = m["name"]
    (sweep / "sweep.json").write_text(json.dumps({"name": "abl", "cluster": "debug", "members": members}))
    md = run_module("launch.collect", str(sweep)).stdout
    assert md.index("| T10 |") < md.index("| T20 |") < md.index("| T100 |")


def test_a_real_run_logs_the_cpu_seconds_its_curve_is_drawn_on(tmp_path):
    from rtp_scale.config import build_config
    from rtp_scale.distill import run

    out = tmp_path / "run"
    run(build_config(None, [*TINY, "eval.every=2", f"run.out_dir={out}"]))
    points = collect_mod.distillation_curve(out)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    cpu = [r["sys/cpu_time"] for r in rows if "meta/loss" in r]
    assert len(cpu) == 4 and all(c > 0 for c in cpu)
    assert [p.step for p in points] == [0, 2, 4]  # the starting memory, the eval.every evaluation, the final one
    assert [p.cpu_seconds for p in points] == pytest.approx([0.0, sum(cpu[:2]), sum(cpu)])
    results = json.loads((out / "results.json").read_text())
    assert points[-1].acc_mean == pytest.approx(results["accuracy"]["mean"])
    assert points[0].acc_mean == pytest.approx(results["start_accuracy"]["mean"])
    # resumed for 2 more steps: the start is not evaluated again, its logged accuracy is reported
    run(build_config(None, [*TINY, "eval.every=2", "meta.steps=6", f"run.out_dir={out}"]))
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["start_accuracy"]["mean"] == results["start_accuracy"]["mean"]
    assert [p.step for p in collect_mod.distillation_curve(out)] == [0, 2, 4, 6]


# ---------------------------------------------------------------------------------------------- running sweeps
@pytest.mark.slow  # ~1 min: a local job array of real distillations
def test_smoke_sweep_with_local_cluster(tmp_path):
    """The shipped 4-member smoke sweep, run by submitit's LocalExecutor (2 at a time): no Slurm needed."""
    out = tmp_path / "smoke"
    proc = run_module("launch.sweep", str(SMOKE), "--cluster", "local", "--array-parallelism", "2", "--out", str(out),
                      timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["cluster"] == "local" and len(manifest["members"]) == 4
    assert all(len(m["jobs"]) == 1 for m in manifest["members"])
    for member in manifest["members"]:
        results = json.loads((out / member["name"] / "results.json").read_text())
        assert results["dataset"] == "digits" and results["config"]["run"]["seed"] == member["grid"]["run.seed"]
    assert "| digits | rtp | 1 | 2/2 |" in proc.stdout and "| digits | rtp | 2 | 2/2 |" in proc.stdout
    rows = list(csv.DictReader((out / "members.csv").open()))
    assert [r["status"] for r in rows] == ["completed"] * 4
    # a member's log is a file: progress comes as plain lines (first and last at least), never as a silent job
    logs = sorted((out / "submitit").glob("*/*_log.err"))
    assert len(logs) == 4
    for log in logs:
        text = log.read_text()
        assert "\r" not in text, text[-2000:]
        assert re.search(r"^distill \d+/\d+ ", text, re.M) and re.search(r"^final eval \d+/\d+ ", text, re.M), text[-2000:]
    again = run_module("launch.sweep", str(SMOKE), "--cluster", "local", "--out", str(out))
    assert again.returncode == 2 and "--resubmit" in again.stderr  # never submits a sweep twice into one directory
    nothing = run_module("launch.sweep", "--resubmit", str(out))
    assert nothing.returncode == 0 and "nothing to resubmit" in nothing.stdout


@pytest.mark.slow  # 1-3 min: two job starts and an uninterrupted reference run
def test_preempted_task_saves_its_step_before_submitit_requeues_local_executor(tmp_path):
    """submitit's path without Slurm: the LocalExecutor's controller forwards SIGTERM to the job; the run
    finishes its outer step and saves it (no periodic checkpoint: checkpoint.every >> meta.steps), then
    submitit's own handler calls DistillTask.checkpoint() and requeues (the local controller restarts the job).
    The second attempt resumes that step, recomputes none, and ends bit-identical to the run uninterrupted."""
    import submitit
    from safetensors.torch import load_file

    from rtp_scale.config import build_config
    from rtp_scale.distill import run

    overrides = [*TINY, "meta.steps=8", "checkpoint.every=1000", "log.image_every=0"]
    member = tmp_path / "member"
    executor = submitit.LocalExecutor(folder=tmp_path / "submitit")
    executor.update_parameters(timeout_min=5)
    job = executor.submit(DistillTask(build_config(None, [*overrides, f"run.out_dir={member}"]).to_dict()))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(logged_steps(member)) < 2 and not job.done():
        time.sleep(0.05)
    assert not job.done(), "the job ended before it could be preempted: " + job.stderr()[-2000:]
    job._process.send_signal(signal.SIGTERM)  # the local controller forwards it to the task, like Slurm would
    assert job.result()["member"] == "member", job.stderr()[-2000:]
    attempts = json.loads((member / "status.json").read_text())["attempts"]
    assert [a["outcome"] for a in attempts] == ["requeued", "completed"] and attempts[1]["resumed_from_checkpoint"]
    assert logged_steps(member) == list(range(1, 9))  # every step ran exactly once over both attempts

    run(build_config(None, [*overrides, f"run.out_dir={tmp_path / 'reference'}"]))
    got, want = load_file(member / "memory.safetensors"), load_file(tmp_path / "reference" / "memory.safetensors")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_failed_member_reported_and_only_it_resubmitted_debug_cluster(tmp_path, capsys):
    """In-process (debug) sweep: a member that raises is reported failed with its error; the other completes."""
    recipe = tiny_recipe(tmp_path, grid='{"data.name": ["digits", "cifar10"]}', seeds="[0]",
                         extra=(f"data.root={tmp_path / 'no-such-data'}", "meta.steps=2"))
    out = tmp_path / "sw"
    assert sweep_mod.main([str(recipe), "--cluster", "debug", "--out", str(out)]) == 1  # a member failed
    text = capsys.readouterr()
    assert "1 member(s) did not complete" in text.err
    report = collect_mod.collect(out)
    states = {s.name: s for s in report["statuses"]}
    assert states["digits_s0"].state == "completed" and states["cifar10_s0"].state == "failed"
    assert states["cifar10_s0"].error.startswith("UserError: cifar10") and "no-such-data" in states["cifar10_s0"].error
    assert not (out / "cifar10_s0" / "results.json").exists()
    assert "## Failed members" in report["markdown"] and states["cifar10_s0"].error in report["markdown"]
    assert "| cifar10 | rtp | 1 | 0/1 |  |" in report["markdown"]

    assert sweep_mod.main(["--resubmit", str(out), "--dry-run"]) == 0
    assert "resubmitting 1 member(s): cifar10_s0 (failed)" in capsys.readouterr().out
    assert sweep_mod.main(["--resubmit", str(out)]) == 1  # it fails again, alone
    manifest = json.loads((out / "sweep.json").read_text())
    jobs = {m["name"]: m["jobs"] for m in manifest["members"]}
    assert len(jobs["digits_s0"]) == 1 and len(jobs["cifar10_s0"]) == 2
    assert manifest["submissions"][-1]["members"] == ["cifar10_s0"]
    assert manifest["members"][1]["previous_errors"][0]["error"].startswith("UserError: cifar10")


def test_ipc10_memory_members_are_the_parent_cells_dd_and_frepo_memories(tmp_path):
    parent = {m["name"]: m["config"] for m in shipped_members(tmp_path, "compare_default_protocol_mnist5k_ipc10")}
    memories = {m["name"]: m["config"] for m in shipped_members(tmp_path, "compare_default_protocol_mnist5k_ipc10_memories")}
    assert set(memories) == {"mnist5k_ipc10_dd_memories_s0", "mnist5k_ipc10_frepo_memories_s0"}
    for name, config in memories.items():  # the same config but for the run directory
        assert config["memory"]["kind"] == "addressable" and config["method"]["name"] in ("dd", "frepo"), name
        assert {**config, "run": {**config["run"], "out_dir": None}} == {**parent[name], "run": {**parent[name]["run"],
                                                                                              "out_dir": None}}, name


def test_ipc10_memory_seeds_repeat_the_dd_and_frepo_memories_at_seeds_1_and_2(tmp_path):
    parent = {m["name"]: m["config"] for m in shipped_members(tmp_path, "compare_default_protocol_mnist5k_ipc10_memories")}
    seeds = {m["name"]: m["config"] for m in shipped_members(tmp_path, "compare_default_protocol_mnist5k_ipc10_memory_seeds")}
    assert set(seeds) == {f"mnist5k_ipc10_{m}_memories_s{s}" for m in ("dd", "frepo") for s in (1, 2)}
    for name, config in seeds.items():  # the seed-0 member's config but for the seed and the run directory
        twin = parent[name[:-1] + "0"]
        assert config["run"]["seed"] == int(name[-1]), name
        assert {k: v for k, v in config.items() if k != "run"} == {k: v for k, v in twin.items() if k != "run"}, name


def test_ipc10_pixel_seeds_repeat_the_parent_cells_pixel_members_at_seeds_0_1_and_2(tmp_path):
    parent = {m["name"]: m["config"] for m in shipped_members(tmp_path, "compare_default_protocol_mnist5k_ipc10")}
    seeds = {m["name"]: m["config"] for m in shipped_members(tmp_path, "compare_default_protocol_mnist5k_ipc10_pixel_seeds")}
    variants = ("start_pixels", "rtp_pixels", "rtp_pixels_lr1e-2", "dd_pixels", "frepo_pixels")
    assert set(seeds) == {f"mnist5k_ipc10_{v}_s{s}" for v in variants for s in (0, 1, 2)}
    for name, config in seeds.items():  # the seed-0 member's config but for the seed and the run directory
        twin = parent[name[:-1] + "0"]
        assert config["memory"]["kind"] == "pixel" and config["run"]["seed"] == int(name[-1]), name
        assert {k: v for k, v in config.items() if k != "run"} == {k: v for k, v in twin.items() if k != "run"}, name


def test_ipc10_eval_augment_members_are_the_unaugmented_starts_but_for_evaluations_augmentation(tmp_path):
    members = {m["name"]: m["config"] for m in shipped_members(tmp_path, "select_mnist5k_ipc10_eval_augment")}
    horizon = {m["name"]: m["config"] for m in shipped_members(tmp_path, "select_mnist5k_ipc10_horizon_seeds")}
    compare = {m["name"]: m["config"] for m in shipped_members(tmp_path, "compare_default_protocol_mnist5k_ipc10")}
    # the rows they are compared with: the PCA start (seed 1's member, reseeded) and random real images
    twins = {"memory_start": horizon["pca_no_distill_s1"], "pixel_start": compare["mnist5k_ipc10_start_pixels_s0"]}
    augments = {"geometry": "crop_scale_rotate", "dsa": "color_crop_cutout_scale_rotate"}
    assert set(members) == {f"{start}_{aug}_s0" for start in twins for aug in augments}
    for name, config in members.items():
        start, aug = name.rsplit("_", 2)[0], name.rsplit("_", 2)[1]
        twin = twins[start]
        assert config["meta"]["steps"] == 0 == twin["meta"]["steps"] and config["run"]["seed"] == 0, name
        # 3 networks: the first 3 of the pixel start's 5 (networks are seeded by seed and index)
        assert config["eval"] == {**twin["eval"], "augment": augments[aug], "num_nets": 3}, name
        assert config["data"] == twin["data"] and config["model"] == twin["model"], name
        unread = {"num_bases", "downsample"} if start == "pixel_start" else set()  # a pixel set has no bases
        assert ({k: v for k, v in config["memory"].items() if k not in unread}
                == {k: v for k, v in twin["memory"].items() if k not in unread}), name


def test_ipc10_eval_augment_recipe_members_are_the_recipe_but_for_evaluations_augmentation(tmp_path):
    members = {m["name"]: m["config"] for m in shipped_members(tmp_path, "select_mnist5k_ipc10_eval_augment_recipe")}
    recipe = {m["name"]: m["config"] for m in shipped_members(tmp_path, "select_mnist5k_ipc10_horizon_seeds")}
    assert set(members) == {f"T1200_lr5e-4_dsa_s{seed}" for seed in (0, 1, 2)}
    twin = recipe["T1200_lr5e-4_s1"]
    for name, config in members.items():
        assert config["run"]["seed"] == int(name[-1]), name
        assert config["eval"] == {**twin["eval"], "augment": "color_crop_cutout_scale_rotate"}, name
        assert {k: v for k, v in config.items() if k not in ("run", "eval")} == \
            {k: v for k, v in twin.items() if k not in ("run", "eval")}, name
