"""The distilled-set artifact: one safetensors file a user can train from with only torch + safetensors.

Layout (format version 1):

* tensors ``images_NCHW`` [N, C, H, W], ``labels_N`` [N] int64, ``targets_NC`` [N, num_classes] — the
  materialised set, class-major; ``safetensors.torch.load_file(path)["images_NCHW"]`` is all a user needs.
* tensors ``memory.<name>`` — the memory's own parameters, so :func:`load_artifact` rebuilds it exactly.
* metadata (str -> JSON string): ``format``, ``format_version``, ``memory_kind``, ``memory_meta``,
  ``shapes``, ``dataset_name``, ``image_shape``, ``num_classes``, ``class_names``, ``mean``, ``std``
  (the normalisation the images live in), ``storage``, ``dataset`` (the full ``dataset_meta``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from rtp_scale.errors import UserError

FORMAT = "rtp_scale.distilled_set"
FORMAT_VERSION = 1
_MEMORY_PREFIX = "memory."


def _jsonable(value: Any) -> Any:
    """Tensors, numpy values and tuples -> plain JSON types (mean/std often arrive as tensors)."""
    if isinstance(value, Tensor):
        return value.detach().cpu().tolist()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _materialise(memory: nn.Module) -> dict[str, Tensor]:
    with torch.no_grad():
        x_NCHW, y_N = memory.class_images()
        targets_NC = memory.targets()
    # clone: safetensors refuses tensors that share storage (a pixel memory's images are a view).
    return {"images_NCHW": x_NCHW.detach().cpu().clone().contiguous(),
            "labels_N": y_N.detach().cpu().to(torch.int64).clone().contiguous(),
            "targets_NC": targets_NC.detach().cpu().clone().contiguous()}


def save_artifact(path: str | os.PathLike, memory: nn.Module, *, dataset_meta: dict) -> None:
    """Write the memory and its materialised images to ``path`` atomically (tmp file + os.replace).

    ``dataset_meta`` should hold ``name`` (or ``dataset``), ``class_names``, ``mean`` and ``std``, and may hold
    ``budget_ipc`` (recorded in the storage report); every key is kept under ``dataset``.
    """
    path = Path(path)
    meta = memory.meta
    num_classes, image_shape = meta["num_classes"], list(meta["image_shape"])
    ds_meta = _jsonable(dict(dataset_meta))
    if "num_classes" in ds_meta and int(ds_meta["num_classes"]) != num_classes:
        raise UserError(f"dataset has {ds_meta['num_classes']} classes but the memory has {num_classes}")
    if "image_shape" in ds_meta and list(ds_meta["image_shape"]) != image_shape:
        raise UserError(f"dataset image shape {ds_meta['image_shape']} differs from the memory's {image_shape}")
    class_names = ds_meta.get("class_names")
    if class_names is not None and len(class_names) != num_classes:
        raise UserError(f"{len(class_names)} class names given for {num_classes} classes")

    tensors = {_MEMORY_PREFIX + k: v.detach().cpu().clone().contiguous() for k, v in memory.state_dict().items()}
    tensors.update(_materialise(memory))
    metadata = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "memory_kind": meta["kind"], "memory_meta": meta,
        "shapes": {k: list(v.shape) for k, v in tensors.items()},
        "dataset_name": ds_meta.get("name", ds_meta.get("dataset")), "image_shape": image_shape, "num_classes": num_classes,
        "class_names": class_names, "mean": ds_meta.get("mean"), "std": ds_meta.get("std"),
        "storage": memory.storage(ds_meta.get("budget_ipc")).as_dict(), "dataset": ds_meta,
    }
    encoded = {k: json.dumps(v) for k, v in metadata.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=encoded)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _read(path: Path) -> tuple[dict[str, str], dict[str, Tensor]]:
    if not path.is_file():
        raise UserError(f"artifact not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw_meta = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{path} is not a readable safetensors file ({first_line})") from err
    return raw_meta, tensors


def _decode(path: Path, raw_meta: dict[str, str]) -> dict[str, Any]:
    if raw_meta.get("format") != json.dumps(FORMAT) or "format_version" not in raw_meta:
        raise UserError(f"{path} is a safetensors file but not an rtp_scale distilled set")
    try:
        meta = {k: json.loads(v) for k, v in raw_meta.items()}
    except json.JSONDecodeError as err:
        raise UserError(f"{path} has corrupt metadata ({err})") from err
    if meta["format_version"] != FORMAT_VERSION:
        raise UserError(f"{path} has format version {meta['format_version']}; this rtp_scale reads "
                        f"version {FORMAT_VERSION}")
    for key in ("memory_kind", "memory_meta", "shapes"):
        if key not in meta:
            raise UserError(f"{path} lacks metadata key {key!r}")
    return meta


def load_artifact(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the memory saved by :func:`save_artifact`; returns (memory, decoded metadata).

    Every mistake a user can make here (wrong path, not a safetensors file, truncated or foreign file,
    newer format, tensors that disagree with the metadata) is a one-line :class:`UserError`.
    """
    from rtp_scale.memory import build_memory  # deferred: the package __init__ imports this module's siblings

    path = Path(path)
    raw_meta, tensors = _read(path)
    meta = _decode(path, raw_meta)
    mem_meta = dict(meta["memory_meta"])
    kind = mem_meta.pop("kind", None)
    if kind != meta["memory_kind"]:
        raise UserError(f"{path}: memory kind {kind!r} in memory_meta disagrees with {meta['memory_kind']!r}")
    if "image_shape" in mem_meta:
        mem_meta["image_shape"] = tuple(mem_meta["image_shape"])
    try:
        memory = build_memory(kind, **mem_meta)
    except (UserError, TypeError, ValueError) as err:  # metadata written by hand or by a foreign tool
        raise UserError(f"{path}: cannot rebuild the memory ({err})") from err

    state = memory.state_dict()
    n_items = memory.num_classes * memory.images_per_class
    expected = {_MEMORY_PREFIX + k: list(v.shape) for k, v in state.items()}
    expected.update({"images_NCHW": [n_items, *memory.image_shape], "labels_N": [n_items],
                     "targets_NC": [n_items, memory.num_classes]})
    for name, shape in expected.items():
        if name not in tensors:
            raise UserError(f"{path}: tensor {name!r} is missing")
        stored_meta_shape = meta["shapes"].get(name)
        if stored_meta_shape != shape or list(tensors[name].shape) != shape:
            raise UserError(f"{path}: tensor {name!r} has shape {list(tensors[name].shape)}, metadata says "
                            f"{stored_meta_shape}, memory {kind!r} needs {shape}")
    dtype = tensors[_MEMORY_PREFIX + next(iter(state))].dtype
    memory = memory.to(dtype=dtype)
    memory.load_state_dict({k: tensors[_MEMORY_PREFIX + k] for k in state})
    return memory, meta
