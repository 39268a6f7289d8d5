"""Data-driven memory starts (memory.init=pca / real_project): principal bases and per-slot projections."""
from __future__ import annotations

import pytest
import torch

from rtp_scale.builders import build_run_memory
from rtp_scale.config import build_config
from rtp_scale.errors import UserError
from rtp_scale.memory import AddressableMemory
from rtp_scale.memory.init import principal_bases
from rtp_scale.runtime import prepare_data
from tests.conftest import TINY


def _subspace_images(n: int, dims: int, generator: torch.Generator) -> torch.Tensor:
    """n 1x6x6 images lying exactly in a random affine subspace of dimension ``dims``."""
    mean = torch.randn(36, generator=generator, dtype=torch.float64)
    directions = torch.randn(dims, 36, generator=generator, dtype=torch.float64)
    coeffs = torch.randn(n, dims, generator=generator, dtype=torch.float64)
    return (mean + coeffs @ directions).reshape(n, 1, 6, 6)


def test_principal_bases_reconstruct_an_affine_subspace_exactly():
    gen = torch.Generator().manual_seed(0)
    images = _subspace_images(40, 4, gen)
    bases = principal_bases(images, num_bases=5, downsample=1)
    assert bases.shape == (5, 1, 6, 6)
    assert torch.allclose(bases.pow(2).mean(dim=(1, 2, 3)), torch.ones(5, dtype=torch.float64))
    memory = AddressableMemory(num_classes=2, image_shape=(1, 6, 6), num_bases=5, images_per_class=3).double()
    with torch.no_grad():
        memory.bases.copy_(bases)
    slots = images[:6].reshape(2, 3, 1, 6, 6)
    memory.fit_rows([0, 1], slots)
    recalled, _ = memory.class_images()
    assert (recalled - slots.reshape(6, 1, 6, 6)).abs().max() < 1e-10
    # one base fewer cannot hold the 4-dimensional subspace plus its offset
    memory4 = AddressableMemory(num_classes=2, image_shape=(1, 6, 6), num_bases=4, images_per_class=3).double()
    with torch.no_grad():
        memory4.bases.copy_(principal_bases(images, num_bases=4, downsample=1))
    memory4.fit_rows([0, 1], slots)
    assert (memory4.class_images()[0] - slots.reshape(6, 1, 6, 6)).abs().max() > 1e-3


def test_principal_bases_refuse_more_components_than_the_data_spans():
    images = _subspace_images(40, 3, torch.Generator().manual_seed(1))
    with pytest.raises(UserError, match="span only 3"):
        principal_bases(images, num_bases=6, downsample=1)


def _mean_within_class_cosine(memory) -> float:
    x, _ = memory.class_images()
    x = x.detach().reshape(memory.num_classes, memory.images_per_class, -1)
    x = x / x.norm(dim=2, keepdim=True)
    cos = x @ x.transpose(1, 2)
    r = memory.images_per_class
    return float((cos.sum() - cos.diagonal(dim1=1, dim2=2).sum()) / (memory.num_classes * r * (r - 1)))


def test_projected_starts_give_distinct_slots_and_pca_reconstructs_best():
    data = prepare_data(build_config(None, TINY).data)
    one_base_per_class = [*TINY, "memory.ipc=2", "memory.num_bases=10", "memory.downsample=1"]  # 6 slots a class
    memories = {init: build_run_memory(build_config(None, [*one_base_per_class, f"memory.init={init}"]), data)
                for init in ("real", "real_project", "pca")}
    # one-hot addressing on one real image per class: every class's slots are near-copies of its base
    assert _mean_within_class_cosine(memories["real"]) > 0.95
    for init in ("real_project", "pca"):
        assert _mean_within_class_cosine(memories[init]) < 0.9, init
    # principal components are the best K-dimensional span: lower reconstruction error of real images
    fresh = data.train_x[-60:]
    errors = {}
    for init in ("real_project", "pca"):
        basis = memories[init].bases.detach().reshape(10, -1).T.double()
        target = fresh.reshape(60, -1).T.double()
        solution = torch.linalg.lstsq(basis, target).solution
        errors[init] = float((basis @ solution - target).norm() / target.norm())
    assert errors["pca"] < 0.95 * errors["real_project"], errors


def test_pca_start_is_reproducible_and_pixel_memories_refuse_it():
    data = prepare_data(build_config(None, TINY).data)
    cfg = build_config(None, [*TINY, "memory.init=pca"])
    a, b = build_run_memory(cfg, data), build_run_memory(cfg, data)
    assert torch.equal(a.bases, b.bases) and torch.equal(a.addressing, b.addressing)
    with pytest.raises(UserError, match="pixel memories start"):
        build_config(None, [*TINY, "memory.kind=pixel", "memory.init=pca"])


def test_recall_diversity_counts_copies_and_distinct_images():
    from rtp_scale.memory.diagnostics import recall_diversity

    gen = torch.Generator().manual_seed(0)
    one = torch.randn(1, 1, 8, 8, generator=gen)
    copies = torch.cat([one, 2 * one, 3 * one])  # three recalls of class 0, all multiples of one image
    distinct = torch.eye(64)[:3].reshape(3, 1, 8, 8)  # three orthogonal unit images of class 1
    stats = recall_diversity(torch.cat([copies, distinct]), torch.tensor([0, 0, 0, 1, 1, 1]), 2)
    assert stats["memory/within_class_cosine"] == pytest.approx((1.0 + 0.0) / 2)
    assert stats["memory/effective_recalls"] == pytest.approx((1.0 + 3.0) / 2)


def test_distill_logs_recall_diversity_and_outer_lr(tmp_path):
    import json

    from rtp_scale.distill import run

    out = tmp_path / "run"
    run(build_config(None, [*TINY, "memory.init=pca", "meta.schedule=cosine", "meta.lr=0.002", f"run.out_dir={out}"]))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if "meta/loss" in line]
    assert len(rows) == 4
    lrs = [row["meta/lr"] for row in rows]
    assert lrs[0] == pytest.approx(0.002) and lrs == sorted(lrs, reverse=True) and lrs[-1] < lrs[0]
    for row in rows:
        assert 1.0 < row["memory/effective_recalls"] <= 6.0  # 9 slots per class, but only K=6 bases to mix
        assert -1.0 <= row["memory/within_class_cosine"] < 0.99  # projected slots of different images
