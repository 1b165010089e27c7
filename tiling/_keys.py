"""Stable integer keys from tuples: the root of every seeded decision in this package."""

from __future__ import annotations

import hashlib
import struct


def key64(*parts: int) -> int:
    """A 63-bit key mixing ``parts``; stable across runs, platforms and Python versions.

    Python's ``hash`` is salted per process for str and only 61 bits for ints, so we hash bytes.
    """
    data = struct.pack(f"<{len(parts)}q", *parts)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1
