"""Run the audit: read Stripe, ChartMogul, the sync state and the dead-letter queues, then compare (compare.py).

One audit serves `cmsync audit`, the scheduled Audit function (functions/audit/app.py) and `cmsync demo` (which
adds the generator's ground truth). Everything here reads: no request writes to Stripe, ChartMogul, the state
table or the queues (listing a dead-letter queue receives its messages and makes them visible again at once, as
`cmsync dlq list` does).

Stripe's side is fetched by the exporter's own code (`sources.stripe.snapshots`): one customer's snapshot by
its `customer=` lists, or the whole account by global lists, 100 objects a page, grouped by customer in memory
(the audit holds the account's snapshots at once: fine for tens of thousands of customers; audit a larger
account by `--customer`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import stripe

from ..config import Settings
from ..models.snapshot import CustomerSnapshot
from ..sinks.chartmogul.apply import KnownCustomer
from ..sinks.chartmogul.client import ChartMogulApi
from ..sinks.chartmogul.client import TimeBudget as ChartMogulBudget
from ..sinks.chartmogul.dlq import RECORD_QUEUES, QueueNotFound, list_messages, resolve_terminal_queue
from ..sinks.chartmogul.idmap import IdMap
from ..sources.stripe.client import StripeApi, StripeList
from ..sources.stripe.events import CustomerChanged, CustomerDeleted, NeedsLookup, event_target
from ..sources.stripe.incremental import CURSOR_PK, CURSOR_SK, EventCursor
from ..sources.stripe.snapshots import (
    OWNED_LISTS,
    REFUNDS_WITH_OWNER,
    Catalog,
    CustomerRecords,
    RecentDeletions,
    add_subscriptions_of_deleted_customer,
    assemble_snapshot,
    complete,
    customer_of,
    fetch_customer_snapshot,
    refund_with_owner,
)
from ..state import StateTable
from ..transform.config import MappingConfig
from .chartmogul_side import find_data_source, read_chartmogul
from .compare import AuditInputs, audit
from .mrr_rules import Rates
from .report import AuditReport

Progress = Callable[[str, int | None], None]  # (step, total or None) → called once per unit of work


@dataclass
class AuditRequest:
    customers: list[str] | None = None  # None: the whole account
    from_month: str | None = None  # YYYY-MM; default: the month of the first Stripe invoice
    to_month: str | None = None  # YYYY-MM; default: this month
    config: MappingConfig = field(default_factory=MappingConfig)
    rates: Rates = None
    account_currency: str = "USD"
    truth: Mapping[str, Any] | None = None


def run_audit(
    request: AuditRequest,
    *,
    stripe_api: StripeApi,
    chartmogul_api: ChartMogulApi,
    settings: Settings,
    state: StateTable | None = None,
    sqs: Any = None,
    parked: Mapping[str, str] | None = None,
    now: dt.datetime | None = None,
    progress: Progress | None = None,
) -> AuditReport:
    """Read both sides and compare them; nothing is written anywhere.

    `state` (the sync's state table) tells changes not yet synced and what the id map says was imported;
    `sqs` (with the settings' queue URLs) or `parked` (customer → "queue: reason") the records waiting in a DLQ.
    With `sqs`, the report says which terminal queues were read and which could not be (waiting_records).
    """
    now = now or dt.datetime.now(dt.UTC)
    tick = progress or (lambda _step, _total: None)
    budget = ChartMogulBudget()
    snapshots = fetch_snapshots(stripe_api, request.customers, tick)
    months = month_days(
        request.from_month or _first_month(snapshots, now), request.to_month or now.strftime("%Y-%m"), now
    )
    data_source = settings.chartmogul_data_source_name
    data_source_uuid = find_data_source(chartmogul_api, data_source, budget)
    wanted = None if request.customers is None else set(request.customers)
    view = read_chartmogul(
        chartmogul_api,
        data_source_uuid,
        customer_ids=wanted,
        months=months if request.customers is None else [],
        budget=budget,
        on_customer=lambda: tick("reading ChartMogul customers", None),
    )
    known: Callable[[str], KnownCustomer | None] = _nothing_known
    pending: dict[str, str] = {}
    if state is not None:
        pending = changed_since_cursor(stripe_api, state)
        if data_source_uuid is not None:
            known = IdMap(state, chartmogul_api, data_source_uuid).known_customer
    waiting: WaitingRecords | None = None
    if parked is None:
        waiting = waiting_records(sqs, settings) if sqs is not None else WaitingRecords()
        parked = waiting.parked
    report = audit(
        AuditInputs(
            snapshots=snapshots,
            chartmogul=view,
            months=months,
            as_of=now,
            data_source=data_source,
            config=request.config,
            rates=request.rates,
            account_currency=request.account_currency,
            pending=pending,
            parked=parked,
            known=known,
            whole_account=request.customers is None,
            truth=request.truth,
        )
    )
    if waiting is not None:
        report.queues_read, report.queues_not_read = waiting.read, waiting.not_read
    return report


def _nothing_known(_customer: str) -> KnownCustomer | None:
    return None  # no id map (no state table given): compare.py tells imported objects by what ChartMogul has


# ---------------------------------------------------------------------------------------------- Stripe


def fetch_snapshots(
    api: StripeApi, customers: Iterable[str] | None, tick: Progress | None = None
) -> dict[str, CustomerSnapshot]:
    """Snapshots of these customers (per-customer lists), or of every customer (global lists)."""
    tick = tick or (lambda _step, _total: None)
    catalog = Catalog(api)
    if customers is not None:
        wanted = sorted(set(customers))
        tick("fetching Stripe customers", len(wanted))
        snapshots = {}
        for customer_id in wanted:
            snapshots[customer_id] = fetch_customer_snapshot(api, catalog, customer_id)
            tick("fetching Stripe customers", None)
        return snapshots
    for resource in (StripeList.PRODUCTS, StripeList.PRICES):
        for obj in api.list_all(resource, {}):
            catalog.add(resource, obj)
    records: dict[str, CustomerRecords] = {}

    def owner(customer_id: str) -> CustomerRecords:
        return records.setdefault(customer_id, CustomerRecords(customer_id))

    for customer in api.list_all(StripeList.CUSTOMERS, {}):
        owner(str(customer["id"])).set_customer(customer)
        tick("listing Stripe customers", None)
    for owned in (*OWNED_LISTS, REFUNDS_WITH_OWNER):
        for obj in api.list_all(owned.resource, owned.params):
            obj = complete(api, owned.resource, obj, refunds_per_charge=False)
            owner_id, obj = refund_with_owner(obj) if owned.resource is StripeList.REFUNDS else (customer_of(obj), obj)
            if owner_id is not None:
                owner(owner_id).add(owned.resource, obj)
        tick(f"listed Stripe {owned.resource.value}", None)
    deletions = RecentDeletions(api)
    snapshots = {}
    for customer_id, customer_records in sorted(records.items()):
        if customer_records.customer is None:
            # Objects of a customer the customer list no longer shows: deleted in Stripe.
            last_known = deletions.last_known(customer_id)
            stub = {"id": customer_id, "object": "customer", "deleted": True}
            try:
                retrieved = api.retrieve(StripeList.CUSTOMERS, customer_id) if last_known is None else stub
            except stripe.InvalidRequestError:
                retrieved = stub
            customer_records.set_customer(retrieved if retrieved.get("deleted") else stub, last_known=last_known)
            # As the backfill does: the global `status=all` list leaves a deleted customer's subscriptions out.
            add_subscriptions_of_deleted_customer(api, customer_records)
        snapshots[customer_id] = assemble_snapshot(customer_records, catalog)
    return snapshots


def changed_since_cursor(api: StripeApi, state: StateTable, max_events: int = 100_000) -> dict[str, str]:
    """Customers named by Stripe events after the incremental cursor: changed since the last sync."""
    item = state.get(CURSOR_PK, CURSOR_SK)
    if item is None:
        return {}
    cursor = EventCursor.model_validate_json(item["cursor"])
    since = dt.datetime.fromtimestamp(cursor.created, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    pending: dict[str, str] = {}
    for count, event in enumerate(api.list_all(StripeList.EVENTS, {"created[gte]": cursor.created})):
        if count >= max_events:
            break  # bounded; more changes than this are reported as they come
        if event.get("id") in cursor.event_ids:
            continue
        target = event_target(event)
        customer_id: str | None = None
        if isinstance(target, CustomerChanged | CustomerDeleted):
            customer_id = target.customer_id
        elif isinstance(target, NeedsLookup):
            try:
                customer_id = customer_of(api.retrieve(StripeList(target.parent_kind), target.parent_id))
            except stripe.InvalidRequestError:
                customer_id = None
        if customer_id is not None:
            pending.setdefault(customer_id, f"Stripe event {event.get('type')} after the sync cursor ({since})")
    return pending


@dataclass
class WaitingRecords:
    """What the terminal queues hold for the audit: customer → "queue: reason", and which queues were read."""

    parked: dict[str, str] = field(default_factory=dict)
    read: list[str] = field(default_factory=list)
    not_read: dict[str, str] = field(default_factory=dict)  # queue → why (not deployed, not configured, refused)


def waiting_records(sqs: Any, settings: Settings) -> WaitingRecords:
    """Customers with a record in the bad-records queue or a DLQ (every queue of RECORD_QUEUES the settings name).

    The one reading of the queues for `cmsync audit --stack` (settings from CloudFormation) and the Audit function
    (settings from its environment, template.yaml): a queue it cannot read is named in the report with why,
    instead of its customers silently turning into "not uploaded"."""
    from botocore.exceptions import BotoCoreError, ClientError

    waiting = WaitingRecords()
    for name in RECORD_QUEUES:
        try:
            url = resolve_terminal_queue(name, settings, sqs)
            messages = list_messages(sqs, url, max_messages=1000)
        except QueueNotFound as error:
            waiting.not_read[name] = str(error)
            continue
        except (BotoCoreError, ClientError) as error:  # a missing permission, say: the rest of the audit still runs
            waiting.not_read[name] = f"SQS refused: {error}"
            continue
        waiting.read.append(name)
        for message in messages:
            if message.customer_external_id:
                waiting.parked.setdefault(message.customer_external_id, f"{name}: {message.reason}")
    return waiting


# ---------------------------------------------------------------------------------------------- months


def month_days(first: str, last: str, now: dt.datetime) -> list[tuple[str, dt.date]]:
    """Each month from `first` to `last` (YYYY-MM) with the day it is read at: its last day, or today."""
    year, month = map(int, first.split("-"))
    end_year, end_month = map(int, last.split("-"))
    months: list[tuple[str, dt.date]] = []
    for _ in range(12 * 100):  # bounded: a century of months
        if (year, month) > (end_year, end_month):
            break
        following = dt.date(year + month // 12, month % 12 + 1, 1)
        months.append((f"{year:04d}-{month:02d}", min(following - dt.timedelta(days=1), now.date())))
        year, month = following.year, following.month
    return months


def _first_month(snapshots: Mapping[str, CustomerSnapshot], now: dt.datetime) -> str:
    created = [int(i["created"]) for s in snapshots.values() for i in s.invoices if isinstance(i.get("created"), int)]
    first = dt.datetime.fromtimestamp(min(created), dt.UTC) if created else now
    return first.strftime("%Y-%m")
