"""Distillation methods. Each computes meta-gradients into a memory and knows nothing of ranks or logs.

``method.name`` is a built-in name or a ``package.module:Class`` spec naming a method defined anywhere on
``sys.path``; either way the class is constructed as ``Cls(cfg, net, augmenter)`` (the run's :class:`Config`,
the inner network skeleton, the data augmentation) and must provide::

    meta_gradient(memory, real_x, real_y, *, lrs, generator, scale, shard, num_shards, reduce_grad)
        -> (metrics: dict[str, float], lr_grad: Tensor | None)
        # accumulate scale * d(meta-loss)/d(memory) into the memory's .grad; metrics must include
        # "meta/loss" and "inner/loss_last"; lr_grad = scale * d(meta-loss)/d(lrs) when inner.learn_lr, else None
    state_dict() -> dict            # anything beyond the memory that a checkpoint must keep (e.g. a model pool)
    load_state_dict(state) -> None  # gets what state_dict() returned ({} for a run started before it)
    end_step(memory, *, done) -> None   # optional: called on every process after each outer update (FRePo's pool)
    uses_learned_labels: bool       # optional class attribute: True when it reads the memory's learned labels
                                    # (otherwise memory.learn_labels=true is refused for it)

``generator`` holds all of the unroll's randomness (derived from seed, step and unroll index), which is what
makes a resumed run bit-identical to a straight one. ``shard``/``num_shards``/``reduce_grad`` are inner-batch
sharding (dist.inner_shards); a method that does not shard may ignore them when num_shards is 1.

Built-ins (:data:`BUILTIN_METHODS`): ``rtp`` (methods/rtp.py), ``frepo`` (methods/frepo.py: kernel ridge
regression on a model pool's features, methods/krr.py), ``dd`` (methods/dd.py: the original Dataset
Distillation). Importing this package is cheap (the config checks names against it): a method's module is
imported when the method is built.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from rtp_scale.errors import UserError
from rtp_scale.plugins import is_spec, load_object

if TYPE_CHECKING:
    from torch import nn

    from rtp_scale.config import Config
    from rtp_scale.data.augment import Augmenter

BUILTIN_METHODS: dict[str, str] = {
    "rtp": "rtp_scale.methods.rtp:RtpMethod",
    "frepo": "rtp_scale.methods.frepo:FrepoMethod",
    "dd": "rtp_scale.methods.dd:DDMethod",
}
"""Built-in method name -> the ``module:Class`` it stands for (imported only when used)."""


def check_method_name(name: str) -> None:
    """A built-in name passes; a spec must resolve to a class with ``meta_gradient``; anything else is refused."""
    if name not in BUILTIN_METHODS:
        method_class(name)


def method_class(name: str) -> type:
    """The class ``method.name`` stands for: a built-in, or the class a ``package.module:Class`` spec names."""
    if name in BUILTIN_METHODS:
        return load_object(BUILTIN_METHODS[name], kind="method")  # type: ignore[return-value]
    if not is_spec(name):
        raise UserError(f"method.name={name!r} is not allowed; choose one of: {', '.join(BUILTIN_METHODS)} "
                        f"or a package.module:Class of your own")
    cls = load_object(name, kind="method")
    if not isinstance(cls, type) or not callable(getattr(cls, "meta_gradient", None)):
        raise UserError(f"method {name!r} is not a class with a meta_gradient method (see rtp_scale.methods)")
    return cls


def uses_learned_labels(name: str) -> bool:
    """Whether method ``name`` trains on the memory's learned labels (FRePo; a plugin that says so)."""
    if name in BUILTIN_METHODS:
        return name == "frepo"  # without importing the built-ins' modules (torch) at config time
    return bool(getattr(method_class(name), "uses_learned_labels", False))


def build_method(cfg: Config, net: nn.Module, augmenter: Augmenter):
    """The configured method, bound to the inner network skeleton and the augmentation."""
    return method_class(cfg.method.name)(cfg, net, augmenter)
