"""FFCV ``.beton`` files of a converted dataset: the manifest, integrity checks, and batch reads.

A converted dataset is one folder (written by ``python -m rtp_scale.data.convert``)::

    manifest.json   classes, per-class counts, resolution, encoding, train-pixel mean/std, sha256 per file
    train.beton     fields: image (raw: uint8 [C, H, W] NDArrayField; jpeg: RGBImageField), label (IntField)
    test.beton      the evaluation split (an image folder's val/ or test/, a torchvision set's test split)

:class:`BetonFile` reads one split through FFCV's ``Loader`` in two ways:

* :meth:`BetonFile.read` — the images at arbitrary indices, in the order given (class-balanced real
  batches). One long-lived ``Loader`` whose batch size is the real batch, and whose traversal order is
  replaced by a one-shot order that returns exactly the indices asked for: each ``iter(loader)`` is then
  one "epoch" of one batch. The pipeline is JIT-compiled once (about 0.5 s, on the first read) and the
  batch is decoded by ``workers`` threads in parallel. Rebuilding a ``Loader(indices=...)`` per batch
  would be equally correct but recompiles every time; ``OrderOption.RANDOM`` cannot be driven by the
  caller's ``torch.Generator``.
* :meth:`BetonFile.batches` — every image once, in file order, last partial batch included
  (``drop_last=False``; FFCV's default drops it), with FFCV prefetching the next batches.

FFCV's ``Loader`` calls ``torch.set_num_threads(workers)`` (in ``Compiler.set_num_threads``) whenever it
is built or iterated; every entry point here puts torch's thread count back, so reading data never
changes the numerics or speed of the computation around it.

Nothing here imports ffcv at module import time: without it, :func:`ffcv_import_error` returns the one
line that says how to install it, and every reader raises :class:`UserError` with that line.
"""
from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from rtp_scale.errors import UserError

INSTALL_HINT = ("ffcv is not installed: apt-get install -y --no-install-recommends libturbojpeg0-dev libopencv-dev "
                "pkg-config && pip install 'ffcv==1.0.2' (or pip install -e '.[ffcv]')")
MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
ENCODINGS = ("raw", "jpeg")
SPLITS = ("train", "test")


@contextmanager
def keep_torch_threads() -> Iterator[None]:
    """Undo FFCV's ``torch.set_num_threads`` on the way out."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


@lru_cache(maxsize=1)
def ffcv_import_error() -> str | None:
    """None when ffcv imports; otherwise the one-line install instruction and the import error."""
    try:
        # importing ffcv runs Compiler.set_num_threads(1), i.e. torch.set_num_threads(1), process-wide
        with keep_torch_threads():
            import ffcv  # noqa: F401  (also loads its compiled extension, which needs libturbojpeg / OpenCV)
            import ffcv.loader  # noqa: F401
    except (ImportError, OSError) as err:
        return f"{INSTALL_HINT} [{type(err).__name__}: {err}]"
    return None


def require_ffcv() -> None:
    """Raise :class:`UserError` with the install line when ffcv cannot be imported."""
    reason = ffcv_import_error()
    if reason is not None:
        raise UserError(reason)


def default_workers() -> int:
    """Decode threads: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True, kw_only=True)
class SplitEntry:
    """One ``.beton`` file of a converted dataset."""

    file: str
    """File name inside the dataset folder."""
    count: int
    class_counts: list[int]
    bytes: int
    sha256: str
    origin: str = ""
    """Where the split came from (e.g. ``val/`` of an image folder)."""


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """What ``manifest.json`` records; the readers trust nothing that is not in it."""

    dataset: str
    """Registry name of the source (``imagefolder``, ``cifar10``, ...)."""
    source: str
    """The source folder (or ``""`` for the offline sets)."""
    encoding: str
    """``raw`` (bit-exact uint8) or ``jpeg`` (lossy)."""
    jpeg_quality: int | None
    channels: int
    height: int
    width: int
    classes: list[str]
    mean: list[float]
    """Per-channel mean of the training pixels in [0, 1] as stored (decoded, for jpeg)."""
    std: list[float]
    """Per-channel population std of the same pixels."""
    splits: dict[str, SplitEntry]
    ffcv_version: str = ""
    format_version: int = FORMAT_VERSION
    command: str = ""
    """The conversion that wrote the folder."""
    extra: dict = field(default_factory=dict)

    @property
    def resolution(self) -> int:
        return self.height

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, raw: dict, where: str) -> "Manifest":
        try:
            if raw.get("format_version") != FORMAT_VERSION:
                raise UserError(f"{where}: manifest format_version {raw.get('format_version')!r} is not "
                                f"{FORMAT_VERSION}; re-run python -m rtp_scale.data.convert")
            splits = {name: SplitEntry(**entry) for name, entry in raw["splits"].items()}
            manifest = cls(**{**raw, "splits": splits})
        except (KeyError, TypeError) as err:
            raise UserError(f"{where}: malformed manifest ({type(err).__name__}: {err}); "
                            "re-run python -m rtp_scale.data.convert") from None
        if manifest.encoding not in ENCODINGS or set(manifest.splits) != set(SPLITS):
            raise UserError(f"{where}: manifest needs encoding in {ENCODINGS} and splits {SPLITS}")
        return manifest


def read_manifest(folder: str | Path) -> Manifest:
    """The manifest of a converted dataset folder, or a :class:`UserError` saying how to make one."""
    folder = Path(os.path.expanduser(str(folder)))
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise UserError(f"ffcv dataset folder {folder} does not exist; write it with "
                        f"python -m rtp_scale.data.convert --root SRC --out {folder}")
    if not path.is_file():
        hint = " (it looks like an image folder: convert it first)" if (folder / "train").is_dir() else ""
        raise UserError(f"{folder} has no {MANIFEST_NAME}{hint}; write the .beton files with "
                        f"python -m rtp_scale.data.convert --root SRC --out DIR and point data.root at DIR")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err}); re-run python -m rtp_scale.data.convert") from None
    return Manifest.from_dict(raw, str(path))


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Atomically: a manifest on disk always describes complete files."""
    tmp = folder / (MANIFEST_NAME + ".tmp")
    tmp.write_text(manifest.to_json())
    tmp.replace(folder / MANIFEST_NAME)


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_split_file(folder: str | Path, manifest: Manifest, split: str, *, checksum: bool = True) -> Path:
    """The path of ``split``'s file after checking it exists, has the recorded size and (optionally) sha256.

    The size check is free and catches truncation; the checksum reads the whole file (about 1-2 s per GB,
    and it warms the page cache FFCV reads through anyway) and catches any changed byte.
    """
    entry = manifest.splits[split]
    path = Path(os.path.expanduser(str(folder))) / entry.file
    rerun = f"re-run python -m rtp_scale.data.convert (source: {manifest.source or manifest.dataset})"
    if not path.is_file():
        raise UserError(f"missing {split} file {path} (listed in its {MANIFEST_NAME}); {rerun}")
    size = path.stat().st_size
    if size < entry.bytes:  # an interrupted conversion or copy
        raise UserError(f"{path} is truncated: {size} of the {entry.bytes} bytes its {MANIFEST_NAME} records "
                        f"(an interrupted conversion or copy?); {rerun}")
    if size != entry.bytes:
        raise UserError(f"{path} is corrupt: {size} bytes, its {MANIFEST_NAME} records {entry.bytes}; {rerun}")
    if checksum:
        digest = file_sha256(path)
        if digest != entry.sha256:
            raise UserError(f"{path} is corrupt: sha256 {digest[:16]}... differs from the manifest's "
                            f"{entry.sha256[:16]}...; {rerun}")
    return path


# --------------------------------------------------------------------------- reading


class _OneShotOrder:
    """Stands in for FFCV's traversal order: the next "epoch" is exactly the indices set in ``pending``."""

    def __init__(self) -> None:
        self.pending: np.ndarray | None = None

    def sample_order(self, epoch: int) -> np.ndarray:
        order, self.pending = self.pending, None
        if order is None:
            raise RuntimeError("BetonFile: the random-access loader was iterated without indices")
        return order


class BetonFile:
    """One split of a converted dataset, read as uint8 images (``[N, C, H, W]``) on the CPU.

    Opening reads only the header, the per-sample metadata and the labels (FFCV keeps ``IntField``
    values in the metadata table), and checks them against what the caller expects.
    """

    def __init__(self, path: str | Path, *, encoding: str, image_shape: tuple[int, int, int],
                 num_classes: int, class_counts: list[int] | None = None, workers: int | None = None,
                 batch_size: int = 256) -> None:
        require_ffcv()
        from ffcv.fields import IntField, NDArrayField, RGBImageField
        from ffcv.reader import Reader

        self.path = Path(path)
        self.encoding = encoding
        self.image_shape = tuple(image_shape)
        self.workers = workers or default_workers()
        import numba

        if not 1 <= self.workers <= numba.config.NUMBA_NUM_THREADS:
            raise UserError(f"FFCV decode threads must be in 1..{numba.config.NUMBA_NUM_THREADS} (numba's limit, "
                            f"NUMBA_NUM_THREADS), got {self.workers}")
        self.batch_size = batch_size
        """Images per read of the random-access loader (reads of other sizes are split / padded)."""
        rerun = "re-run python -m rtp_scale.data.convert"
        try:
            # A damaged header or field table surfaces as any of these from numpy / ffcv's parsers.
            reader = Reader(str(self.path))
        except (AssertionError, ValueError, TypeError, KeyError, IndexError, OSError, OverflowError,
                UnicodeDecodeError, MemoryError) as err:
            raise UserError(f"{self.path} is not a readable .beton file ({type(err).__name__}: {err}); {rerun}") from None
        handlers = reader.handlers
        image_type = NDArrayField if encoding == "raw" else RGBImageField
        if list(handlers) != ["image", "label"] or not isinstance(handlers["image"], image_type) \
                or not isinstance(handlers["label"], IntField):
            kinds = {k: type(v).__name__ for k, v in handlers.items()}
            raise UserError(f"{self.path}: fields {kinds} are not image ({image_type.__name__}) + label (IntField); {rerun}")
        channels, height, width = self.image_shape
        if encoding == "raw":
            field = handlers["image"]
            if tuple(field.shape) != self.image_shape or field.dtype != np.uint8:
                raise UserError(f"{self.path}: images are {field.dtype} {tuple(field.shape)}, expected uint8 "
                                f"{self.image_shape}; {rerun}")
        else:
            meta = reader.metadata["f0"]
            if channels != 3 or reader.num_samples and not (
                    (meta["height"] == height).all() and (meta["width"] == width).all()):
                raise UserError(f"{self.path}: jpeg images are not all 3 x {height} x {width}; {rerun}")
        labels = np.array(reader.metadata["f1"], dtype=np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise UserError(f"{self.path}: labels {labels.min()}..{labels.max()} outside 0..{num_classes - 1}; {rerun}")
        if class_counts is not None:
            found = np.bincount(labels, minlength=num_classes).tolist()
            if found != list(class_counts):
                raise UserError(f"{self.path}: per-class counts {found} differ from the manifest's "
                                f"{list(class_counts)}; {rerun}")
        self.labels = torch.from_numpy(labels)
        """int64 ``[N]``, file order."""
        self._random = None
        self._order = _OneShotOrder()
        self._sequential: dict[tuple[int, int], object] = {}

    def __len__(self) -> int:
        return int(self.labels.numel())

    def _loader(self, batch_size: int, *, indices: np.ndarray | None, batches_ahead: int):
        from ffcv.fields.decoders import NDArrayDecoder, SimpleRGBImageDecoder
        from ffcv.loader import Loader, OrderOption
        from ffcv.transforms import ToTensor

        decoder = NDArrayDecoder() if self.encoding == "raw" else SimpleRGBImageDecoder()
        with keep_torch_threads():
            # seed=0: a Loader built without a seed draws one from numpy's global RNG (unused by SEQUENTIAL)
            return Loader(str(self.path), batch_size=batch_size, num_workers=self.workers, os_cache=True,
                          order=OrderOption.SEQUENTIAL, indices=indices, seed=0, drop_last=False,
                          batches_ahead=batches_ahead, pipelines={"image": [decoder, ToTensor()], "label": None})

    def _to_nchw(self, x: torch.Tensor) -> torch.Tensor:
        """FFCV's image tensor as ``[n, C, H, W]`` (a permuted view for jpeg, whose decoder writes HWC)."""
        return x if self.encoding == "raw" else x.permute(0, 3, 1, 2)

    def read(self, indices: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 ``[n, C, H, W]`` images at ``indices`` (any order, repeats allowed), decoded in parallel.

        A read of exactly ``batch_size`` images returns FFCV's own output buffer (fresh for every read);
        other sizes are read in chunks of ``batch_size`` (the last one padded) and copied out.
        """
        idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"{self.path}: indices {idx.min()}..{idx.max()} outside 0..{len(self) - 1}")
        if len(self) == 0:
            raise UserError(f"{self.path} holds no images")
        size = self.batch_size
        if self._random is None:
            # Built with `size` valid indices so that FFCV sizes everything for one batch per "epoch"; the
            # one-shot order then supplies the real indices of each read.
            # batches_ahead=0: an unbounded queue and 2 buffers, safe because every "epoch" is one batch
            self._random = self._loader(size, indices=np.arange(size, dtype=np.uint64) % np.uint64(len(self)),
                                        batches_ahead=0)
            self._random.traversal_order = self._order
        chunks = []
        for start in range(0, idx.size, size):
            part = idx[start:start + size]
            if part.size < size:  # pad with the last index; padded images are dropped below
                part = np.concatenate([part, np.full(size - part.size, part[-1], dtype=np.int64)])
            self._order.pending = part.astype(np.uint64)
            with keep_torch_threads():
                batches = list(self._random)  # one batch; draining the iterator ends FFCV's thread
            if len(batches) != 1 or batches[0][0].shape[0] != size:
                raise RuntimeError(f"{self.path}: FFCV returned {[b[0].shape[0] for b in batches]} images for "
                                   f"one batch of {size}")
            chunks.append(self._to_nchw(batches[0][0])[: min(size, idx.size - start)])
        if len(chunks) == 1:
            return chunks[0]
        if not chunks:
            return torch.empty((0, *self.image_shape), dtype=torch.uint8)
        return torch.cat(chunks)

    def batches(self, batch_size: int, *, ahead: int = 2) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every image exactly once in file order: ``(uint8 [b, C, H, W], int64 labels [b])``.

        The last batch is partial when ``batch_size`` does not divide the count. FFCV decodes ``ahead``
        batches in advance into ``ahead + 2`` buffers of ``batch_size`` images (pinned when CUDA is
        present). Each image tensor is such a buffer, valid until the next batch is requested: copy or
        convert it first. Raises if FFCV yields a different number of images than the file holds.
        """
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        if ahead < 1:  # FFCV's queue is unbounded at 0, and its two buffers would be overwritten under us
            raise ValueError(f"ahead must be >= 1, got {ahead}")
        if (batch_size, ahead) not in self._sequential:
            self._sequential[batch_size, ahead] = self._loader(batch_size, indices=None, batches_ahead=ahead)
        loader = self._sequential[batch_size, ahead]
        threads = torch.get_num_threads()
        seen = 0
        with keep_torch_threads():
            iterator = iter(loader)
        try:
            for (x,) in iterator:
                if torch.get_num_threads() != threads:  # FFCV's worker thread set it before its first batch
                    torch.set_num_threads(threads)
                n = x.shape[0]
                yield self._to_nchw(x), self.labels[seen:seen + n]
                seen += n
        finally:
            iterator.close()
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        if seen != len(self):
            raise RuntimeError(f"{self.path}: a full pass yielded {seen} of {len(self)} images")


class ChannelStats:
    """Per-channel mean / population std of uint8 pixels, accumulated batch by batch.

    The same arithmetic as the in-memory loaders (:func:`rtp_scale.data.split.build_split`: uint8 ->
    float32 ``/ 255`` -> :func:`~rtp_scale.data.split.channel_stats` in float64 over chunks of 4096
    images), so the pixels of an in-memory dataset fed in chunks of 4096 give the very same numbers.
    """

    CHUNK = 4096

    def __init__(self, channels: int) -> None:
        self.total = torch.zeros(channels, dtype=torch.float64)
        self.total_sq = torch.zeros(channels, dtype=torch.float64)
        self.count = 0

    def add(self, x_NCHW: torch.Tensor) -> None:
        part = x_NCHW.to(device="cpu", dtype=torch.float32).div_(255.0).to(torch.float64)
        self.total += part.sum(dim=(0, 2, 3))
        self.total_sq += part.square().sum(dim=(0, 2, 3))
        self.count += x_NCHW.shape[0] * x_NCHW.shape[2] * x_NCHW.shape[3]

    def result(self) -> tuple[list[float], list[float]]:
        if self.count == 0:
            raise UserError("cannot compute normalisation statistics of an empty training set")
        mean = self.total / self.count
        var = (self.total_sq / self.count - mean.square()).clamp_min(0.0)
        std = torch.where(var > 0, var.sqrt(), torch.ones_like(var))
        return [float(v) for v in mean], [float(v) for v in std]
