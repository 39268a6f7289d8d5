"""Config parsing: defaults, recipes, overrides, and every rejection path."""
import json

import pytest

from rtp_scale.config import Config, build_config, load_config, parse_override
from rtp_scale.errors import UserError


def test_defaults_validate_and_roundtrip_through_json(tmp_path):
    cfg = load_config()
    assert isinstance(cfg, Config) and cfg.method.name == "rtp" and cfg.inner.momentum == 0.9
    cfg.save(tmp_path / "config.json")
    again = load_config(tmp_path / "config.json")
    assert again.to_dict() == cfg.to_dict()


def test_recipe_then_overrides_with_type_coercion(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[data]\nname = "digits"\n[inner]\nsteps = 20\nlr = 1\n[unroll]\nmode = "full"\n')
    cfg = load_config(recipe, ["inner.steps=30", "inner.learn_lr=true", "meta.lr=0.5", "run.out_dir=x"])
    assert cfg.data.name == "digits" and cfg.inner.steps == 30 and cfg.inner.learn_lr is True
    assert cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float) and cfg.meta.lr == 0.5 and cfg.unroll.mode == "full"


@pytest.mark.parametrize("overrides, needle", [
    (["nosuch.key=1"], "unknown config section 'nosuch'"),
    (["inner.nosuch=1"], "unknown config key 'inner.nosuch'"),
    (["inner.steps=ten"], "inner.steps='ten' is not a valid int"),
    (["inner.learn_lr=maybe"], "inner.learn_lr='maybe' is not a valid bool"),
    (["inner.steps"], "must look like section.key=value"),
    (["steps=3"], "must look like section.key=value"),
    (["inner.steps=0"], "inner.steps=0 must be > 0"),
    (["memory.ipc=-1"], "memory.ipc=-1.0 must be > 0"),
    (["inner.momentum=1.0"], "inner.momentum=1.0 must be in [0, 1)"),
    (["memory.kind=bananas"], "memory.kind='bananas' is not allowed"),
    (["unroll.mode=magic"], "unroll.mode='magic' is not allowed"),
    (["data.augment=flip_blur"], "unknown augmentation op 'blur'"),
    (["unroll.segment=61"], "unroll.segment=61 is larger than inner.steps=60"),
    (["unroll.mode=truncated"], "unroll.window must be > 0"),
    (["unroll.mode=truncated", "unroll.window=500"], "unroll.window=500 is larger than inner.steps"),
    (["unroll.window=5"], "only used with unroll.mode=truncated"),
    (["unroll.mode=full", "unroll.offload=true"], "unroll.offload needs"),
    (["memory.kind=pixel", "memory.ipc=1.5"], "whole number of images"),
    (["run.device=tpu"], "run.device='tpu' is not allowed"),
    (["eval.protocol=dc"], "eval.protocol='dc' is not allowed"),
])
def test_rejections_name_the_key(overrides, needle):
    with pytest.raises(UserError) as err:
        build_config(None, overrides)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_recipe_rejections(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[inner\nsteps=")
    with pytest.raises(UserError, match="cannot parse config file"):
        load_config(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[inner]\nsteps = \"many\"\n")
    with pytest.raises(UserError, match="inner.steps='many' is not a valid int"):
        load_config(wrong)
    flat = tmp_path / "flat.toml"
    flat.write_text("steps = 3\n")
    with pytest.raises(UserError, match="must be a table"):
        load_config(flat)
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"inner": {"stepz": 3}}))
    with pytest.raises(UserError, match="unknown config key 'inner.stepz'"):
        load_config(unknown)


def test_parse_override_keeps_equals_in_value():
    assert parse_override("run.out_dir=a=b") == ("run", "out_dir", "a=b")


def test_every_shipped_recipe_parses():
    from pathlib import Path

    recipes = sorted(Path(__file__).resolve().parents[1].glob("configs/**/*.toml"))
    assert recipes, "configs/ holds no recipes"
    for recipe in recipes:
        cfg = load_config(recipe)
        assert cfg.recipe.hardware, f"{recipe} does not state its hardware"


def test_eval_protocol_fills_only_the_keys_not_given(tmp_path):
    default = build_config(None, []).eval
    paper = build_config(None, ["eval.protocol=rtp_paper"]).eval
    assert (paper.num_nets, paper.batch_size, paper.weight_decay, paper.schedule, paper.epochs, paper.lr) == (
        10, 640, 0.0, "constant", 300, 0.01)
    assert (default.num_nets, default.batch_size, default.weight_decay, default.schedule) == (5, 256, 5e-4, "step")
    recipe = tmp_path / "r.toml"
    recipe.write_text('[eval]\nprotocol = "rtp_paper"\nbatch_size = 128\n')
    mixed = load_config(recipe, ["eval.num_nets=3"]).eval
    assert (mixed.batch_size, mixed.num_nets, mixed.weight_decay) == (128, 3, 0.0)  # given keys win
    # a saved config lists every key, so it reads back as what ran
    cfg = load_config(recipe)
    cfg.save(tmp_path / "config.json")
    assert load_config(tmp_path / "config.json").to_dict() == cfg.to_dict()


def test_eval_protocol_asked_for_an_artifact_replaces_its_recorded_evaluation():
    from rtp_scale.memory.artifact import config_for_artifact

    recorded = build_config(None, ["eval.num_nets=2", "eval.batch_size=100"]).to_dict()
    meta = {"evaluation": {section: recorded[section] for section in ("data", "model", "eval", "run")}}
    cfg, overridden, complete = config_for_artifact("a.safetensors", meta, recipe=None,
                                                    overrides=["eval.protocol=rtp_paper", "eval.epochs=50"])
    assert complete and (cfg.eval.num_nets, cfg.eval.batch_size, cfg.eval.weight_decay, cfg.eval.epochs) == (
        10, 640, 0.0, 50)
    assert {key for key, _, _ in overridden} >= {"eval.num_nets", "eval.batch_size", "eval.protocol"}
    same, overridden, _ = config_for_artifact("a.safetensors", meta, recipe=None, overrides=[])
    assert (same.eval.num_nets, same.eval.batch_size) == (2, 100) and overridden == []


def test_an_artifact_from_before_eval_micro_batch_is_evaluated_on_whole_minibatches_as_its_run_was():
    from rtp_scale.memory.artifact import config_for_artifact

    recorded = build_config(None, []).to_dict()
    new = {"evaluation": {section: recorded[section] for section in ("data", "model", "eval", "run")}}
    old = {"evaluation": {**new["evaluation"], "eval": {k: v for k, v in recorded["eval"].items()
                                                        if k != "micro_batch"}}}
    assert config_for_artifact("a.safetensors", new, recipe=None, overrides=[])[0].eval.micro_batch == 32
    cfg, overridden, _ = config_for_artifact("a.safetensors", old, recipe=None, overrides=[])
    assert cfg.eval.micro_batch == 0 and overridden == []
    assert config_for_artifact("a.safetensors", old, recipe=None,
                               overrides=["eval.micro_batch=16"])[0].eval.micro_batch == 16


def test_memory_init_auto_is_pca_for_memories_and_real_for_pixels_and_is_recorded_resolved(tmp_path):
    assert build_config(None, []).memory.init == "pca"
    assert build_config(None, ["memory.kind=pixel"]).memory.init == "real"
    assert build_config(None, ["memory.init=real"]).memory.init == "real"
    cfg = build_config(None, ["memory.init=auto"])
    cfg.save(tmp_path / "config.json")
    assert json.loads((tmp_path / "config.json").read_text())["memory"]["init"] == "pca"


def test_pixel_downsample_is_its_own_key_and_allows_fractional_budgets():
    # memory.downsample (addressable) does not touch pixel runs: old pixel configs record downsample=2
    assert build_config(None, ["memory.kind=pixel", "memory.downsample=2"]).memory.pixel_downsample == 1
    assert build_config(None, ["memory.kind=pixel", "memory.ipc=0.5", "memory.pixel_downsample=2"]).memory.ipc == 0.5
    with pytest.raises(UserError, match="whole number of images"):
        build_config(None, ["memory.kind=pixel", "memory.ipc=0.5", "memory.downsample=2"])
