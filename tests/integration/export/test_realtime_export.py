"""The Stripe events function: Stripe events from EventBridge, through the real handler against the Stripe
emulator, with the sample batch from events/ (a subscription update, an invoice paid and its invoice payment for
one customer, and a thin event)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from chartmogul_sync.failures import FailureLedger, RecordFailure
from chartmogul_sync.queues import BadRecord
from chartmogul_sync.sources.stripe.client import (
    RequestLimiter,
    StripeApi,
    StripeList,
    TimeBudget,
    make_stripe_client,
)
from chartmogul_sync.sources.stripe.run import ExportLimits
from chartmogul_sync.sources.stripe.wiring import export_wiring
from localdev.aws.runtime import load_event
from localdev.scenarios import Account, generate_account
from localdev.stripe_emulator import RunningStripeEmulator

from .conftest import FAST_RETRIES, STRIPE_KEY, ExportRig, make_rig

SAMPLE_CUSTOMER = "cus_XOUYmij3C0QRTV"  # a customer of the account below (the sample was rendered from it)


@pytest.fixture
def account() -> Account:
    return generate_account(customers=12, months=12, seed=11)


@pytest.fixture
def rig(emulator: RunningStripeEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[ExportRig]:
    yield from make_rig(emulator, monkeypatch, stripe_events=True)


def events_of_eight_customers(account: Account) -> tuple[list[str], list[dict[str, Any]]]:
    """One subscription event per customer, for eight customers (the sample's first record, retargeted)."""
    template = load_event("sqs-stripe-events-batch.json")["Records"][0]
    customers = sorted(c.id for c in account.store.customers if c.deleted_at is None)[:8]
    records = []
    for index, customer_id in enumerate(customers):
        body = json.loads(template["body"])
        body["detail"]["id"] = f"evt_eight{index:04d}"
        body["detail"]["data"]["object"]["customer"] = customer_id
        message_id = f"00000000-0000-4000-8000-0000000000{index:02d}"
        records.append({**template, "messageId": message_id, "body": json.dumps(body)})
    return customers, records


def test_a_batchs_customers_are_fetched_side_by_side(rig: ExportRig, account: Account) -> None:
    customers, records = events_of_eight_customers(account)
    rig.emulator.server.set_latency(0.05)

    assert rig.invoke({"Records": records}, "StripeEventsFunction") == {"batchItemFailures": []}

    assert sorted(message.customer_external_id for message in rig.take_raw_messages()) == customers
    assert rig.emulator.server.request_report()["peak_requests_in_progress"] > 1


def bad_records(rig: ExportRig) -> list[BadRecord]:
    return [BadRecord.model_validate_json(m["Body"]) for m in rig.stack.receive_all("BadRecordsQueue")]


def test_a_batchs_events_of_one_customer_make_one_snapshot_and_a_redelivery_makes_none(rig: ExportRig) -> None:
    event = load_event("sqs-stripe-events-batch.json")

    assert rig.invoke(event, "StripeEventsFunction") == {"batchItemFailures": []}

    (snapshot,) = rig.take_raw_messages()
    assert snapshot.customer_external_id == SAMPLE_CUSTOMER
    assert snapshot.payload is not None and snapshot.payload.api_version == "2026-10-28.endive"
    (thin,) = bad_records(rig)
    assert thin.stage == "export" and thin.field == "detail.object" and "snapshot payload" in thin.reason
    assert thin.original_body == event["Records"][3]["body"]

    # EventBridge and SQS deliver at least once: the same events again find the customer exported after them.
    requests = rig.stripe_requests()
    assert rig.invoke(event, "StripeEventsFunction") == {"batchItemFailures": []}
    assert rig.take_raw_messages() == []
    assert rig.stripe_requests() - requests == 1  # the invoice payment's invoice, to learn whose it is


def test_when_stripe_keeps_failing_the_customers_events_come_back_and_the_unreadable_one_does_not(
    rig: ExportRig,
) -> None:
    event = load_event("sqs-stripe-events-batch.json")
    rig.emulator.server.set_faults("500:1.0")

    response = rig.invoke(event, "StripeEventsFunction")

    customer_records = {record["messageId"] for record in event["Records"][:3]}
    assert {failure["itemIdentifier"] for failure in response["batchItemFailures"]} == customer_records
    assert rig.take_raw_messages() == []
    assert [record.field for record in bad_records(rig)] == ["detail.object"]
    # Each failed record's reason is kept under its message id, which SQS keeps when it moves the message to the
    # Stripe events DLQ: `cmsync dlq list stripe-events-dlq` shows it (failures.py).
    for message_id in sorted(customer_records):
        item = rig.state_item(FailureLedger.partition_key(message_id), "last")
        assert item is not None, message_id
        failure = RecordFailure.model_validate_json(item["failure"]["S"])
        assert failure.stage == "export" and "HTTP 500" in failure.reason, failure.reason
        assert failure.correlation_id is not None and failure.correlation_id.startswith("realtime-")
        assert failure.receive_count == 1
    # The customer whose snapshot failed is named; the invoice payment's failed while finding its customer.
    reasons = [
        RecordFailure.model_validate_json(item["failure"]["S"]).reason
        for message_id in customer_records
        if (item := rig.state_item(FailureLedger.partition_key(message_id), "last")) is not None
    ]
    assert any(SAMPLE_CUSTOMER in reason for reason in reasons), reasons


def test_a_batch_that_fails_whole_keeps_the_reason_for_each_of_its_records(rig: ExportRig) -> None:
    event = load_event("sqs-stripe-events-batch.json")
    # Without a bad-records queue the unreadable event has nowhere to go: the batch fails rather than lose it.
    rig.stack.function("StripeEventsFunction").environment["BAD_RECORDS_QUEUE_URL"] = ""

    with pytest.raises(ValueError, match="thin event"):
        rig.invoke(event, "StripeEventsFunction")

    for record in event["Records"]:
        item = rig.state_item(FailureLedger.partition_key(record["messageId"]), "last")
        assert item is not None, record["messageId"]
        failure = RecordFailure.model_validate_json(item["failure"]["S"])
        assert failure.reason.startswith("the batch failed: InvalidStripeEvent: "), failure.reason
        assert failure.stage == "export"


def test_every_stripe_request_waits_for_its_place_in_the_budget(rig: ExportRig) -> None:
    class FakeClock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

        def sleep(self, seconds: float) -> None:
            self.now += seconds

    clock = FakeClock()
    limiter = RequestLimiter(requests_per_second=4, max_connections=1, clock=clock, sleep=clock.sleep)
    client = make_stripe_client(rig.settings, STRIPE_KEY)
    api = StripeApi(client, TimeBudget.of_seconds(600), FAST_RETRIES, limiter=limiter)

    for _ in range(9):
        api.list_page(StripeList.PRODUCTS, {})

    assert api.stats.requests == rig.stripe_requests() == 9
    assert clock.now == pytest.approx(2.0)  # 4 requests a second: the ninth may start 2 s after the first


def test_a_batch_short_of_time_exports_one_customer_and_hands_the_others_back_with_the_reason(
    rig: ExportRig, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    customers, records = events_of_eight_customers(account)
    # Every invocation is short of time: it must still get one customer further, and lose none.
    monkeypatch.setattr(export_wiring, "limits", ExportLimits(handover_reserve_s=900))

    response = rig.invoke({"Records": records}, "StripeEventsFunction")

    exported = [message.customer_external_id for message in rig.take_raw_messages()]
    handed_back = {failure["itemIdentifier"] for failure in response["batchItemFailures"]}
    assert exported == customers[:1]
    assert handed_back == {record["messageId"] for record in records[1:]}
    item = rig.state_item(FailureLedger.partition_key(records[1]["messageId"]), "last")
    assert item is not None and "handed back" in RecordFailure.model_validate_json(item["failure"]["S"]).reason
