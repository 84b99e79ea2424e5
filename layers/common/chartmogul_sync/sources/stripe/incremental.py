"""Incremental export: Stripe events since the stored cursor → the changed customers → one snapshot each.

The cursor is the `created` second of the newest event handled plus the ids of the events handled in the
overlap window before it (`EVENT_OVERLAP_S`). Stripe's events list is eventually consistent: an event can appear
in the list some time after its `created`, behind newer events already listed (third-party connectors re-read a
window behind their cursor, e.g. Airbyte's source-stripe `lookback_window_days`, "the connector will always
re-export data from the past N days": airbytehq/airbyte
`airbyte-integrations/connectors/source-stripe/source_stripe/spec.yaml`). So each run lists again from
`created - EVENT_OVERLAP_S` and skips the events it has handled by id; an event that turned up late in the
window is handled then. The cursor advances only after every changed customer's snapshot is on the queue, so a
run that dies re-exports instead of losing changes. A run with no new events makes one Stripe request: the
first page of `/v1/events` (the window's events are skipped by id).

Events are kept 30 days (docs/sources.md#stripe-events). A cursor older than that cannot be
served by events: the run rescans objects created since the cursor (customer-owned lists, 100 per page) and
takes the events that are still kept, and logs the gap, because changes to older objects in the lost window
(a late payment, a cancellation) are only found by a backfill.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import stripe
from pydantic import BaseModel, ConfigDict

from ...models.snapshot import CustomerSnapshot, StripeJson
from ...state import key
from .client import StripeList, is_permanent_for_object
from .events import CustomerChanged, CustomerDeleted, NeedsLookup, event_target
from .exported import drop_covered_customers
from .lanes import in_order
from .run import Continuation, Exporter, ExportOutcome
from .snapshots import OWNED_LISTS, AccountLists, Catalog, OwnedList, customer_of, fetch_customer_snapshot

CURSOR_PK = key("cursor", "stripe")
CURSOR_SK = "incremental"
EVENT_RETENTION_S = 30 * 24 * 3600
# Events near the retention edge may already be gone when the list reaches them: treat the last hour as lost.
RETENTION_SAFETY_S = 3600
# How far behind the newest event handled each run lists again: events that become visible in the list later than
# this after their `created` are missed. Five times the minute connectors allow (module docstring).
EVENT_OVERLAP_S = 300
# A run exporting at least this many customers lists the catalog (up to this many pages of products and of prices)
# instead of retrieving each price and product its snapshots name: the retrievals are one request per distinct
# object, which a handful of changed customers on different plans already exceed (snapshots.py Catalog.preload).
CATALOG_PRELOAD_CUSTOMERS = 5
CATALOG_PRELOAD_PAGES = 2
# The owned lists an account holds few of: a run lists them whole when they take fewer pages than half its
# customers (one request each per customer otherwise), so a list too long for that costs at most half of what
# listing it per customer costs, once: the pages it took are kept, and the next runs do not try again until they
# export enough customers to pay for them (`_account_lists`).
SPARSE_LISTS: tuple[OwnedList, ...] = tuple(
    owned for owned in OWNED_LISTS if owned.resource in (StripeList.INVOICE_ITEMS, StripeList.CREDIT_NOTES)
)
ACCOUNT_LIST_PAGES_PK = key("account-list-pages", "stripe")


class EventCursor(BaseModel):
    model_config = ConfigDict(frozen=True)

    created: int  # Unix seconds of the newest event handled
    # The events handled with `created` in [created - EVENT_OVERLAP_S, created]: the next run lists that window
    # again and skips them. (A cursor stored before the window existed holds the ids at `created` only; the
    # other events of its window are handled once more, which re-exports their customers, nothing worse.)
    event_ids: frozenset[str] = frozenset()

    def position(self) -> str:
        # put_if_newer compares strings: a later second, or more events in the same second, sorts higher.
        return f"{self.created:012d}.{len(self.event_ids):06d}"


def load_cursor(exporter: Exporter) -> EventCursor | None:
    item = exporter.state.get(CURSOR_PK, CURSOR_SK)
    return EventCursor.model_validate_json(item["cursor"]) if item else None


def save_cursor(exporter: Exporter, cursor: EventCursor) -> bool:
    """Store the cursor unless a newer one is stored (an overlapping run got further): never move it back."""
    return exporter.state.put_if_newer(
        CURSOR_PK, CURSOR_SK, "position", cursor.position(), {"cursor": cursor.model_dump_json()}
    )


@dataclass
class ChangeSet:
    """Changed customers (id → the last known object of a deleted one, else None) and the cursor after them."""

    customers: dict[str, StripeJson | None] = field(default_factory=dict)
    cursor: EventCursor | None = None
    events_read: int = 0
    rescanned_since: int | None = None  # set when the cursor was past the event retention
    # The `created` of each customer's newest event in the run; None when a rescan, not an event, found it.
    # A customer the real-time path exported after that is not exported again (`exported.py`).
    newest_event: dict[str, int | None] = field(default_factory=dict)

    def add_changed(self, customer_id: str, created: int | None = None) -> None:
        self.customers.setdefault(customer_id, None)
        self._saw(customer_id, created)

    def add_deleted(self, customer_id: str, last_known: StripeJson, created: int | None = None) -> None:
        self.customers[customer_id] = last_known
        self._saw(customer_id, created)

    def _saw(self, customer_id: str, created: int | None) -> None:
        known = self.newest_event.get(customer_id, 0)
        if created is None or known is None:
            self.newest_event[customer_id] = None
        else:
            self.newest_event[customer_id] = max(known, created)


def collect_changes(exporter: Exporter, cursor: EventCursor | None, now: datetime) -> ChangeSet:
    now_s = int(now.timestamp())
    oldest_kept = now_s - EVENT_RETENTION_S + RETENTION_SAFETY_S
    changes = ChangeSet(cursor=cursor)
    if cursor is not None and cursor.created >= oldest_kept:  # the usual run: every event since is still kept
        _read_events(exporter, changes, since=max(cursor.created - EVENT_OVERLAP_S, oldest_kept), seen=cursor.event_ids)
        return changes
    if cursor is None:
        exporter.log.warning(
            "no incremental cursor yet: reading the events still kept (30 days); run a backfill for older history"
        )
    else:
        gap_days = (now_s - cursor.created) / 86400
        exporter.log.warning(
            "incremental cursor is older than Stripe's 30-day event retention: rescanning objects created since "
            "the cursor; changes to older objects in the lost window need a backfill",
            extra={"cursor_created": cursor.created, "gap_days": round(gap_days, 1)},
        )
        changes.rescanned_since = cursor.created
        _rescan_created_since(exporter, changes, cursor.created)
    _read_events(exporter, changes, since=oldest_kept, seen=frozenset())
    # Without a usable cursor the run covered everything up to now: the next one starts here (less the overlap
    # window) even if no event was found, instead of scanning again. The ids handled stay skipped.
    if changes.cursor is None or changes.cursor.created < now_s:
        handled = changes.cursor.event_ids if changes.cursor is not None else frozenset()
        changes.cursor = EventCursor(created=now_s, event_ids=handled)
    return changes


def _read_events(exporter: Exporter, changes: ChangeSet, *, since: int, seen: frozenset[str]) -> None:
    # Owners of invoices and charges seen in events: an invoice payment's or a refund's event names only its
    # parent, which usually has an event of its own (`invoice.paid` beside `invoice_payment.paid`).
    known_owners: dict[tuple[str, str], str] = {}
    lookups: dict[tuple[str, str], int] = {}  # parent → the newest event that needs it
    listed: dict[str, int] = {}  # every event of the list, handled now or before: id -> created
    for event in exporter.api.list_all(StripeList.EVENTS, {"created": {"gte": since}}):
        listed[str(event["id"])] = int(event["created"])
        if str(event["id"]) in seen:
            continue
        changes.events_read += 1
        exporter.stats.objects_listed += 1
        created = int(event["created"])
        target = event_target(event)
        if isinstance(target, NeedsLookup):
            needed = (target.parent_kind, target.parent_id)
            lookups[needed] = max(lookups.get(needed, 0), created)
        elif isinstance(target, CustomerDeleted):
            changes.add_deleted(target.customer_id, target.last_known, created)
        elif isinstance(target, CustomerChanged):
            changes.add_changed(target.customer_id, created)
            parent = _parent_key(event)
            if parent is not None:
                known_owners[parent] = target.customer_id
    for kind, parent_id in sorted(lookups):
        owner = known_owners.get((kind, parent_id))
        if owner is None:  # the parent had no event of its own in the window: ask Stripe
            try:
                owner = customer_of(exporter.api.retrieve(StripeList(kind), parent_id))
            except stripe.StripeError as error:
                # A parent Stripe refuses for good (a deleted draft invoice, say) names no customer to export,
                # now or later: skipped with its reason, so the cursor is not held back by it.
                if not is_permanent_for_object(error):
                    raise
                exporter.log.warning(
                    "event parent is gone in Stripe: no customer to export for it",
                    extra={"parent": parent_id, "http_status": error.http_status, "reason": str(error)[:200]},
                )
                continue
        if owner is not None:
            changes.add_changed(owner, lookups[(kind, parent_id)])
    _advance(changes, listed)


def _parent_key(event: StripeJson) -> tuple[str, str] | None:
    """(`invoices` | `charges`, id) when the event's object is an invoice or a charge."""
    obj = event.get("data", {}).get("object", {})
    kind = {"invoice": "invoices", "charge": "charges"}.get(obj.get("object"))
    return (kind, str(obj["id"])) if kind and obj.get("id") else None


def _advance(changes: ChangeSet, listed: dict[str, int]) -> None:
    """The cursor after a list that started at or before the old cursor's window: the newest second seen, and the
    events of the window behind it. Every event of that window still in Stripe's list is in `listed` (the list
    covered it whole), so the window's ids are known without storing each id's time."""
    if not listed:
        return
    previous = changes.cursor
    created = max(max(listed.values()), previous.created if previous is not None else 0)
    in_window = frozenset(event_id for event_id, at in listed.items() if at >= created - EVENT_OVERLAP_S)
    changes.cursor = EventCursor(created=created, event_ids=in_window)


def _rescan_created_since(exporter: Exporter, changes: ChangeSet, since: int) -> None:
    created = {"created": {"gte": since}}
    for customer in exporter.api.list_all(StripeList.CUSTOMERS, created):
        exporter.stats.objects_listed += 1
        changes.add_changed(str(customer["id"]))
    for owned in OWNED_LISTS:
        # Only the owner is needed here: no expansions, and the snapshot fetch lists the objects again.
        params = {k: v for k, v in owned.params.items() if k != "expand"}
        for obj in exporter.api.list_all(owned.resource, {**params, **created}):
            exporter.stats.objects_listed += 1
            customer_id = customer_of(obj)
            if customer_id is not None:
                changes.add_changed(customer_id)


# -- the run ---------------------------------------------------------------------------------------------------


def run_incremental(exporter: Exporter) -> ExportOutcome:
    """One scheduled run: find the changed customers and export them."""
    now = exporter.clock()
    cursor = load_cursor(exporter)
    changes = collect_changes(exporter, cursor, now)
    covered = drop_covered_customers(exporter.state, changes.newest_event, changes.customers)
    exporter.log.info(
        "incremental changes collected",
        extra={
            "events": changes.events_read,
            "customers_changed": len(changes.customers),
            "customers_already_exported": len(covered),  # by the real-time path, after their last event
        },
    )
    outcome = _export_changes(exporter, changes, previous=cursor)
    if changes.rescanned_since is None:
        return outcome
    return outcome.model_copy(update={"detail": {**outcome.detail, "rescanned_since": changes.rescanned_since}})


def export_customer(exporter: Exporter, customer_id: str) -> ExportOutcome:
    """One-customer sync: the same snapshot an incremental run would send for it, now.

    A customer Stripe refuses for good (no such customer, say) is set aside on the bad-records queue and the
    invocation ends normally: invoking it again would get the same answer.
    """
    snapshot_time = exporter.clock()
    try:
        snapshot = fetch_customer_snapshot(exporter.api, Catalog(exporter.api), customer_id)
    except stripe.StripeError as error:
        if not is_permanent_for_object(error):
            raise
        record = exporter.set_aside_customer(customer_id, error)
        return ExportOutcome(
            mode="customer",
            run_id=exporter.run_id,
            finished=True,
            customers_enqueued=0,
            detail={"customers_set_aside": 1, "reason": record.reason},
        )
    sent = exporter.send_snapshots([(snapshot, snapshot_time)])
    return ExportOutcome(mode="customer", run_id=exporter.run_id, finished=True, customers_enqueued=sent)


def resume_incremental(exporter: Exporter) -> ExportOutcome:
    """A continuation: export the customers a run before this one handed over."""
    body = exporter.s3.get_object(Bucket=exporter.settings.staging_bucket, Key=_pending_key(exporter.run_id))
    pending = _PendingChanges.model_validate_json(body["Body"].read())
    changes = ChangeSet(customers=dict(pending.customers), cursor=pending.cursor)
    return _export_changes(exporter, changes, previous=pending.previous)


class _PendingChanges(BaseModel):
    customers: dict[str, dict[str, Any] | None]
    cursor: EventCursor | None
    previous: EventCursor | None


def _pending_key(run_id: str) -> str:
    return f"incremental/{run_id}/pending.json"


def _account_lists(exporter: Exporter, customers: int) -> tuple[AccountLists, datetime]:
    """The sparse lists (`SPARSE_LISTS`) listed whole, those that take fewer pages than half of `customers`, and
    the time before they were listed.

    A list whose pages were counted before (the number this run or an earlier one took, or at least that many
    when it stopped short) is not tried when it took more than this run may spend on it.
    """
    listed_at = exporter.clock()
    account_lists = AccountLists()
    max_pages = customers // 2
    for owned in SPARSE_LISTS:
        known = exporter.state.get(ACCOUNT_LIST_PAGES_PK, owned.resource.value)
        if max_pages < 1 or (known is not None and int(known["pages"]) > max_pages):
            continue
        pages, kept = account_lists.list_whole(exporter.api, owned, max_pages)
        # Stopped short: the list has more than `pages` pages; one more than that is the least it can take.
        exporter.state.put(ACCOUNT_LIST_PAGES_PK, owned.resource.value, {"pages": pages if kept else pages + 1})
    return account_lists, listed_at


def _export_changes(exporter: Exporter, changes: ChangeSet, *, previous: EventCursor | None) -> ExportOutcome:
    catalog = Catalog(exporter.api)
    remaining = sorted(changes.customers)
    if len(remaining) >= CATALOG_PRELOAD_CUSTOMERS:
        catalog.preload(CATALOG_PRELOAD_PAGES)
    account_lists, lists_listed_at = _account_lists(exporter, customers=len(remaining))
    exported = set_aside = 0  # `exported` counts the customers done, set aside or not

    def fetch(customer_id: str) -> tuple[CustomerSnapshot, datetime]:
        snapshot_time = exporter.clock()  # the data fetched next is at least this fresh
        if account_lists.kept:
            # Its invoice items or credit notes were listed at the start: the snapshot says no newer than that,
            # so it never supersedes a snapshot taken since (the upload skips older ones).
            snapshot_time = min(snapshot_time, lists_listed_at)
        snapshot = fetch_customer_snapshot(
            exporter.api, catalog, customer_id, last_known=changes.customers[customer_id], account_lists=account_lists
        )
        return snapshot, snapshot_time

    def snapshots() -> Iterator[tuple[CustomerSnapshot, datetime]]:
        nonlocal exported, set_aside
        # Several customers at once (a changed customer is 3 to 5 requests of a few hundred milliseconds each),
        # handed over in order, so the customers done are always the first `exported`. At least one customer per
        # invocation, so a chain of continuations always gets further.
        for customer_id, fetched in in_order(
            fetch, remaining, lanes=exporter.limits.stripe_lanes, keep_asking=lambda: not exporter.time_to_hand_over()
        ):
            try:
                snapshot, snapshot_time = fetched.result()
            except stripe.StripeError as error:
                # Refused for good: set aside, so one customer does not hold back every later change. A passing
                # failure (429, 5xx, network, retries exhausted) fails the run and leaves the cursor unmoved.
                if not is_permanent_for_object(error):
                    raise
                exporter.set_aside_customer(customer_id, error)
                exported += 1
                set_aside += 1
                continue
            yield snapshot, snapshot_time
            exported += 1

    exporter.send_snapshots(snapshots())
    if exported < len(remaining):
        left = {customer_id: changes.customers[customer_id] for customer_id in remaining[exported:]}
        pending = _PendingChanges(customers=left, cursor=changes.cursor, previous=previous)
        exporter.s3.put_object(
            Bucket=exporter.settings.staging_bucket,
            Key=_pending_key(exporter.run_id),
            Body=pending.model_dump_json().encode(),
        )
        exporter.log.info("handing over to a continuation", extra={"exported": exported, "left": len(left)})
        return ExportOutcome(
            mode="incremental",
            run_id=exporter.run_id,
            finished=False,
            customers_enqueued=exported - set_aside,
            continuation=Continuation(resume="incremental", run_id=exporter.run_id),
            detail={"customers_left": len(left), "customers_set_aside": set_aside},
        )
    # Every snapshot is on the queue: only now may the cursor move past the events that announced them.
    cursor_saved = changes.cursor is not None and changes.cursor != previous and save_cursor(exporter, changes.cursor)
    return ExportOutcome(
        mode="incremental",
        run_id=exporter.run_id,
        finished=True,
        customers_enqueued=exported - set_aside,
        detail={
            "cursor": changes.cursor.model_dump(mode="json") if changes.cursor else None,
            "cursor_advanced": cursor_saved,
            "customers_set_aside": set_aside,
        },
    )
