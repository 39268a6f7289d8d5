"""The distilled-set artifact: one safetensors file a user can train from with only torch + safetensors.

Layout (format version 1):

* tensors ``images_NCHW`` [N, C, H, W], ``labels_N`` [N] int64, ``targets_NC`` [N, num_classes] — the
  materialised set, class-major; ``safetensors.torch.load_file(path)["images_NCHW"]`` is all a user needs.
* tensors ``memory.<name>`` — the memory's own parameters, so :func:`load_artifact` rebuilds it exactly.
* metadata (str -> JSON string): ``format``, ``format_version``, ``memory_kind``, ``memory_meta``,
  ``shapes``, ``dataset_name``, ``image_shape``, ``num_classes``, ``class_names``, ``mean``, ``std``
  (the normalisation the images live in), ``storage``, ``dataset`` (the full ``dataset_meta``).
* optional, for ``python -m rtp_scale.evaluate``: metadata ``evaluation`` — the config keys that decide how the
  set is evaluated (:data:`EVALUATION_KEYS`: preprocessing, the network, augmentation, the ``eval.*`` protocol
  and ``run.seed``); for ZCA runs metadata ``zca`` (the fitted transform's :meth:`ZCA.fingerprint` and whether
  it is stored) and tensors ``zca.mean_D`` [D] and ``zca.transform_DD`` [D, D], float32 (the dtype the images are
  whitened in, so whitening with them is bit-identical to the run's), stored when D <= :data:`ZCA_STORE_MAX_DIM`.
  Larger transforms (64x64x3: 600 MB) are rebuilt from ``data.*`` and checked against the fingerprint.
  Files without these keys (older ones, continual-learning memories) still load.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import Tensor, nn

from rtp_scale.config import EVAL_PROTOCOLS, Config, build_config, parse_override, read_recipe
from rtp_scale.data.zca import ZCA
from rtp_scale.errors import UserError

FORMAT = "rtp_scale.distilled_set"
FORMAT_VERSION = 1
_MEMORY_PREFIX = "memory."
_ZCA_TENSORS = ("zca.mean_D", "zca.transform_DD")

ZCA_STORE_MAX_DIM = 3 * 32 * 32
"""Largest image size D (values per image) whose D x D whitening matrix is stored (CIFAR: 37.7 MB float32)."""

EVALUATION_KEYS: dict[str, tuple[str, ...] | None] = {
    "run": ("seed",), "data": ("name", "root", "resolution", "zca", "zca_reg", "augment", "val_per_class",
                                  "eval_split"), "model": None, "eval": None}
"""Config keys recorded in an artifact because they change its evaluation (None: the whole section). The
evaluation seeds derive from ``run.seed``; ``eval.every`` and ``eval.scores`` steer only distillation's own
evaluations and are left out."""
_DISTILL_ONLY_EVAL_KEYS = ("every", "scores")


def evaluation_settings(config: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The :data:`EVALUATION_KEYS` of a run's config (``Config.to_dict()``), as recorded in an artifact."""
    picked = {}
    for section, keys in EVALUATION_KEYS.items():
        values = config[section]
        chosen = keys if keys is not None else [k for k in values if not (
            section == "eval" and k in _DISTILL_ONLY_EVAL_KEYS)]
        picked[section] = {k: values[k] for k in chosen}
    return picked


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


def recorded_settings(meta: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], bool]:
    """(settings, complete): the artifact's recorded :data:`EVALUATION_KEYS`; for a file written before they were
    recorded, the few it does know (the dataset and whether it was whitened) and ``complete=False``."""
    if "evaluation" in meta:
        settings = {section: dict(table) for section, table in meta["evaluation"].items()}
        # Written before eval.micro_batch existed, so its run trained on whole minibatches: keep that order of sums.
        settings.setdefault("eval", {}).setdefault("micro_batch", 0)
        # Written before model.fused existed, so its run used the plain modules: keep their rounding.
        settings.setdefault("model", {}).setdefault("fused", False)
        return settings, True
    known: dict[str, Any] = {}
    if meta.get("dataset_name"):
        known["name"] = meta["dataset_name"]
    if (meta.get("dataset") or {}).get("zca") is not None:
        known["zca"] = bool(meta["dataset"]["zca"])
    return {"data": known}, False


def config_for_artifact(path: str | os.PathLike, meta: dict[str, Any], *, recipe: str | None,
                        overrides: list[str]) -> tuple[Config, list[tuple[str, Any, Any]], bool]:
    """The config an artifact is evaluated with: defaults <- its recorded settings <- ``recipe`` <- ``overrides``.

    Returns (config, overridden, complete): ``overridden`` lists ``(section.key, recorded, new)`` for every
    recorded key that the recipe or an override sets to another value; ``complete`` is False for an artifact
    that records no evaluation settings (see :func:`recorded_settings`).
    """
    recorded, complete = recorded_settings(meta)
    as_recorded = build_config(recorded, origin=f"the evaluation settings of {path}")
    user_recipe = read_recipe(recipe) if recipe else {}
    merged: dict[str, Any] = {section: dict(table) for section, table in recorded.items()}
    explicit: set[tuple[str, str]] = set()
    for section, table in user_recipe.items():
        if isinstance(table, dict):
            merged.setdefault(section, {}).update(table)
            explicit.update((section, key) for key in table)
        else:
            merged[section] = table  # build_config names the mistake
    parsed = [parse_override(text) for text in overrides]
    explicit.update((section, key) for section, key, _ in parsed)
    asked = [value for section, key, value in parsed if (section, key) == ("eval", "protocol")]
    protocol = asked[-1] if asked else (user_recipe.get("eval") or {}).get("protocol")
    # a protocol asked for now replaces the recorded values of the keys it sets (keys given explicitly win);
    # an unknown name fails in build_config below
    for key in EVAL_PROTOCOLS.get(protocol, {}) if protocol else ():
        if ("eval", key) not in explicit:
            merged.get("eval", {}).pop(key, None)
            explicit.add(("eval", key))  # reported below like a key set by hand
    cfg = build_config(merged, overrides, origin=str(recipe) if recipe else "recipe")
    overridden = []
    for section, table in recorded.items():
        for key in table:
            old, new = getattr(getattr(as_recorded, section), key), getattr(getattr(cfg, section), key)
            if (section, key) in explicit and old != new:
                overridden.append((f"{section}.{key}", old, new))
    return cfg, overridden, complete


def save_artifact(path: str | os.PathLike, memory: nn.Module, *, dataset_meta: dict,
                  evaluation: dict | None = None, zca: ZCA | None = None) -> None:
    """Write the memory and its materialised images to ``path`` atomically (tmp file + os.replace).

    ``dataset_meta`` should hold ``name`` (or ``dataset``), ``class_names``, ``mean`` and ``std``, and may hold
    ``budget_ipc`` (recorded in the storage report); every key is kept under ``dataset``. ``evaluation`` is
    :func:`evaluation_settings` of the run's config; ``zca`` the transform the images were distilled in.
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
    extra_meta: dict[str, Any] = {}
    if evaluation is not None:
        extra_meta["evaluation"] = _jsonable(evaluation)
    if zca is not None:
        stored = zca.mean_D.numel() <= ZCA_STORE_MAX_DIM
        extra_meta["zca"] = {**zca.fingerprint(), "stored": stored}
        if stored:
            tensors.update({name: t.detach().cpu().to(torch.float32).contiguous()
                            for name, t in zip(_ZCA_TENSORS, (zca.mean_D, zca.transform_DD))})
    metadata = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "memory_kind": meta["kind"], "memory_meta": meta,
        "shapes": {k: list(v.shape) for k, v in tensors.items()},
        "dataset_name": ds_meta.get("name", ds_meta.get("dataset")), "image_shape": image_shape, "num_classes": num_classes,
        "class_names": class_names, "mean": ds_meta.get("mean"), "std": ds_meta.get("std"),
        "storage": memory.storage(ds_meta.get("budget_ipc")).as_dict(), "dataset": ds_meta, **extra_meta,
    }
    encoded = {k: json.dumps(v) for k, v in metadata.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        # serialised in memory, written by Python: a full disk is an OSError (ENOSPC) that the entry points report in
        # one line, where safetensors' own file writer raises its own error type
        payload = save(tensors, metadata=encoded)
        with open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
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


def load_artifact_zca(path: str | os.PathLike, meta: dict[str, Any]) -> ZCA | None:
    """The whitening transform stored in the artifact ``path`` (``meta`` from :func:`load_artifact`), or None
    when the run used no ZCA or its transform was too large to store."""
    if not (meta.get("zca") or {}).get("stored"):
        return None
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            mean_D, transform_DD = (handle.get_tensor(name) for name in _ZCA_TENSORS)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{path}: metadata says a ZCA transform is stored but it cannot be read "
                        f"({first_line})") from err
    dim = int(meta["zca"].get("dim", mean_D.numel()))
    if list(mean_D.shape) != [dim] or list(transform_DD.shape) != [dim, dim]:
        raise UserError(f"{path}: stored ZCA tensors have shapes {list(mean_D.shape)} and "
                        f"{list(transform_DD.shape)}, expected [{dim}] and [{dim}, {dim}]")
    return ZCA.from_transform(mean_D, transform_DD)


def check_zca_refit(path: str | os.PathLike, meta: dict[str, Any], zca: ZCA, *, rtol: float = 1e-6) -> None:
    """A transform refitted from ``data.*`` must match the fingerprint of the one the artifact was distilled in
    (a different copy or version of the training set gives another whitening, and silently other images)."""
    recorded = meta.get("zca")
    if not recorded:
        return
    fitted = zca.fingerprint()
    for key in ("dim", "transform_trace", "mean_sum"):
        want, got = float(recorded[key]), float(fitted[key])
        if abs(got - want) > rtol * max(abs(want), 1.0):
            raise UserError(f"{path}: the ZCA transform refitted on this training set differs from the run's "
                            f"({key} {got:.9g}, the run's {want:.9g}); the training set is not the one the "
                            f"artifact was distilled on")


def check_normalisation(path: str | os.PathLike, meta: dict[str, Any], mean: list[float], std: list[float],
                        *, rtol: float = 1e-5) -> None:
    """The test images must be normalised as the artifact's images were (its recorded mean/std, when known)."""
    for name, recorded, here in (("mean", meta.get("mean"), mean), ("std", meta.get("std"), std)):
        if recorded is None:
            continue
        a, b = torch.tensor(recorded, dtype=torch.float64), torch.tensor(list(here), dtype=torch.float64)
        if a.shape != b.shape or not torch.allclose(a, b, rtol=rtol, atol=1e-7):
            raise UserError(f"{path} was distilled on images normalised with {name} {recorded}, but the dataset "
                            f"here gives {list(here)}: another copy or version of the dataset")
