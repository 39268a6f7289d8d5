"""Atomic checkpoints of a distillation run, and the checks that refuse a checkpoint from another run.

A checkpoint holds everything the next outer step depends on: the memory, the outer optimiser's state,
learned inner learning rates, the step counter and the metrics so far. Random state needs no saving:
every draw comes from a generator derived from (run seed, outer step, rank), so a resumed run draws
exactly what the uninterrupted run would have (see rtp_scale.seeding).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rtp_scale.errors import UserError

FORMAT_VERSION = 1


@dataclass(kw_only=True)
class TrainingState:
    """What a checkpoint stores."""

    step: int
    """Outer steps completed."""
    memory: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    identity: dict[str, Any]
    """Fields that must match between the run that wrote the checkpoint and the run resuming it."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Learned inner learning rates and their optimiser, method state (e.g. a model pool)."""
    history: list[dict[str, float]] = field(default_factory=list)


def save_checkpoint(path: str | Path, state: TrainingState) -> None:
    """Write to a temporary file, fsync, then rename: a kill mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    payload = {"format_version": FORMAT_VERSION, **state.__dict__}
    with open(tmp, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, *, identity: dict[str, Any]) -> TrainingState:
    """Read a checkpoint and check it belongs to a run configured like this one."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint not found: {path}") from None
    except Exception as err:  # torch raises several types for a damaged zip/pickle; all mean "unreadable"
        raise UserError(f"checkpoint {path} is corrupt or not a checkpoint ({type(err).__name__}); "
                        f"delete it to start over") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise UserError(f"checkpoint {path} has an unknown format; delete it to start over")
    saved = payload.get("identity", {})
    for key, value in identity.items():
        if saved.get(key) != value:
            raise UserError(f"checkpoint {path} is from a different run: {key} was {saved.get(key)!r}, "
                            f"now {value!r}; use another run.out_dir or set checkpoint.resume=false")
    payload.pop("format_version")
    return TrainingState(**payload)
