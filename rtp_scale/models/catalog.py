"""The built-in model names and the ``model.*`` options each takes.

Kept free of torch so that the config can validate ``model.name`` and the model options at parse time. A name
is a built-in (below) or an out-of-package spec ``package.module:Builder``: any callable taking the keywords
``channels``, ``num_classes`` and ``image_size`` (and optionally some of :data:`OPTION_FIELDS`) that returns an
``nn.Module``. A model receives the ``model.*`` options that differ from the field defaults (for a built-in,
its own defaults are filled in first); an option it does not take is an error.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from rtp_scale.errors import UserError
from rtp_scale.plugins import is_spec, load_object

OPTION_FIELDS = ("width", "depth", "norm", "pooling", "width_multiplier")
"""``model.*`` config fields that are passed to a model's builder (under the same keyword) when set."""
REQUIRED_KEYWORDS = ("channels", "num_classes", "image_size")


@dataclass(frozen=True, kw_only=True)
class CatalogEntry:
    """One built-in model."""

    builder: str
    """``module:function`` that builds it."""
    options: tuple[str, ...]
    """The ``model.*`` options it takes (a subset of OPTION_FIELDS)."""
    defaults: dict[str, object]
    """Its builder's defaults of those options: the config fills them in, so a saved config says what was built."""
    norm: str
    """Its normalisation, for the docs and tables."""
    summary: str
    """One line: what it is and where it comes from."""


_CONVNET_DEFAULTS = {"width": 32, "depth": 3, "norm": "instance", "pooling": "avg", "width_multiplier": 1}
CATALOG: dict[str, CatalogEntry] = {
    "convnet": CatalogEntry(
        builder="rtp_scale.models.convnet:convnet", options=tuple(_CONVNET_DEFAULTS), defaults=_CONVNET_DEFAULTS,
        norm="model.norm (default instance)",
        summary="DC/RtP/FRePo ConvNet: depth x [conv3x3(width), norm, ReLU, avg-pool]; width 32 (reference 128)"),
    "mlp": CatalogEntry(
        builder="rtp_scale.models.mlp:mlp", options=("width",), defaults={"width": 128}, norm="none",
        summary="DC MLP: 2 hidden layers of width 128, ReLU"),
    "lenet": CatalogEntry(
        builder="rtp_scale.models.lenet:lenet", options=(), defaults={}, norm="none",
        summary="DC LeNet: conv5x5(6), conv5x5(16), max-pools, 120-84 hidden, ReLU"),
    "alexnet": CatalogEntry(
        builder="rtp_scale.models.alexnet:alexnet", options=("width",), defaults={"width": 128}, norm="none",
        summary="DC AlexNet: 5 convs of width x (1, 1.5, 2, 1.5, 1.5), 3 max-pools, ReLU; width 128"),
    "vgg11": CatalogEntry(
        builder="rtp_scale.models.vgg:vgg11", options=("width",), defaults={"width": 64}, norm="instance",
        summary="DC VGG-11: 8 conv3x3 of width x (1, 2, 4, 4, 8, 8, 8, 8), 5 max-pools; width 64"),
    "vgg11_bn": CatalogEntry(
        builder="rtp_scale.models.vgg:vgg11_bn", options=("width",), defaults={"width": 64}, norm="batch",
        summary="VGG-11 with batch norm (batch statistics)"),
    "resnet18": CatalogEntry(
        builder="rtp_scale.models.resnet:resnet18", options=("width",), defaults={"width": 64}, norm="instance",
        summary="DC ResNet-18: 4 stages x 2 basic blocks of width x (1, 2, 4, 8), global avg-pool; width 64"),
    "resnet18_bn": CatalogEntry(
        builder="rtp_scale.models.resnet:resnet18_bn", options=("width",), defaults={"width": 64}, norm="batch",
        summary="ResNet-18 with batch norm (batch statistics)"),
}


def model_names() -> list[str]:
    """The built-in names (out-of-package ``module:Builder`` specs are accepted as well)."""
    return sorted(CATALOG)


def _unknown(name: str) -> UserError:
    return UserError(f"unknown model {name!r}; valid: {', '.join(model_names())}, or package.module:Builder")


def resolve_builder(name: str) -> Callable:
    """The callable that builds ``name`` (imports the module of a ``module:Builder`` spec)."""
    if is_spec(name):
        builder = load_object(name, kind="model")
        if not callable(builder):
            raise UserError(f"model {name!r} is not callable (a model spec names a class or a function)")
        return builder
    if name not in CATALOG:
        raise _unknown(name)
    return load_object(CATALOG[name].builder, kind="model")


def builder_keywords(name: str, builder: Callable) -> tuple[list[str], bool]:
    """(keyword parameters besides the required ones, whether it takes ``**kwargs``); checks the required ones."""
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        raise UserError(f"model {name!r}: cannot read the signature of {builder!r}") from None
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    missing = [k for k in REQUIRED_KEYWORDS if k not in params and not var_kw]
    if missing:
        raise UserError(f"model {name!r} must accept the keywords {', '.join(REQUIRED_KEYWORDS)} "
                        f"(missing: {', '.join(missing)})")
    named = [k for k, p in params.items() if k not in REQUIRED_KEYWORDS and k != "self"
             and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    return named, var_kw


def options_taken(name: str) -> tuple[str, ...]:
    """The ``model.*`` options model ``name`` takes (for a spec: those its builder names, all with ``**kwargs``)."""
    if not is_spec(name):
        if name not in CATALOG:
            raise _unknown(name)
        return CATALOG[name].options
    named, var_kw = builder_keywords(name, resolve_builder(name))
    return OPTION_FIELDS if var_kw else tuple(f for f in OPTION_FIELDS if f in named)


def model_defaults(name: str) -> dict[str, object]:
    """A built-in model's option defaults ({} for a spec: its builder's defaults apply when it is built)."""
    return dict(CATALOG[name].defaults) if name in CATALOG else {}


def check_options(name: str, set_options: dict[str, object]) -> None:
    """A one-line error when a set option is one that model ``name`` does not take."""
    taken = options_taken(name)
    stray = [f"model.{k}={v!r}" for k, v in set_options.items() if k not in taken]
    if stray:
        takes = ", ".join(f"model.{k}" for k in taken) or "no model.* options"
        raise UserError(f"{', '.join(stray)} does not apply to model.name={name} (it takes {takes}); "
                        f"leave it at its default")
