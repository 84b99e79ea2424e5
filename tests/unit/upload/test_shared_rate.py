"""The account's ChartMogul limits shared among the upload instances busy now (limiter.py `UploadPeers`).

The heartbeats live in the state table (moto); the clocks are simulated, so the test measures the spacing the
limiter imposes, not the machine.
"""

from __future__ import annotations

import moto
import pytest

from chartmogul_sync.sinks.chartmogul.limiter import ChartMogulLimiter, UploadPeers
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
    limiters = [
        ChartMogulLimiter(40, 6, clock=clock, sleep=clock.sleep, peers=UploadPeers(state, name, clock=clock))
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
