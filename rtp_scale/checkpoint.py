"""Atomic, verified checkpoints of a distillation run, and the run directory's outputs.

A checkpoint holds everything the next outer step depends on: the memory, the outer optimiser's state,
learned inner learning rates, the step counter, the metrics so far and the whole config of the run that wrote
it (compared on resume by :mod:`rtp_scale.run_identity`). Random state needs no saving: every draw comes from
a generator derived from (run seed, outer step, rank), so a resumed run draws exactly what the uninterrupted
run would have (see rtp_scale.seeding).

Writing goes to ``checkpoint.pt.tmp``, is fsynced, then renamed over ``checkpoint.pt``: a kill, or a full
disk, mid-write leaves the previous checkpoint intact (a failed write removes the partial file and raises
:class:`CheckpointWriteError`, one line). The payload carries a SHA-256 digest of its own content, checked on
load: ``torch.load`` does not verify the zip's CRCs, so without it a flipped bit in a tensor would load as a
silently different memory. Every way a checkpoint can fail to load is one line that says which it is
(missing, unreadable, empty or truncated, corrupt, another format version, not a checkpoint); only files
that cannot be resumed are ever suggested to be set aside.
"""
from __future__ import annotations

import errno
import hashlib
import os
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rtp_scale.errors import UserError

FORMAT_VERSION = 2
"""2: the whole config in ``identity`` and a content digest. 1 (before): seven config fields, no digest."""

RUN_OUTPUTS = ("config.json", "checkpoint.pt", "checkpoint.pt.tmp", "metrics.jsonl", "tb", "memory.safetensors",
               "results.json", "results.json.tmp")
"""Everything ``rtp_scale.distill`` writes into ``run.out_dir`` (what a fresh start moves aside)."""

PREVIOUS_DIR = "previous"


class CheckpointWriteError(UserError):
    """A checkpoint could not be written (e.g. the disk is full); the previous one is intact."""


@dataclass(kw_only=True)
class TrainingState:
    """What a checkpoint stores."""

    step: int
    """Outer steps completed."""
    memory: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    identity: dict[str, Any]
    """The run's whole config (``rtp_scale.run_identity.config_identity``), checked when resuming."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Learned inner learning rates and their optimiser, method state (e.g. a model pool)."""
    history: list[dict[str, float]] = field(default_factory=list)
    resumes: list[dict[str, Any]] = field(default_factory=list)
    """Resumes that changed an allowed setting: ``{"step": k, "changes": {key: [old, new]}}`` each."""


def _feed(hasher, obj: Any) -> None:
    """Hash a payload's structure and values (the types a weights-only checkpoint can hold), in order."""
    if isinstance(obj, torch.Tensor):
        flat = obj.detach().cpu().contiguous().reshape(-1)
        hasher.update(f"T{obj.dtype}{tuple(obj.shape)}".encode())
        hasher.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    elif isinstance(obj, dict):
        hasher.update(f"D{len(obj)}".encode())
        for key, value in obj.items():
            _feed(hasher, key)
            _feed(hasher, value)
    elif isinstance(obj, (list, tuple)):
        hasher.update(f"{type(obj).__name__[0]}{len(obj)}".encode())
        for value in obj:
            _feed(hasher, value)
    elif isinstance(obj, float):
        hasher.update(b"F" + struct.pack("<d", obj))
    elif obj is None or isinstance(obj, (bool, int, str)):
        hasher.update(f"{type(obj).__name__}:{obj!r};".encode())
    else:
        raise TypeError(f"a checkpoint cannot hold a {type(obj).__name__}")


def _digest(body: dict[str, Any]) -> str:
    hasher = hashlib.sha256()
    _feed(hasher, body)
    return hasher.hexdigest()


def _os_error(err: BaseException) -> OSError | None:
    """The OSError behind ``err`` (torch reports a failed write as a RuntimeError whose context is the OSError)."""
    while err is not None and not isinstance(err, OSError):
        err = err.__cause__ or err.__context__
    return err


def save_checkpoint(path: str | Path, state: TrainingState) -> None:
    """Write to a temporary file, fsync, then rename: a kill or a full disk mid-write leaves the previous
    checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    body = dict(state.__dict__)
    payload = {"format_version": FORMAT_VERSION, "digest": _digest(body), **body}
    try:
        with open(tmp, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
    except (OSError, RuntimeError) as err:
        cause = _os_error(err)
        if cause is None:  # not an I/O failure: a bug, keep its traceback
            raise
        tmp.unlink(missing_ok=True)  # a partial file would only hold on to the space that ran out
        reason = f"{cause.strerror or cause} ({errno.errorcode.get(cause.errno, cause.errno)})"
        kept = (f"the previous {path.name} is left as it was — free the space (or fix the cause) and rerun the "
                f"same command to resume from it") if path.exists() else "no earlier checkpoint exists"
        raise CheckpointWriteError(f"could not write checkpoint {path}: {reason}; {kept}") from None
    os.replace(tmp, path)


def _read(path: Path) -> Any:
    """torch.load with each failure told apart; the payload as stored."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:  # opened here, so that an unreadable file is named as such
            if size == 0:
                raise UserError(f"checkpoint {path} is empty (its write was cut short?); it cannot be resumed: "
                                f"start over with --fresh (moves it aside)")
            if not zipfile.is_zipfile(handle):
                raise UserError(f"checkpoint {path} is truncated or not a checkpoint (no complete zip archive, "
                                f"{size} bytes); it cannot be resumed: start over with --fresh (moves it aside)")
            handle.seek(0)
            try:
                return torch.load(handle, map_location="cpu", weights_only=True)
            # a damaged zip member or pickle raises almost any type (RuntimeError, UnpicklingError, EOFError,
            # KeyError, UnicodeDecodeError, ...); all of them mean the bytes are not what was written
            except Exception as err:  # converted into the one-line report below, never ignored
                first = (str(err).splitlines() or [""])[0][:160]
                raise UserError(f"checkpoint {path} is corrupt ({type(err).__name__}: {first}); it cannot be "
                                f"resumed: start over with --fresh (moves it aside)") from None
    except FileNotFoundError:
        raise UserError(f"checkpoint not found: {path}") from None
    except PermissionError:
        raise UserError(f"checkpoint {path} cannot be read: permission denied (user id {os.geteuid()}); fix "
                        f"its permissions and rerun — the file itself may be fine") from None
    except OSError as err:
        raise UserError(f"checkpoint {path} cannot be read: {err.strerror or err}") from None


def load_checkpoint(path: str | Path) -> TrainingState:
    """Read and verify a checkpoint (whether it fits this run is :func:`rtp_scale.run_identity.check_resume`)."""
    path = Path(path)
    payload = _read(path)
    version = payload.get("format_version") if isinstance(payload, dict) else None
    if not isinstance(version, int):
        raise UserError(f"{path} is not an rtp_scale distillation checkpoint (no format version); it was left "
                        f"as it is: use another run.out_dir, or --fresh to move it aside")
    if version < FORMAT_VERSION:
        raise UserError(f"checkpoint {path} was written by an older rtp_scale (checkpoint format {version}; this "
                        f"release reads {FORMAT_VERSION} and cannot check that the run's configuration matches): "
                        f"finish it with the release that wrote it, or start over with --fresh (moves it aside)")
    if version > FORMAT_VERSION:
        raise UserError(f"checkpoint {path} was written by a newer rtp_scale (checkpoint format {version}; this "
                        f"release reads {FORMAT_VERSION}): upgrade rtp_scale to resume it")
    payload.pop("format_version")
    stored = payload.pop("digest", None)
    if stored != _digest(payload):
        raise UserError(f"checkpoint {path} is corrupt: its content does not match the digest written with it "
                        f"(the file changed after it was written); it cannot be resumed: start over with --fresh "
                        f"(moves it aside)")
    return TrainingState(**payload)


def restore(target: Any, state: Any, *, what: str, path: str | Path) -> None:
    """``target.load_state_dict(state)``, with a mismatch (shapes, parameter groups, keys) as one line."""
    try:
        target.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = "; ".join(lines[:3])[:300]
        raise UserError(f"checkpoint {path} does not fit this run's {what}: {detail}; was the dataset at "
                        f"data.root replaced? Use another run.out_dir, or --fresh to move the old outputs "
                        f"aside") from None


def set_aside_outputs(out_dir: str | Path) -> Path | None:
    """Move a previous run's outputs (:data:`RUN_OUTPUTS`) into ``<out_dir>/previous/<n>/`` (n = 1, 2, ...),
    before a fresh run writes anything; returns that folder, or None when there was nothing to move.

    Moved rather than deleted: a fresh start never destroys a run. Other files in the folder are left alone.
    """
    out_dir = Path(out_dir)
    found = [out_dir / name for name in RUN_OUTPUTS if (out_dir / name).exists() or (out_dir / name).is_symlink()]
    if not found:
        return None
    previous = out_dir / PREVIOUS_DIR
    taken = [int(p.name) for p in previous.iterdir() if p.name.isdigit()] if previous.is_dir() else []
    target = previous / str(max(taken, default=0) + 1)
    target.mkdir(parents=True)
    for item in found:
        os.replace(item, target / item.name)
    return target
