"""Seeded, stable randomness from sha256, never Python's `hash()` (salted per process): the same
(seed, key) gives the same number on every machine, run and Python version."""
from __future__ import annotations

import hashlib

import numpy as np


def unit_hash(seed: int, key: str) -> float:
    """A stable uniform number in [0, 1) from (seed, key)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def rng(seed: int, *parts: str) -> np.random.Generator:
    """A numpy generator seeded by sha256 of `seed:part1:part2...`."""
    digest = hashlib.sha256(":".join([str(seed), *parts]).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))
