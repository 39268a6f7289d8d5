"""Model construction by name, and generator-driven parameter initialisation.

``init_params`` exists because the engine re-initialises a fresh network every outer step: drawing from an
explicit ``torch.Generator`` (never the global RNG) makes every init reproducible from (seed, step, rank).
Names and the options each model takes are listed in :mod:`rtp_scale.models.catalog`.
"""
from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from rtp_scale.errors import UserError
from rtp_scale.models.catalog import OPTION_FIELDS, builder_keywords, model_names, resolve_builder

if TYPE_CHECKING:
    from rtp_scale.config import ModelConfig

__all__ = ["build_configured", "build_model", "check_batch_split", "init_params", "load_params_", "model_names",
           "resolved_options", "uses_batch_statistics"]


def build_model(name: str, *, channels: int, num_classes: int, image_size: tuple[int, int],
                **options: object) -> nn.Module:
    """Build a model by name or ``module:Builder`` spec; unknown names or options are a :class:`UserError`.

    The result must be stateless under ``torch.func.functional_call``: norm layers that track running
    statistics are refused (their buffers would be mutated inside unrolls and used in evaluation).
    """
    builder = resolve_builder(name)
    valid, var_kw = builder_keywords(name, builder)
    unknown = sorted(set(options) - set(valid))
    if unknown and not var_kw:
        raise UserError(f"unknown option(s) {', '.join(unknown)} for model {name!r}; valid: {', '.join(valid)}")
    model = builder(channels=channels, num_classes=num_classes, image_size=tuple(image_size), **options)
    if not isinstance(model, nn.Module):
        raise UserError(f"model {name!r} returned a {type(model).__name__}, not a torch.nn.Module")
    for mod_name, module in model.named_modules():
        if getattr(module, "track_running_stats", False):
            raise UserError(f"model {name!r}: {type(module).__name__} at {mod_name!r} tracks running statistics; "
                            f"build it with track_running_stats=False (the engine calls models functionally and "
                            f"normalises with batch statistics)")
    return model


def build_configured(model_cfg: "ModelConfig", *, channels: int, num_classes: int,
                     image_size: tuple[int, int]) -> nn.Module:
    """The model a ``[model]`` config section describes: its name, with the options that differ from the field
    defaults (the config has already filled in a built-in model's own defaults), and ``model.fused`` for a
    model that has fused blocks."""
    model = build_model(model_cfg.name, channels=channels, num_classes=num_classes, image_size=image_size,
                        **model_cfg.set_options())
    if hasattr(model, "fused"):
        model.fused = model_cfg.fused
    return model


def resolved_options(model_cfg: "ModelConfig") -> dict[str, object]:
    """Every option the model takes, as it is built: the set ones, and the builder's defaults for the rest."""
    builder = resolve_builder(model_cfg.name)
    params = inspect.signature(builder).parameters
    resolved = {k: params[k].default for k in OPTION_FIELDS
                if k in params and params[k].default is not inspect.Parameter.empty}
    resolved.update(model_cfg.set_options())
    return resolved


def uses_batch_statistics(model: nn.Module) -> bool:
    """Whether any layer normalises across the batch (its output for one image depends on the others)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def check_batch_split(model: nn.Module, name: str, *, real_batch: int, outer_chunk: int, inner_shards: int) -> None:
    """Refuse the settings that split a batch when ``model`` normalises with batch statistics.

    Cutting the real batch into ``outer_chunk`` parts, or the inner minibatch into ``inner_shards`` shards, gives
    each piece its own statistics: another loss, not the same one computed in pieces as for every other network.
    """
    if not uses_batch_statistics(model):
        return
    if 0 < outer_chunk < real_batch:
        raise UserError(f"model.name={name} normalises with batch statistics: unroll.outer_chunk={outer_chunk} would "
                        f"normalise each part of the {real_batch}-image real batch on its own; set "
                        f"unroll.outer_chunk=0 (or >= {real_batch})")
    if inner_shards > 1:
        raise UserError(f"model.name={name} normalises with batch statistics: dist.inner_shards={inner_shards} would "
                        f"normalise each shard of the inner minibatch on its own; use dist.inner_shards=1 or a "
                        f"network without batch norm")


def _uniform(shape: torch.Size, bound: float, generator: torch.Generator, like: Tensor) -> Tensor:
    # Draw in the parameter's dtype on the generator's device, then move: the same seed gives the same bits.
    u = torch.rand(shape, generator=generator, dtype=like.dtype, device=generator.device)
    return ((u * 2 - 1) * bound).to(like.device)


def init_params(model: nn.Module, generator: torch.Generator) -> dict[str, Tensor]:
    """A fresh random init of every parameter, drawn only from ``generator``, with torch's default laws.

    Conv/linear weights: kaiming_uniform(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)); biases the same
    bound; norm weights 1, biases 0. Returns detached tensors keyed like ``model.named_parameters()``.
    """
    params: dict[str, Tensor] = {}
    for mod_name, module in model.named_modules():
        own = dict(module.named_parameters(recurse=False))
        if not own:
            continue
        prefix = f"{mod_name}." if mod_name else ""
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            fan_in = module.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            for pname, p in own.items():  # weight first, then bias: a fixed draw order
                params[prefix + pname] = _uniform(p.shape, bound, generator, p)
        elif isinstance(module, (nn.GroupNorm, nn.BatchNorm2d, nn.LayerNorm, nn.InstanceNorm2d)):
            for pname, p in own.items():
                fill = 1.0 if pname == "weight" else 0.0
                params[prefix + pname] = torch.full_like(p, fill).detach()
        else:
            raise UserError(f"init_params: no init rule for the parameters of {type(module).__name__} at "
                            f"{mod_name!r}; models hold parameters in Conv, Linear and norm layers only")
    return params


def load_params_(model: nn.Module, params: dict[str, Tensor]) -> None:
    """Copy ``params`` into the module's parameters in place (names must match exactly)."""
    named = dict(model.named_parameters())
    missing, extra = sorted(set(named) - set(params)), sorted(set(params) - set(named))
    if missing or extra:
        raise KeyError(f"load_params_: missing {missing}, unexpected {extra}")
    with torch.no_grad():
        for name, p in named.items():
            p.copy_(params[name])
