"""Request counters by route and status, for tests, the demo report and benchmarks."""

from __future__ import annotations

import threading
from collections import Counter


class RequestCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def record(self, route: str, status: int | str) -> None:
        with self._lock:
            self._counts[(route, str(status))] += 1

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def snapshot(self) -> dict[str, dict[str, int]]:
        """`{"GET /v1/ping": {"200": 3, "429": 1}, ...}` (status keys are strings: JSON-ready)."""
        with self._lock:
            items = sorted(self._counts.items())
        result: dict[str, dict[str, int]] = {}
        for (route, status), count in items:
            result.setdefault(route, {})[status] = count
        return result

    def total(self, status: int | str | None = None) -> int:
        with self._lock:
            return sum(n for (_, s), n in self._counts.items() if status is None or s == str(status))

    def count(self, route: str, status: int | str) -> int:
        with self._lock:
            return self._counts[(route, str(status))]
