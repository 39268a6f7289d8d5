"""Flexible queries: soft / mixed label vectors, coarse label spaces, mixed-query training, the recall CLI."""
from __future__ import annotations

import json

import pytest
import torch

from rtp_scale.config import build_config
from rtp_scale.errors import UserError
from rtp_scale.memory import AddressableMemory, PixelMemory
from rtp_scale.memory.artifact import save_artifact
from rtp_scale.memory.queries import (CIFAR100_FINE_TO_COARSE, CIFAR100_SUPERCLASSES, coarse_matrix, coarse_to_fine,
                                      draw_mixed_queries, load_coarse_mapping, parse_query)
from tests.conftest import run_module


def _addr(dtype=torch.float64) -> AddressableMemory:
    gen = torch.Generator().manual_seed(3)
    return AddressableMemory(num_classes=10, image_shape=(1, 8, 8), num_bases=6, images_per_class=4, downsample=2,
                             generator=gen).to(dtype)


@pytest.mark.parametrize("kind", ["addressable", "pixel"])
def test_recall_is_linear_in_the_query(kind):
    memory = _addr() if kind == "addressable" else PixelMemory(
        num_classes=10, image_shape=(1, 8, 8), images_per_class=3, generator=torch.Generator().manual_seed(1)).double()
    gen = torch.Generator().manual_seed(0)
    q1, q2 = torch.randn(5, 10, generator=gen, dtype=torch.float64), torch.rand(5, 10, generator=gen, dtype=torch.float64)
    for a, b in [(0.3, 0.7), (2.0, -1.5), (1.0, 0.0)]:
        with torch.no_grad():
            lhs = memory.recall(a * q1 + b * q2)
            rhs = a * memory.recall(q1) + b * memory.recall(q2)
        torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


def test_soft_query_is_the_blend_of_class_recalls():
    memory = _addr()
    q = parse_query("3:0.5,5:0.5", 10)
    assert q.tolist() == [0, 0, 0, 0.5, 0, 0.5, 0, 0, 0, 0]
    with torch.no_grad():
        blend = memory.recall(q[None].double())[0]
        eye = memory.recall(torch.eye(10, dtype=torch.float64))
    torch.testing.assert_close(blend, 0.5 * eye[3] + 0.5 * eye[5])


def test_parse_query_forms_and_errors():
    names = ("zero", "one", "two")
    assert parse_query("1", 3).tolist() == [0, 1, 0]
    assert parse_query("two:0.25, zero:0.75", 3, names).tolist() == [0.75, 0, 0.25]
    assert parse_query("1:0.5,1:0.5", 3).tolist() == [0, 1, 0]  # repeated labels add up
    for bad in ("3", "x", "1:abc", "", "1:0.5,,2", "1:nan"):
        with pytest.raises(UserError):
            parse_query(bad, 3, names)


def test_cifar100_superclass_table():
    assert len(CIFAR100_FINE_TO_COARSE) == 100 and len(CIFAR100_SUPERCLASSES) == 20
    assert torch.bincount(torch.tensor(CIFAR100_FINE_TO_COARSE), minlength=20).tolist() == [5] * 20
    # spot checks against the dataset's own coarse labels: apple -> fruit_and_vegetables, beaver -> aquatic_mammals
    assert CIFAR100_SUPERCLASSES[CIFAR100_FINE_TO_COARSE[0]] == "fruit_and_vegetables"
    assert CIFAR100_SUPERCLASSES[CIFAR100_FINE_TO_COARSE[4]] == "aquatic_mammals"
    matrix, names = load_coarse_mapping("cifar100", 100)
    assert matrix.shape == (20, 100) and names == CIFAR100_SUPERCLASSES
    torch.testing.assert_close(matrix.sum(1), torch.ones(20))


def test_coarse_query_recalls_the_mean_of_its_members():
    memory = _addr()
    matrix = coarse_matrix([c % 2 for c in range(10)]).double()  # parity: even / odd
    z = torch.tensor([[1.0, 0.0], [0.3, 0.7]], dtype=torch.float64)
    with torch.no_grad():
        got = memory.recall(coarse_to_fine(z, matrix))
        eye = memory.recall(torch.eye(10, dtype=torch.float64))
    torch.testing.assert_close(got[0], eye[0::2].mean(0))
    torch.testing.assert_close(got[1], 0.3 * eye[0::2].mean(0) + 0.7 * eye[1::2].mean(0))


def test_coarse_mapping_files(tmp_path):
    as_list = tmp_path / "list.json"
    as_list.write_text(json.dumps([0, 0, 1, 1, 2]))
    matrix, names = load_coarse_mapping(str(as_list), 5)
    assert names == ("0", "1", "2") and matrix[2].tolist() == [0, 0, 0, 0, 1]
    as_dict = tmp_path / "dict.json"
    as_dict.write_text(json.dumps({"low": [0, 1], "high": [3, 4, 2]}))
    matrix, names = load_coarse_mapping(str(as_dict), 5)
    assert names == ("low", "high")
    torch.testing.assert_close(matrix[1], torch.tensor([0, 0, 1 / 3, 1 / 3, 1 / 3]))
    bad = tmp_path / "bad.json"
    for content in ("[0, 1]", '{"a": [9]}', "{", '"x"'):
        bad.write_text(content)
        with pytest.raises(UserError):
            load_coarse_mapping(str(bad), 5)
    with pytest.raises(UserError, match="neither a built-in"):
        load_coarse_mapping("nope", 5)
    with pytest.raises(UserError, match="for 100 classes"):
        load_coarse_mapping("cifar100", 10)


def test_mixed_queries_draw():
    classes = torch.tensor([2, 5, 7, 9])
    q = draw_mixed_queries(classes, 10, prob=1.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(q.sum(1), torch.ones(4))
    assert (q[torch.arange(4), classes] >= 0.5).all()  # the block's own class keeps the largest weight
    assert (q[:, [0, 1, 3, 4, 6, 8]] == 0).all()  # partners are other blocks' classes
    again = draw_mixed_queries(classes, 10, prob=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(q, again)
    off = draw_mixed_queries(classes, 10, prob=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(off, torch.nn.functional.one_hot(classes, 10).float())


def _tiny_method(query_mix: float):
    from rtp_scale.data.augment import Augmenter
    from rtp_scale.eval import build_net
    from rtp_scale.methods.rtp import RtpMethod

    cfg = build_config(None, ["model.width=8", "model.depth=1", "inner.steps=3", "inner.batch_per_class=2",
                              "unroll.mode=full", f"memory.query_mix={query_mix}"])
    net = build_net(cfg.model, channels=1, num_classes=10, image_size=(8, 8))
    return RtpMethod(cfg, net, Augmenter("none"))


def test_mixed_query_training_gives_a_different_finite_meta_gradient():
    gen = torch.Generator().manual_seed(0)
    real_x, real_y = torch.randn(20, 1, 8, 8, generator=gen), torch.arange(10).repeat(2)
    grads = {}
    for mix in (0.0, 1.0):
        memory = _addr(torch.float32)
        metrics, _ = _tiny_method(mix).meta_gradient(memory, real_x, real_y, lrs=torch.full((3,), 0.01),
                                                     generator=torch.Generator().manual_seed(1))
        assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
        grads[mix] = memory.addressing.grad.clone()
        assert torch.isfinite(grads[mix]).all() and grads[mix].abs().sum() > 0
    assert not torch.allclose(grads[0.0], grads[1.0])


def test_query_mix_is_validated():
    with pytest.raises(UserError, match="query_mix"):
        build_config(None, ["memory.query_mix=1.5"])


def test_recall_cli_writes_grids(tmp_path):
    from PIL import Image

    artifact = tmp_path / "memory.safetensors"
    save_artifact(artifact, _addr(torch.float32), dataset_meta={"name": "digits", "mean": [0.3], "std": [0.4],
                                                                "class_names": [str(c) for c in range(10)]})
    out = tmp_path / "grid"
    proc = run_module("rtp_scale.recall", "--artifact", str(artifact), "--query", "3", "--query", "3:0.5,5:0.5",
                      "--slots", "3", "--scale", "4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    image = Image.open(out / "recall.png")
    assert image.size == ((1 + 3 * 9) * 4, (1 + 2 * 9) * 4)  # 3 slots x 2 queries of 8x8 with 1-px gaps
    record = json.loads((out / "recall.json").read_text())
    assert record["queries"][1]["fine_query"][3] == 0.5
    proc = run_module("rtp_scale.recall", "--artifact", str(artifact), "--query", "12", "--out", str(out))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: query '12': label 12 is outside [0, 10)"], proc.stderr


def test_recall_cli_coarse_queries_and_bad_input(tmp_path, capsys):
    from rtp_scale.errors import run_cli
    from rtp_scale.recall import main

    artifact = tmp_path / "memory.safetensors"
    save_artifact(artifact, _addr(torch.float32), dataset_meta={"name": "digits"})
    out = tmp_path / "grid"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, ["--artifact", str(artifact), "--coarse", "parity", "--query", "odd:0.5,even:0.5",
                       "--query", "even", "--out", str(out)])
    assert exit_info.value.code == 0
    queries = json.loads((out / "recall.json").read_text())["queries"]
    assert queries[0]["label_vector"] == [0.5, 0.5]
    assert queries[1]["fine_query"] == pytest.approx([0.2, 0, 0.2, 0, 0.2, 0, 0.2, 0, 0.2, 0])
    capsys.readouterr()
    for bad in (["--coarse", "cifar100"], ["--slots", "0"], ["--bogus"], ["--query", "odd"], ["--query", "1:x"]):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(main, ["--artifact", str(artifact), "--out", str(out), *bad])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1, (bad, err)
