"""Real-batch sources: where the distill loop's real images come from, in memory or streamed from FFCV.

Both backends give the same interface (:class:`RealSource`):

* ``sample(generator) -> (x_NCHW, y_N)``: ``per_class`` images of every class, in class blocks
  ``[class 0 x per_class, class 1 x per_class, ...]``, normalised float32 on ``device``. The indices are
  drawn by :class:`~rtp_scale.data.sampler.ClassBalancedSampler` from the caller's generator, so the
  generator advances identically on both backends, and a raw FFCV conversion of an image folder gives
  bit-for-bit the batches of ``data.backend=memory``.
* ``take(indices)``: specific training images (e.g. to initialise a memory from real images), with
  ``train_labels`` (CPU int64, all of them) to choose them by class.
* ``eval_batches(batch_size, split)``: every image of a split exactly once, in order, the last partial
  batch included; ``eval_tensors(split)`` gathers them into two tensors.

Build one with :func:`make_real_source`. The FFCV backend needs ``data.root`` to be a folder written by
``python -m rtp_scale.data.convert``; it reads the train/test ``.beton`` files and ``manifest.json``
(classes, resolution, the training pixels' mean/std) and never loads the dataset into memory.
"""
from __future__ import annotations

from typing import Iterator, Protocol, runtime_checkable

import torch

from rtp_scale.config import DataConfig
from rtp_scale.data.split import DatasetInfo, SplitDataset
from rtp_scale.data.sampler import ClassBalancedSampler
from rtp_scale.errors import UserError


@runtime_checkable
class RealSource(Protocol):
    """What distillation and evaluation need from the real dataset."""

    info: DatasetInfo
    per_class: int
    device: torch.device

    @property
    def train_labels(self) -> torch.Tensor:
        """int64 ``[N_train]`` on the CPU."""
        ...

    def sample(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A class-balanced real batch ``(x [C * per_class, C, H, W], y [C * per_class])`` on ``device``."""
        ...

    def take(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training images and labels at ``indices``, on ``device``."""
        ...

    def num_images(self, split: str = "test") -> int:
        ...

    def eval_batches(self, batch_size: int = 512, split: str = "test") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every image of ``split`` once, in order, in batches of ``batch_size`` (the last may be smaller)."""
        ...

    def eval_tensors(self, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split as two tensors on ``device``."""
        ...


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise UserError(f"split must be 'train' or 'test', got {split!r}")


class MemorySource:
    """A :class:`SplitDataset` held in memory (already on its device): a thin wrapper of the sampler."""

    def __init__(self, data: SplitDataset, *, per_class: int) -> None:
        self.data = data
        self.info = data.info
        self.per_class = per_class
        self.device = data.train_x.device
        self._sampler = ClassBalancedSampler(data.train_y.cpu(), data.info.num_classes, per_class)

    @property
    def train_labels(self) -> torch.Tensor:
        return self.data.train_y.cpu()

    def _split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        _check_split(split)
        return (self.data.train_x, self.data.train_y) if split == "train" else (self.data.test_x, self.data.test_y)

    def sample(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self._sampler.sample(generator).to(self.device)
        return self.data.train_x[idx], self.data.train_y[idx]

    def take(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = indices.to(self.device)
        return self.data.train_x[idx], self.data.train_y[idx]

    def num_images(self, split: str = "test") -> int:
        return int(self._split(split)[1].numel())

    def eval_batches(self, batch_size: int = 512, split: str = "test") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        x, y = self._split(split)
        for start in range(0, len(y), batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]

    def eval_tensors(self, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        return self._split(split)


class FfcvSource:
    """Real batches streamed from a converted folder (``train.beton``, ``test.beton``, ``manifest.json``).

    Images are read as uint8 on the CPU by FFCV (``workers`` decode threads), moved to ``device`` as
    uint8 (a quarter of the float bytes; pinned buffers when CUDA is present, so the copy is
    asynchronous), and converted there exactly as the in-memory loader converts them:
    ``x.float() / 255``, then ``(x - mean) / std`` with the manifest's training-pixel statistics.
    """

    def __init__(self, folder: str, *, per_class: int, device: torch.device | str = "cpu",
                 expect_name: str | None = None, resolution: int = 0, workers: int | None = None,
                 verify: bool = True) -> None:
        from rtp_scale.data.ffcv_io import BetonFile, check_split_file, read_manifest, require_ffcv

        require_ffcv()
        if per_class < 1:
            raise UserError(f"per_class must be >= 1, got {per_class}")
        manifest = read_manifest(folder)
        if expect_name is not None and manifest.dataset != expect_name:
            raise UserError(f"{folder} holds a conversion of {manifest.dataset!r} but data.name={expect_name!r}; "
                            f"set data.name={manifest.dataset}")
        if resolution and (manifest.height, manifest.width) != (resolution, resolution):
            raise UserError(f"{folder} was converted at {manifest.height}x{manifest.width} but data.resolution="
                            f"{resolution}; convert again with --resolution {resolution} or set data.resolution=0")
        self.manifest = manifest
        self.per_class = per_class
        self.device = torch.device(device)
        num_classes = len(manifest.classes)
        self.info = DatasetInfo(name=manifest.dataset, channels=manifest.channels, height=manifest.height,
                                width=manifest.width, num_classes=num_classes, mean=tuple(manifest.mean),
                                std=tuple(manifest.std), class_names=tuple(manifest.classes))
        self._files = {
            split: BetonFile(check_split_file(folder, manifest, split, checksum=verify), encoding=manifest.encoding,
                             image_shape=self.info.image_shape, num_classes=num_classes,
                             class_counts=manifest.splits[split].class_counts, workers=workers,
                             batch_size=num_classes * per_class)
            for split in ("train", "test")
        }
        self._sampler = ClassBalancedSampler(self._files["train"].labels, num_classes, per_class)
        self._mean_C11 = torch.tensor(self.info.mean, dtype=torch.float32).view(-1, 1, 1).to(self.device)
        self._std_C11 = torch.tensor(self.info.std, dtype=torch.float32).view(-1, 1, 1).to(self.device)
        self._copy_done: torch.cuda.Event | None = None

    @property
    def train_labels(self) -> torch.Tensor:
        return self._files["train"].labels

    def _normalise(self, x_uint8_NCHW: torch.Tensor) -> torch.Tensor:
        x = x_uint8_NCHW.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            # FFCV's pinned host buffer must outlive the asynchronous copy: see _wait_for_copy
            self._copy_done = torch.cuda.Event()
            self._copy_done.record()
        # The same float ops in the same order as registry.build_split, hence the same bits.
        x = x.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
        return x.sub_(self._mean_C11).div_(self._std_C11)

    def _wait_for_copy(self) -> None:
        """Block until the last host-to-device copy has read its source, before FFCV may reuse that memory."""
        if self._copy_done is not None:
            self._copy_done.synchronize()
            self._copy_done = None

    def _read(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = indices.to("cpu", torch.int64)
        train = self._files["train"]
        self._wait_for_copy()
        return self._normalise(train.read(idx)), train.labels[idx].to(self.device)

    def sample(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self._read(self._sampler.sample(generator))

    def sample_uint8(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The same draw as :meth:`sample`, undecoded to float: uint8 ``[n, C, H, W]`` and labels, on the CPU.

        For callers that convert on their own device; the image tensor may be a view of FFCV's buffer.
        """
        idx = self._sampler.sample(generator).to("cpu", torch.int64)
        train = self._files["train"]
        self._wait_for_copy()
        return train.read(idx), train.labels[idx]

    def take(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._read(indices)

    def num_images(self, split: str = "test") -> int:
        _check_split(split)
        return len(self._files[split])

    def eval_batches(self, batch_size: int = 512, split: str = "test") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        _check_split(split)
        self._wait_for_copy()
        for x, y in self._files[split].batches(batch_size):
            # normalising copies the batch out of FFCV's buffer; FFCV reuses it some batches later
            yield self._normalise(x), y.to(self.device)
            self._wait_for_copy()

    def eval_tensors(self, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = zip(*self.eval_batches(1024, split))
        return torch.cat(xs), torch.cat(ys)


def make_real_source(cfg: DataConfig, data_or_none: SplitDataset | None, device: torch.device | str, *,
                     workers: int | None = None, verify: bool = True) -> RealSource:
    """The real-batch source ``cfg`` asks for.

    ``backend="memory"``: wraps ``data_or_none`` (as :func:`rtp_scale.runtime.prepare_data` returns it,
    already on ``device``), loading it when None. ``backend="ffcv"``: ``data_or_none`` must be None (nothing
    is loaded into memory); ``cfg.root`` is a converted folder whose dataset is ``cfg.name``; ``workers``
    decode threads (default: all usable CPUs); ``verify`` checks the files' sha256 against the manifest
    (about 1-2 s per GB, once; sizes are always checked).
    """
    if cfg.backend == "memory":
        if data_or_none is None:
            from rtp_scale.runtime import prepare_data

            data_or_none = prepare_data(cfg, device)
        return MemorySource(data_or_none, per_class=cfg.real_per_class)
    if cfg.backend != "ffcv":
        raise UserError(f"data.backend={cfg.backend!r} is not 'memory' or 'ffcv'")
    if data_or_none is not None:
        raise UserError("data.backend=ffcv streams from data.root; pass no in-memory dataset")
    if cfg.zca:
        raise UserError("data.zca=true needs the whole training set in memory; use data.backend=memory or data.zca=false")
    if cfg.download:
        raise UserError("data.download does not apply to data.backend=ffcv; convert a local copy with "
                        "python -m rtp_scale.data.convert")
    if not cfg.root:
        raise UserError("data.backend=ffcv needs data.root: a folder written by python -m rtp_scale.data.convert")
    return FfcvSource(cfg.root, per_class=cfg.real_per_class, device=device, expect_name=cfg.name,
                      resolution=cfg.resolution, workers=workers, verify=verify)
