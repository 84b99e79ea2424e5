"""Pytest fixtures for the ChartMogul emulator; import them into a conftest.py:

    from localdev.chartmogul_emulator.pytest_fixtures import chartmogul_config, chartmogul_emulator  # noqa: F401

`chartmogul_emulator` is one emulator per test session (per xdist worker), rate limit and connection cap
off and fast bulk imports; `chartmogul_config` empties it before each test and gives a `chartmogul.Config`
pointed at it (`max_retries=0`, 10 s timeout). Tests that change limits, faults or switches get them
restored by `chartmogul_config`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from localdev.chartmogul_emulator.options import EmulatorOptions
from localdev.chartmogul_emulator.running import RunningEmulator, start

TEST_OPTIONS = EmulatorOptions(
    rate_limit=None, max_connections=None, bulk_queued_seconds=0.05, bulk_processing_seconds=0.05
)


@pytest.fixture(scope="session")
def chartmogul_emulator() -> Iterator[RunningEmulator]:
    emulator = start(dataclasses.replace(TEST_OPTIONS, rates=dict(TEST_OPTIONS.rates)))
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def chartmogul_config(chartmogul_emulator: RunningEmulator) -> Iterator[Any]:
    restore_defaults(chartmogul_emulator)
    yield chartmogul_emulator.client_config()
    restore_defaults(chartmogul_emulator)


def restore_defaults(emulator: RunningEmulator) -> None:
    """Empty state and counters; limits, faults and switches back to the test defaults."""
    server, options = emulator.server, emulator.emulator.options
    server.set_faults("")
    server.settings.fault_hold_seconds = TEST_OPTIONS.fault_hold_seconds
    server.set_rate_limit(TEST_OPTIONS.rate_limit, TEST_OPTIONS.burst)
    server.set_max_connections(TEST_OPTIONS.max_connections)
    server.set_retry_after(False)
    options.invoice_batch_mode = TEST_OPTIONS.invoice_batch_mode
    options.now = TEST_OPTIONS.now
    options.reject_future_cancellations = TEST_OPTIONS.reject_future_cancellations
    options.bulk_queued_seconds = TEST_OPTIONS.bulk_queued_seconds
    options.bulk_processing_seconds = TEST_OPTIONS.bulk_processing_seconds
    options.undeclared_custom_attributes = TEST_OPTIONS.undeclared_custom_attributes
    options.auto_churn_enabled = TEST_OPTIONS.auto_churn_enabled
    options.auto_churn_interval_days = TEST_OPTIONS.auto_churn_interval_days
    emulator.reset()
