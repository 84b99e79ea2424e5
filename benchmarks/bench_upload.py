"""Benchmark: ChartMogul requests per customer and per invoice, api and bulk modes against a naive import.

Run as a plain script: `.venv/bin/python benchmarks/bench_upload.py [customers]`. It prints figures and asserts
nothing. One deterministic account (default 200 customers, 6–20 monthly invoices each, payments, some refunds,
one-off fees, cancellations, custom attributes) is imported into a fresh ChartMogul emulator four ways:

- naive: one call per object, the way the `chartmogul` README shows it: a plan, a customer, each invoice in its own
  request, each cancellation after looking up the customer's subscriptions;
- api: our upload, per-object API (all new invoices of a customer in one request, nothing written twice);
- bulk (batch 20): our upload in bulk mode with the template's SQS BatchSize, one json_import per batch;
- bulk (batch 500): the same with a backfill-sized batch (ChartMogul recommends 100–1,000 customers per import).

Each way then imports the same account again ("re-run"): what an idempotent upload costs when nothing changed.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import chartmogul
from moto import mock_aws

from chartmogul_sync.config import Settings
from chartmogul_sync.models import CustomerBundle, OneTimeLineItem
from chartmogul_sync.sinks.chartmogul.apply import (
    customer_create_payload,
    invoice_payload,
    plan_create_payload,
)
from chartmogul_sync.sinks.chartmogul.bulk import BulkUploader
from chartmogul_sync.sinks.chartmogul.client import ChartMogulApi, TimeBudget
from chartmogul_sync.sinks.chartmogul.idmap import DataSources, IdMap
from chartmogul_sync.sinks.chartmogul.leases import CustomerLeases
from chartmogul_sync.sinks.chartmogul.limiter import ChartMogulLimiter
from chartmogul_sync.sinks.chartmogul.uploader import BundleUploader
from localdev.chartmogul_emulator import RunningEmulator, start
from tests.fixtures.state_table import create_state_table
from tests.unit.upload.bundles import customer_bundle, monthly_invoice

DATA_SOURCE = "bench"


def account(customers: int) -> list[CustomerBundle]:
    bundles = []
    for n in range(customers):
        customer = f"cus_{n:05d}"
        months = 6 + (n * 7) % 15  # 6..20: every date in the past
        invoices = [
            monthly_invoice(
                customer,
                m,
                refund=1000 if (n % 5 == 0 and m == months) else None,
                one_off=2500 if (n % 3 == 0 and m == 1) else 0,
            )
            for m in range(1, months + 1)
        ]
        cancelled = dt.datetime(2025, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=31 * months - 3) if n % 4 == 0 else None
        bundles.append(
            customer_bundle(customer, invoices=invoices, cancelled_at=cancelled, custom_attributes=n % 3 == 1)
        )
    return bundles


def counts(emulator: RunningEmulator) -> tuple[int, int]:
    """(all requests, writes) since the last reset."""
    routes: dict[str, dict[str, int]] = emulator.request_counts()["routes"]
    total = sum(n for statuses in routes.values() for n in statuses.values())
    writes = sum(n for route, statuses in routes.items() if not route.startswith("GET ") for n in statuses.values())
    return total, writes


# ---------------------------------------------------------------- the naive import (chartmogul README style)


def naive_import(config: Any, bundles: Sequence[CustomerBundle]) -> None:
    def quietly(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except chartmogul.APIError:
            return None  # a re-run meets its own duplicates: the naive way has no other answer

    ds = quietly(lambda: chartmogul.DataSource.create(config, data={"name": DATA_SOURCE}).get())
    ds_uuid = ds.uuid if ds else chartmogul.DataSource.all(config, name=DATA_SOURCE).get().data_sources[0].uuid
    plan_uuids: dict[str, str] = {}
    for bundle in bundles:
        for plan in bundle.plans:
            if plan.external_id not in plan_uuids:
                created = quietly(
                    lambda plan=plan: chartmogul.Plan.create(config, data=plan_create_payload(plan, ds_uuid)).get()
                )
                if created is None:
                    found = chartmogul.Plan.all(config, data_source_uuid=ds_uuid, external_id=plan.external_id).get()
                    plan_uuids[plan.external_id] = found.plans[0].uuid
                else:
                    plan_uuids[plan.external_id] = created.uuid
        customer = quietly(
            lambda b=bundle: chartmogul.Customer.create(config, data=customer_create_payload(b.customer, ds_uuid)).get()
        )
        if customer is None:
            continue
        for invoice in bundle.invoices:
            body = {"invoices": [invoice_payload(invoice, plan_uuids, bundle.customer.external_id)]}
            quietly(lambda body=body, uuid=customer.uuid: chartmogul.Invoice.create(config, uuid=uuid, data=body).get())
        for cancellation in bundle.cancellations:
            subscriptions = chartmogul.CustomerSubscription.list_imported(config, uuid=customer.uuid).get()
            for sub in subscriptions.subscriptions:
                if sub.external_id == cancellation.subscription_external_id:
                    dates = [d.isoformat() for d in cancellation.cancellation_dates]
                    quietly(
                        lambda s=sub, dates=dates: chartmogul.CustomerSubscription.cancel(
                            config, uuid=s.uuid, data={"cancellation_dates": dates}
                        ).get()
                    )


# ---------------------------------------------------------------- our upload


def our_upload(
    emulator: RunningEmulator, bundles: Sequence[CustomerBundle], bulk_batch: int | None
) -> Callable[[], None]:
    settings = Settings(
        chartmogul_api_url=emulator.api_url,
        chartmogul_data_source_name=DATA_SOURCE,
        upload_max_concurrency=1,
        chartmogul_requests_per_second=10_000,  # request counts are the figure here, not the pacing
    )
    state = create_state_table(settings.state_table)
    api = ChartMogulApi(emulator.api_key, settings, ChartMogulLimiter.share_of_account(settings))
    budget = TimeBudget()

    def run() -> None:
        ds_uuid = DataSources(state, api).ensure(DATA_SOURCE, budget)
        uploader = BundleUploader(api, IdMap(state, api, ds_uuid), CustomerLeases(state, ds_uuid))
        if bulk_batch is None:
            for bundle in bundles:
                uploader.apply(bundle, budget)
            return
        bulk = BulkUploader(api, uploader, sleep=lambda s: time.sleep(min(s, 0.05)))
        for start_at in range(0, len(bundles), bulk_batch):
            for outcome in bulk.apply_many(bundles[start_at : start_at + bulk_batch], budget):
                if isinstance(outcome, Exception):
                    raise outcome

    return run


def measure(label: str, bundles: Sequence[CustomerBundle], make_run: Callable[[RunningEmulator], Callable[[], None]]):
    with (
        mock_aws(),  # a fresh state table for each way
        start(rate_limit=None, max_connections=None, bulk_queued_seconds=0.01, bulk_processing_seconds=0.01) as emu,
    ):
        run = make_run(emu)
        began = time.perf_counter()
        run()
        seconds = time.perf_counter() - began
        first = counts(emu)
        emu.server.counter.reset()
        run()
        again = counts(emu)
        stored = len(emu.emulator.store.docs("invoices"))
    return label, first, again, seconds, stored


def main() -> None:
    customers = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    bundles = account(customers)
    invoices = sum(len(b.invoices) for b in bundles)
    one_offs = sum(isinstance(li, OneTimeLineItem) for b in bundles for i in b.invoices for li in i.line_items)
    cancelled = sum(bool(b.cancellations) for b in bundles)
    attributed = sum(bool(b.customer.attributes.custom) for b in bundles)
    print(
        f"account: {customers} customers ({attributed} with custom attributes, {cancelled} cancelled), "
        f"{invoices} invoices ({one_offs} with a one-off fee)"
    )
    # moto only: fake credentials, so nothing here could reach a real AWS account.
    for variable, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        os.environ[variable] = value
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    rows = [
        measure("naive (README)", bundles, lambda emu: lambda: naive_import(emu.client_config(), bundles)),
        measure("api", bundles, lambda emu: our_upload(emu, bundles, None)),
        measure("bulk (batch 20)", bundles, lambda emu: our_upload(emu, bundles, 20)),
        measure("bulk (batch 500)", bundles, lambda emu: our_upload(emu, bundles, 500)),
    ]
    header = (
        f"{'mode':<18}{'requests':>10}{'/customer':>11}{'/invoice':>10}{'writes':>8}{'re-run':>8}{'invoices':>10}"
        f"{'s':>7}"
    )
    print(header)
    print("-" * len(header))
    for label, (total, writes), (again, _), seconds, stored in rows:
        print(
            f"{label:<18}{total:>10}{total / customers:>11.2f}{total / invoices:>10.3f}{writes:>8}{again:>8}"
            f"{stored:>10}{seconds:>7.1f}"
        )
    print("requests = all ChartMogul requests of the first import; re-run = requests of importing it all again;")
    print("invoices = invoices ChartMogul holds afterwards (each import must leave exactly the account's).")


if __name__ == "__main__":
    main()
