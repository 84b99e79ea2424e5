"""Admission control: a token-bucket request rate limit and a cap on open connections."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens per second, at most `burst` stored; one request takes one token.

    `rate=None` switches the limit off. The clock is injectable so the unit tests need no sleeping.
    """

    def __init__(
        self, rate: float | None, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.configure(rate, burst)

    def configure(self, rate: float | None, burst: float | None = None) -> None:
        with self._lock:
            if rate is not None and rate <= 0:
                rate = None
            self.rate = rate
            self.burst = float(burst if burst is not None else (rate or 0.0))
            self._tokens = self.burst
            self._updated = self._clock()

    def try_acquire(self) -> bool:
        if self.rate is None:
            return True
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False

    def seconds_until_token(self) -> float:
        """How long until the next request would be admitted (0 when one would be now)."""
        if self.rate is None:
            return 0.0
        with self._lock:
            missing = 1.0 - self._tokens
            return max(0.0, missing / self.rate)

    def retry_after_header(self) -> str:
        """Whole seconds, at least 1, for a `Retry-After` header."""
        return str(max(1, math.ceil(self.seconds_until_token())))


class ConnectionCap:
    """Counts connections with a request in progress; one beyond `limit` is flagged to be refused.

    ChartMogul: "Please don't exceed 20 parallel connections" → 503 (docs/sources.md#cm-rate-limits). Counting requests
    in progress rather than open sockets means an idle keep-alive connection, or one the client has already
    closed but the server has not yet reaped, never causes a 503 the real API would not send.
    """

    def __init__(self, limit: int | None) -> None:
        self._lock = threading.Lock()
        self.limit = limit if limit and limit > 0 else None
        self.open = 0
        self.peak = 0

    def configure(self, limit: int | None) -> None:
        with self._lock:
            self.limit = limit if limit and limit > 0 else None

    def enter(self) -> bool:
        """Register a request in progress; False when it is over the cap (it still counts until `leave`)."""
        with self._lock:
            self.open += 1
            self.peak = max(self.peak, self.open)
            return self.limit is None or self.open <= self.limit

    def leave(self) -> None:
        with self._lock:
            self.open -= 1
