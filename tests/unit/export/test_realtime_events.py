"""Reading Stripe's EventBridge events (the sample in events/ is real-shaped) and deciding what a snapshot covers."""

import json
from pathlib import Path
from typing import Any

import pytest

from chartmogul_sync.config import Settings
from chartmogul_sync.sources.stripe.client import stripe_request_limiter
from chartmogul_sync.sources.stripe.events import CustomerChanged, NeedsLookup
from chartmogul_sync.sources.stripe.exported import covers
from chartmogul_sync.sources.stripe.realtime import InvalidStripeEvent, read_record

SAMPLE = Path(__file__).resolve().parents[3] / "events" / "sqs-stripe-events-batch.json"
SAMPLE_CUSTOMER = "cus_XOUYmij3C0QRTV"


def sample_records() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(SAMPLE.read_text())["Records"]
    return records


def with_body(body: dict[str, Any] | str) -> dict[str, Any]:
    return {**sample_records()[0], "body": body if isinstance(body, str) else json.dumps(body)}


def test_the_sample_batch_names_its_customer_directly_or_through_the_invoice_and_refuses_a_thin_event() -> None:
    subscription, invoice, payment, thin = sample_records()
    assert {record["eventSource"] for record in sample_records()} == {"aws:sqs"}

    notices = [read_record(record) for record in (subscription, invoice, payment)]
    assert [n.event_type for n in notices] == ["customer.subscription.updated", "invoice.paid", "invoice_payment.paid"]
    assert notices[0].target == notices[1].target == CustomerChanged(SAMPLE_CUSTOMER)
    # An invoice payment names only its invoice: the export resolves the customer through it.
    invoice_id = json.loads(invoice["body"])["detail"]["data"]["object"]["id"]
    assert notices[2].target == NeedsLookup("invoices", invoice_id)
    assert notices[0].message_id == subscription["messageId"] and notices[0].event_id.startswith("evt_")

    with pytest.raises(InvalidStripeEvent, match="snapshot payload") as refused:
        read_record(thin)
    assert refused.value.field == "detail.object"


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ("not json {", None, "not JSON"),
        ({**json.loads(sample_records()[0]["body"]), "source": "aws.events"}, "source", "Stripe partner event source"),
        ({"version": "0", "id": "x", "source": "aws.partner/stripe.com/ed_1", "detail-type": "a"}, "detail", "detail"),
    ],
    ids=["not JSON", "another source", "no detail"],
)
def test_an_unreadable_record_names_the_field_at_fault(body: Any, field: str | None, says: str) -> None:
    with pytest.raises(InvalidStripeEvent, match=says) as refused:
        read_record(with_body(body))
    assert refused.value.field == field


def test_a_snapshot_covers_only_events_at_least_a_second_older_than_its_fetch() -> None:
    assert covers(snapshot_started=1_000, newest_event_created=999)
    assert not covers(snapshot_started=1_000, newest_event_created=1_000)  # same second: may have missed it
    assert not covers(snapshot_started=None, newest_event_created=10)  # never exported by the real-time path
    assert not covers(snapshot_started=1_000, newest_event_created=None)  # found by a rescan, time unknown


def test_the_stripe_budget_is_a_share_of_the_keys_mode_limit_split_between_concurrent_exports() -> None:
    settings = Settings(stripe_rate_limit_share=0.5, export_max_concurrency=2)
    assert settings.stripe_requests_per_second("rk_live_abc") == pytest.approx(100 * 0.5 / 2)
    assert settings.stripe_requests_per_second("sk_test_abc") == pytest.approx(25 * 0.5 / 2)
    explicit = Settings(stripe_rate_limit_per_second=60, stripe_rate_limit_share=0.25, export_max_concurrency=3)
    assert stripe_request_limiter(explicit, "sk_live_x").requests_per_second == pytest.approx(5.0)
    with pytest.raises(ValueError, match="stripe_rate_limit_share"):
        Settings(stripe_rate_limit_share=1.5)


def test_the_stripe_events_function_takes_its_part_of_the_share_and_the_export_the_rest() -> None:
    settings = Settings(stripe_rate_limit_share=0.5, stripe_realtime_share=0.3, stripe_events_max_concurrency=2)
    each_batch = settings.stripe_requests_per_second("rk_live_abc", realtime=True)
    export = settings.stripe_requests_per_second("rk_live_abc")
    assert each_batch == pytest.approx(100 * 0.5 * 0.3 / 2)
    assert export == pytest.approx(100 * 0.5 * 0.7)
    assert 2 * each_batch + export == pytest.approx(50)  # both functions at their most: the share, never more
    assert stripe_request_limiter(settings, "rk_live_abc", realtime=True).requests_per_second == pytest.approx(7.5)
    # Without a part of its own (a stack without the near-real-time path) the Stripe events function refuses to run
    # rather than take the export's budget.
    with pytest.raises(ValueError, match="STRIPE_REALTIME_SHARE"):
        Settings().stripe_requests_per_second("rk_live_abc", realtime=True)


def test_the_audit_function_takes_its_own_part_of_the_share_and_the_export_the_rest() -> None:
    settings = Settings(stripe_rate_limit_share=0.5, stripe_realtime_share=0.5, stripe_audit_share=0.1)
    audit = settings.stripe_requests_per_second("rk_live_abc", audit=True)
    export = settings.stripe_requests_per_second("rk_live_abc")
    each_batch = settings.stripe_requests_per_second("rk_live_abc", realtime=True)
    assert audit == pytest.approx(100 * 0.5 * 0.1)
    assert export == pytest.approx(100 * 0.5 * 0.4)
    assert audit + export + 2 * each_batch == pytest.approx(50)  # all three at their most: the share
    assert stripe_request_limiter(settings, "sk_test_abc", audit=True).requests_per_second == pytest.approx(1.25)
    # Without a part of its own the audit refuses to take the export's budget; the parts must leave the export some.
    with pytest.raises(ValueError, match="STRIPE_AUDIT_SHARE"):
        Settings().stripe_requests_per_second("rk_live_abc", audit=True)
    with pytest.raises(ValueError, match="leave the export function no part"):
        Settings(stripe_realtime_share=0.5, stripe_audit_share=0.5)
