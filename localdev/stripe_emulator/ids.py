"""Stripe-like object ids drawn from a seeded RNG (never uuid4 or wall time), so an account is reproducible."""

import random

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# A random byte → a base62 character (byte % 62: a slight bias, irrelevant for ids; one `translate` per id is
# what keeps a million events cheap to name).
_BYTE_TO_BASE62 = bytes(ord(_BASE62[value % 62]) for value in range(256))

# Stripe's ids are a type prefix plus an opaque base62 tail; customers' tails are shorter than the rest.
_TAIL_LENGTH: dict[str, int] = {"cus": 14, "prod": 14}
_DEFAULT_TAIL = 24


class IdFactory:
    """Makes ids such as ``cus_Nf3kZ0aQ8mP2xY`` from a seeded RNG."""

    def __init__(self, rng: random.Random) -> None:
        # No set of issued ids: 83+ random bits per tail make a collision negligible, and the store refuses a
        # duplicate id anyway (a set would cost hundreds of MB on a 10,000-customer account).
        self._rng = rng

    def new(self, prefix: str) -> str:
        length = _TAIL_LENGTH.get(prefix, _DEFAULT_TAIL)
        tail = self._rng.getrandbits(8 * length).to_bytes(length, "little").translate(_BYTE_TO_BASE62)
        return f"{prefix}_{tail.decode('ascii')}"
