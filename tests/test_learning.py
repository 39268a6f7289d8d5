"""RtP actually learns: a few dozen outer steps on digits lower the meta-loss on held-out images and raise the
held-out accuracy of fresh networks above that of the initial memory (data.eval_split=val: the test split is never
looked at). Breaking the inner labels or the sign of the objective makes both fail (checked by hand)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rtp_scale.builders import build_run_memory
from rtp_scale.config import build_config
from rtp_scale.distill import run
from rtp_scale.eval import build_net
from rtp_scale.memory.artifact import load_artifact
from rtp_scale.models import init_params, load_params_
from rtp_scale.runtime import prepare_data
from rtp_scale.seeding import make_generator
from tests.conftest import TINY

# from the weak 'real' start (copies of K images), where learning shows most clearly
LEARNS = [*TINY, "data.val_per_class=30", "data.eval_split=val", "model.width=16", "memory.ipc=2",
          "memory.num_bases=10", "memory.init=real", "inner.batch_per_class=10", "inner.steps=20", "inner.lr=0.05", "meta.steps=30", "meta.lr=0.03", "eval.num_nets=3",
          "eval.epochs=60", "log.image_every=0", "log.tensorboard=false", "checkpoint.every=0"]


def _held_out_meta_loss(cfg, memory, data, draws: int = 4) -> float:
    """Cross-entropy on every held-out image of fresh networks after ``inner.steps`` plain ``torch.optim.SGD`` steps
    on the memory's recalled images (full batch): the inner/outer objective, computed apart from the method's code."""
    info = data.info
    x, y = (t.detach() for t in memory.class_images())
    losses = []
    for j in range(draws):
        net = build_net(cfg.model, channels=info.channels, num_classes=info.num_classes,
                        image_size=(info.height, info.width))
        load_params_(net, init_params(net, make_generator(cfg.run.seed, "held-out probe", j)))
        opt = torch.optim.SGD(net.parameters(), lr=cfg.inner.lr, momentum=cfg.inner.momentum)
        for _ in range(cfg.inner.steps):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
        with torch.no_grad():
            losses.append(float(F.cross_entropy(net(data.test_x), data.test_y)))
    return sum(losses) / len(losses)


def test_rtp_lowers_held_out_meta_loss_and_raises_held_out_accuracy(tmp_path):
    start = run(build_config(None, [*LEARNS, "meta.steps=0", f"run.out_dir={tmp_path / 'start'}"]))
    cfg = build_config(None, [*LEARNS, f"run.out_dir={tmp_path / 'distilled'}"])
    distilled = run(cfg)

    data = prepare_data(cfg.data)
    before = _held_out_meta_loss(cfg, build_run_memory(cfg, data), data)
    after = _held_out_meta_loss(cfg, load_artifact(tmp_path / "distilled" / "memory.safetensors")[0], data)
    assert after < 0.85 * before, (before, after)
    gain = distilled["accuracy"]["mean"] - start["accuracy"]["mean"]
    assert gain > 8.0, (start["accuracy"], distilled["accuracy"])
