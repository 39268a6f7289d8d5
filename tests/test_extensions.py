"""Extension points: a method and a dataset defined outside the package run through distill, resume and a sweep.

The out-of-package code lives in tests/plugin_method.py and tests/plugin_dataset.py and is named by
``module:attr`` specs, exactly as a researcher's own module would be.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import DIGITS_TEST_IMAGES, ROOT, TINY, assert_accuracies_recompute, run_module
from rtp_scale.config import build_config
from rtp_scale.data import load_dataset
from rtp_scale.distill import run
from rtp_scale.errors import UserError
from rtp_scale.methods import method_class
from tests.plugin_method import OneStepMethod

METHOD = "tests.plugin_method:OneStepMethod"
DATASET = "tests.plugin_dataset:load_bars"


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _without(overrides: list[str], *keys: str) -> list[str]:
    return [o for o in overrides if o.partition("=")[0] not in keys]


# ---------------------------------------------------------------------------------------------- methods
def test_builtin_names_and_specs_resolve_to_classes():
    from rtp_scale.methods.dd import DDMethod
    from rtp_scale.methods.frepo import FrepoMethod
    from rtp_scale.methods.rtp import RtpMethod

    assert [method_class(n) for n in ("rtp", "frepo", "dd")] == [RtpMethod, FrepoMethod, DDMethod]
    assert method_class(METHOD) is OneStepMethod
    assert build_config(None, [f"method.name={METHOD}"]).method.name == METHOD


@pytest.mark.parametrize("name, message", [
    ("onestep", "method.name='onestep' is not allowed; choose one of: rtp, frepo, dd or a package.module:Class"),
    ("tests.plugin_method:Nope", "method 'tests.plugin_method:Nope': module 'tests.plugin_method' has no attribute"),
    ("tests.no_such_module:X", "method 'tests.no_such_module:X': cannot import module 'tests.no_such_module'"),
    ("tests.plugin_dataset:CLASSES", "method 'tests.plugin_dataset:CLASSES' is not a class with a meta_gradient"),
])
def test_bad_method_names_fail_at_parse_time(name, message):
    with pytest.raises(UserError) as err:
        build_config(None, [f"method.name={name}"])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_method_spec_on_the_command_line_is_one_line():
    proc = run_module("rtp_scale.distill", "--set", *TINY, "method.name=tests.plugin_method:Nope",
                      "run.out_dir=/nonexistent/x")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: method 'tests.plugin_method:Nope': module "
                                                "'tests.plugin_method' has no attribute 'Nope'"]


def test_learned_labels_need_a_method_that_says_it_uses_them(tmp_path, monkeypatch):
    overrides = ["memory.kind=pixel", "memory.learn_labels=true"]
    with pytest.raises(UserError, match="memory.learn_labels=true is only used by method.name=frepo"):
        build_config(None, [*overrides, f"method.name={METHOD}"])
    (tmp_path / "labelled_method.py").write_text(
        "from tests.plugin_method import OneStepMethod\n\n"
        "class SoftOneStep(OneStepMethod):\n    uses_learned_labels = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert build_config(None, [*overrides, "method.name=labelled_method:SoftOneStep"]).memory.learn_labels


def test_plugin_method_distills_and_resumes_bit_identically(tmp_path):
    base = [*TINY, f"method.name={METHOD}"]  # TensorBoard on: it also writes metrics.jsonl
    straight = run(build_config(None, [*base, f"run.out_dir={tmp_path / 'straight'}"]))
    assert straight["method"] == METHOD
    assert_accuracies_recompute(straight["accuracy"]["accuracies"], straight["accuracy"]["mean"],
                                test_images=DIGITS_TEST_IMAGES)
    rows = _rows(tmp_path / "straight")
    assert [r["step"] for r in rows if "meta/loss" in r] == [1, 2, 3, 4]
    assert rows[0]["meta/grad_norm"] > 0  # the method's gradient reached the memory

    out = tmp_path / "resumed"
    run(build_config(None, [*_without(base, "meta.steps"), "meta.steps=2", f"run.out_dir={out}"]))
    run(build_config(None, [*base, f"run.out_dir={out}"]))  # extends the finished 2-step run to 4 steps
    a, b = load_file(str(tmp_path / "straight" / "memory.safetensors")), load_file(str(out / "memory.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the method's own state (a running mean of its loss) came back from the checkpoint
    ema = {r["step"]: r["plugin/loss_ema"] for r in _rows(out) if "plugin/loss_ema" in r}
    assert ema == {r["step"]: r["plugin/loss_ema"] for r in rows if "plugin/loss_ema" in r}


def _plugin_sweep(tmp_path: Path) -> Path:
    overrides = [*_without(TINY, "meta.steps"), "meta.steps=2", "log.tensorboard=false", "log.image_every=0"]
    recipe = tmp_path / "plugin.py"
    recipe.write_text(f'NAME = "plugin"\nGRID = {{"method.name": ["rtp", "{METHOD}"]}}\nSEEDS = [0]\n'
                      f'OVERRIDES = {overrides!r}\nRESOURCES = {{"timeout_min": 5, "array_parallelism": 2}}\n')
    return recipe


def _check_plugin_sweep(out: Path, table: str) -> None:
    manifest = json.loads((out / "sweep.json").read_text())
    members = {m["config"]["method"]["name"]: m["name"] for m in manifest["members"]}
    assert set(members) == {"rtp", METHOD}
    assert json.loads((out / members[METHOD] / "results.json").read_text())["method"] == METHOD
    assert f"| digits | {METHOD} | 1 | 1/1 |" in table and "| digits | rtp | 1 | 1/1 |" in table


def test_plugin_method_runs_in_a_debug_sweep(tmp_path, capsys):
    """In this process (--cluster debug): the sweep validates, runs and tabulates a plugin method like a built-in."""
    from launch import sweep as sweep_mod

    out = tmp_path / "sweep"
    assert sweep_mod.main([str(_plugin_sweep(tmp_path)), "--cluster", "debug", "--out", str(out)]) == 0
    _check_plugin_sweep(out, capsys.readouterr().out)


@pytest.mark.slow  # about 1 min on a loaded 2-core CPU: two submitit job processes, each importing torch
def test_plugin_method_runs_in_a_local_sweep(tmp_path):
    """In job processes (--cluster local): the spec is resolved again where the member runs."""
    out = tmp_path / "sweep"
    proc = run_module("launch.sweep", str(_plugin_sweep(tmp_path)), "--cluster", "local", "--array-parallelism", "2",
                      "--out", str(out), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _check_plugin_sweep(out, proc.stdout)


def test_bad_plugin_method_in_a_sweep_fails_before_submitting(tmp_path):
    recipe = tmp_path / "bad.py"
    recipe.write_text(f'GRID = {{"method.name": ["rtp", "tests.plugin_method:Typo"]}}\nOVERRIDES = {TINY!r}\n')
    from launch import sweep as sweep_mod

    with pytest.raises(UserError, match="has no attribute 'Typo'"):
        sweep_mod.main([str(recipe), "--cluster", "local", "--out", str(tmp_path / "sw")])
    assert not (tmp_path / "sw").exists()


# ---------------------------------------------------------------------------------------------- datasets
def test_plugin_dataset_distills_and_evaluates(tmp_path):
    out = tmp_path / "run"
    results = run(build_config(None, [*_without(TINY, "data.name"), f"data.name={DATASET}", "log.tensorboard=false",
                                      f"run.out_dir={out}"]))
    assert results["dataset"] == DATASET
    data = load_dataset(DATASET)
    memory = load_file(str(out / "memory.safetensors"))
    assert any(t.shape[-3:] == (1, 8, 8) for t in memory.values())  # the plugin's image shape reached the memory
    assert data.info.num_classes == 10 and data.info.class_names[0] == "bar0"
    # the artifact names the spec: evaluating it loads the plugin dataset again
    proc = run_module("rtp_scale.evaluate", "--artifact", str(out / "memory.safetensors"), "--no-scores",
                      "--set", "eval.num_nets=1", "eval.epochs=2", "run.device=cpu", "log.progress=false",
                      "--out", str(tmp_path / "eval"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["dataset"] == DATASET


@pytest.mark.parametrize("name, message", [
    ("bars", "unknown dataset 'bars'; choose one of: mnist5k"),
    ("tests.plugin_dataset:nope", "dataset 'tests.plugin_dataset:nope': module 'tests.plugin_dataset' has no"),
    ("tests.plugin_dataset:CLASSES", "dataset 'tests.plugin_dataset:CLASSES' is not callable"),
    ("tests.plugin_dataset:not_a_split", "returned dict, not a rtp_scale.data.split.SplitDataset"),
])
def test_bad_dataset_names_are_user_errors(name, message):
    with pytest.raises(UserError) as err:
        load_dataset(name)
    assert message in str(err.value) and "\n" not in str(err.value)


def _data_imports(path: Path) -> set[str]:
    """The rtp_scale.data modules ``path`` imports anywhere (module level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("rtp_scale.data.")}


def test_registry_sits_above_the_loaders():
    """No import cycle: the split types import no loader, and no loader imports the registry."""
    data_dir = ROOT / "rtp_scale" / "data"
    assert _data_imports(data_dir / "split.py") == set()
    for loader in ("offline", "torchvision_sets", "imagefolder"):
        assert "rtp_scale.data.registry" not in _data_imports(data_dir / f"{loader}.py"), loader
        assert f"rtp_scale.data.{loader}" in _data_imports(data_dir / "registry.py")
