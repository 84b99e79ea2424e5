"""The account's ChartMogul limits shared among the upload instances busy now (limiter.py `UploadPeers`).

The heartbeats live in the state table (moto); the clocks are simulated, so the test measures the spacing the
limiter imposes, not the machine.
"""

from __future__ import annotations

import threading
import time

import moto
import pytest

from chartmogul_sync.sinks.chartmogul.limiter import ChartMogulLimiter, OutOfTime, UploadPeers
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
    assert other.count() == 2  # b's first request registers it; a is live (its heartbeat is under 3 s old)
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
    for limiter in limiters:  # the next request after refresh_s re-counts
        with limiter.slot():
            pass
    assert [limiter.active_instances for limiter in limiters] == [3, 3, 3]
    assert sum(limiter.requests_per_second for limiter in limiters) == pytest.approx(40.0)


def test_a_state_table_failure_keeps_the_current_share(state):
    clock = Clock()

    class Unreachable(UploadPeers):
        def count(self) -> int:
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


def test_the_connections_follow_the_busy_instances_so_a_lone_instance_can_keep_the_rate_at_real_latency(state):
    """At ChartMogul's 100-300 ms a request, 40/s needs up to 12 requests in flight: a lone instance may use the
    account's 20 connections, and gives them back to a third each when two more get busy."""
    clock = Clock()
    limiter = ChartMogulLimiter(40, 20, clock=clock, sleep=clock.sleep, peers=UploadPeers(state, "a", clock=clock))
    with limiter.slot():
        pass
    assert limiter.max_connections == 20
    assert limiter.max_workers == 20

    for name in "bc":
        UploadPeers(state, name, clock=clock).count()
    clock.now += 1.0  # a re-counts at its next request after refresh_s
    with limiter.slot():
        pass
    assert limiter.active_instances == 3
    assert limiter.max_connections == 6  # 3 x 6 <= the account's 20
    assert limiter.max_workers == 20  # the threads stay: the limiter holds back what the share does not allow


def test_a_request_past_the_new_connection_share_waits_for_one_to_free_up(state):
    """A lone instance has one of its two connections in use when another gets busy: its share drops to one, so its
    next request waits for the running one to finish (real clock, real threads)."""
    limiter = ChartMogulLimiter(1_000, 2, peers=UploadPeers(state, "a", refresh_s=0.0))
    running, finish = threading.Semaphore(0), threading.Event()

    def hold() -> None:
        with limiter.slot():
            running.release()
            finish.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    assert running.acquire(timeout=5)
    UploadPeers(state, "b").count()  # b gets busy; a re-counts at its next request (refresh_s 0)
    with pytest.raises(OutOfTime), limiter.slot(deadline=time.monotonic() + 0.3):
        pass
    assert limiter.max_connections == 1
    finish.set()
    holder.join(5)
    with limiter.slot(deadline=time.monotonic() + 2.0):  # the running one finished: its one connection is free
        pass
