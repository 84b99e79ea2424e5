"""Admission control: token-bucket request rate limits (global and per route) and a cap on open connections."""

from __future__ import annotations

import contextlib
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
            self.rate, self.burst = rate_and_burst(rate, burst)
            self._tokens = self.burst
            self._updated = self._clock()

    def try_acquire(self) -> bool:
        return try_acquire_all(self) is None

    def _refill(self) -> None:
        """With `_lock` held and a rate set: add what has accrued since the last look."""
        assert self.rate is not None
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

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


def rate_and_burst(rate: float | None, burst: float | None) -> tuple[float | None, float]:
    """A limit as configured: a rate of 0 or less is no limit; the burst defaults to one second's worth."""
    if rate is not None and rate <= 0:
        rate = None
    return rate, float(burst if burst is not None else (rate or 0.0))


def try_acquire_all(*buckets: TokenBucket) -> TokenBucket | None:
    """One token from every bucket, or from none: a request refused by one limit spends nothing of the others.

    Returns the first bucket (in the order given) that has no token, None when the request is admitted. Locks are
    taken in the order given, so callers must always pass the buckets in one order (the server: global, then route).
    """
    with contextlib.ExitStack() as held:
        for bucket in buckets:
            held.enter_context(bucket._lock)
        limited = [bucket for bucket in buckets if bucket.rate is not None]
        for bucket in limited:
            bucket._refill()
        refusing = next((bucket for bucket in limited if bucket._tokens < 1.0), None)
        if refusing is None:
            for bucket in limited:
                bucket._tokens -= 1.0
        return refusing


class RouteBuckets:
    """A `TokenBucket` per route (the route template, e.g. `GET /v1/invoices/{id}/lines`), all with one rate and burst.

    For APIs that limit each operation besides the account as a whole: requests for different ids of one route share
    its bucket. `rate=None` switches it off; `configure` refills every route.
    """

    def __init__(
        self, rate: float | None, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self.configure(rate, burst)

    def configure(self, rate: float | None, burst: float | None = None) -> None:
        with self._lock:
            self.rate, self.burst = rate_and_burst(rate, burst)
            self._buckets = {}  # each route starts again with a full bucket, created when it is first asked for

    def bucket(self, route: str) -> TokenBucket | None:
        """The route's bucket; None while the limit is off. One per route the router knows: a bounded number."""
        with self._lock:
            if self.rate is None:
                return None
            found = self._buckets.get(route)
            if found is None:
                found = self._buckets[route] = TokenBucket(self.rate, self.burst, self._clock)
            return found


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
