"""Explicit, derived seeds: every random draw comes from a ``torch.Generator`` seeded by a hash of
(run seed, purpose, outer step, rank, ...). No wall-clock seeds and no global RNG state, so the same
seed gives the same bits whatever ran before, and ranks or resumed runs draw exactly what an
uninterrupted single-process run would."""
from __future__ import annotations

import hashlib

import torch


def derive_seed(*keys: int | str) -> int:
    """A 63-bit seed from an ordered tuple of keys (ints or short strings); stable across runs and platforms."""
    text = "/".join(str(k) for k in keys).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def make_generator(*keys: int | str, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator seeded by ``derive_seed(*keys)`` on ``device``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(*keys))
    return generator
