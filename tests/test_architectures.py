"""The model zoo (MLP, LeNet, AlexNet, VGG-11, ResNet-18, with instance or batch norm) and out-of-package models:
reference shapes, stateless functional calls, batch-statistics semantics, config validation, distillation with
every network, a float64 meta-gradient through batch norm, and the cross-architecture table."""
from __future__ import annotations

import inspect
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from rtp_scale import distill, evaluate
from rtp_scale.config import ModelConfig, build_config
from rtp_scale.errors import UserError
from rtp_scale.eval import build_net
from rtp_scale.models import (ConvNet, build_model, check_batch_split, init_params, load_params_, model_names,
                              resolved_options, uses_batch_statistics)
from rtp_scale.models.catalog import CATALOG, resolve_builder
from rtp_scale.unroll import ChunkedLoss, UnrollPolicy
from tests.conftest import TINY
from tests.test_unroll import N_CLASSES, Problem, max_rel_err

# small widths so that every network runs in a unit test; lenet has a fixed width
SMALL = {"convnet": {"width": 4, "depth": 2}, "mlp": {"width": 8}, "lenet": {}, "alexnet": {"width": 8},
         "vgg11": {"width": 4}, "vgg11_bn": {"width": 4}, "resnet18": {"width": 4}, "resnet18_bn": {"width": 4}}
BATCH_NORM = {"vgg11_bn", "resnet18_bn"}
SHAPES = [(1, 28, 28), (3, 32, 32), (1, 8, 8)]
PLUGIN = "tests.test_architectures:PluginNet"


class PluginNet(nn.Module):
    """A network defined outside the package: conv3x3(width) -> instance norm -> ReLU -> global pool -> linear."""

    def __init__(self, *, channels: int, num_classes: int, image_size: tuple[int, int], width: int = 6) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, width, 3, padding=1)
        self.norm = nn.GroupNorm(width, width)
        self.num_features = width
        self.classifier = nn.Linear(width, num_classes)

    def features(self, x_NCHW: Tensor) -> Tensor:
        return F.relu(self.norm(self.conv(x_NCHW))).mean(dim=(2, 3))

    def forward(self, x_NCHW: Tensor) -> Tensor:
        return self.classifier(self.features(x_NCHW))


def running_stats_net(*, channels: int, num_classes: int, image_size: tuple[int, int]) -> nn.Module:
    """torch's default batch norm keeps running statistics: refused."""
    return nn.Sequential(nn.Conv2d(channels, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(num_classes))


def no_image_size_net(*, channels: int, num_classes: int) -> nn.Module:
    return nn.Linear(channels, num_classes)


def _small(name: str, shape=(1, 8, 8), num_classes: int = 10) -> nn.Module:
    c, h, w = shape
    return build_model(name, channels=c, num_classes=num_classes, image_size=(h, w), **SMALL[name])


def test_every_catalog_model_has_a_small_setting():
    assert sorted(SMALL) == model_names()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", sorted(SMALL))
def test_shapes_statelessness_and_functional_call(name, shape):
    model = _small(name, shape)
    params = init_params(model, torch.Generator().manual_seed(0))
    load_params_(model, params)
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3])
    assert list(model.buffers()) == []  # nothing a functional call could mutate
    assert model.features(x).shape == (4, model.num_features)  # FRePo regresses on these
    leaf = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    out_f = functional_call(model, leaf, (x,))
    out_m = model(x)
    assert out_f.shape == (4, 10) and torch.equal(out_f, out_m)
    g_f = torch.autograd.grad(F.cross_entropy(out_f, y), list(leaf.values()))
    g_m = torch.autograd.grad(F.cross_entropy(out_m, y), [dict(model.named_parameters())[k] for k in leaf])
    assert all(torch.equal(a, b) for a, b in zip(g_f, g_m))


# Parameter counts of the reference networks (DC codebase networks.py) at full width, by hand:
# lenet 3x32: conv 3*6*25+6, conv 6*16*25+16, fc 400*120+120, 120*84+84, 84*10+10
# alexnet 3x32: convs 3*128*25+128, 128*192*25+192, 192*256*9+256, 256*192*9+192, 192*192*9+192, fc 3072*10+10
REFERENCE_PARAMS = {
    ("mlp", (1, 28, 28)): 784 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10,
    ("lenet", (1, 28, 28)): 6 * 25 + 6 + 6 * 16 * 25 + 16 + 400 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10,
    ("lenet", (3, 32, 32)): 3 * 6 * 25 + 6 + 6 * 16 * 25 + 16 + 400 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10,
    ("alexnet", (3, 32, 32)): 1_872_202,
    ("alexnet", (1, 28, 28)): 1_872_202 - 2 * 128 * 25,
    ("vgg11", (3, 32, 32)): 9_231_114,  # VGG-11 for CIFAR-10 (conv biases, norm affines, 512 -> 10)
    ("resnet18", (3, 32, 32)): 11_173_962,  # the standard CIFAR-10 ResNet-18
    ("resnet18_bn", (3, 32, 32)): 11_173_962,
}


@pytest.mark.parametrize("name,shape", list(REFERENCE_PARAMS), ids=lambda v: str(v))
def test_full_width_parameter_counts_match_the_reference(name, shape):
    c, h, w = shape
    model = build_model(name, channels=c, num_classes=10, image_size=(h, w))
    assert sum(p.numel() for p in model.parameters()) == REFERENCE_PARAMS[(name, shape)]
    assert model(torch.zeros(2, c, h, w)).shape == (2, 10)


def test_reference_feature_shapes():
    """The reference's adaptations: 28 px continues as 32 px, so LeNet ends at 16x5x5 and AlexNet at 192x4x4."""
    assert build_model("lenet", channels=1, num_classes=10, image_size=(28, 28)).feature_shape == (16, 5, 5)
    assert build_model("alexnet", channels=1, num_classes=10, image_size=(28, 28)).feature_shape == (192, 4, 4)
    assert build_model("vgg11", channels=1, num_classes=10, image_size=(28, 28)).feature_shape == (512, 1, 1)
    assert build_model("lenet", channels=1, num_classes=10, image_size=(8, 8)).feature_shape == (16, 2, 2)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_batch_norm_uses_the_batch_statistics_in_eval_too(name):
    """Documented behaviour: a batch-norm network's output for one image depends on the batch it is in, in eval
    mode as well (no running statistics); every other network's does not."""
    model = _small(name).eval()
    load_params_(model, init_params(model, torch.Generator().manual_seed(2)))
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        in_batch, in_pair = model(x)[:2], model(x[:2])
    assert uses_batch_statistics(model) == (name in BATCH_NORM)
    if name in BATCH_NORM:
        assert (in_batch - in_pair).abs().max() > 1e-3
    else:
        torch.testing.assert_close(in_batch, in_pair, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_init_is_reproducible_and_leaves_the_global_rng_alone(name):
    model = _small(name)
    rng_before = torch.random.get_rng_state()
    a = init_params(model, torch.Generator().manual_seed(7))
    b = init_params(model, torch.Generator().manual_seed(7))
    c = init_params(model, torch.Generator().manual_seed(8))
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert list(a) == [k for k, _ in model.named_parameters()]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])


def test_default_config_builds_the_previous_default_convnet_bit_for_bit():
    """model.width=0 / depth=0 / norm=default mean 'the model's own': for convnet the old defaults 32/3/instance."""
    net = build_net(ModelConfig(), channels=1, num_classes=10, image_size=(28, 28))
    old = ConvNet(channels=1, num_classes=10, image_size=(28, 28), width=32, depth=3, norm="instance", pooling="avg")
    a = init_params(net, torch.Generator().manual_seed(4))
    b = init_params(old, torch.Generator().manual_seed(4))
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert resolved_options(ModelConfig()) == {"width": 32, "depth": 3, "norm": "instance", "pooling": "avg",
                                               "width_multiplier": 1}
    assert resolved_options(ModelConfig(name="resnet18")) == {"width": 64}
    assert resolved_options(ModelConfig(name="lenet")) == {}


def test_catalog_defaults_are_the_builders_and_fill_the_config():
    for name, entry in CATALOG.items():
        params = inspect.signature(resolve_builder(name)).parameters
        assert set(entry.options) == {k for k in params if k not in ("channels", "num_classes", "image_size")}
        assert entry.defaults == {k: params[k].default for k in entry.options}
    # the default section reads as it always has (saved configs and resumed runs compare equal)
    assert ModelConfig() == ModelConfig(name="convnet", width=32, depth=3, norm="instance", pooling="avg",
                                        width_multiplier=1)
    assert ModelConfig(name="resnet18").width == 64 and ModelConfig(name="lenet").width == 0


def test_width_reaches_the_models_that_take_it():
    alexnet = build_net(ModelConfig(name="alexnet", width=32), channels=3, num_classes=10, image_size=(32, 32))
    assert [m.out_channels for m in alexnet.layers if isinstance(m, nn.Conv2d)] == [32, 48, 64, 48, 48]
    resnet = build_net(ModelConfig(name="resnet18", width=16), channels=3, num_classes=10, image_size=(32, 32))
    assert resnet.stem[0].out_channels == 16 and resnet.num_features == 128
    vgg = build_net(ModelConfig(name="vgg11_bn", width=8), channels=3, num_classes=10, image_size=(32, 32))
    assert vgg.num_features == 64 and uses_batch_statistics(vgg)
    mlp = build_net(ModelConfig(name="mlp", width=32), channels=1, num_classes=10, image_size=(8, 8))
    assert mlp.num_features == 32


@pytest.mark.parametrize("overrides,words", [
    (["model.name=resnet"], ["unknown model 'resnet'", "resnet18_bn", "vgg11", "package.module:Builder"]),
    (["model.name=lenet", "model.width=8"], ["model.width=8 does not apply to model.name=lenet", "no model.*"]),
    (["model.name=resnet18", "model.depth=4"], ["model.depth=4 does not apply", "it takes model.width"]),
    (["model.name=resnet18_bn", "model.norm=none"], ["model.norm='none' does not apply to model.name=resnet18_bn"]),
    (["model.name=mlp", "model.pooling=max"], ["model.pooling='max' does not apply"]),
    (["model.norm=layer"], ["model.norm='layer' is not allowed"]),
    ([f"model.name={PLUGIN}", "model.depth=2"], ["model.depth=2 does not apply", "it takes model.width"]),
    (["model.name=tests.test_architectures:NoSuchNet"], ["has no attribute 'NoSuchNet'"]),
    (["model.name=tests.test_architectures:no_image_size_net"], ["must accept the keywords", "image_size"]),
])
def test_bad_model_settings_are_one_line_errors(overrides, words):
    with pytest.raises(UserError) as err:
        build_config(None, overrides)
    assert "\n" not in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_running_statistics_and_unknown_parameters_are_refused():
    with pytest.raises(UserError, match="tracks running statistics.*track_running_stats=False"):
        build_model("tests.test_architectures:running_stats_net", channels=1, num_classes=10, image_size=(8, 8))
    embed = nn.Sequential(nn.Embedding(4, 2))
    with pytest.raises(UserError, match="no init rule for the parameters of Embedding"):
        init_params(embed, torch.Generator().manual_seed(0))


def test_batch_splits_are_refused_for_batch_norm_networks_only():
    bn, inorm = _small("resnet18_bn"), _small("resnet18")
    check_batch_split(inorm, "resnet18", real_batch=640, outer_chunk=128, inner_shards=2)
    check_batch_split(bn, "resnet18_bn", real_batch=640, outer_chunk=0, inner_shards=1)
    check_batch_split(bn, "resnet18_bn", real_batch=640, outer_chunk=640, inner_shards=1)
    with pytest.raises(UserError, match="unroll.outer_chunk=128 would normalise each part of the 640-image"):
        check_batch_split(bn, "resnet18_bn", real_batch=640, outer_chunk=128, inner_shards=1)
    with pytest.raises(UserError, match="dist.inner_shards=2"):
        check_batch_split(bn, "resnet18_bn", real_batch=640, outer_chunk=0, inner_shards=2)


# ------------------------------------------------------------------------------------------ meta-gradients


class NormProblem(Problem):
    """tests/test_unroll.py's tiny distillation problem with a zoo network (6x6 images, 3 classes) inside."""

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        super().__init__(dtype)
        self.model = build_model(name, channels=1, num_classes=N_CLASSES, image_size=(6, 6), width=2).to(dtype)
        self.params0 = {k: v.to(dtype) for k, v in init_params(self.model, torch.Generator().manual_seed(5)).items()}


@pytest.mark.parametrize("name", ["resnet18_bn", "vgg11_bn"])
def test_float64_meta_grad_through_batch_norm_equals_plain_autograd(name):
    """The unroll differentiates through the minibatch statistics exactly (segmented = full = plain BPTT)."""
    problem = NormProblem(name, torch.float64)
    ref_loss, ref_grads = problem.reference()
    assert all(g.abs().sum() > 0 for g in ref_grads)
    for policy in (UnrollPolicy(mode="full"), UnrollPolicy(mode="segmented", segment=5)):
        res = problem.run(policy)
        assert max_rel_err(res, ref_grads) < 1e-10
        assert res.outer_loss == pytest.approx(ref_loss, rel=1e-12)


def test_chunked_real_batch_changes_a_batch_norm_loss():
    """Why check_batch_split exists: for a batch-norm network the loss of the real batch in parts is another loss."""
    problem = NormProblem("resnet18_bn", torch.float64)
    whole = problem.outer_loss(problem.params0)

    def part(rows):
        return lambda p: F.cross_entropy(functional_call(problem.model, p, (problem.x_real[rows],)),
                                         problem.y_real[rows], reduction="sum") / len(problem.y_real)

    chunked = ChunkedLoss((part(slice(0, 5)), part(slice(5, 10))))(problem.params0)
    assert abs(float(chunked - whole)) > 1e-6
    inorm = NormProblem("resnet18", torch.float64)
    inorm_chunked = ChunkedLoss(tuple(
        (lambda rows: lambda p: F.cross_entropy(functional_call(inorm.model, p, (inorm.x_real[rows],)),
                                                inorm.y_real[rows], reduction="sum") / 10)(r)
        for r in (slice(0, 5), slice(5, 10))))(inorm.params0)
    assert float(inorm_chunked) == pytest.approx(float(inorm.outer_loss(inorm.params0)), rel=1e-12)


# ------------------------------------------------------------------------------------------ end to end

TINY_NO_MODEL = [o for o in TINY if not o.startswith("model.")]
QUICK = ["inner.steps=3", "meta.steps=2", "eval.epochs=1", "log.tensorboard=false", "checkpoint.every=0"]


def _distill(out, name: str, options: dict) -> dict:
    opts = [f"model.{k}={v}" for k, v in options.items()]
    rc = distill.main(["--set", *TINY_NO_MODEL, *QUICK, f"model.name={name}", *opts, f"run.out_dir={out}"])
    assert rc == 0
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_distill_runs_with_every_network(tmp_path, name):
    results = _distill(tmp_path / name, name, SMALL[name])
    assert results["config"]["model"]["name"] == name
    assert math.isfinite(results["final_meta_loss"])
    assert len(results["accuracy"]["accuracies"]) == 1


def test_distill_refuses_a_chunked_real_batch_with_batch_norm(tmp_path):
    with pytest.raises(UserError, match="unroll.outer_chunk=16 would normalise each part of the 80-image"):
        distill.main(["--set", *TINY_NO_MODEL, *QUICK, "model.name=resnet18_bn", "model.width=4",
                      "unroll.outer_chunk=16", f"run.out_dir={tmp_path}"])


def test_out_of_package_model_through_distill_evaluate_and_cross_arch(tmp_path, capsys):
    results = _distill(tmp_path / "run", PLUGIN, {"width": 5})
    assert results["config"]["model"] == {"name": PLUGIN, "width": 5, "depth": 0, "norm": "default",
                                          "pooling": "default", "width_multiplier": 1, "fused": True}
    artifact = str(tmp_path / "run" / "memory.safetensors")
    # evaluate with the recorded plugin network: the run's own accuracy, bit for bit
    assert evaluate.main(["--artifact", artifact, "--no-scores", "--out", str(tmp_path / "ev")]) == 0
    record = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert record["accuracy"]["accuracies"] == results["accuracy"]["accuracies"]
    assert record["config"]["model"]["name"] == PLUGIN
    # the cross-architecture table: the plugin keeps its recorded width; lenet is its own
    assert evaluate.main(["--artifact", artifact, "--models", f"lenet,{PLUGIN}", "--out", str(tmp_path / "xa")]) == 0
    table = json.loads((tmp_path / "xa" / "cross_arch.json").read_text())
    assert [row["model"] for row in table["rows"]] == ["lenet", PLUGIN]
    assert [row["options"] for row in table["rows"]] == [{}, {"width": 5}]
    assert table["rows"][0]["norm"] == "none" and table["rows"][1]["norm"] == "see its builder"
    assert table["rows"][1]["distilled"]["accuracies"] == results["accuracy"]["accuracies"]
    assert table["random_baseline"]["ipc"] == 1
    assert "| lenet |" in (tmp_path / "xa" / "cross_arch.md").read_text() and "| lenet |" in capsys.readouterr().out


def test_cross_arch_rows_equal_single_evaluations(tmp_path):
    """Each row is exactly `--model NAME` on the set, and its baseline exactly `--baseline random` under NAME."""
    _distill(tmp_path / "run", "convnet", SMALL["convnet"])
    artifact = str(tmp_path / "run" / "memory.safetensors")
    assert evaluate.main(["--artifact", artifact, "--models", "convnet,mlp", "--set", "model.width=8",
                          "--out", str(tmp_path / "xa")]) == 0
    rows = {row["model"]: row for row in json.loads((tmp_path / "xa" / "cross_arch.json").read_text())["rows"]}
    # the artifact's network keeps its recorded depth; --set model.width applies to both networks
    assert rows["convnet"]["options"]["width"] == 8 and rows["convnet"]["options"]["depth"] == 2
    assert rows["mlp"]["options"] == {"width": 8}
    assert evaluate.main(["--artifact", artifact, "--model", "mlp", "--set", "model.width=8", "--no-scores",
                          "--out", str(tmp_path / "mlp")]) == 0
    single = json.loads((tmp_path / "mlp" / "eval.json").read_text())
    assert single["config"]["model"]["name"] == "mlp"
    assert single["accuracy"]["accuracies"] == rows["mlp"]["distilled"]["accuracies"]
    assert evaluate.main(["--baseline", "random", "--ipc", "1", "--model", "mlp", "--set", *TINY_NO_MODEL,
                          "eval.epochs=1", "model.width=8", "--out", str(tmp_path / "rand")]) == 0
    random = json.loads((tmp_path / "rand" / "eval.json").read_text())
    assert random["accuracy"]["accuracies"] == rows["mlp"]["random"]["accuracies"]


@pytest.mark.parametrize("args,needle", [
    (["--baseline", "random", "--ipc", "1", "--models", "lenet,mlp"], "--models evaluates a distilled set"),
    (["--baseline", "random", "--ipc", "1", "--model", "lenet", "--set", "model.name=mlp"], "name the network"),
    (["--baseline", "random", "--ipc", "1", "--model", "lenet", "--set", "model.width=8"], "does not apply"),
    (["--baseline", "random", "--ipc", "1", "--model", "resnet"], "unknown model 'resnet'"),
])
def test_evaluate_model_flags_bad_input(args, needle):
    with pytest.raises(UserError, match=needle):
        evaluate.main(args)


def test_models_list_syntax():
    from rtp_scale.eval.cross_arch import parse_model_list

    assert parse_model_list("lenet, mlp") == [("lenet", []), ("mlp", [])]
    assert parse_model_list(f"convnet[width=64,depth=4],{PLUGIN}[width=3]") == [
        ("convnet", ["model.width=64", "model.depth=4"]), (PLUGIN, ["model.width=3"])]
    for bad, needle in (("lenet,,mlp", "empty or malformed"), ("lenet,mlp,lenet", "more than once"),
                        ("resnet18[width=16", "unbalanced"), ("resnet18]", "unbalanced"),
                        ("resnet18[width=1]x", "malformed"), ("mlp[name=lenet]", "before the brackets")):
        with pytest.raises(UserError, match=needle):
            parse_model_list(bad)


def test_bracketed_options_apply_to_their_network_only(tmp_path):
    _distill(tmp_path / "run", "convnet", SMALL["convnet"])
    artifact = str(tmp_path / "run" / "memory.safetensors")
    assert evaluate.main(["--artifact", artifact, "--models", "convnet,mlp[width=6],lenet", "--set", "eval.num_nets=1",
                          "--out", str(tmp_path / "xa")]) == 0
    rows = json.loads((tmp_path / "xa" / "cross_arch.json").read_text())["rows"]
    assert [row["options"].get("width") for row in rows] == [4, 6, None]
    with pytest.raises(UserError, match="model.width=6 does not apply to model.name=lenet"):
        evaluate.main(["--artifact", artifact, "--models", "convnet,lenet[width=6]", "--out", str(tmp_path / "x2")])
