"""Near-real-time sync through the local runtime: the Stripe emulator delivers its events to the partner event bus
in moto, the template's rule routes them to the Stripe events queue, and the export function's SQS trigger turns
them into snapshots that transform and upload take to ChartMogul. No schedule runs unless a test says so."""

import dataclasses
import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from chartmogul_sync.queues import BadRecord
from localdev.aws.lambda_model import Handler
from localdev.pipeline import STRIPE_EVENT_SOURCE, LocalPipeline, PipelineOptions
from localdev.scenarios import Account
from tests.e2e.test_pipeline import assert_dead_letter_queues_empty, assert_matches_ground_truth

pytestmark = pytest.mark.slow

REALTIME = PipelineOptions(stripe_rate_limit=None, chartmogul_rate_limit=None, stripe_event_destination=True)


def _paying_customers(pipeline: LocalPipeline) -> list[str]:
    from localdev.stripe_emulator import records

    now = pipeline.account.store.now
    return sorted(
        {
            s.customer
            for s in pipeline.account.store.collection("subscriptions").newest_first()
            if isinstance(s, records.Subscription) and s.ended_at is None and s.status_at(now) == "active"
        }
    )


def _apply_first_fitting(pipeline: LocalPipeline, kind: str, customers: list[str], taken: set[str]) -> str:
    for customer in customers:
        if customer in taken:
            continue
        try:
            pipeline.stripe.apply_step({"kind": kind, "customer": customer})
        except ValueError:
            continue  # this change does not fit this customer
        taken.add(customer)
        return customer
    raise AssertionError(f"no customer fits a {kind}")


def test_upgrade_refund_cancellation_and_deletion_reach_chartmogul_through_eventbridge_without_the_schedule(
    account: Account,
) -> None:
    with LocalPipeline(account, REALTIME) as pipeline:
        pipeline.backfill()
        customers, changed = _paying_customers(pipeline), set[str]()
        for kind in ("upgrade", "refund", "cancel", "delete_customer"):
            _apply_first_fitting(pipeline, kind, customers, changed)

        realtime = pipeline.realtime()

        # Only the SQS trigger exported, and only the changed customers, one snapshot each.
        assert realtime.functions["StripeEventsFunction"].invocations >= 1
        assert realtime.functions["TransformFunction"].records == len(changed)
        assert_matches_ground_truth(pipeline, account)
        assert_dead_letter_queues_empty(pipeline)

        # The schedule's next run reads the same events from Stripe and exports none of these customers again.
        incremental = pipeline.incremental()
        assert incremental.export_result["customers_enqueued"] == 0
        assert incremental.export_result["detail"]["cursor_advanced"] is True


def test_fifty_events_of_one_customer_in_one_window_make_one_snapshot(account: Account) -> None:
    # One poller: with the trigger's MaximumConcurrency (2) Lambda may split a backlog between two batches, each
    # coalesced to one snapshot; what is shown here is the coalescing of one window's batch.
    with LocalPipeline(account, dataclasses.replace(REALTIME, concurrent=False)) as pipeline:
        pipeline.backfill()
        customer = _paying_customers(pipeline)[0]
        assert pipeline.event_destination is not None
        for quantity in range(2, 60):  # bounded: each seat change emits a few events
            pipeline.stripe.apply_step({"kind": "change_quantity", "customer": customer, "quantity": quantity})
            pipeline.event_destination.publish_pending()
            if pipeline.stack.queue_depth("StripeEventsQueue") >= 50:
                break
        events = pipeline.stack.queue_depth("StripeEventsQueue")
        assert events >= 50

        realtime = pipeline.realtime()

        export = realtime.functions["StripeEventsFunction"]
        assert export.invocations == 1 and export.records == events  # one batch (BatchSize 100) held them all
        assert realtime.functions["TransformFunction"].records == 1
        assert_matches_ground_truth(pipeline, account)


def test_an_event_for_an_unknown_customer_ends_as_a_bad_record_with_stripes_answer(account: Account) -> None:
    with LocalPipeline(account, REALTIME) as pipeline:
        pipeline.backfill()
        # A real-shaped event from another Stripe account's customer (the id exists nowhere here).
        detail = {
            "id": "evt_1UnknownCustomer0000000",
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": pipeline.account.store.now,
            "data": {"object": {"id": "cus_DoesNotExist000", "object": "customer", "email": "x@example.com"}},
            "livemode": False,
            "pending_webhooks": 0,
            "request": {"id": None, "idempotency_key": None},
            "type": "customer.updated",
        }
        pipeline.stack.clients.events.put_events(
            Entries=[
                {
                    "EventBusName": STRIPE_EVENT_SOURCE,
                    "Source": STRIPE_EVENT_SOURCE,
                    "DetailType": "customer.updated",
                    "Detail": json.dumps(detail),
                    "Time": datetime.now(UTC),
                }
            ]
        )

        realtime = pipeline.realtime()

        assert realtime.functions["StripeEventsFunction"].failed == 0  # done with, not retried
        (body,) = pipeline.dead_letters()["BadRecordsQueue"]
        record = BadRecord.model_validate_json(body)
        assert record.stage == "export" and record.customer_external_id == "cus_DoesNotExist000"
        assert "HTTP 404" in record.reason and "No such customer" in (record.error_body or "")
        assert json.loads(record.original_body) == {"mode": "customer", "customer_id": "cus_DoesNotExist000"}


def test_stripe_events_are_exported_while_a_backfill_runs_and_none_waits_in_the_dead_letter_queue(
    account: Account,
) -> None:
    """A backfill holds the export function's one slot (reserved concurrency 1) for hours in production; Stripe
    events arriving meanwhile are exported by their own function, not throttled into the Stripe events DLQ."""
    with LocalPipeline(account, REALTIME) as pipeline:
        pipeline.backfill()
        customers, changed = _paying_customers(pipeline), set[str]()
        for kind in ("upgrade", "refund"):
            _apply_first_fitting(pipeline, kind, customers, changed)
        assert pipeline.event_destination is not None
        pipeline.event_destination.publish_pending()
        assert pipeline.stack.queue_depth("StripeEventsQueue") > 0

        # The backfill's invocations stay in flight until a Stripe events batch has been exported (at most 60 s).
        exported = threading.Event()
        in_flight_when_exported: list[bool] = []

        def hold_export(handler: Handler) -> Handler:
            def held(event: dict[str, Any], context: Any) -> Any:
                response = handler(event, context)
                in_flight_when_exported.append(exported.wait(timeout=60))
                return response

            return held

        def note_export(handler: Handler) -> Handler:
            def noted(event: dict[str, Any], context: Any) -> Any:
                response = handler(event, context)
                exported.set()
                return response

            return noted

        pipeline.stack.wrap_handler("ExportFunction", hold_export)
        pipeline.stack.wrap_handler("StripeEventsFunction", note_export)
        pipeline.start_export({"mode": "backfill"})
        drained = pipeline.drain()

        assert in_flight_when_exported and all(in_flight_when_exported)
        assert [b for b in drained.batches if b.throttled] == []
        realtime = drained.batches_of("StripeEventsFunction")
        assert realtime and all(b.failed_ids == [] for b in realtime)
        assert pipeline.stack.queue_depth("StripeEventsQueue") == 0
        assert_dead_letter_queues_empty(pipeline)  # the Stripe events DLQ among them
        # The changes and the backfill's snapshots, in whichever order applied: ChartMogul holds Stripe's data.
        assert_matches_ground_truth(pipeline, account)
