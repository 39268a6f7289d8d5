"""Resolve ``package.module:attr`` specs to objects, so a method or a dataset can live outside this package.

A spec names an importable module and an attribute inside it (``my_lab.methods:MyMethod``; the attribute may be
dotted, ``my_lab.methods:Family.Variant``). The module is imported the ordinary way, so it must be on
``sys.path`` (installed, or the working directory, or ``PYTHONPATH``).
"""
from __future__ import annotations

import importlib

from rtp_scale.errors import UserError


def is_spec(name: str) -> bool:
    """Whether ``name`` is a ``module:attr`` spec rather than a built-in name."""
    return ":" in name


def load_object(spec: str, *, kind: str) -> object:
    """The object ``spec`` (``package.module:attr``) names; ``kind`` ("method", "dataset") words the errors."""
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise UserError(f"{kind} {spec!r} is not of the form package.module:attr")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UserError(f"{kind} {spec!r}: cannot import module {module_name!r} ({err})") from err
    obj: object = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UserError(f"{kind} {spec!r}: module {module_name!r} has no attribute {attr_path!r}") from None
    return obj
