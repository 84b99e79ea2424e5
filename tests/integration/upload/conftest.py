"""The upload function for real: the template's stack in moto (local runtime), the ChartMogul emulator on loopback,
the `chartmogul` client between them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from chartmogul_sync.models import CustomerBundle, OneTimeLineItem, UploadMessage
from localdev.aws.poller import PollerOptions
from localdev.aws.runtime import LocalStack, local_stack
from localdev.chartmogul_emulator import RunningEmulator, start

# Failed records come back at once instead of after the queue's visibility timeout (a documented test speed-up of
# the runtime; receive counts and redrive are unchanged).
FAST = PollerOptions(wait_for_batching_window=False, failed_record_visibility_timeout=0)
# The emulator's clock: after every date the test bundles use.
EMULATOR_NOW = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)


def stack_environment(emulator: RunningEmulator, **extra: str) -> dict[str, str]:
    return {
        "CHARTMOGUL_API_URL": emulator.api_url,
        # The local runtime runs every invocation in this one process: give it the whole account's share.
        "UPLOAD_MAX_CONCURRENCY": "1",
        "HTTP_READ_TIMEOUT_S": "2",
        **extra,
    }


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    with start(now=EMULATOR_NOW, bulk_queued_seconds=0.05, bulk_processing_seconds=0.05) as running:
        yield running


@pytest.fixture
def stack(emulator: RunningEmulator) -> Iterator[LocalStack]:
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()  # a secret cached by an earlier test (Powertools keeps it 5 minutes) must not leak
    with local_stack(options=FAST, environment=stack_environment(emulator)) as running:
        running.put_secret_value("ChartMogulApiKeySecret", emulator.api_key)
        yield running


def upload(stack: LocalStack, *bundles: CustomerBundle, mode: str | None = None) -> None:
    """Send the bundles to the upload queue and run the upload function until the queue is empty."""
    for bundle in bundles:
        message = UploadMessage(
            customer_external_id=bundle.customer.external_id,
            snapshot_time=bundle.snapshot_time,
            correlation_id=f"test-{bundle.customer.external_id}",
            payload=bundle,
            upload_mode=mode,
        )
        stack.send("UploadQueue", message.model_dump_json(exclude_none=True))
    stack.drain(timeout_seconds=120)


def requests_made(emulator: RunningEmulator) -> dict[str, int]:
    """Requests per route and status since the last reset, e.g. {"POST /v1/customers 201": 1}."""
    routes: dict[str, dict[str, int]] = emulator.request_counts()["routes"]
    return {f"{route} {status}": n for route, statuses in routes.items() for status, n in statuses.items()}


def writes_made(emulator: RunningEmulator) -> dict[str, int]:
    return {k: n for k, n in requests_made(emulator).items() if not k.startswith("GET ")}


def chartmogul_state(emulator: RunningEmulator) -> dict[str, Any]:
    """What the emulator holds, by external id, in the terms a user checks (no uuids)."""
    store = emulator.emulator.store
    customers = {c["uuid"]: c for c in store.docs("customers")}
    plans = {p["uuid"]: p for p in store.docs("plans")}
    invoices = {i["uuid"]: i for i in store.docs("invoices")}
    lines = {
        uuid: [
            (
                line["external_id"],
                line["type"],
                line["amount_in_cents"],
                plans[line["plan_uuid"]]["external_id"] if line.get("plan_uuid") in plans else None,
            )
            for line in store.docs("line_items", invoice_uuid=uuid)
        ]
        for uuid in invoices
    }
    transactions = {
        uuid: [
            (txn["external_id"], txn["type"], txn["result"], txn["amount_in_cents"])
            for txn in store.docs("transactions", invoice_uuid=uuid)
        ]
        for uuid in invoices
    }
    return {
        "customers": sorted((c["external_id"], c["email"], c["name"]) for c in customers.values()),
        "plans": sorted((p["external_id"], p["name"], p["interval_unit"], p["interval_count"]) for p in plans.values()),
        "invoices": sorted(
            (
                customers[i["customer_uuid"]]["external_id"],
                i["external_id"],
                i["currency"],
                tuple(sorted(lines.get(uuid, []))),
                tuple(sorted(transactions.get(uuid, []))),
            )
            for uuid, i in invoices.items()
        ),
        "cancellations": sorted(
            (customers[s["customer_uuid"]]["external_id"], s["external_id"], tuple(sorted(s["cancellation_dates"])))
            for s in store.docs("subscriptions")
            if s["cancellation_dates"]
        ),
    }


def expected_state(*bundles: CustomerBundle) -> dict[str, Any]:
    """What ChartMogul must hold once these bundles (one per customer) are applied, in `chartmogul_state` terms."""
    plans = {p.external_id: p for b in bundles for p in b.plans}
    return {
        "customers": sorted((b.customer.external_id, b.customer.email, b.customer.name) for b in bundles),
        "plans": sorted((p.external_id, p.name, p.interval_unit.value, p.interval_count) for p in plans.values()),
        "invoices": sorted(
            (
                b.customer.external_id,
                i.external_id,
                i.currency,
                tuple(
                    sorted(
                        (
                            line.external_id,
                            line.type,
                            line.amount_in_cents,
                            None if isinstance(line, OneTimeLineItem) else line.plan_external_id,
                        )
                        for line in i.line_items
                    )
                ),
                tuple(sorted((t.external_id, t.type.value, t.result.value, t.amount_in_cents) for t in i.transactions)),
            )
            for b in bundles
            for i in b.invoices
        ),
        "cancellations": sorted(
            (
                b.customer.external_id,
                c.subscription_external_id,
                tuple(sorted(d.strftime("%Y-%m-%dT%H:%M:%S.000Z") for d in c.cancellation_dates)),
            )
            for b in bundles
            for c in b.cancellations
            if c.cancellation_dates
        ),
    }


def direct_uploader(emulator: RunningEmulator, **settings_fields: Any) -> tuple[Any, Any]:
    """(BundleUploader, ChartMogulApi) on a fresh state table, for tests that drive the domain without a Lambda
    (call inside `moto.mock_aws()`)."""
    from chartmogul_sync.config import Settings
    from chartmogul_sync.sinks.chartmogul.client import ChartMogulApi, TimeBudget
    from chartmogul_sync.sinks.chartmogul.idmap import DataSources, IdMap
    from chartmogul_sync.sinks.chartmogul.leases import CustomerLeases
    from chartmogul_sync.sinks.chartmogul.limiter import ChartMogulLimiter
    from chartmogul_sync.sinks.chartmogul.uploader import BundleUploader
    from tests.fixtures.state_table import create_state_table

    settings = Settings(chartmogul_api_url=emulator.api_url, **{"upload_max_concurrency": 1, **settings_fields})
    state = create_state_table(settings.state_table)
    api = ChartMogulApi(emulator.api_key, settings, ChartMogulLimiter.share_of_account(settings))
    data_source = DataSources(state, api).ensure(settings.chartmogul_data_source_name, TimeBudget.seconds(30))
    return BundleUploader(api, IdMap(state, api, data_source), CustomerLeases(state, data_source)), api


def upload_instances(emulator: RunningEmulator, count: int, *, lease_wait_s: float = 1.0) -> list[Any]:
    """`count` BundleUploaders sharing one fresh state table and data source, each with its own client, id map
    and leases, as concurrent Lambda instances of the upload function have (call inside `moto.mock_aws()`)."""
    from chartmogul_sync.config import Settings
    from chartmogul_sync.sinks.chartmogul.client import ChartMogulApi, TimeBudget
    from chartmogul_sync.sinks.chartmogul.idmap import DataSources, IdMap
    from chartmogul_sync.sinks.chartmogul.leases import CustomerLeases
    from chartmogul_sync.sinks.chartmogul.limiter import ChartMogulLimiter
    from chartmogul_sync.sinks.chartmogul.uploader import BundleUploader
    from tests.fixtures.state_table import create_state_table

    settings = Settings(chartmogul_api_url=emulator.api_url, upload_max_concurrency=count)
    state = create_state_table(settings.state_table)
    instances = []
    for _ in range(count):
        api = ChartMogulApi(emulator.api_key, settings, ChartMogulLimiter.share_of_account(settings))
        data_source = DataSources(state, api).ensure(settings.chartmogul_data_source_name, TimeBudget.seconds(30))
        leases = CustomerLeases(state, data_source, wait_s=lease_wait_s)
        instances.append(BundleUploader(api, IdMap(state, api, data_source), leases))
    return instances
