"""Near-real-time export: Stripe events delivered by Amazon EventBridge to an SQS queue → one snapshot per changed
customer, in seconds instead of at the next schedule.

What arrives (docs.stripe.com/event-destinations/eventbridge, "Event structure"; stripe-python 16.1.0
`stripe/_webhook.py` `maybe_extract_from_cloud_provider_envelope`): Stripe puts each event on the partner event bus
of its event destination as an EventBridge event whose `source` is the partner event source
(`aws.partner/stripe.com/ed_…`), `detail-type` the Stripe event type and `detail` the Stripe event itself
(`{"id": "evt_…", "object": "event", "type", "created", "data": {"object": …}, …}`). The template's rule routes the
types that change a customer's ChartMogul state to the Stripe events queue; an SQS target receives the whole
EventBridge event as the message body (EventBridge user guide, "Amazon SQS queues as targets").

What is taken from an event: only which customer it is about, with the event's id and time (`events.event_target`,
the same reading the schedule does). Its payload is rendered in the event destination's API version, not ours,
so the customer's whole snapshot is fetched in the pinned version, exactly as the schedule would. An event whose
object names no customer directly (an invoice payment, a refund) is resolved through its invoice or charge.

Coalescing: the trigger's batching window gathers up to 100 events; every customer named in a batch gets one
snapshot, however many of its events the batch holds.

How each SQS record ends, so that nothing is lost silently:
- exported: its customer's snapshot is on the raw queue;
- already exported: a snapshot fetched after the event is on the raw queue (a redelivery, or an overlapping
  run; `exported.py`), logged;
- skipped with a logged reason: an event about no customer (a catalog change), or whose parent object is gone;
- set aside on the bad-records queue: an event that cannot be read (with the field at fault), a customer Stripe
  refuses for good (an unknown customer id, with Stripe's answer);
- failed: a passing failure (Stripe 429 or 5xx after the retries, the queue unreachable, the time running out);
  SQS delivers it again, and after 5 receives it waits in the Stripe events DLQ. The schedule, which reads the
  same events from Stripe, exports the customer in any case. Its reason is kept as the message's last failure in
  the state table (`failure#<message id>`, failures.py, as the transform and upload keep theirs; SQS moves a
  message to its DLQ with its id), so `cmsync dlq list stripe-events-dlq` says why each event waits there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import stripe
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...failures import FailureLedger, RecordFailure
from ...models.snapshot import CustomerSnapshot, StripeJson
from ...queues import BadRecords, Stage
from .client import StripeList, is_permanent_for_object
from .events import CustomerChanged, CustomerDeleted, NeedsLookup, event_target
from .exported import covers, exported_from, mark_exported
from .lanes import in_order
from .run import Exporter, recorded_run
from .snapshots import Catalog, customer_of, fetch_customer_snapshot

# Snapshots go to the raw queue in groups of this many (one SendMessageBatch) as they are fetched, so the first
# customers of a large batch move on to transform and upload before the last are fetched.
SEND_EVERY = 10
# Stripe's partner event sources are named aws.partner/stripe.com/<event destination id> (Stripe docs above).
STRIPE_PARTNER_SOURCE_PREFIX = "aws.partner/stripe.com/"

# The Stripe event types that change what a customer's snapshot holds (docs/architecture.md "Contracts between the
# stages", docs/formats.md: the customer, its subscriptions, finalized invoices, invoice payments, charges, refunds,
# credit notes). The template's rule matches exactly these (a test checks); the Stripe event destination should send at
# least these. Left out on purpose: drafts (`invoice.created`; a draft reaches ChartMogul when finalized), catalog
# objects (a renamed product travels with the next snapshot of a customer on it), schedules (they change future invoices
# only).
REALTIME_EVENT_TYPES = (
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "invoice.finalized",
    "invoice.updated",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "invoice_payment.paid",
    "charge.succeeded",
    "charge.failed",
    "charge.refunded",
    "charge.refund.updated",
    "refund.created",
    "refund.updated",
    "refund.failed",
    "credit_note.created",
    "credit_note.updated",
    "credit_note.voided",
)


# -- reading one record ------------------------------------------------------------------------------------


class _StripeEventData(BaseModel):
    object: dict[str, Any]


class StripeEventDetail(BaseModel):
    """The fields of the Stripe event (`detail`) this path reads; the rest is not looked at."""

    id: str = Field(pattern=r"^evt_[A-Za-z0-9_]+$")
    # A thin event (`v2.core.event`) carries no object, so no customer: the destination must send snapshots.
    object: Literal["event"]
    type: str = Field(min_length=1)
    created: int = Field(ge=0)
    data: _StripeEventData


class StripeEventBridgeEvent(BaseModel):
    """The EventBridge envelope, the fields this path reads (Powertools' `EventBridgeModel` also requires
    `account`, `region` and `resources`, which it does not need)."""

    id: str
    source: str = Field(pattern=r"^aws\.partner/stripe\.com/.+")
    detail_type: str = Field(alias="detail-type")
    detail: StripeEventDetail


class InvalidStripeEvent(ValueError):
    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class EventNotice:
    """One SQS record: which Stripe event it carries and whom it is about."""

    message_id: str
    event_id: str
    event_type: str
    created: int
    target: CustomerChanged | CustomerDeleted | NeedsLookup | None


def read_record(record: Mapping[str, Any]) -> EventNotice:
    """The notice in one SQS record of the Stripe events queue; InvalidStripeEvent names the field at fault."""
    body = record.get("body")
    try:
        envelope = StripeEventBridgeEvent.model_validate_json(body if isinstance(body, str) else "")
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        location = ".".join(str(part) for part in problem.get("loc", ()))
        if problem.get("type") == "json_invalid":
            raise InvalidStripeEvent(f"the message body is not JSON: {problem.get('msg')}", None) from None
        got = problem.get("input")
        if location == "detail.object" and got == "v2.core.event":
            message = (
                "a thin event (v2.core.event) names no customer: give the Stripe event destination the snapshot payload"
            )
        elif location == "source":
            message = f"field 'source' must be a Stripe partner event source ({STRIPE_PARTNER_SOURCE_PREFIX}…)"
        else:
            message = f"field '{location}': {problem.get('msg')}"
        reason = f"not a Stripe event from EventBridge: {message} (got {str(got)[:80]!r})"
        raise InvalidStripeEvent(reason, location) from None
    detail = envelope.detail
    # What `event_target` reads of an event: its type, time and object's reference fields.
    stripe_event: StripeJson = {
        "id": detail.id,
        "type": detail.type,
        "created": detail.created,
        "data": {"object": detail.data.object},
    }
    return EventNotice(
        message_id=str(record["messageId"]),
        event_id=detail.id,
        event_type=detail.type,
        created=detail.created,
        target=event_target(stripe_event),
    )


# -- the batch ---------------------------------------------------------------------------------------------


@dataclass
class ChangedCustomer:
    customer_id: str
    message_ids: list[str] = field(default_factory=list)
    event_ids: set[str] = field(default_factory=set)
    newest_event: int = 0

    def add(self, notice: EventNotice) -> None:
        self.message_ids.append(notice.message_id)
        self.event_ids.add(notice.event_id)
        self.newest_event = max(self.newest_event, notice.created)


class RealtimeOutcome(BaseModel):
    """What one batch did (the handler logs it and publishes its counts); `failed` are SQS message ids."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    events: int
    customers_enqueued: int
    customers_already_exported: int
    customers_set_aside: int
    events_rejected: int
    events_skipped: int
    failed: list[str]

    def batch_response(self) -> dict[str, Any]:
        """Lambda's partial batch response (ReportBatchItemFailures)."""
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in self.failed]}

    def metrics(self) -> list[tuple[str, int]]:
        """The batch's own counts (namespace ChartMogulSync, service export; docs/operations.md)."""
        return [
            ("StripeEventsReceived", self.events),
            ("CustomersAlreadyExported", self.customers_already_exported),
            ("RejectedEvents", self.events_rejected),
            ("StripeEventsSkipped", self.events_skipped),
            ("StripeEventsFailed", len(self.failed)),
        ]


def run_event_batch(exporter: Exporter, records: list[Mapping[str, Any]]) -> RealtimeOutcome:
    """One invocation of the Stripe events function: the batch exported, its end kept as the `realtime` mode's
    last run (`cmsync status`); a batch with records not exported yet is recorded as failed, with how many.

    Beside a running incremental or backfill export, by design (docs/architecture.md "The near-real-time
    function beside a running export"): this writes only per-customer export marks (`exported.py`, never moved
    back), its own run record and the last failure of each record it fails on (failures.py), never the
    incremental cursor, a backfill checkpoint or staged pages, and the uploader keeps the newest snapshot of a
    customer whichever run sent it.
    """
    with recorded_run(exporter, "realtime") as run:
        try:
            outcome = export_event_batch(exporter, records)
        except Exception as error:
            # The whole batch fails and comes back: each record keeps this reason, for its dead letter.
            failures = _BatchFailures(records)
            for record in records:
                failures.add(
                    [str(record.get("messageId", ""))], f"the batch failed: {type(error).__name__}: {error}", error
                )
            failures.keep(exporter)
            raise
        if outcome.failed:
            run.failed(f"{len(outcome.failed)} of {outcome.events} events not exported yet: SQS delivers them again")
    return outcome


def export_event_batch(exporter: Exporter, records: list[Mapping[str, Any]]) -> RealtimeOutcome:
    """Export one snapshot for every customer the batch's events name; see the module docstring for the rest."""
    notices: list[EventNotice] = []
    failed = _BatchFailures(records)
    rejected = 0
    for record in records:
        try:
            notices.append(read_record(record))
        except InvalidStripeEvent as error:
            _set_aside_event(exporter, record, error)
            rejected += 1

    skipped = 0
    customers: dict[str, ChangedCustomer] = {}
    owners: dict[tuple[str, str], str | None] = {}  # a batch often names one invoice many times
    for notice in notices:
        target = notice.target
        customer_id: str | None = None
        if isinstance(target, CustomerChanged | CustomerDeleted):
            customer_id = target.customer_id
        elif isinstance(target, NeedsLookup):
            try:
                customer_id = _owner(exporter, target, owners)
            except stripe.StripeError as error:  # a passing failure: `_owner` handles the permanent ones
                what = f"resolving the customer of {target.parent_kind} {target.parent_id} failed"
                _log_passing_failure(exporter, what, notice, error)
                failed.add([notice.message_id], f"{what}: {_stripe_reason(error)}", error)
                continue
        if customer_id is None:
            skipped += 1
            exporter.log.info(
                "Stripe event names no customer: nothing to export",
                extra={"event_id": notice.event_id, "event_type": notice.event_type},
            )
            continue
        customers.setdefault(customer_id, ChangedCustomer(customer_id)).add(notice)

    exported = already = set_aside = 0
    ready: list[tuple[CustomerSnapshot, datetime, ChangedCustomer]] = []
    catalog = Catalog(exporter.api)
    to_fetch: list[ChangedCustomer] = []
    for changed in (customers[customer_id] for customer_id in sorted(customers)):
        if covers(exported_from(exporter.state, changed.customer_id), changed.newest_event):
            already += 1
            exporter.log.info(
                "customer already exported after these events: not exported again",
                extra={"customer_id": changed.customer_id, "events": sorted(changed.event_ids)},
            )
            continue
        to_fetch.append(changed)

    def fetch(changed: ChangedCustomer) -> tuple[CustomerSnapshot, datetime]:
        snapshot_time = exporter.clock()  # the data fetched next is at least this fresh
        return fetch_customer_snapshot(exporter.api, catalog, changed.customer_id), snapshot_time

    # A few customers at once (`ExportLimits.realtime_lanes`), in order. Not enough time left to fetch and send
    # another snapshot: the rest comes back after the visibility timeout. At least one customer per invocation is
    # tried, so a batch always gets further.
    taken = 0
    fetches = in_order(
        fetch, to_fetch, lanes=exporter.limits.realtime_lanes, keep_asking=lambda: not exporter.time_to_hand_over()
    )
    for changed, fetched in fetches:
        taken += 1
        try:
            snapshot, snapshot_time = fetched.result()
        except stripe.StripeError as error:
            if is_permanent_for_object(error):
                # An unknown customer id, say: asking again gets the same answer. Set aside with Stripe's answer;
                # its records are done.
                exporter.set_aside_customer(changed.customer_id, error)
                set_aside += 1
                continue
            _log_passing_failure(exporter, "fetching a customer's snapshot failed", changed, error)
            what = f"fetching the snapshot of customer {changed.customer_id} failed"
            failed.add(changed.message_ids, f"{what}: {_stripe_reason(error)}", error, changed.customer_id)
            continue
        ready.append((snapshot, snapshot_time, changed))
        if len(ready) == SEND_EVERY:  # on their way while the next customers are fetched
            exported += _send(exporter, ready, failed)
            ready = []
    for changed in to_fetch[taken:]:
        failed.add(
            changed.message_ids,
            f"not enough of the invocation's time left to export customer {changed.customer_id}: handed back",
            None,
            changed.customer_id,
        )
    exported += _send(exporter, ready, failed)
    failed.keep(exporter)
    return RealtimeOutcome(
        run_id=exporter.run_id,
        events=len(records),
        customers_enqueued=exported,
        customers_already_exported=already,
        customers_set_aside=set_aside,
        events_rejected=rejected,
        events_skipped=skipped,
        failed=failed.message_ids,
    )


class _BatchFailures:
    """The records of a batch that failed for a passing reason, each with its reason, kept for its dead letter."""

    def __init__(self, records: list[Mapping[str, Any]]) -> None:
        self._records = {str(record.get("messageId", "")): record for record in records}
        self._failures: dict[str, RecordFailure] = {}

    @property
    def message_ids(self) -> list[str]:
        return list(self._failures)

    def add(self, message_ids: list[str], reason: str, error: Exception | None, customer_id: str | None = None) -> None:
        for message_id in message_ids:
            attributes = self._records.get(message_id, {}).get("attributes") or {}
            count = attributes.get("ApproximateReceiveCount")
            self._failures[message_id] = RecordFailure(
                message_id=message_id or "?",
                stage=Stage.EXPORT,
                reason=reason[:1_000],
                error_type=type(error).__name__ if error is not None else "HandedBack",
                customer_external_id=customer_id,
                receive_count=int(count) if isinstance(count, str) and count.isdigit() else None,
            )

    def keep(self, exporter: Exporter) -> None:
        """Each failure as its message's last (failures.py); a table that refuses leaves the logged warning."""
        if not self._failures:
            return
        ledger = FailureLedger(exporter.state)
        for failure in self._failures.values():
            try:
                ledger.record(failure.model_copy(update={"correlation_id": exporter.run_id}))
            except Exception as error:
                exporter.log.error(
                    "could not keep the failure reason for the dead letter",
                    extra={"message_id": failure.message_id, "error": f"{type(error).__name__}: {error}"[:300]},
                )
                return


def _stripe_reason(error: stripe.StripeError) -> str:
    status = f"HTTP {error.http_status}" if error.http_status else "no answer"
    return f"Stripe {type(error).__name__} ({status}): {str(error.user_message or error)[:300]}"


def _send(
    exporter: Exporter, ready: list[tuple[CustomerSnapshot, datetime, ChangedCustomer]], failed: _BatchFailures
) -> int:
    """Send snapshots to the raw queue and mark their customers exported; on failure their records fail."""
    if not ready:
        return 0
    try:
        exporter.send_snapshots((snapshot, snapshot_time) for snapshot, snapshot_time, _ in ready)
    except Exception as error:  # the raw queue did not take them: every one comes back
        exporter.log.warning(
            "sending snapshots failed; their events will be delivered again",
            extra={"error": type(error).__name__, "detail": str(error)[:200]},
        )
        for _, _, changed in ready:
            what = f"sending the snapshot of customer {changed.customer_id} to the raw queue failed"
            failed.add(changed.message_ids, f"{what}: {type(error).__name__}: {error}", error, changed.customer_id)
        return 0
    for snapshot, snapshot_time, changed in ready:
        mark_exported(exporter.state, snapshot.customer_id, snapshot_time)
        exporter.log.info(
            "customer exported from Stripe events",
            extra={"customer_id": changed.customer_id, "events": len(changed.event_ids)},
        )
    return len(ready)


def _owner(exporter: Exporter, target: NeedsLookup, owners: dict[tuple[str, str], str | None]) -> str | None:
    """The customer of an invoice payment's invoice or a refund's charge (one request per parent and batch)."""
    parent = (target.parent_kind, target.parent_id)
    if parent not in owners:
        try:
            owners[parent] = customer_of(exporter.api.retrieve(StripeList(target.parent_kind), target.parent_id))
        except stripe.StripeError as error:
            if not is_permanent_for_object(error):
                raise
            # Gone for good (a deleted draft invoice): it names no customer, now or later.
            exporter.log.warning(
                "event parent is gone in Stripe: no customer to export for it",
                extra={"parent": target.parent_id, "http_status": error.http_status, "reason": str(error)[:200]},
            )
            owners[parent] = None
    return owners[parent]


def _set_aside_event(exporter: Exporter, record: Mapping[str, Any], error: InvalidStripeEvent) -> None:
    """An unreadable record is kept once on the bad-records queue: no retry can make it readable."""
    body = record.get("body")
    original = body if isinstance(body, str) else json.dumps(record, default=str)
    queue_url = exporter.settings.bad_records_queue_url
    if not queue_url:  # nowhere to keep it: fail it, so it reaches the DLQ instead of vanishing
        raise error
    BadRecords(exporter.sender, queue_url, Stage.EXPORT).send(
        original, str(error), field=error.field, correlation_id=exporter.run_id
    )


def _log_passing_failure(exporter: Exporter, what: str, about: EventNotice | ChangedCustomer, error: Exception) -> None:
    subject = about.customer_id if isinstance(about, ChangedCustomer) else about.event_id
    exporter.log.warning(
        f"{what}; its events will be delivered again",
        extra={
            "about": subject,
            "error": type(error).__name__,
            "http_status": getattr(error, "http_status", None),
            "detail": str(error)[:200],
        },
    )
