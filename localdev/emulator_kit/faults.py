"""Seeded fault injection from a spec string such as `429:0.1,500:0.05,timeout:0.02,reset:0.01`.

Each item is `kind:probability`. Kinds: an HTTP status (`429`, `500`, `502`, `503`, `504`, ...), `timeout`
(hold the request longer than the client's timeout, then close without an answer) and `reset` (close the
socket at once with a TCP reset, no answer). One uniform draw per request picks at most one fault, so the
probabilities add up and must not exceed 1. The same seed gives the same fault sequence for the same
request sequence.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

TIMEOUT = "timeout"
RESET = "reset"


class FaultSpecError(ValueError):
    """The fault spec string cannot be parsed."""


@dataclass(frozen=True)
class Fault:
    kind: str  # an HTTP status as text ("500"), TIMEOUT or RESET

    @property
    def status(self) -> int | None:
        return int(self.kind) if self.kind.isdigit() else None


def parse_fault_spec(spec: str | None) -> list[tuple[Fault, float]]:
    """`"500:0.1,reset:0.05"` → `[(Fault("500"), 0.1), (Fault("reset"), 0.05)]`; empty/None → `[]`."""
    faults: list[tuple[Fault, float]] = []
    for raw_item in (spec or "").split(","):
        item = raw_item.strip()
        if not item:
            continue
        kind, sep, probability_text = item.partition(":")
        kind = kind.strip().lower()
        if not sep:
            raise FaultSpecError(f"fault {item!r} has no probability; write it as kind:probability")
        if not (kind in (TIMEOUT, RESET) or (kind.isdigit() and 400 <= int(kind) <= 599)):
            raise FaultSpecError(f"unknown fault kind {kind!r}; use an HTTP status 400-599, timeout or reset")
        try:
            probability = float(probability_text)
        except ValueError:
            raise FaultSpecError(f"fault {item!r}: probability {probability_text!r} is not a number") from None
        if not 0.0 <= probability <= 1.0:
            raise FaultSpecError(f"fault {item!r}: probability must be between 0 and 1")
        faults.append((Fault(kind), probability))
    if sum(p for _, p in faults) > 1.0 + 1e-9:
        raise FaultSpecError("fault probabilities add up to more than 1")
    return faults


class FaultInjector:
    """Draws at most one fault per request from a seeded generator (thread-safe)."""

    def __init__(self, spec: str | None = None, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self.configure(spec, seed)

    def configure(self, spec: str | None, seed: int | None = None) -> None:
        faults = parse_fault_spec(spec)  # parse before touching state: a bad spec leaves the old one
        with self._lock:
            self.spec = spec or ""
            self.seed = seed
            self._faults = faults
            self._random = random.Random(seed)

    def draw(self) -> Fault | None:
        if not self._faults:
            return None
        with self._lock:
            roll = self._random.random()
        cumulative = 0.0
        for fault, probability in self._faults:
            cumulative += probability
            if roll < cumulative:
                return fault
        return None
