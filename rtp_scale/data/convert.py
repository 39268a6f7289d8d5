"""Write a dataset to FFCV ``.beton`` files at a chosen resolution (raw pixels or JPEG) plus a manifest.

Image folders (ImageNette / ImageWoof / ImageNet-100 ``train/<class>/`` + ``val/<class>/``, Tiny-ImageNet's
``train/<wnid>/images`` + annotated ``val/``; see :mod:`rtp_scale.data.imagefolder`)::

    python -m rtp_scale.data.convert --root data/imagenette2 --out data/imagenette-128 --resolution 128
    python -m rtp_scale.data.convert --root data/tiny-imagenet-200 --out data/tiny-64 --resolution 64
    python -m rtp_scale.data.convert --root data/imagenet100 --out data/in100-64-q90 --resolution 64 \\
        --encoding jpeg --quality 90

Any registered dataset (read with :func:`rtp_scale.data.load_dataset`, then stored as uint8)::

    python -m rtp_scale.data.convert --dataset cifar10 --root data --out data/cifar10-ffcv
    python -m rtp_scale.data.convert --dataset mnist5k --out data/mnist5k-ffcv

Check a converted folder (sizes, sha256, headers, labels against the manifest)::

    python -m rtp_scale.data.convert --verify data/imagenette-128

Then train from it with ``--set data.backend=ffcv data.root=data/imagenette-128`` (``data.name`` must
be the converted dataset's name, ``imagefolder`` for image folders).

Image folders are resized exactly as the in-memory loader does (shorter side to ``--resolution``,
centre crop, :func:`rtp_scale.data.imagefolder.load_image`), in the same order, so a raw conversion
streams the very pixels (and, normalised, the very floats) that ``data.backend=memory`` holds. JPEG
stores the same pixels lossily (``--quality``, default 90). Registered datasets are stored from their
in-memory copy: exact for uint8 sources at their native size (MNIST, CIFAR, SVHN), rounded to the
nearest of 256 levels otherwise (e.g. ``digits``, or any ``--resolution`` resize).

Output is written to ``*.beton.partial`` files, read back in full (which also computes the training
pixels' mean/std, of the decoded pixels for JPEG), checksummed, renamed, and only then described by
``manifest.json``: a folder with a manifest is always a complete conversion.
"""
from __future__ import annotations

import argparse
import ctypes
import multiprocessing as mp
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from rtp_scale.data.ffcv_io import (
    ENCODINGS, MANIFEST_NAME, SPLITS, BetonFile, ChannelStats, Manifest, SplitEntry, check_split_file,
    default_workers, file_sha256, read_manifest, require_ffcv, write_manifest,
)
from rtp_scale.errors import UserError, run_cli


class _FolderImages:
    """Images of an image folder, decoded and resized by the in-memory loader's own function."""

    def __init__(self, paths: list[Path], resolution: int) -> None:
        self.paths, self.resolution = paths, resolution

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        from rtp_scale.data.imagefolder import load_image

        return load_image(self.paths[i], self.resolution).transpose(2, 0, 1)  # HWC -> CHW


class _ArrayImages:
    """Images already in memory as uint8 ``[N, C, H, W]`` (forked writer processes share them)."""

    def __init__(self, x_NCHW: np.ndarray) -> None:
        self.x = x_NCHW

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.x[i]


class _WriterSamples:
    """What ffcv's ``DatasetWriter`` workers index: ``(image, label)``.

    A worker process that raises makes ffcv's writer wait forever for the missing samples, so failures are
    recorded in shared memory and a black image is written instead; :func:`_write_split` raises them after
    the writer returns and deletes the partial file.
    """

    def __init__(self, images, labels: np.ndarray, *, shape: tuple[int, int, int], encoding: str) -> None:
        self.images, self.labels, self.shape, self.encoding = images, labels, shape, encoding
        self.failures = mp.Value(ctypes.c_int64, 0)
        self.first_failure = mp.Array(ctypes.c_char, 1024)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        try:
            image = np.ascontiguousarray(self.images[i], dtype=np.uint8)
            if image.shape != self.shape:
                raise ValueError(f"image {i} has shape {image.shape}, expected {self.shape}")
        except Exception as err:  # noqa: BLE001 - re-raised by the parent process, see the class docstring
            with self.failures.get_lock():
                self.failures.value += 1
                if self.failures.value == 1:
                    self.first_failure.value = f"{type(err).__name__}: {err}".encode()[:1023]
            image = np.zeros(self.shape, dtype=np.uint8)
        if self.encoding == "jpeg":
            image = np.ascontiguousarray(image.transpose(1, 2, 0))  # RGBImageField takes HWC
        return image, int(self.labels[i])


@contextmanager
def _writer_progress(desc: str, enabled: bool) -> Iterator[None]:
    """Label (or silence) the progress bar that ffcv's writer draws with its module-level ``tqdm``."""
    import functools

    import ffcv.writer

    original = ffcv.writer.tqdm
    ffcv.writer.tqdm = functools.partial(original, desc=desc, unit="img", disable=not enabled)
    try:
        yield
    finally:
        ffcv.writer.tqdm = original


def _write_split(path: Path, images, labels: np.ndarray, *, shape: tuple[int, int, int], encoding: str,
                 quality: int, workers: int, progress: bool, desc: str) -> None:
    from ffcv.fields import IntField, NDArrayField, RGBImageField
    from ffcv.writer import MIN_PAGE_SIZE, DatasetWriter

    image_field = (NDArrayField(np.dtype("uint8"), shape) if encoding == "raw"
                   else RGBImageField(write_mode="jpg", jpeg_quality=quality))
    samples = _WriterSamples(images, labels, shape=shape, encoding=encoding)
    # Each writer process fills its own pages, so a file carries up to `workers` part-empty pages: keep them
    # small (ffcv's minimum, 2 MiB) unless one image needs more.
    page_size = max(MIN_PAGE_SIZE, 1 << int(4 * int(np.prod(shape)) - 1).bit_length())
    writer = DatasetWriter(str(path), {"image": image_field, "label": IntField()}, num_workers=workers,
                           page_size=page_size)
    with _writer_progress(desc, progress):
        writer.from_indexed_dataset(samples, chunksize=64)
    if samples.failures.value:
        path.unlink(missing_ok=True)
        raise UserError(f"{samples.failures.value} image(s) could not be converted; first: "
                        f"{samples.first_failure.value.decode(errors='replace')}")


def _folder_splits(root: str, resolution: int):
    """(class names, {split: (images, labels, origin)}) of an image folder, in the in-memory loader's order."""
    import os

    from rtp_scale.data.imagefolder import _eval_files, _train_files

    base = Path(os.path.expanduser(root))
    if not (base / "train").is_dir():
        raise UserError(f"imagefolder: expected {base}/train/<class>/*.jpg|png (folder not found)")
    class_names, train_items = _train_files(base / "train")
    eval_items = _eval_files(base, {name: i for i, name in enumerate(class_names)})
    origin = "val/" if (base / "val").is_dir() else "test/"
    splits = {}
    for split, items, where in (("train", train_items, "train/"), ("test", eval_items, origin)):
        labels = np.array([label for _, label in items], dtype=np.int64)
        splits[split] = (_FolderImages([p for p, _ in items], resolution), labels, where)
    return class_names, splits


def _registered_splits(name: str, root: str, resolution: int | None):
    """A registered dataset loaded in memory and turned back into uint8 pixels (rounded to 1/255)."""
    from rtp_scale.data.registry import load_dataset

    data = load_dataset(name, root=root or None, resolution=resolution, download=False)
    mean = torch.tensor(data.info.mean, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(data.info.std, dtype=torch.float64).view(1, -1, 1, 1)

    def to_uint8(x_NCHW: torch.Tensor) -> np.ndarray:
        parts = [((x_NCHW[s:s + 4096].double() * std + mean) * 255.0).round_().clamp_(0, 255).to(torch.uint8)
                 for s in range(0, len(x_NCHW), 4096)]
        return torch.cat(parts).numpy() if parts else np.zeros((0, *data.info.image_shape), np.uint8)

    splits = {"train": (_ArrayImages(to_uint8(data.train_x)), data.train_y.numpy(), "train"),
              "test": (_ArrayImages(to_uint8(data.test_x)), data.test_y.numpy(), "test")}
    return list(data.info.class_names), splits, data.info.image_shape


def convert(*, out: str | Path, root: str = "", dataset: str = "imagefolder", resolution: int | None = None,
            encoding: str = "raw", quality: int = 90, workers: int | None = None, progress: bool = True,
            overwrite: bool = False, command: str = "") -> Manifest:
    """Write ``train.beton``, ``test.beton`` and ``manifest.json`` into ``out``; returns the manifest."""
    require_ffcv()
    if encoding not in ENCODINGS:
        raise UserError(f"encoding {encoding!r} is not one of {ENCODINGS}")
    if not 1 <= quality <= 100:
        raise UserError(f"JPEG quality must be in 1..100, got {quality}")
    if resolution is not None and resolution < 1:
        raise UserError(f"resolution must be >= 1, got {resolution}")
    out = Path(out).expanduser()
    if (out / MANIFEST_NAME).exists() and not overwrite:
        raise UserError(f"{out} already holds a converted dataset; pass --force to overwrite it")
    workers = workers or default_workers()

    if dataset == "imagefolder":
        if not root:
            raise UserError("imagefolder: --root is required (a folder with train/<class>/ and val/<class>/)")
        from rtp_scale.data.imagefolder import DEFAULT_RESOLUTION

        res = resolution or DEFAULT_RESOLUTION
        class_names, splits = _folder_splits(root, res)
        shape = (3, res, res)
    else:
        class_names, splits, shape = _registered_splits(dataset, root, resolution)
    if encoding == "jpeg" and shape[0] != 3:
        raise UserError(f"jpeg encoding needs 3-channel images; {dataset} has {shape[0]}: use --encoding raw")
    num_classes = len(class_names)

    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_NAME).unlink(missing_ok=True)  # from here on the folder is incomplete until rewritten
    entries, stats = {}, None
    for split in SPLITS:
        images, labels, origin = splits[split]
        if len(labels) == 0:
            raise UserError(f"{dataset}: the {split} split has no images")
        partial = out / f"{split}.beton.partial"
        _write_split(partial, images, labels, shape=shape, encoding=encoding, quality=quality, workers=workers,
                     progress=progress, desc=f"{split}.beton")
        counts = np.bincount(labels, minlength=num_classes).tolist()
        # Read everything back: proves the file decodes, checks the labels, and gives the train statistics.
        beton = BetonFile(partial, encoding=encoding, image_shape=shape, num_classes=num_classes,
                          class_counts=counts, workers=workers)
        if not torch.equal(beton.labels, torch.from_numpy(labels)):
            raise RuntimeError(f"{partial}: labels read back differ from the labels written")
        split_stats = ChannelStats(shape[0])
        for x, _ in beton.batches(ChannelStats.CHUNK, ahead=1):
            split_stats.add(x)
        if split == "train":
            stats = split_stats
        final = out / f"{split}.beton"
        partial.replace(final)
        entries[split] = SplitEntry(file=final.name, count=len(labels), class_counts=counts,
                                    bytes=final.stat().st_size, sha256=file_sha256(final), origin=origin)
    mean, std = stats.result()
    from importlib.metadata import version

    manifest = Manifest(dataset=dataset, source=str(Path(root).expanduser().resolve()) if root else "",
                        encoding=encoding, jpeg_quality=quality if encoding == "jpeg" else None,
                        channels=shape[0], height=shape[1], width=shape[2], classes=list(class_names),
                        mean=mean, std=std, splits=entries, ffcv_version=version("ffcv"), command=command)
    write_manifest(out, manifest)
    return manifest


def verify(folder: str | Path, *, workers: int | None = None) -> Manifest:
    """Check every file of a converted folder: size, sha256, header, field types, labels, per-class counts."""
    require_ffcv()
    manifest = read_manifest(folder)
    for split in SPLITS:
        path = check_split_file(folder, manifest, split, checksum=True)
        BetonFile(path, encoding=manifest.encoding, image_shape=(manifest.channels, manifest.height, manifest.width),
                  num_classes=len(manifest.classes), class_counts=manifest.splits[split].class_counts,
                  workers=workers)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    from rtp_scale.cli import OneLineParser

    parser = OneLineParser(prog="python -m rtp_scale.data.convert", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="imagefolder", help="registered dataset name (default: imagefolder)")
    parser.add_argument("--root", default="", help="source folder (image folder, or torchvision root)")
    parser.add_argument("--out", help="output folder for train.beton, test.beton, manifest.json")
    parser.add_argument("--resolution", type=int, default=None,
                        help="square image side (image folders: default 64; registered sets: native size)")
    parser.add_argument("--encoding", choices=ENCODINGS, default="raw", help="raw (bit-exact, default) or jpeg")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality 1..100 (default 90)")
    parser.add_argument("--workers", type=int, default=None, help="writer processes (default: all CPUs)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing conversion in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--verify", metavar="DIR", help="only check a converted folder against its manifest")
    args = parser.parse_args(argv)
    if args.verify:
        manifest = verify(args.verify, workers=args.workers)
        print(f"ok: {args.verify}: {manifest.dataset} {manifest.encoding} {manifest.height}x{manifest.width}, "
              + ", ".join(f"{s} {e.count} images" for s, e in manifest.splits.items()))
        return 0
    if not args.out:
        parser.error("--out is required (or --verify DIR)")
    command = "python -m rtp_scale.data.convert " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                                       else sys.argv[1:]))
    manifest = convert(out=args.out, root=args.root, dataset=args.dataset, resolution=args.resolution,
                       encoding=args.encoding, quality=args.quality, workers=args.workers,
                       progress=not args.no_progress, overwrite=args.force, command=command)
    total = sum(e.bytes for e in manifest.splits.values())
    print(f"wrote {args.out}: {len(manifest.classes)} classes, "
          + ", ".join(f"{s} {e.count}" for s, e in manifest.splits.items())
          + f" images at {manifest.height}x{manifest.width} ({manifest.encoding}), {total / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    run_cli(main)
