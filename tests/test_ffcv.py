"""FFCV streaming: conversion to .beton, class-balanced real batches, evaluation passes, integrity errors.

Every dataset here is a small image folder of PNGs written to tmp_path (ImageNet-style train/val and
Tiny-ImageNet's train/<wnid>/images + annotated val/). Tests that need ffcv skip with the one-line install
instruction when it cannot be imported (``RTP_REQUIRE_FFCV=1``, set by CI, makes that a failure); the
missing-ffcv behaviour itself is tested without it.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, run_module, skip_unless_required
from rtp_scale.config import DataConfig
from rtp_scale.data.ffcv_io import INSTALL_HINT, ffcv_import_error
from rtp_scale.data.sources import FfcvSource, MemorySource, make_real_source
from rtp_scale.errors import UserError
from rtp_scale.seeding import make_generator

FFCV_MISSING = ffcv_import_error()


@pytest.fixture
def ffcv_installed() -> None:
    """Skip without ffcv (with the install line as the reason); fail instead under RTP_REQUIRE_FFCV=1."""
    if FFCV_MISSING is not None:
        skip_unless_required("RTP_REQUIRE_FFCV", FFCV_MISSING)


needs_ffcv = pytest.mark.usefixtures("ffcv_installed")

RES = 20
TRAIN_COUNTS = (9, 6, 11)  # uneven, and class 1 smaller than PER_CLASS (sampled with replacement)
VAL_COUNTS = (4, 3, 6)     # 13 images: no batch size used below divides it
PER_CLASS = 7
# Stated JPEG error bound at quality 90 (mean |error| in 0..255 levels, and PSNR), on these 20 px images
# (measured: 3.9 levels, 33.6 dB; 4:2:0 chroma subsampling costs most at such small sizes).
JPEG_MEAN_ABS_LEVELS = 5.0
JPEG_MIN_PSNR_DB = 30.0


def _image(rng: np.random.Generator, label: int, width: int, height: int) -> Image.Image:
    """A smooth, class-tinted image (natural-image-like statistics, so JPEG behaves as on photos)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    freq = rng.uniform(0.05, 0.2, size=3)
    channels = [127 + 90 * np.sin(freq[c] * (xx + 0.7 * yy) + phase[c]) + 30 * (c == label % 3) for c in range(3)]
    pixels = np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def write_image_folder(root, *, tiny: bool = False, seed: int = 0):
    """ImageNet layout (train/<class>/, val/<class>/) or Tiny-ImageNet's (train/<wnid>/images/, val/images/)."""
    rng = np.random.default_rng(seed)
    classes = [f"n0{c}" for c in range(len(TRAIN_COUNTS))]
    for c, name in enumerate(classes):
        folder = root / "train" / name / ("images" if tiny else "")
        folder.mkdir(parents=True)
        for i in range(TRAIN_COUNTS[c]):
            _image(rng, c, int(rng.integers(RES, 3 * RES)), int(rng.integers(RES, 3 * RES))).save(folder / f"{name}_{i}.png")
    lines = []
    for c, name in enumerate(classes):
        folder = root / "val" / ("images" if tiny else name)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(VAL_COUNTS[c]):
            fname = f"val_{c}_{i}.png"
            _image(rng, c, int(rng.integers(RES, 3 * RES)), int(rng.integers(RES, 3 * RES))).save(folder / fname)
            lines.append(f"{fname}\t{name}\t0\t0\t1\t1")
    if tiny:
        (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("imagenet_like"))


@pytest.fixture(scope="module")
def memory(folder):
    from rtp_scale.data.imagefolder import load_imagefolder

    return load_imagefolder(root=str(folder), resolution=RES)


@pytest.fixture(scope="module")
def raw_dir(folder, tmp_path_factory):
    from rtp_scale.data.convert import convert

    out = tmp_path_factory.mktemp("raw")
    convert(root=str(folder), out=out, resolution=RES, encoding="raw", workers=2, progress=False)
    return out


@pytest.fixture(scope="module")
def raw_source(raw_dir):
    return FfcvSource(str(raw_dir), per_class=PER_CLASS, expect_name="imagefolder", workers=2)


def _cfg(root, **kw) -> DataConfig:
    return DataConfig(name=kw.pop("name", "imagefolder"), root=str(root), backend="ffcv", real_per_class=PER_CLASS, **kw)


# --------------------------------------------------------------------------- without ffcv


def test_missing_ffcv_says_how_to_install(monkeypatch, tmp_path):
    import sys

    from rtp_scale.data import convert as convert_module
    from rtp_scale.data import ffcv_io

    monkeypatch.setitem(sys.modules, "ffcv", None)  # makes `import ffcv` raise ImportError
    monkeypatch.setitem(sys.modules, "ffcv.loader", None)
    ffcv_io.ffcv_import_error.cache_clear()
    try:
        reason = ffcv_io.ffcv_import_error()
        assert reason is not None and reason.startswith(INSTALL_HINT) and "\n" not in reason
        assert "apt-get install" in reason and "pip install 'ffcv==1.0.2'" in reason
        with pytest.raises(UserError, match=r"ffcv is not installed: apt-get install .* pip install"):
            make_real_source(_cfg(tmp_path), None, "cpu")
        with pytest.raises(UserError, match="ffcv is not installed"):
            convert_module.main(["--root", str(tmp_path), "--out", str(tmp_path / "out")])
    finally:
        ffcv_io.ffcv_import_error.cache_clear()
    # the in-memory backend does not care
    data = __import__("rtp_scale.data", fromlist=["load_dataset"]).load_dataset("digits")
    source = make_real_source(DataConfig(name="digits", real_per_class=3), data, "cpu")
    x, y = source.sample(make_generator(0, "t"))
    assert x.shape == (30, 1, 8, 8) and y.tolist() == torch.arange(10).repeat_interleave(3).tolist()


def test_config_errors_before_touching_ffcv(tmp_path):
    with pytest.raises(UserError, match="data.zca=true needs the whole training set"):
        make_real_source(_cfg(tmp_path, zca=True), None, "cpu")
    with pytest.raises(UserError, match="needs data.root"):
        make_real_source(_cfg(""), None, "cpu")


# --------------------------------------------------------------------------- conversion


@needs_ffcv
def test_manifest_records_classes_counts_resolution_checksum(raw_dir, memory):
    from rtp_scale.data.ffcv_io import file_sha256

    manifest = json.loads((raw_dir / "manifest.json").read_text())
    assert manifest["classes"] == list(memory.info.class_names) == ["n00", "n01", "n02"]
    assert (manifest["height"], manifest["width"], manifest["channels"]) == (RES, RES, 3)
    assert manifest["encoding"] == "raw" and manifest["jpeg_quality"] is None
    assert manifest["splits"]["train"]["class_counts"] == list(TRAIN_COUNTS)
    assert manifest["splits"]["test"]["class_counts"] == list(VAL_COUNTS)
    assert manifest["splits"]["test"]["origin"] == "val/"
    for entry in manifest["splits"].values():
        path = raw_dir / entry["file"]
        assert entry["sha256"] == file_sha256(path) and entry["bytes"] == path.stat().st_size
    # the training statistics are exactly the in-memory loader's
    assert manifest["mean"] == list(memory.info.mean) and manifest["std"] == list(memory.info.std)
    assert not list(raw_dir.glob("*.partial"))


@needs_ffcv
def test_raw_stream_is_pixel_exact_and_complete(raw_source, memory):
    """Every image, train and test, streams back as the in-memory loader's exact floats; none dropped."""
    for split, (x_mem, y_mem) in {"train": (memory.train_x, memory.train_y),
                                  "test": (memory.test_x, memory.test_y)}.items():
        batches = list(raw_source.eval_batches(batch_size=5, split=split))
        sizes = [len(y) for _, y in batches]
        assert sum(sizes) == len(y_mem) == raw_source.num_images(split)
        assert sizes[-1] == (len(y_mem) % 5 or 5)  # the last partial batch is there
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        assert x.dtype == torch.float32 and x.is_contiguous()
        assert torch.equal(x, x_mem), split
        assert torch.equal(y, y_mem), split
    x_all, y_all = raw_source.eval_tensors("test")
    assert torch.equal(x_all, memory.test_x) and torch.equal(y_all, memory.test_y)


@needs_ffcv
def test_slow_consumer_never_sees_a_reused_buffer(raw_source, memory):
    """FFCV decodes ahead into a ring of buffers; a batch must stay intact until the next one is asked for."""
    import time

    train = raw_source._files["train"]
    raw_u8 = ((memory.train_x * torch.tensor(memory.info.std).view(1, -1, 1, 1)
               + torch.tensor(memory.info.mean).view(1, -1, 1, 1)) * 255).round().to(torch.uint8)
    seen = 0
    for x, y in train.batches(2, ahead=1):  # 13 batches through 3 buffers
        time.sleep(0.005)  # let FFCV's thread run as far ahead as it may
        assert torch.equal(x, raw_u8[seen:seen + len(y)]) and torch.equal(y, memory.train_y[seen:seen + len(y)])
        seen += len(y)
    assert seen == len(memory.train_y)


@needs_ffcv
def test_uint8_pixels_equal_the_decoded_source_images(raw_source, folder):
    from rtp_scale.data.imagefolder import load_image

    train = raw_source._files["train"]
    paths = sorted((folder / "train").rglob("*.png"))
    picks = [0, len(paths) - 1, 10]
    got = train.read(torch.tensor(picks))
    for row, i in enumerate(picks):
        assert np.array_equal(got[row].numpy(), load_image(paths[i], RES).transpose(2, 0, 1))


@needs_ffcv
def test_sample_is_class_balanced_reproducible_and_equals_memory_backend(raw_source, memory):
    mem_source = MemorySource(memory, per_class=PER_CLASS)
    threads = torch.get_num_threads()
    expected_y = torch.arange(3).repeat_interleave(PER_CLASS)
    for step in range(3):
        g_ffcv, g_mem = make_generator(0, "unroll", step, 0), make_generator(0, "unroll", step, 0)
        x, y = raw_source.sample(g_ffcv)
        x_ref, y_ref = mem_source.sample(g_mem)
        assert x.shape == (3 * PER_CLASS, 3, RES, RES) and torch.equal(y, expected_y)
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
        # the generator advanced identically, so the rest of the step draws the same numbers
        assert torch.equal(torch.rand(4, generator=g_ffcv), torch.rand(4, generator=g_mem))
        x_again, _ = raw_source.sample(make_generator(0, "unroll", step, 0))
        assert torch.equal(x, x_again)
    assert torch.get_num_threads() == threads, "FFCV's Loader changed torch's thread count"


@needs_ffcv
def test_take_and_labels_survive(raw_source, memory):
    assert torch.equal(raw_source.train_labels, memory.train_y)
    idx = torch.tensor([5, 0, 25, 5, 12])  # any order, repeats, a size other than the real batch
    x, y = raw_source.take(idx)
    assert torch.equal(x, memory.train_x[idx]) and torch.equal(y, memory.train_y[idx])
    many = torch.arange(len(memory.train_y)).flip(0).repeat(2)  # more than one real batch
    x, y = raw_source.take(many)
    assert torch.equal(x, memory.train_x[many]) and torch.equal(y, memory.train_y[many])


@needs_ffcv
def test_jpeg_within_stated_error_and_config_switch(folder, memory, tmp_path):
    from rtp_scale.data.convert import main

    out = tmp_path / "jpeg"
    assert main(["--root", str(folder), "--out", str(out), "--resolution", str(RES), "--encoding", "jpeg",
                 "--quality", "90", "--workers", "2", "--no-progress"]) == 0
    source = make_real_source(_cfg(out, resolution=RES), None, "cpu", workers=2)
    assert source.manifest.jpeg_quality == 90
    x, y = source.eval_tensors("train")
    assert torch.equal(y, memory.train_y)
    mean = torch.tensor(memory.info.mean).view(1, -1, 1, 1)
    std = torch.tensor(memory.info.std).view(1, -1, 1, 1)
    jpeg_levels = (x * torch.tensor(source.info.std).view(1, -1, 1, 1) + torch.tensor(source.info.mean).view(1, -1, 1, 1)) * 255
    exact_levels = (memory.train_x * std + mean) * 255
    err = (jpeg_levels - exact_levels).abs()
    psnr = 10 * torch.log10(255.0**2 / err.square().mean())
    assert err.mean() <= JPEG_MEAN_ABS_LEVELS and psnr >= JPEG_MIN_PSNR_DB, (float(err.mean()), float(psnr))
    xs, ys = source.sample(make_generator(1, "unroll", 0, 0))
    assert torch.equal(ys, torch.arange(3).repeat_interleave(PER_CLASS)) and xs.shape == (21, 3, RES, RES)
    with pytest.raises(UserError, match="already holds a converted dataset"):
        main(["--root", str(folder), "--out", str(out), "--resolution", str(RES)])


@needs_ffcv
def test_tiny_imagenet_layout_and_verify_cli(tmp_path, capsys):
    from rtp_scale.data.convert import main
    from rtp_scale.data.imagefolder import load_imagefolder

    root = write_image_folder(tmp_path / "tiny", tiny=True, seed=1)
    out = tmp_path / "tiny-ffcv"
    assert main(["--root", str(root), "--out", str(out), "--resolution", str(RES), "--workers", "2", "--no-progress"]) == 0
    assert main(["--verify", str(out)]) == 0 and "ok:" in capsys.readouterr().out
    ref = load_imagefolder(root=str(root), resolution=RES)
    source = make_real_source(_cfg(out), None, "cpu", workers=2)
    x, y = source.eval_tensors("test")
    assert torch.equal(x, ref.test_x) and torch.equal(y, ref.test_y)


@needs_ffcv
def test_registered_dataset_conversion(tmp_path):
    """digits (8x8 values k/16) stored as uint8: equal to the in-memory set up to rounding to 1/255."""
    from rtp_scale.data import load_dataset
    from rtp_scale.data.convert import convert

    convert(dataset="digits", out=tmp_path / "digits", workers=2, progress=False)
    ref = load_dataset("digits")
    source = make_real_source(DataConfig(name="digits", root=str(tmp_path / "digits"), backend="ffcv",
                                         real_per_class=4), None, "cpu", workers=2)
    assert source.info.image_shape == (1, 8, 8) and source.info.class_names == ref.info.class_names
    x, y = source.eval_tensors("test")
    assert torch.equal(y, ref.test_y)
    pixel_err = ((x - ref.test_x) * torch.tensor(ref.info.std)).abs().max()
    assert pixel_err <= 0.5 / 255 + 1e-3, float(pixel_err)  # rounding, plus the slightly different mean/std
    with pytest.raises(UserError, match="jpeg encoding needs 3-channel images"):
        convert(dataset="digits", out=tmp_path / "j", encoding="jpeg", progress=False)


# --------------------------------------------------------------------------- errors


@needs_ffcv
def test_corrupt_or_missing_beton_gives_clear_errors(raw_dir, tmp_path):
    import shutil

    def fresh(name):
        copy = tmp_path / name
        shutil.copytree(raw_dir, copy)
        return copy

    missing = fresh("missing")
    (missing / "test.beton").unlink()
    with pytest.raises(UserError, match=r"missing test file .*test\.beton.*re-run python -m rtp_scale\.data\.convert"):
        make_real_source(_cfg(missing), None, "cpu")

    flipped = fresh("flipped")
    data = bytearray((flipped / "train.beton").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (flipped / "train.beton").write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"train\.beton is corrupt: sha256"):
        make_real_source(_cfg(flipped), None, "cpu")

    grown = fresh("grown")
    (grown / "train.beton").write_bytes(bytes(data) + b"\0")
    with pytest.raises(UserError, match=rf"train\.beton is corrupt: {len(data) + 1} bytes, its manifest\.json records "
                                        rf"{len(data)}; re-run python -m rtp_scale\.data\.convert"):
        make_real_source(_cfg(grown), None, "cpu", verify=False)

    garbage = fresh("garbage")  # even without the checksum, a damaged header is a clear error
    size = (garbage / "train.beton").stat().st_size
    (garbage / "train.beton").write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    with pytest.raises(UserError, match=r"is not a readable \.beton file"):
        make_real_source(_cfg(garbage), None, "cpu", verify=False)

    with pytest.raises(UserError, match="has no manifest.json .*image folder: convert it first"):
        make_real_source(_cfg(_image_folder_without_manifest(tmp_path)), None, "cpu")
    with pytest.raises(UserError, match="does not exist"):
        make_real_source(_cfg(tmp_path / "nowhere"), None, "cpu")
    with pytest.raises(UserError, match="set data.name=imagefolder"):
        make_real_source(_cfg(raw_dir, name="cifar10"), None, "cpu")
    with pytest.raises(UserError, match="converted at 20x20 but data.resolution=32"):
        make_real_source(_cfg(raw_dir, resolution=32), None, "cpu")


@needs_ffcv
def test_truncated_beton_stops_the_run_with_one_line(raw_dir, tmp_path):
    """A .beton cut anywhere (inside the header, mid-file, one byte short), checksum on or off: the same
    one-line error, before any work. The command-line run shows what a user sees: exit 2, no traceback."""
    import shutil

    size = (raw_dir / "train.beton").stat().st_size
    data = (raw_dir / "train.beton").read_bytes()
    for keep in (16, size // 2, size - 1):
        cut = tmp_path / f"cut{keep}"
        shutil.copytree(raw_dir, cut)
        (cut / "train.beton").write_bytes(data[:keep])
        for verify in (True, False):
            with pytest.raises(UserError, match=rf"train\.beton is truncated: {keep} of the {size} bytes its "
                                                rf"manifest\.json records .*re-run python -m rtp_scale\.data\.convert"):
                make_real_source(_cfg(cut), None, "cpu", verify=verify)
    proc = run_module("rtp_scale.distill", "--set", *TINY, "data.name=imagefolder", "data.backend=ffcv",
                      f"data.root={cut}", f"data.resolution={RES}", f"run.out_dir={tmp_path / 'run'}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "train.beton is truncated" in lines[0], proc.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists() and not (tmp_path / "run" / "results.json").exists()


def _image_folder_without_manifest(tmp_path):
    root = tmp_path / "unconverted"
    (root / "train" / "a").mkdir(parents=True)
    return root


@needs_ffcv
def test_unreadable_source_image_fails_the_conversion_loudly(tmp_path):
    from rtp_scale.data.convert import convert

    root = write_image_folder(tmp_path / "src", seed=2)
    (root / "train" / "n01" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"1 image\(s\) could not be converted; first: .*broken\.png"):
        convert(root=str(root), out=tmp_path / "out", resolution=RES, workers=2, progress=False)
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert not list((tmp_path / "out").glob("*.beton*"))


@needs_ffcv
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_stream_equals_cpu_stream(raw_dir):
    gpu = FfcvSource(str(raw_dir), per_class=PER_CLASS, device="cuda", workers=2)
    cpu = FfcvSource(str(raw_dir), per_class=PER_CLASS, device="cpu", workers=2)
    for step in range(3):
        x, y = gpu.sample(make_generator(0, "unroll", step, 0))
        x_ref, y_ref = cpu.sample(make_generator(0, "unroll", step, 0))
        assert x.is_cuda and torch.equal(x.cpu(), x_ref) and torch.equal(y.cpu(), y_ref)
    xs = [x.cpu() for x, _ in gpu.eval_batches(4, "train")]
    assert torch.equal(torch.cat(xs), cpu.eval_tensors("train")[0])


# --------------------------------------------------------------------------- the distill loop on FFCV


def _distill_cfg(root, out, backend: str):
    from rtp_scale.config import load_config

    return load_config(None, [
        "data.name=imagefolder", f"data.root={root}", f"data.resolution={RES}", f"data.backend={backend}",
        f"data.real_per_class={PER_CLASS}", "model.width=8", "model.depth=2", "memory.num_bases=4",
        "memory.ipc=1", "inner.steps=3", "inner.batch_per_class=2", "meta.steps=2", "eval.num_nets=1",
        "eval.epochs=2", "log.progress=false", "log.image_every=0", "run.device=cpu", f"run.out_dir={out}"])


@needs_ffcv
def test_distill_streams_from_ffcv_and_matches_the_memory_backend(folder, raw_dir, tmp_path):
    """data.backend=ffcv feeds the same real batches and test set as the in-memory folder: same memory, bits."""
    from safetensors.torch import load_file

    from rtp_scale.distill import run

    streamed = run(_distill_cfg(raw_dir, tmp_path / "ffcv", "ffcv"))
    in_memory = run(_distill_cfg(folder, tmp_path / "memory", "memory"))
    a, b = load_file(tmp_path / "ffcv" / "memory.safetensors"), load_file(tmp_path / "memory" / "memory.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert streamed["accuracy"]["accuracies"] == in_memory["accuracy"]["accuracies"]
    assert streamed["final_meta_loss"] == in_memory["final_meta_loss"]
