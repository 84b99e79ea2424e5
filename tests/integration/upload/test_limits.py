"""The shared limiter keeps concurrent uploads within ChartMogul's limits (docs/sources.md#cm-rate-limits: 40
requests/s, 20 parallel connections per account): every upload of a process takes its slots from the one limiter of its
ChartMogulApi."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from moto import mock_aws

from chartmogul_sync.sinks.chartmogul.client import TimeBudget
from localdev.chartmogul_emulator import start

from ...unit.upload.bundles import customer_bundle
from .conftest import EMULATOR_NOW, chartmogul_state, direct_uploader, expected_state

UPLOADS_AT_ONCE = 24


def upload_concurrently(emulator: Any, **limits: Any) -> Any:
    bundles = [customer_bundle(f"cus_{n:02d}", months=2) for n in range(UPLOADS_AT_ONCE)]
    uploader, api = direct_uploader(emulator, **limits)
    budget = TimeBudget.seconds(120)
    with ThreadPoolExecutor(max_workers=UPLOADS_AT_ONCE) as pool:
        results = list(pool.map(lambda b: uploader.apply(b, budget), bundles))
    assert all(r.outcome.value == "applied" for r in results)
    assert chartmogul_state(emulator) == expected_state(*bundles)
    return api


def test_concurrent_uploads_never_have_more_requests_in_flight_than_the_connection_share(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws(), start(now=EMULATOR_NOW, rate_limit=None, max_connections=None) as emulator:
        api = upload_concurrently(emulator, chartmogul_requests_per_second=10_000, chartmogul_max_connections=3)
    # 24 uploads wanted to talk at once: the share was used to the full, and never exceeded. (The server's own
    # connection count can trail a response by the moment its thread needs to see the socket close; ChartMogul's
    # 503 for that case is retried like any other.)
    assert api.limiter.peak_in_flight == 3


def test_concurrent_uploads_keep_to_the_request_rate(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    # ChartMogul's bucket: 40 requests/s; a burst of the ~75 requests of this test would be refused (429).
    with mock_aws(), start(now=EMULATOR_NOW, rate_limit=40, burst=10, max_connections=None) as emulator:
        api = upload_concurrently(emulator, chartmogul_requests_per_second=40, chartmogul_max_connections=50)
        statuses = {status for route in emulator.request_counts()["routes"].values() for status in route}
    assert "429" not in statuses
    assert api.stats.retries == 0
