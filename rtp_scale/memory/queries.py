"""Queries beyond one-hot labels: soft / mixed label vectors, coarser label spaces, mixed-query training.

A memory's recall is linear in its query (``recall(a*q1 + b*q2) = a*recall(q1) + b*recall(q2)`` for the
addressable and the pixel memory), so any real-valued label vector over the memory's classes recalls
something meaningful:

* a one-hot ``e_c`` recalls class c; a soft vector such as ``0.5 e_3 + 0.5 e_5`` recalls the matching blend;
* a label vector ``z`` over a *coarser* label space (e.g. CIFAR-100's 20 superclasses) becomes the fine query
  ``z @ M`` with ``M`` [S, C] the row-normalised membership matrix of :func:`coarse_matrix` — superclass s
  recalls the mean of its member classes' recalls.

Query text (``rtp_scale.recall --query``): ``"3"`` (one class), ``"3:0.5,5:0.5"`` (weights, used as given —
no renormalisation, since recall is linear and the caller may want e.g. ``3:2``), class names instead of
indices when the label space has names.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor

from rtp_scale.errors import UserError

# The official CIFAR-100 coarse label of every fine label (fine index -> superclass index), as in the
# dataset's own ``coarse_labels`` field; each of the 20 superclasses has exactly 5 fine classes.
CIFAR100_FINE_TO_COARSE: tuple[int, ...] = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
)
CIFAR100_SUPERCLASSES: tuple[str, ...] = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
)
# Built-in coarse label spaces for ``--coarse NAME`` (a JSON file works for any other).
BUILTIN_COARSE: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {
    "cifar100": (CIFAR100_FINE_TO_COARSE, CIFAR100_SUPERCLASSES),
    "parity": (tuple(c % 2 for c in range(10)), ("even", "odd")),  # digits: 0,2,4,6,8 vs 1,3,5,7,9
}


def one_hot_queries(classes: list[int] | Tensor, num_classes: int, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """[len(classes), num_classes] one-hot rows."""
    idx = torch.as_tensor(classes, dtype=torch.int64).reshape(-1)
    if idx.numel() and (idx.min() < 0 or idx.max() >= num_classes):
        raise UserError(f"classes must lie in [0, {num_classes}), got {idx.tolist()}")
    return torch.nn.functional.one_hot(idx, num_classes).to(dtype)


def mixed_query(weights: dict[int, float], num_classes: int, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """[num_classes] label vector with ``weights[c]`` on class c (e.g. ``{3: 0.5, 5: 0.5}``)."""
    out = torch.zeros(num_classes, dtype=dtype)
    for c, w in weights.items():
        if not 0 <= int(c) < num_classes:
            raise UserError(f"class {c} is outside the label space [0, {num_classes})")
        if not math.isfinite(float(w)):
            raise UserError(f"weight {w!r} of class {c} is not a finite number")
        out[int(c)] += float(w)
    return out


def coarse_matrix(fine_to_coarse: list[int] | tuple[int, ...], num_coarse: int | None = None, *,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """[S, C] mapping matrix: row s is uniform (1/|s|) over the fine classes of superclass s.

    A coarse label vector ``z_QS`` becomes the fine query ``z_QS @ M_SC``; the rows of ``M`` sum to 1, so a
    one-hot superclass query recalls the mean of its members' recalls.
    """
    f2c = torch.as_tensor(list(fine_to_coarse), dtype=torch.int64)
    if f2c.dim() != 1 or f2c.numel() == 0:
        raise UserError("a coarse mapping needs one coarse index per fine class")
    S = int(f2c.max()) + 1 if num_coarse is None else int(num_coarse)
    if f2c.min() < 0 or f2c.max() >= S:
        raise UserError(f"coarse indices must lie in [0, {S}), got {f2c.min()}..{f2c.max()}")
    member_SC = torch.nn.functional.one_hot(f2c, S).T.to(dtype)
    sizes_S1 = member_SC.sum(1, keepdim=True)
    empty = torch.nonzero(sizes_S1.flatten() == 0).flatten().tolist()
    if empty:
        raise UserError(f"superclass(es) {empty} have no fine class")
    return member_SC / sizes_S1


def coarse_to_fine(z_QS: Tensor, matrix_SC: Tensor) -> Tensor:
    """Coarse label vectors [Q, S] -> fine queries [Q, C] (``z @ M``)."""
    if z_QS.dim() != 2 or z_QS.shape[1] != matrix_SC.shape[0]:
        raise UserError(f"coarse queries must be [Q, {matrix_SC.shape[0]}], got {list(z_QS.shape)}")
    return z_QS.to(matrix_SC) @ matrix_SC


def load_coarse_mapping(spec: str, num_classes: int) -> tuple[Tensor, tuple[str, ...]]:
    """``spec`` is a built-in name (``cifar100``, ``parity``) or a JSON file; returns (M [S, C], names).

    JSON forms: a list of coarse indices, one per fine class (``[0, 1, 0, ...]``), or an object mapping each
    superclass name to its fine classes (``{"even": [0, 2, 4, 6, 8], "odd": [1, 3, 5, 7, 9]}``); a fine class
    may belong to several superclasses in the object form.
    """
    if spec in BUILTIN_COARSE:
        f2c, names = BUILTIN_COARSE[spec]
        if len(f2c) != num_classes:
            raise UserError(f"coarse mapping {spec!r} is for {len(f2c)} classes; the memory has {num_classes}")
        return coarse_matrix(f2c, len(names)), names
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"coarse mapping {spec!r} is neither a built-in ({', '.join(BUILTIN_COARSE)}) nor a file")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"cannot parse coarse mapping {path}: {err}") from None
    if isinstance(raw, list):
        if len(raw) != num_classes or not all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
            raise UserError(f"{path}: a list mapping needs {num_classes} integer coarse indices")
        matrix = coarse_matrix(raw)
        return matrix, tuple(str(s) for s in range(matrix.shape[0]))
    if isinstance(raw, dict) and raw:
        rows, names = [], []
        for name, members in raw.items():
            if not isinstance(members, list) or not members or not all(
                    isinstance(m, int) and not isinstance(m, bool) and 0 <= m < num_classes for m in members):
                raise UserError(f"{path}: superclass {name!r} must list fine classes in [0, {num_classes})")
            rows.append(mixed_query({m: 1.0 / len(members) for m in members}, num_classes))
            names.append(str(name))
        return torch.stack(rows), tuple(names)
    raise UserError(f"{path}: a coarse mapping is a list of coarse indices or an object of superclass lists")


def parse_query(text: str, num_labels: int, names: tuple[str, ...] | list[str] | None = None) -> Tensor:
    """``"3"`` / ``"3:0.5,5:0.5"`` / ``"cat:0.7,dog:0.3"`` -> [num_labels] label vector."""
    lookup = {str(n): i for i, n in enumerate(names or ())}
    weights: dict[int, float] = {}
    for part in text.split(","):
        label, sep, weight = part.strip().partition(":")
        label = label.strip()
        if not label:
            raise UserError(f"query {text!r}: empty label (write e.g. 3 or 3:0.5,5:0.5)")
        if label.lstrip("-").isdigit():
            index = int(label)
        elif label in lookup:
            index = lookup[label]
        else:
            known = f"; names: {', '.join(lookup)}" if lookup else ""
            raise UserError(f"query {text!r}: unknown label {label!r}{known}")
        if not 0 <= index < num_labels:
            raise UserError(f"query {text!r}: label {index} is outside [0, {num_labels})")
        try:
            w = float(weight) if sep else 1.0
        except ValueError:
            raise UserError(f"query {text!r}: weight {weight!r} is not a number") from None
        weights[index] = weights.get(index, 0.0) + w
    return mixed_query(weights, num_labels)


def draw_mixed_queries(block_classes: Tensor, num_classes: int, *, prob: float, generator: torch.Generator,
                       max_weight: float = 0.5) -> Tensor:
    """[B, num_classes] queries for B class blocks: each block's one-hot query, replaced with probability
    ``prob`` by ``(1 - lam) e_c + lam e_p`` (p another block's class, lam ~ U(0, max_weight)).

    Used to train the addressing with mixed-label queries (``memory.query_mix``): the images recalled for a
    mixed query carry that soft label. With lam <= 0.5 the block's own class stays the largest weight, so the
    class-balanced layout of the unroll is kept. Draws only from ``generator`` (3 draws of size B).
    """
    B = int(block_classes.numel())
    cls = block_classes.to("cpu", torch.int64)
    mix = torch.rand(B, generator=generator) < prob
    lam = torch.rand(B, generator=generator) * max_weight
    # partner: a uniformly drawn *other* block (shift by 1..B-1), none when there is a single block
    shift = torch.randint(1, max(B, 2), (B,), generator=generator)
    partner = cls[(torch.arange(B) + shift) % B] if B > 1 else cls
    lam = torch.where(mix & (partner != cls), lam, torch.zeros_like(lam))
    q_BC = torch.nn.functional.one_hot(cls, num_classes).float() * (1 - lam)[:, None]
    q_BC[torch.arange(B), partner] += lam
    return q_BC
