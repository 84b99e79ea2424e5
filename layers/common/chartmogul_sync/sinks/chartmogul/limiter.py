"""Keeps every upload under ChartMogul's account limits: 40 requests/s and 20 parallel connections.

docs/sources.md#cm-rate-limits: the limits are per *account*, across all concurrent uploads; beyond them
ChartMogul answers 429 (rate) or 503 (connections).

The choice, for concurrent Lambda instances: each instance takes an equal share of both limits,
`share = account limit / MaximumConcurrency` (the upload function's `ScalingConfig.MaximumConcurrency`,
docs/sources.md#aws-sqs-lambda). The shares add up to at most the account limit whatever the instances do, with no
coordination and no extra request per call. The alternative, a token bucket in DynamoDB, would let a lone instance
use the whole account limit, but costs a conditional write (and its latency and contention) for every lease of
tokens, and a throttled DynamoDB would then stall uploads. An incremental sync is far below the limit, and a
backfill runs every instance at once, where equal shares are what a global bucket would give anyway. A 429 or 503
that still happens (another integration on the same account) is retried by the client wrapper with backoff.

Within one process the limiter is shared by every thread (a local runtime running invocations in threads of one
process gives that process the share of one instance, which errs on the safe side).
"""

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from chartmogul_sync.config import Settings

T = TypeVar("T")
R = TypeVar("R")


class OutOfTime(RuntimeError):
    """Waiting for a request slot would run past the time budget."""


class ChartMogulLimiter:
    """A smooth token bucket (no bursts) plus a cap on requests in flight, both thread-safe."""

    def __init__(
        self,
        requests_per_second: float,
        max_connections: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if requests_per_second <= 0 or max_connections < 1:
            raise ValueError("the limiter needs a positive rate and at least one connection")
        self.requests_per_second = requests_per_second
        self.max_connections = max_connections
        self._interval = 1.0 / requests_per_second
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_start = clock()
        self._connections = threading.BoundedSemaphore(max_connections)
        self.in_flight = 0
        self.peak_in_flight = 0  # for metrics and tests: the most requests this limiter ever let run at once

    @classmethod
    def share_of_account(cls, settings: Settings) -> "ChartMogulLimiter":
        """This instance's equal share of the account limits (see the module docstring for why)."""
        instances = settings.upload_max_concurrency
        return cls(
            requests_per_second=settings.chartmogul_requests_per_second / instances,
            max_connections=max(1, settings.chartmogul_max_connections // instances),
        )

    @contextmanager
    def slot(self, deadline: float | None = None) -> Iterator[None]:
        """Hold one connection and one request's place in the rate for the duration of the block.

        `deadline` is a `clock()` value; waiting past it raises OutOfTime instead of starting a request late.
        """
        timeout = None if deadline is None else max(0.0, deadline - self._clock())
        if not self._connections.acquire(timeout=timeout):
            raise OutOfTime("no free ChartMogul connection before the time budget ran out")
        try:
            self._wait_for_rate(deadline)
            with self._lock:
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                yield
            finally:
                with self._lock:
                    self.in_flight -= 1
        finally:
            self._connections.release()

    def _wait_for_rate(self, deadline: float | None) -> None:
        # Book the next start time under the lock, sleep outside it: requests are spaced `1/rate` apart, so no
        # one-second window ever holds more than `rate` + 1 of this process's requests.
        with self._lock:
            now = self._clock()
            start = max(now, self._next_start)
            if deadline is not None and start > deadline:
                raise OutOfTime("the request rate share would only allow this request after the time budget")
            self._next_start = start + self._interval
        delay = start - now
        if delay > 0:
            self._sleep(delay)


def map_concurrently(function: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """`[function(item) for item in items]`, run on up to `workers` threads; results in the order of `items`.

    ChartMogul is reached over the Internet (100-300 ms a request): one request after another, an instance uses a
    fraction of its share of the rate. Independent per-customer work of one batch runs side by side instead, up to
    the instance's share of the connections (`ChartMogulLimiter.max_connections`), and the limiter still spaces
    the requests. `function` must not raise for one item's failure (it returns the failure as its outcome): an
    exception that escapes is raised here, after every item has finished.
    """
    if workers <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="chartmogul") as pool:
        return list(pool.map(function, items))
