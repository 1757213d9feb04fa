"""Prefixed, time-sortable ids and write keys."""

from __future__ import annotations

import os
import random
import secrets
import threading
import time

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80


# Two Crockford characters per 10 bits: a 26-character id is 13 lookups.
_PAIRS = [a + b for a in CROCKFORD for b in CROCKFORD]


def _encode(value: int, length: int) -> str:
    """``value`` as ``length`` (even) Crockford base32 characters, most significant first."""
    pairs = length // 2
    return "".join(_PAIRS[(value >> (10 * (pairs - 1 - i))) & 0x3FF] for i in range(pairs))


class IdGenerator:
    """ULID-like ids: 48 bits of milliseconds then 80 random bits, 26 Crockford characters.

    Within one millisecond the random part is incremented, so ids made by one
    process sort in the order they were made (the spec's ties are broken by id).
    """

    def __init__(self, clock=time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0
        # Ids need to be unique, not secret: a PRNG seeded from the OS is enough and
        # avoids a system call per event. Write keys use ``secrets``.
        self._random = random.Random(os.urandom(32))

    def new(self, prefix: str) -> str:
        with self._lock:
            ms = int(self._clock() * 1000)
            if ms <= self._last_ms:
                ms = self._last_ms
                self._last_random = (self._last_random + 1) % (1 << _RANDOM_BITS)
            else:
                self._last_random = self._random.getrandbits(_RANDOM_BITS - 1)
            self._last_ms = ms
            value = (ms << _RANDOM_BITS) | self._last_random
        return prefix + _encode(value, 26)

    def new_many(self, prefix: str, count: int) -> list[str]:
        """``count`` ids in the order made (one lock for all: a batch's events)."""
        with self._lock:
            ms = int(self._clock() * 1000)
            if ms <= self._last_ms:
                ms = self._last_ms
                first = self._last_random + 1
            else:
                first = self._random.getrandbits(_RANDOM_BITS - 1)
            # Half the random space is left above a fresh start: no wrap in practice;
            # the modulo keeps the id 128 bits if it ever does.
            last = first + count - 1
            self._last_ms = ms
            self._last_random = last % (1 << _RANDOM_BITS)
        # The 26 characters are 10 of milliseconds and 16 of the random part; ids made
        # together differ in the last few, so the rest is encoded once per change.
        mask = (1 << _RANDOM_BITS) - 1
        head_ms = prefix + _encode(ms, 10)
        ids = []
        high, head = -1, ""
        for r in range(first, last + 1):
            r &= mask
            if r >> 20 != high:
                high = r >> 20
                head = head_ms + _encode(high, 12)
            ids.append(head + _PAIRS[(r >> 10) & 0x3FF] + _PAIRS[r & 0x3FF])
        return ids


def new_write_key() -> str:
    """``wk_`` + 43 URL-safe characters (256 random bits)."""
    return "wk_" + secrets.token_urlsafe(32)
