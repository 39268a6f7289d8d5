"""FRePo: the KRR meta-gradient equals autograd of a direct float64 reference, the model pool follows its config
and resumes exactly, LAMB/cosine follow optax, and a short run on digits lowers the meta-loss."""
from __future__ import annotations

import io
import json

import pytest
import torch
import torch.nn.functional as F

from rtp_scale.config import build_config
from rtp_scale.distill import run
from rtp_scale.errors import UserError
from rtp_scale.memory import AddressableMemory, PixelMemory
from rtp_scale.methods import build_method
from rtp_scale.methods.frepo import FrepoMethod
from rtp_scale.methods.krr import krr_predict
from rtp_scale.models import ConvNet, init_params, load_params_
from rtp_scale.optim import Lamb, cosine_lr
from rtp_scale.seeding import make_generator
from tests.conftest import TINY

C = 3
FREPO_RUN = ["method.name=frepo", "memory.kind=pixel", "memory.learn_labels=true", "meta.optimizer=lamb",
             "meta.lr=0.01", "meta.schedule=cosine", "meta.grad_clip=0", "frepo.pool_size=2", "frepo.max_age=4",
             "data.real_per_class=32", "model.width=16"]


def _setup(memory_kind: str, *, overrides=(), dtype=torch.float64):
    cfg = build_config(None, ["run.seed=3", "frepo.pool_size=2", "frepo.reg=1e-3", "memory.coeff_l2=0.5",
                              *(["memory.kind=pixel", "memory.learn_labels=true"] if memory_kind == "pixel" else []),
                              "method.name=frepo", *overrides])
    net = ConvNet(channels=1, num_classes=C, image_size=(8, 8), width=4, depth=2, feature_width_multiplier=2).to(dtype)
    gen = torch.Generator().manual_seed(0)
    if memory_kind == "pixel":
        memory = PixelMemory(num_classes=C, image_shape=(1, 8, 8), images_per_class=2, generator=gen,
                             learn_labels=True).to(dtype)
        with torch.no_grad():  # labels away from one-hot so the margin term has a gradient
            memory.labels.add_(0.05 * torch.randn(memory.labels.shape, generator=gen, dtype=dtype))
    else:
        memory = AddressableMemory(num_classes=C, image_shape=(1, 8, 8), num_bases=4, images_per_class=3,
                                   downsample=2, generator=gen).to(dtype)
    real_x = torch.randn(7, 1, 8, 8, generator=gen, dtype=dtype)
    real_y = torch.randint(0, C, (7,), generator=gen)
    return cfg, net, memory, real_x, real_y


def _reference_grads(cfg, net, memory, real_x, real_y, params):
    """The FRePo objective written out directly: explicit solve, no Cholesky, no functional_call."""
    ref_net = ConvNet(channels=1, num_classes=C, image_size=(8, 8), width=4, depth=2,
                      feature_width_multiplier=2).to(torch.float64)
    load_params_(ref_net, params)
    x, _ = memory.class_images()
    y_s = memory.targets() - 1.0 / C
    fs, ft = ref_net.features(x), ref_net.features(real_x)
    k_ss = fs @ fs.T
    n = k_ss.shape[0]
    lam = cfg.frepo.reg * torch.trace(k_ss) / n
    pred = (ft @ fs.T) @ torch.linalg.solve(k_ss + lam * torch.eye(n, dtype=torch.float64), y_s)
    target = F.one_hot(real_y, C).double() - 1.0 / C
    loss = 0.5 * ((pred - target) ** 2).sum(1).mean()
    if memory.targets().requires_grad:
        top2 = y_s.topk(2, dim=1).values
        loss = loss - cfg.frepo.label_margin * torch.clamp(top2[:, 0] - top2[:, 1], max=1.0 / C).mean()
    loss = loss + cfg.memory.coeff_l2 * memory.coefficient_l2()
    wrt = [p for p in memory.parameters() if p.requires_grad]
    return loss, torch.autograd.grad(loss, wrt)


@pytest.mark.parametrize("memory_kind", ["pixel", "addressable"])
def test_krr_meta_gradient_equals_float64_reference(memory_kind):
    cfg, net, memory, real_x, real_y = _setup(memory_kind)
    method = build_method(cfg, net, augmenter=None)
    assert isinstance(method, FrepoMethod)
    scale = 0.7
    metrics, lr_grad = method.meta_gradient(memory, real_x, real_y, lrs=torch.zeros(1), generator=None, scale=scale)
    assert lr_grad is None
    params = method.params[method.current]
    loss, ref = _reference_grads(cfg, net, memory, real_x, real_y, params)
    got = [p.grad for p in memory.parameters() if p.requires_grad]
    assert len(got) == len(ref) == 2  # images + labels, or bases + addressing
    for g, r in zip(got, ref):
        assert float(r.norm()) > 0
        assert float((g - scale * r).norm() / (scale * r).norm()) < 1e-10
    reported = metrics["meta/loss"] + metrics["meta/regulariser"] + \
        cfg.frepo.label_margin * metrics["meta/label_margin"]
    assert reported == pytest.approx(float(loss.detach()), rel=1e-12)


def test_krr_solve_survives_rank_deficient_and_zero_features():
    gen = torch.Generator().manual_seed(0)
    fs, ys, ft = torch.randn(12, 3, generator=gen), torch.randn(12, 2, generator=gen), torch.randn(5, 3, generator=gen)
    pred, ridge = krr_predict(fs, ys, ft, reg=1e-6)  # rank 3 Gram matrix of size 12
    assert pred.dtype == torch.float64 and torch.isfinite(pred).all() and ridge > 0
    pred0, ridge0 = krr_predict(torch.zeros(4, 3), ys[:4], ft, reg=1e-6)  # trace 0: only the jitter saves it
    assert torch.equal(pred0, torch.zeros(5, 2, dtype=torch.float64)) and ridge0 > 0


def _memory_like(net_dtype=torch.float32):
    return PixelMemory(num_classes=C, image_shape=(1, 8, 8), images_per_class=2,
                       generator=torch.Generator().manual_seed(1), learn_labels=True).to(net_dtype)


def test_pool_ages_and_resets_follow_config():
    cfg = build_config(None, ["run.seed=5", "method.name=frepo", "memory.kind=pixel", "memory.learn_labels=true",
                              "frepo.pool_size=3", "frepo.max_age=4", "frepo.train_steps=2", "frepo.train_batch=4"])
    net = ConvNet(channels=1, num_classes=C, image_size=(8, 8), width=4, depth=2)
    method = FrepoMethod(cfg, net, None)
    memory = _memory_like()
    assert method.ages == [0, 1, 2]  # staggered by max_age // pool_size, as FRePo's code
    ages, resets = [0, 1, 2], [0, 0, 0]
    for slot in range(3):
        expect = init_params(net, make_generator(5, "pool", slot, 0))
        assert all(torch.equal(method.params[slot][k], expect[k]) for k in expect)
    seen_reset = seen_train = False
    for step in range(12):
        slot = int(torch.randint(3, (1,), generator=make_generator(5, "pool-pick", step)))
        assert method.current == slot
        before = [{k: v.clone() for k, v in p.items()} for p in method.params]
        method.end_step(memory, done=step + 1)
        if ages[slot] >= 4:
            ages[slot], resets[slot] = 0, resets[slot] + 1
            expect = init_params(net, make_generator(5, "pool", slot, resets[slot]))
            assert all(torch.equal(method.params[slot][k], expect[k]) for k in expect)
            seen_reset = True
        else:
            ages[slot] += 2
            assert any(not torch.equal(method.params[slot][k], before[slot][k]) for k in before[slot])
            seen_train = True
        assert method.ages == ages and method.resets == resets
        for other in set(range(3)) - {slot}:  # only the step's model changes
            assert all(torch.equal(method.params[other][k], before[other][k]) for k in before[other])
    assert seen_reset and seen_train


def test_pool_state_dict_round_trips_through_weights_only_load():
    cfg = build_config(None, ["method.name=frepo", "frepo.pool_size=2", "frepo.max_age=3"])
    net = ConvNet(channels=1, num_classes=C, image_size=(8, 8), width=4, depth=2)
    memory = _memory_like()
    a = FrepoMethod(cfg, net, None)
    for step in range(3):
        a.end_step(memory, done=step + 1)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = FrepoMethod(cfg, net, None)
    b.load_state_dict(torch.load(buffer, weights_only=True))
    for step in range(3, 7):
        a.end_step(memory, done=step + 1)
        b.end_step(memory, done=step + 1)
    assert (a.ages, a.resets, a.current) == (b.ages, b.resets, b.current)
    for pa, pb in zip(a.params, b.params):
        assert all(torch.equal(pa[k], pb[k]) for k in pa)
    small = FrepoMethod(build_config(None, ["method.name=frepo", "frepo.pool_size=1"]), net, None)
    with pytest.raises(UserError, match="frepo.pool_size=1"):
        small.load_state_dict(a.state_dict())


def test_lamb_and_cosine_follow_optax():
    p = torch.tensor([3.0, -4.0], requires_grad=True)  # ||p|| = 5
    opt = Lamb([p], lr=0.1)
    p.grad = torch.tensor([0.5, 0.1])
    opt.step()
    # first step: m_hat = g, v_hat = g^2, u = g / (|g| + eps) ~ sign(g); trust ratio ||p|| / ||u||
    u = torch.tensor([0.5, 0.1]) / (torch.tensor([0.5, 0.1]) + 1e-6)
    expect = torch.tensor([3.0, -4.0]) - 0.1 * (5.0 / u.norm()) * u
    assert torch.allclose(p.detach(), expect, atol=1e-6)
    assert cosine_lr(1.0, 0, 10, 0.1) == 1.0 and cosine_lr(1.0, 10, 10, 0.1) == pytest.approx(0.1)
    assert cosine_lr(1.0, 5, 10, 0.1) == pytest.approx(0.55)


def test_evaluation_projects_learned_labels_onto_the_simplex():
    """FRePo's labels are regression targets; the CE protocol clips negatives (CE with them is unbounded)."""
    from rtp_scale.eval.protocol import simplex_targets

    learned = torch.tensor([[1.1, -0.1, 0.1], [0.0, 1.0, 0.0], [-1.0, -2.0, -0.5]])
    out = simplex_targets(learned)
    assert torch.allclose(out, torch.tensor([[1.1 / 1.2, 0.0, 0.1 / 1.2], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    assert torch.equal(simplex_targets(torch.eye(3)), torch.eye(3))  # one-hot and mixed targets pass unchanged


@pytest.mark.parametrize("overrides, message", [
    (["memory.learn_labels=true"], "memory.learn_labels=true needs memory.kind=pixel"),
    (["memory.kind=pixel", "memory.learn_labels=true"], "only used by method.name=frepo"),
    (["method.name=frepo", "inner.learn_lr=true"], "inner.learn_lr=true is not used by method.name=frepo"),
    (["method.name=frepo", "frepo.pool_size=0"], "frepo.pool_size=0 must be > 0"),
    (["frepo.train_optimizer=lamb"], "frepo.train_optimizer='lamb' is not allowed"),
    (["meta.schedule=linear"], "meta.schedule='linear' is not allowed"),
    (["model.width_multiplier=0"], "model.width_multiplier=0 must be > 0"),
])
def test_config_rejects_bad_frepo_combinations(overrides, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_config(None, overrides)


def _probe_loss(cfg, memory) -> float:
    """FRePo's meta-loss of ``memory``, averaged over a fresh pool's models, on every training image."""
    from rtp_scale.eval import build_net
    from rtp_scale.runtime import prepare_data

    data = prepare_data(cfg.data)
    info = data.info
    net = build_net(cfg.model, channels=info.channels, num_classes=info.num_classes,
                    image_size=(info.height, info.width))
    method = FrepoMethod(cfg, net, None)
    losses = []
    with torch.no_grad():
        for slot in range(cfg.frepo.pool_size):
            method.current = slot
            losses.append(method.meta_loss(memory, data.train_x, data.train_y)[1]["meta/loss"])
    return sum(losses) / len(losses)


@pytest.mark.parametrize("memory", ["pixel", "addressable"])
def test_frepo_distills_digits_and_lowers_meta_loss(tmp_path, memory):
    from rtp_scale.builders import build_run_memory
    from rtp_scale.memory.artifact import load_artifact
    from rtp_scale.runtime import prepare_data

    extra = FREPO_RUN if memory == "pixel" else [o for o in FREPO_RUN if "memory." not in o]
    out = tmp_path / memory
    cfg = build_config(None, [*TINY, *extra, "meta.steps=8", "checkpoint.every=0", "log.image_every=0",
                              f"run.out_dir={out}"])
    results = run(cfg)
    assert results["method"] == "frepo" and (out / "memory.safetensors").exists()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in rows if "meta/loss" in r]) == 8
    before = _probe_loss(cfg, build_run_memory(cfg, prepare_data(cfg.data)))
    after = _probe_loss(cfg, load_artifact(out / "memory.safetensors")[0])
    assert after < 0.95 * before, (before, after)
    if memory == "pixel":  # learned labels are stored, and counted
        assert results["storage"]["ipc_equivalent"] > 1.0


def test_frepo_crashed_run_resumes_to_the_same_memory(tmp_path, monkeypatch):
    """The pool (weights, Adam moments, ages, next model) and the cosine lr survive a crash exactly."""
    from safetensors.torch import load_file

    base = [*TINY, *FREPO_RUN, "meta.steps=5", "eval.num_nets=1", "log.image_every=0", "log.tensorboard=false"]
    run(build_config(None, [*base, f"run.out_dir={tmp_path / 'straight'}"]))

    calls, original = [], FrepoMethod.meta_gradient

    def crash_on_third(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FrepoMethod, "meta_gradient", crash_on_third)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(build_config(None, [*base, f"run.out_dir={tmp_path / 'resumed'}"]))
    monkeypatch.setattr(FrepoMethod, "meta_gradient", original)
    assert not (tmp_path / "resumed" / "results.json").exists()
    run(build_config(None, [*base, f"run.out_dir={tmp_path / 'resumed'}"]))  # resumes from step 2
    a = load_file(str(tmp_path / "straight" / "memory.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "memory.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_shipped_recipes_validate_and_comparison_cells_share_the_protocol(tmp_path):
    import importlib.util

    from launch import sweep as sweep_mod
    from rtp_scale.config import load_config
    from tests.conftest import ROOT

    paths = sorted((ROOT / "configs").glob("frepo/*.toml")) + sorted((ROOT / "configs").glob("dd/*.toml")) + \
        sorted((ROOT / "configs").glob("compare/*.toml"))
    assert len(paths) >= 9 + 2 + 20
    for path in paths:
        cfg = load_config(path)
        assert cfg.method.name in ("frepo", "dd", "rtp"), path
    members = sweep_mod.expand(sweep_mod.load_sweep(ROOT / "configs/sweeps/compare_mnist5k.py"), tmp_path / "sweep")
    assert len({m["name"] for m in members}) == 20
    spec = importlib.util.spec_from_file_location("run_table", ROOT / "configs/compare/run_table.py")
    run_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_table)
    for ds in run_table.DATASETS:
        run_table.check_shared_protocol(ds)  # exits with a message if a cell's data/model/eval differ


def test_wider_convnet_option_reaches_the_evaluation_network():
    from rtp_scale.eval import build_net

    cfg = build_config(None, ["model.width=4", "model.depth=3", "model.width_multiplier=2"])
    net = build_net(cfg.model, channels=1, num_classes=10, image_size=(28, 28))
    assert [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)] == [4, 8, 16]
