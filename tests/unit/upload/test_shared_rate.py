"""The account's ChartMogul limits shared among the upload instances busy now (limiter.py `UploadPeers`).

The heartbeats live in the state table (moto); the clocks are simulated, so the test measures the spacing the
limiter imposes, not the machine.
"""

from __future__ import annotations

import contextlib
import threading
import time

import moto
import pytest

from chartmogul_sync.config import Settings
from chartmogul_sync.sinks.chartmogul.limiter import ChartMogulLimiter, OutOfTime, PeerCount, UploadPeers
from tests.fixtures.state_table import create_state_table


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def state():
    with moto.mock_aws():
        yield create_state_table("state")


def spacing(limiter: ChartMogulLimiter, clock: Clock, requests: int) -> float:
    """Seconds between the first and the last of `requests` requests made one after another."""
    starts = []
    for _ in range(requests):
        with limiter.slot():
            starts.append(clock.now)
    return starts[-1] - starts[0]


def test_an_instance_alone_uses_the_whole_account_limit_and_halves_it_when_another_gets_busy(state):
    clock = Clock()
    alone = UploadPeers(state, "a", clock=clock)
    limiter = ChartMogulLimiter(40, 6, clock=clock, sleep=clock.sleep, peers=alone)
    # 41 requests at the account's 40/s: one second from the first to the last.
    assert spacing(limiter, clock, 41) == pytest.approx(1.0)
    assert limiter.active_instances == 1

    other = UploadPeers(state, "b", clock=clock)
    assert other.count().instances == 2  # b's first request registers it; a is live (its heartbeat is under 3 s old)
    clock.now += 1.0  # a re-counts at its next request after refresh_s
    assert spacing(limiter, clock, 21) == pytest.approx(1.0, abs=0.06)  # 20/s each, after the first
    assert limiter.active_instances == 2

    clock.now += 5.0  # b sent nothing since: its heartbeat expired, a has the whole limit again
    assert spacing(limiter, clock, 41) == pytest.approx(1.0, abs=0.06)
    assert limiter.active_instances == 1


def test_the_busy_instances_never_exceed_the_account_limit_once_they_know_each_other(state):
    clock = Clock()
    # One simulated clock for three instances that run side by side: each join wait advances it for all, so the
    # heartbeats live long enough here not to expire in between.
    limiters = [
        ChartMogulLimiter(
            40, 6, clock=clock, sleep=clock.sleep, peers=UploadPeers(state, name, clock=clock, expiry_s=10.0)
        )
        for name in "abc"
    ]
    for limiter in limiters:  # each registers with its first request; the last one sees all three
        with limiter.slot():
            pass
    clock.now += 1.0
    # The next request after refresh_s re-counts (a, which was alone at its first count, last: the first to count
    # again would otherwise wait, single-threaded here, for the others to make room in the connections).
    for limiter in reversed(limiters):
        with limiter.slot():
            pass
    assert [limiter.active_instances for limiter in limiters] == [3, 3, 3]
    assert sum(limiter.requests_per_second for limiter in limiters) == pytest.approx(40.0)
    assert sum(limiter.max_connections for limiter in limiters) <= 6


def test_a_state_table_failure_keeps_the_current_share(state):
    clock = Clock()

    class Unreachable(UploadPeers):
        def count(self, connections: int = 0) -> PeerCount:
            raise ConnectionError("DynamoDB unreachable")

    limiter = ChartMogulLimiter(40, 6, clock=clock, sleep=clock.sleep, peers=Unreachable(state, "a", clock=clock))
    assert spacing(limiter, clock, 11) == pytest.approx(0.25)  # the share it had: 40/s for one instance
    assert limiter.active_instances == 1


def test_an_instance_that_gets_busy_waits_until_the_others_have_made_room(state):
    clock = Clock()
    a = ChartMogulLimiter(40, 6, clock=clock, sleep=clock.sleep, peers=UploadPeers(state, "a", clock=clock))
    b_peers = UploadPeers(state, "b", clock=clock)
    b = ChartMogulLimiter(40, 6, clock=clock, sleep=clock.sleep, peers=b_peers)
    first = clock.now
    assert spacing(a, clock, 2) == pytest.approx(0.025)
    assert clock.now == pytest.approx(first + 0.025)  # alone, a did not wait to join anyone

    joined_at = clock.now
    with b.slot():
        started = clock.now
    # b counted a and itself at once, but a still sends at the whole rate until its next re-count: b waits for it.
    assert b.active_instances == 2
    assert started - joined_at == pytest.approx(b_peers.join_wait_s)
    with a.slot():
        pass
    assert a.active_instances == 2  # a's re-count, due within refresh_s, happened before b's first request


def test_a_status_poll_does_not_make_a_waiting_instance_busy(state):
    clock = Clock()
    waiting_peers = UploadPeers(state, "waiting", clock=clock)
    waiting = ChartMogulLimiter(40, 6, clock=clock, sleep=clock.sleep, peers=waiting_peers)
    busy = ChartMogulLimiter(40, 6, clock=clock, sleep=clock.sleep, peers=UploadPeers(state, "busy", clock=clock))
    with busy.slot():
        pass
    before = clock.now
    for _ in range(3):  # polls of an import's status, seconds apart
        with waiting.slot(counted=False):
            pass
        clock.now += 2.0
    assert clock.now - before == pytest.approx(6.0, abs=0.1)  # no join wait for a poll
    with busy.slot():
        pass
    assert busy.active_instances == 1  # the poller never announced itself: the busy one keeps the whole rate


def test_a_lone_instance_grows_to_the_whole_connection_pool_once_it_has_said_so(state):
    """At ChartMogul's 100-300 ms a request, 40/s needs up to 12 requests in flight: a lone instance may hold the
    whole pool, not a fixed third of it; the raise waits for its next count, after it has said so."""
    clock = Clock()
    limiter = ChartMogulLimiter(
        40, 17, clock=clock, sleep=clock.sleep, peers=UploadPeers(state, "a", clock=clock), max_instances=3
    )
    with limiter.slot():
        pass
    assert limiter.max_connections == 5  # joining: the part it would have with all three busy
    clock.now += 1.0
    with limiter.slot():
        pass
    assert limiter.max_connections == 17
    assert limiter.max_workers == 17  # the threads to size pools by


def test_an_instance_that_joins_holds_no_connection_the_others_have_not_given_up(state):
    clock = Clock()
    a = ChartMogulLimiter(40, 17, clock=clock, sleep=clock.sleep, peers=UploadPeers(state, "a", clock=clock))
    for _ in range(2):
        with a.slot():
            pass
        clock.now += 1.0
    assert a.max_connections == 17  # alone, and said so
    b = ChartMogulLimiter(40, 17, clock=clock, sleep=clock.sleep, peers=UploadPeers(state, "b", clock=clock))
    with pytest.raises(OutOfTime), b.slot(deadline=clock.now + 0.5):
        pass  # a said it may hold all 17: nothing for b yet
    assert b.max_connections == 0
    with a.slot():  # a counts b: its part is 8 now (17 // 2)
        pass
    assert a.max_connections == 8


def test_busy_instances_together_never_hold_more_than_the_pool_while_they_come_and_go(state):
    """Three instances with eight threads each, two of them joining later, requests of 5 ms (real clock and
    threads): however their counts interleave, the requests in flight across all three never pass the pool."""
    pool, lock = 17, threading.Lock()
    in_flight, peak, sent = [0], [0], {name: 0 for name in "abc"}
    stop = time.monotonic() + 1.5

    def instance(name: str, start_after: float) -> None:
        time.sleep(start_after)
        peers = UploadPeers(state, name, refresh_s=0.05, expiry_s=2.0)
        limiter = ChartMogulLimiter(10_000, pool, peers=peers, max_instances=3)

        def worker() -> None:
            while time.monotonic() < stop:
                with contextlib.suppress(OutOfTime), limiter.slot(deadline=stop):
                    with lock:
                        in_flight[0] += 1
                        peak[0] = max(peak[0], in_flight[0])
                        sent[name] += 1
                    time.sleep(0.005)
                    with lock:
                        in_flight[0] -= 1

        workers = [threading.Thread(target=worker) for _ in range(8)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(10)

    instances = [threading.Thread(target=instance, args=(n, d)) for n, d in (("a", 0.0), ("b", 0.3), ("c", 0.6))]
    for thread in instances:
        thread.start()
    for thread in instances:
        thread.join(15)
    assert peak[0] <= pool
    assert peak[0] > pool // 3  # more than a fixed third: a lone instance used the pool
    assert all(sent[name] > 0 for name in "abc"), sent  # each got connections once the others made room


def test_with_the_highest_maximum_concurrency_two_busy_instances_still_get_connections(state):
    """UploadMaximumConcurrency may be 20, ChartMogul's whole connection limit: the polls' connections kept apart
    must leave a pool, and each busy instance a part of it, or no upload would ever send a request (real clock:
    b waits its join wait, about 1.5 s)."""
    settings = Settings(upload_max_concurrency=20)
    a, b = (ChartMogulLimiter.share_of_account(settings, UploadPeers(state, name)) for name in "ab")
    with a.slot(deadline=time.monotonic() + 5):
        pass
    with b.slot(deadline=time.monotonic() + 5):  # b counted a: they share the pool
        pass
    assert a.max_workers == 16
    assert a.max_connections >= 1 and b.max_connections >= 1
