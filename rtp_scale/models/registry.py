"""Model construction by name, and generator-driven parameter initialisation.

``init_params`` exists because the engine re-initialises a fresh network every outer step: drawing from an
explicit ``torch.Generator`` (never the global RNG) makes every init reproducible from (seed, step, rank).
"""
from __future__ import annotations

import inspect
import math
from typing import Callable

import torch
from torch import Tensor, nn

from rtp_scale.errors import UserError
from rtp_scale.models.convnet import ConvNet

_BUILDERS: dict[str, Callable[..., nn.Module]] = {"convnet": ConvNet}
_REQUIRED = ("channels", "num_classes", "image_size")


def model_names() -> list[str]:
    return sorted(_BUILDERS)


def _options_of(builder: Callable[..., nn.Module]) -> list[str]:
    params = inspect.signature(builder).parameters
    return [n for n in params if n not in _REQUIRED and n != "self"]


def build_model(name: str, *, channels: int, num_classes: int, image_size: tuple[int, int],
                **options: object) -> nn.Module:
    """Build a model by name; unknown names or options are a :class:`UserError` listing the valid ones."""
    if name not in _BUILDERS:
        raise UserError(f"unknown model {name!r}; valid: {', '.join(model_names())}")
    builder = _BUILDERS[name]
    valid = _options_of(builder)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)} for model {name!r}; valid: {', '.join(valid)}")
    return builder(channels=channels, num_classes=num_classes, image_size=tuple(image_size), **options)


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
            raise TypeError(f"init_params: no init rule for parameters of {type(module).__name__} ({mod_name})")
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
