"""Keeps every upload under ChartMogul's account limits: 40 requests/s and 20 parallel connections.

docs/sources.md#cm-rate-limits: the limits are per *account*, across all concurrent uploads; beyond them
ChartMogul answers 429 (rate) or 503 (connections).

The choice, for concurrent Lambda instances (`Settings.chartmogul_rate_sharing`): by default (`busy`) each
instance takes an equal share of the rate among the instances sending requests *now*: `share = account rate /
active instances`. With `fixed`, each takes `account limit / MaximumConcurrency`, needing no coordination. Each
busy instance keeps a heartbeat
item in the state table (`UploadPeers`: a put and a query at most once a second, only while it sends requests) and
counts the live ones. A lone instance uses the whole account limit; three busy ones a third each; an instance that
waits for a bulk import to finish, or has no work, stops counting within seconds and leaves its share to the
others. The fixed share (`peers=None`; `ScalingConfig.MaximumConcurrency` of the upload function,
docs/sources.md#aws-sqs-lambda) needs no coordination, but an instance alone, or beside idle ones, then uses a
fraction of the limit: a bulk upload alternates between sending requests and waiting for its import, so with
fixed shares the account's rate went unused whenever one instance waited.

Why not a token bucket in DynamoDB: a conditional write for every lease of tokens, with its latency and contention
on one item, and a throttled table would stall uploads. The heartbeat costs two small requests a second per busy
instance, whatever its request rate. An instance that becomes busy is counted by the others within
`UploadPeers.refresh_s` (each re-counts at its next request once that long has passed): so it announces itself and
sends its first request only after `join_wait_s`, by which time the others have made room, and the account's limit
is not passed while the instances come and go. Requests that do not make an instance busy (polling an import's
status, `counted=False`) neither renew its heartbeat nor wait to join; a waiting instance's heartbeat expires and
its share goes to the others. The 20 connections are shared the same way, but by what each instance says it may
hold (`ChartMogulLimiter`): time alone cannot bound a connection, since a slow request outlasts any wait. Should
the account still see more than its limit (another integration on it),
ChartMogul answers 429 and the client wrapper retries with backoff (client.py).

Within one process the limiter is shared by every thread (a local runtime running invocations in threads of one
process gives that process the share of one instance, which errs on the safe side).
"""

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from aws_lambda_powertools import Logger

from chartmogul_sync.config import Settings
from chartmogul_sync.state import StateTable, key

logger = Logger(child=True)

# Connections kept out of the busy instances' pool for their status polls (one per instance, at most this many).
MAX_POLL_LANES = 4
# Bound on one request's waits for a connection (each up to `UploadPeers.refresh_s`): an hour at the default.
_MAX_CONNECTION_WAITS = 3_600

T = TypeVar("T")
R = TypeVar("R")


class OutOfTime(RuntimeError):
    """Waiting for a request slot would run past the time budget."""


@dataclass(frozen=True)
class PeerCount:
    instances: int  # the busy instances, this one included (never less than 1)
    others_connections: int  # the most connections the other busy instances said they may hold


class UploadPeers:
    """The upload instances sending ChartMogul requests now: a heartbeat item each in the state table.

    `count(connections)` renews this instance's heartbeat, saying the most connections it may hold until its next
    count, and counts the live ones (itself included, so never less than 1) with what the others said. A
    heartbeat lives `expiry_s`; the limiter calls `count()` at most every `refresh_s`, and only while it lets
    requests through, so an idle or waiting instance drops out by itself. Expired items are left to the table's
    TTL (`expires_at`), and ignored until then.

        peers = UploadPeers(state)
        limiter = ChartMogulLimiter(40, 17, peers=peers)  # 40/s alone, 20/s each for two busy instances
    """

    def __init__(
        self,
        state: StateTable,
        instance_id: str | None = None,
        clock: Callable[[], float] = time.time,
        refresh_s: float = 1.0,
        expiry_s: float = 3.0,
    ) -> None:
        self._state = state
        self.instance_id = instance_id or uuid.uuid4().hex
        self._clock = clock
        self.refresh_s = refresh_s
        self.expiry_s = expiry_s

    @property
    def join_wait_s(self) -> float:
        """How long an instance that starts counting itself waits before its first request: the others re-count
        within `refresh_s` of their last count, plus the requests they had already booked at their old share
        (a connection's worth each, well under half a second at ChartMogul's rate)."""
        return self.refresh_s + 0.5

    def count(self, connections: int = 0) -> PeerCount:
        now = self._clock()
        self._state.put(_PEERS_PK, self.instance_id, {"expires_at": now + self.expiry_s, "connections": connections})
        live = [item for item in self._state.query(_PEERS_PK) if float(item.get("expires_at", 0)) > now]
        others = [item for item in live if item.get("sk") != self.instance_id]
        return PeerCount(
            instances=len(others) + 1, others_connections=sum(int(item.get("connections", 0)) for item in others)
        )


_PEERS_PK = key("uploaders")


class ChartMogulLimiter:
    """A smooth token bucket (no bursts) plus a cap on requests in flight, both thread-safe.

    Without `peers` both are this instance's own, every request included.

    With `peers`, both are the account's, shared among the busy instances (re-counted at most every
    `peers.refresh_s`). The rate: `requests_per_second / busy instances`, with the join wait below. The
    connections: `max_connections` is the account's pool for counted requests, and each instance may hold at most
    an equal part of it, and never more than the others leave: at each count it says the most it may hold until the
    next (`UploadPeers.count`), and takes `min(pool / busy instances, pool - what the others said)`. A raise takes
    effect only after it has been said, so what the instances hold together never passes the pool, whatever the
    order of their counts; an instance that joins says the part it would have with every possible instance busy
    (`max_instances`, the function's MaximumConcurrency) and holds nothing until the others leave it room.
    Uncounted requests (status polls, which keep no heartbeat) have one connection of their own per instance,
    outside the pool (`share_of_account` keeps one per possible instance, at most MAX_POLL_LANES, out of the
    account's 20 for them).
    """

    def __init__(
        self,
        requests_per_second: float,
        max_connections: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        peers: UploadPeers | None = None,
        max_instances: int = 3,
    ) -> None:
        if requests_per_second <= 0 or max_connections < 1:
            raise ValueError("the limiter needs a positive rate and at least one connection")
        self._rate_limit = requests_per_second
        self._connection_limit = max_connections
        # The most requests this limiter may ever let run at once: what callers size their thread pools by.
        self.max_workers = max_connections
        self._peers = peers
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._next_refresh = clock()
        self._last_counted: float | None = None  # when this instance last renewed its heartbeat (clock())
        self._not_before = clock()  # no counted request starts before: the wait after joining the busy instances
        self._connection_free = threading.Condition()
        self._open = 0  # connections taken by counted requests (one waiting for its place in the rate holds one)
        # With peers: nothing is held before the first count; `_wanted` is the part said at the next count.
        self.max_connections = max_connections if peers is None else 0
        self._wanted = max_connections
        self._poll_lane = threading.BoundedSemaphore(1)
        # What an instance that joins says it may hold: its part if every possible instance were busy.
        self._joining_part = max(1, max_connections // max(1, max_instances))
        self.active_instances = 1
        self._interval = 1 / requests_per_second
        self._next_start = clock()
        self.in_flight = 0
        self.peak_in_flight = 0  # for metrics and tests: the most requests this limiter ever let run at once

    @property
    def requests_per_second(self) -> float:
        return 1.0 / self._interval

    @classmethod
    def share_of_account(cls, settings: Settings, peers: UploadPeers | None = None) -> "ChartMogulLimiter":
        """This instance's share of the account limits (see the module docstring for why): among the busy
        instances with `peers`, else a fixed `1 / upload_max_concurrency`."""
        instances = settings.upload_max_concurrency
        if peers is not None:
            # Rate and connections both follow the busy instances: a lone instance at ChartMogul's 100-300 ms
            # needs 4-12 requests in flight for 40/s, more than a fixed 20 / MaximumConcurrency gives it. One
            # connection per possible instance stays out of the pool for its status polls, at most MAX_POLL_LANES
            # (polls are brief and seconds apart; with MaximumConcurrency 20 the pool keeps 16).
            pool = max(1, settings.chartmogul_max_connections - min(instances, MAX_POLL_LANES))
            return cls(settings.chartmogul_requests_per_second, pool, peers=peers, max_instances=instances)
        connections = max(1, settings.chartmogul_max_connections // instances)
        return cls(requests_per_second=settings.chartmogul_requests_per_second / instances, max_connections=connections)

    def _set_connections(self, cap: int) -> None:
        with self._connection_free:
            self.max_connections = cap
            self._connection_free.notify_all()  # a larger part lets waiting requests start

    def _refresh(self) -> None:
        """Re-count the busy instances when due; one thread does it, the others go on with the current share."""
        peers = self._peers
        if peers is None or self._clock() < self._next_refresh or not self._refreshing.acquire(blocking=False):
            return
        try:
            now = self._clock()
            # An instance whose heartbeat had expired (or never existed) is not counted by the others: it holds no
            # new connection until they have heard of it, and its first request waits for their room in the rate.
            joining = self._last_counted is None or now - self._last_counted >= peers.expiry_s
            if joining:
                self._set_connections(0)
                self._wanted = self._joining_part
            with self._connection_free:
                said = max(self._open, self.max_connections, self._wanted)
            try:
                counted = peers.count(said)
            except Exception as error:  # the state table unreachable: keep the current share, try again later
                logger.warning("could not count the busy upload instances", extra={"error": str(error)})
                if joining:  # no part yet: the one it would have with every possible instance busy (as `fixed`)
                    self._set_connections(self._joining_part)
                self._next_refresh = now + peers.refresh_s
                return
            # At least one each while the others leave room: more busy instances than the pool take turns.
            fair = max(1, self._connection_limit // counted.instances)
            self._wanted = max(0, min(fair, self._connection_limit - counted.others_connections))
            self._set_connections(min(self._wanted, said))  # a raise past what was said waits for the next count
            with self._lock:
                self.active_instances = counted.instances
                self._interval = counted.instances / self._rate_limit
                if joining and counted.instances > 1:
                    self._not_before = max(self._not_before, now + peers.join_wait_s)
            self._last_counted = now
            self._next_refresh = now + peers.refresh_s
        finally:
            self._refreshing.release()

    @contextmanager
    def slot(self, deadline: float | None = None, *, counted: bool = True) -> Iterator[None]:
        """Hold one connection and one request's place in the rate for the duration of the block.

        `deadline` is a `clock()` value; waiting past it raises OutOfTime instead of starting a request late.
        `counted=False` (an occasional request such as a status poll) does not make this instance busy: it keeps
        no heartbeat alive, does not wait to join the busy instances, and with peers takes the instance's own poll
        connection instead of one of the pool.
        """
        if counted:
            self._refresh()
        poll_lane = not counted and self._peers is not None
        if poll_lane:
            taken = self._poll_lane.acquire(timeout=None if deadline is None else max(0.0, deadline - self._clock()))
        else:
            taken = self._take_connection(deadline)
        if not taken:
            raise OutOfTime("no free ChartMogul connection before the time budget ran out")
        try:
            self._wait_for_rate(deadline, counted)
            with self._lock:
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                yield
            finally:
                with self._lock:
                    self.in_flight -= 1
        finally:
            if poll_lane:
                self._poll_lane.release()
            else:
                with self._connection_free:
                    self._open -= 1
                    self._connection_free.notify()

    def _take_connection(self, deadline: float | None) -> bool:
        """Take one of this instance's part of the connections, waiting (bounded) until the part allows it.

        A request of ours that finishes frees one (woken at once); a part of none, or one the others' counts have
        shrunk, grows only at a count: with nothing of ours to wait for, the waiting threads count again
        themselves, once `refresh_s` has passed, instead of waiting for a request that will not come.
        """
        refresh_s = self._peers.refresh_s if self._peers is not None else 1.0
        for _wait in range(_MAX_CONNECTION_WAITS):
            with self._connection_free:
                if self._open < self.max_connections:
                    self._open += 1
                    return True
                ours_running = self._open > 0
                if ours_running:
                    remaining = None if deadline is None else deadline - self._clock()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._connection_free.wait(timeout=refresh_s if remaining is None else min(remaining, refresh_s))
            if not ours_running:
                if deadline is not None and self._clock() + refresh_s > deadline:
                    return False
                self._sleep(refresh_s)
            self._refresh()
        return False

    def _wait_for_rate(self, deadline: float | None, counted: bool = True) -> None:
        # Book the next start time under the lock, sleep outside it: requests are spaced `1/rate` apart, so no
        # one-second window ever holds more than `rate` + 1 of this process's requests.
        with self._lock:
            now = self._clock()
            start = max(now, self._next_start, self._not_before if counted else now)
            if deadline is not None and start > deadline:
                raise OutOfTime("the request rate share would only allow this request after the time budget")
            self._next_start = start + self._interval
        delay = start - now
        if delay > 0:
            self._sleep(delay)


def map_concurrently(function: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """`[function(item) for item in items]`, run on up to `workers` threads; results in the order of `items`.

    ChartMogul is reached over the Internet (100-300 ms a request): one request after another, an instance uses a
    fraction of its share of the rate. Independent per-customer work of one batch runs side by side instead, on as
    many threads as the instance may ever have connections (`ChartMogulLimiter.max_workers`); the limiter caps the
    requests in flight at the current share and still spaces them. `function` must not raise for one item's failure
    (it returns the failure as its outcome): an exception that escapes is raised here, after every item has finished.
    """
    if workers <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="chartmogul") as pool:
        return list(pool.map(function, items))
