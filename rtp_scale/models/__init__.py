"""Networks trained in the inner loop and at evaluation.

The torch-bound names load on first use, so that :mod:`rtp_scale.config` can read the torch-free
:mod:`rtp_scale.models.catalog` without importing torch.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "ConvNet": "rtp_scale.models.convnet",
    "build_configured": "rtp_scale.models.registry",
    "build_model": "rtp_scale.models.registry",
    "check_batch_split": "rtp_scale.models.registry",
    "init_params": "rtp_scale.models.registry",
    "load_params_": "rtp_scale.models.registry",
    "resolved_options": "rtp_scale.models.registry",
    "uses_batch_statistics": "rtp_scale.models.registry",
    "model_names": "rtp_scale.models.catalog",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'rtp_scale.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
