"""Which configuration a checkpoint may be resumed with.

A checkpoint records the whole resolved config of the run that wrote it (:func:`config_identity`). A resumed
run must agree with it on **every** key, derived from the :class:`~rtp_scale.config.Config` dataclasses (so a
key added later is part of the identity by default), except the keys of one explicit allowlist:

``UNUSED_BY_THE_RESULT`` -- keys that cannot change the distilled memory: ``recipe.*`` (descriptions),
``run.out_dir``, ``data.download``, ``data.eval_split`` and ``eval.*`` (evaluation only reads the memory),
``log.*`` and ``checkpoint.*``. ``data.backend`` too: RAM and streamed ``.beton`` files draw bit-identical
batches.

``MAY_CHANGE_ON_RESUME`` -- keys that do change the rest of the run and may still be changed on purpose; the
resumed run names each one that changed (old -> new) on stderr, in every later checkpoint and in
``results.json``, so a changed run is never silent:

- ``meta.steps``: extend (or shorten) a run; only under ``meta.schedule=constant`` (a cosine schedule is
  a function of ``meta.steps``, so its remaining steps would differ) and never below the checkpoint's step;
- ``meta.lr``, ``meta.grad_clip``, ``meta.lr_lr``: the recovery from a divergence ("lower the lr and resume");
- ``run.device``, ``model.fused``, ``dist.inner_shards``, ``dist.batch_unrolls``, ``unroll.segment``,
  ``unroll.offload``, ``unroll.outer_chunk``, ``unroll.memory_budget_mb``: how the same exact meta-gradient is
  computed (device, fused or plain ConvNet blocks, sharding of the inner batch, unrolls one by one or stacked,
  memory-for-recompute); they change floating-point rounding, not the computation (``unroll.precision`` does
  change it, so it is part of the identity);
- ``data.root``: where the dataset lives (moving a copy must not strand a run; the dataset's name, shape and
  preprocessing stay in the identity).

Keys a run does not use are not compared (``frepo.*`` unless method.name=frepo, ``dd.*`` unless dd,
``data.zca_reg`` without ZCA, ``meta.momentum`` unless SGD, ``meta.lr_floor`` without the cosine schedule,
``memory.pixel_downsample`` unless memory.kind=pixel).
"""
from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any, Callable

from rtp_scale.config import Config
from rtp_scale.errors import UserError

UNUSED_BY_THE_RESULT: dict[str, str] = {
    "recipe.*": "descriptions only",
    "run.out_dir": "the directory itself",
    "data.download": "whether a missing dataset may be fetched",
    "data.backend": "RAM and streamed .beton files draw bit-identical batches",
    "data.eval_split": "which split evaluation reports on",
    "eval.*": "evaluation reads the memory and never changes it",
    "log.*": "what is logged",
    "checkpoint.*": "when checkpoints are written",
}

MAY_CHANGE_ON_RESUME: dict[str, str] = {
    "meta.steps": "extends a run (constant schedule only)",
    "meta.lr": "recovery from a divergence",
    "meta.grad_clip": "recovery from a divergence",
    "meta.lr_lr": "recovery from a divergence",
    "run.device": "same computation, the device's rounding",
    "model.fused": "same network and gradients, the fused kernels' rounding",
    "dist.inner_shards": "same computation, sharded inner batch",
    "dist.batch_unrolls": "same computation, a step's unrolls stacked into one",
    "unroll.segment": "same exact gradient, another memory/recompute trade",
    "unroll.offload": "same exact gradient, boundary states in host memory",
    "unroll.outer_chunk": "same exact gradient, another memory/recompute trade",
    "unroll.memory_budget_mb": "same exact gradient, another memory/recompute trade",
    "data.root": "where the dataset lives",
}

PREDATING: dict[str, Any] = {"model.fused": False}
"""What a run did before a key existed, where that is not the key's default: a checkpoint without ``model.fused``
ran the plain modules, so resuming it fused is reported as a change."""

_USED_ONLY_WHEN: dict[str, Callable[[Config], bool]] = {
    "frepo.*": lambda cfg: cfg.method.name == "frepo",
    "dd.*": lambda cfg: cfg.method.name == "dd",
    "data.zca_reg": lambda cfg: cfg.data.zca,
    "meta.momentum": lambda cfg: cfg.meta.optimizer == "sgd",
    "meta.lr_floor": lambda cfg: cfg.meta.schedule == "cosine",
    "memory.pixel_downsample": lambda cfg: cfg.memory.kind == "pixel",
}


def flat_config(cfg: Config) -> dict[str, Any]:
    """Every config key as ``section.key`` -> value, straight from the dataclasses."""
    return {f"{section.name}.{key.name}": getattr(getattr(cfg, section.name), key.name)
            for section in dataclasses.fields(cfg) for key in dataclasses.fields(getattr(cfg, section.name))}


def _matches(key: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


def _used(key: str, cfg: Config) -> bool:
    return all(used(cfg) for pattern, used in _USED_ONLY_WHEN.items() if fnmatch.fnmatchcase(key, pattern))


def config_identity(cfg: Config) -> dict[str, Any]:
    """What a checkpoint records of its run: the whole flat config (the allowlists are applied when resuming,
    so that a later release with another allowlist still has every old value to compare)."""
    return {"config": flat_config(cfg)}


def _defaults() -> dict[str, Any]:
    return flat_config(Config())


def check_resume(identity: dict[str, Any], cfg: Config, *, step: int, where: str) -> dict[str, list]:
    """Refuse, in one line naming every differing key (old -> new), a checkpoint from a differently configured
    run; return the allowed changes that affect the run, ``{key: [old, new]}``, for the caller to report.

    ``step`` is the checkpoint's outer step, ``where`` names the checkpoint in messages.
    """
    saved = identity.get("config") if isinstance(identity, dict) else None
    if not isinstance(saved, dict):
        raise UserError(f"{where} records no configuration to check this run against; resume it with the "
                        f"rtp_scale release that wrote it, or start over with --fresh (moves it aside)")
    now, defaults = flat_config(cfg), _defaults()
    refused, allowed = [], {}
    for key, new in now.items():
        # a key this checkpoint predates: its run behaved like the key's default (new keys default to the old way),
        # or as PREDATING says where the default changed the way
        old = saved.get(key, PREDATING.get(key, defaults[key]))
        if old == new or _matches(key, UNUSED_BY_THE_RESULT) or not _used(key, cfg):
            continue
        if key == "meta.steps" and cfg.meta.schedule != "constant":
            refused.append(f"meta.steps {old!r} → {new!r} (meta.schedule={cfg.meta.schedule} depends on it)")
        elif key == "meta.steps" and new < step:
            refused.append(f"meta.steps {old!r} → {new!r} (the checkpoint is already at outer step {step})")
        elif _matches(key, MAY_CHANGE_ON_RESUME):
            allowed[key] = [old, new]
        else:
            refused.append(f"{key} {old!r} → {new!r}" + ("" if key in saved else " (not recorded; default assumed)"))
    if refused:
        raise UserError(f"{where} (outer step {step}) is from a differently configured run: {', '.join(refused)}; "
                        f"rerun with the checkpoint's values, use another run.out_dir, or start over with --fresh "
                        f"(moves the old outputs aside)")
    return allowed


def describe_changes(changes: dict[str, list]) -> str:
    """``meta.lr 1e+30 → 0.01, ...`` for a notice."""
    return ", ".join(f"{key} {old!r} → {new!r}" for key, (old, new) in changes.items())
