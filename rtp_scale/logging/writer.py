"""Metric writers. Only the main process opens a TensorBoard file; the others get :class:`NullWriter`,
so call sites never branch on the rank."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Protocol

import torch

METRICS_FILE = "metrics.jsonl"

class MetricWriter(Protocol):
    def scalars(self, values: dict[str, float], step: int) -> None: ...
    def images(self, tag: str, x_NCHW: torch.Tensor, step: int, *, nrow: int) -> None: ...
    def close(self) -> None: ...


class NullWriter:
    """Writes nothing (non-main ranks, or logging switched off)."""

    def scalars(self, values: dict[str, float], step: int) -> None:
        pass

    def images(self, tag: str, x_NCHW: torch.Tensor, step: int, *, nrow: int) -> None:
        pass

    def close(self) -> None:
        pass


def image_grid(x_NCHW: torch.Tensor, nrow: int) -> torch.Tensor:
    """A [C, H', W'] grid in [0, 1], each image min-max scaled on its own (synthetic images have no fixed range)."""
    from torchvision.utils import make_grid

    x = x_NCHW.detach().float().cpu()
    low = x.amin(dim=(1, 2, 3), keepdim=True)
    high = x.amax(dim=(1, 2, 3), keepdim=True)
    x = (x - low) / (high - low).clamp_min(1e-8)
    return make_grid(x, nrow=nrow, padding=1, pad_value=1.0)


class TensorBoardWriter:
    """TensorBoard events under ``log_dir`` plus a ``metrics.jsonl`` copy that needs no TensorBoard to read."""

    def __init__(self, log_dir: str | Path, jsonl_path: str | Path | None = None, *, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter  # imported lazily: tensorboard is slow to import

        # purge_step drops events past a resumed checkpoint so that curves do not fold back on themselves
        self._tb = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)
        self._jsonl = open(jsonl_path, "a") if jsonl_path else None

    def scalars(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self._tb.add_scalar(name, value, step)
        if self._jsonl is not None:
            clean = {k: (v if math.isfinite(v) else str(v)) for k, v in values.items()}
            self._jsonl.write(json.dumps({"step": step, **clean}) + "\n")
            self._jsonl.flush()

    def images(self, tag: str, x_NCHW: torch.Tensor, step: int, *, nrow: int) -> None:
        self._tb.add_image(tag, image_grid(x_NCHW, nrow), step)

    def close(self) -> None:
        self._tb.close()
        if self._jsonl is not None:
            self._jsonl.close()


def open_writer(out_dir: str | Path, *, enabled: bool, is_main: bool, purge_step: int | None = None) -> MetricWriter:
    if not (enabled and is_main):
        return NullWriter()
    out_dir = Path(out_dir)
    return TensorBoardWriter(out_dir / "tb", out_dir / METRICS_FILE, purge_step=purge_step)


def read_metrics(out_dir: str | Path) -> list[dict]:
    """The rows of a run's ``metrics.jsonl`` in the order written (none when it has none); a line cut by a kill
    mid-write is skipped."""
    path = Path(out_dir) / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
