"""Request counters by route and status, for tests, the demo report and benchmarks."""

from __future__ import annotations

import threading
import time
from collections import Counter


class RequestCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        # Answered requests by the wall-clock second they ended in: where a run used its rate and where it lost it.
        self._by_second: Counter[int] = Counter()

    def record(self, route: str, status: int | str) -> None:
        with self._lock:
            self._counts[(route, str(status))] += 1
            self._by_second[int(time.time())] += 1

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._by_second.clear()

    def by_second(self) -> dict[str, int]:
        """`{"1764650000": 38, ...}`: requests answered in each second of the Unix clock (string keys: JSON-ready).

        Counted by the clock, not the server's start, so that a caller in another process lines them up with
        its own `time.time()`.
        """
        with self._lock:
            return {str(second): n for second, n in sorted(self._by_second.items())}

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
