"""The models refuse what ChartMogul would refuse, with a message naming the field, and tolerate what outside
systems add."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from chartmogul_sync.config import STRIPE_API_VERSION
from chartmogul_sync.models import (
    ClaimCheck,
    Customer,
    CustomerBundle,
    CustomerSnapshot,
    Invoice,
    OneTimeLineItem,
    Plan,
    RawMessage,
    SubscriptionEvent,
    SubscriptionLineItem,
    Transaction,
    UploadMessage,
)

JAN = datetime(2025, 1, 1, tzinfo=UTC)
FEB = datetime(2025, 2, 1, tzinfo=UTC)


def subscription_line(**changes: object) -> SubscriptionLineItem:
    fields: dict[str, object] = {
        "external_id": "il_1",
        "amount_in_cents": 1000,
        "subscription_external_id": "si_1",
        "plan_external_id": "price_1",
        "service_period_start": JAN,
        "service_period_end": FEB,
    }
    fields.update(changes)
    return SubscriptionLineItem.model_validate(fields)


def invoice(*lines: object, **changes: object) -> Invoice:
    fields: dict[str, object] = {
        "external_id": "in_1",
        "date": JAN,
        "currency": "USD",
        "line_items": list(lines) or [subscription_line()],
    }
    fields.update(changes)
    return Invoice.model_validate(fields)


def bundle(**changes: object) -> CustomerBundle:
    fields: dict[str, object] = {
        "mapping_version": "1.0.0",
        "snapshot_time": JAN,
        "customer": Customer(external_id="cus_1"),
        "plans": [Plan(external_id="price_1", name="Pro (monthly)", interval_count=1, interval_unit="month")],
        "invoices": [invoice()],
    }
    fields.update(changes)
    return CustomerBundle.model_validate(fields)


def error_text(excinfo: pytest.ExceptionInfo[ValidationError]) -> str:
    return str(excinfo.value)


def test_currency_must_be_upper_case_iso_4217() -> None:
    assert invoice(currency="EUR").currency == "EUR"
    for bad in ("usd", "EURO", "XYZ"):
        with pytest.raises(ValidationError) as excinfo:
            invoice(currency=bad)
        assert "currency" in error_text(excinfo)


def test_amounts_are_integer_cents_never_floats_or_strings() -> None:
    for bad in (10.5, "1000"):
        with pytest.raises(ValidationError) as excinfo:
            subscription_line(amount_in_cents=bad)
        assert "amount_in_cents" in error_text(excinfo)
    assert subscription_line(amount_in_cents=-500).amount_in_cents == -500  # credits are negative


def test_service_period_must_start_before_it_ends() -> None:
    with pytest.raises(ValidationError) as excinfo:
        subscription_line(service_period_start=FEB, service_period_end=JAN)
    assert "service_period_start" in error_text(excinfo)


def test_quantity_zero_is_refused_like_chartmogul() -> None:
    with pytest.raises(ValidationError) as excinfo:
        subscription_line(quantity=0)
    assert "non-zero" in error_text(excinfo)


def test_naive_datetimes_are_refused_and_aware_ones_normalised_to_utc() -> None:
    with pytest.raises(ValidationError):
        subscription_line(service_period_start=datetime(2025, 1, 1))
    plus_six = timezone(timedelta(hours=6))
    line = subscription_line(service_period_start=datetime(2025, 1, 1, 6, tzinfo=plus_six))
    assert line.service_period_start == JAN and line.service_period_start.tzinfo == UTC


def test_plan_interval_units_are_chartmogul_units() -> None:
    with pytest.raises(ValidationError) as excinfo:
        Plan.model_validate({"external_id": "p", "name": "Weekly", "interval_count": 1, "interval_unit": "week"})
    assert "interval_unit" in error_text(excinfo)
    with pytest.raises(ValidationError):
        Plan.model_validate({"external_id": "p", "name": "x", "interval_count": 0, "interval_unit": "day"})


def test_line_items_are_told_apart_by_type() -> None:
    parsed = Invoice.model_validate_json(
        invoice(
            subscription_line(),
            OneTimeLineItem(external_id="il_2", amount_in_cents=500, description="Setup"),
        ).model_dump_json()
    )
    assert [type(line) for line in parsed.line_items] == [SubscriptionLineItem, OneTimeLineItem]
    assert parsed.total_in_cents == 1500


def test_subscription_events_need_price_fields_for_start_and_update() -> None:
    base = {
        "external_id": "evt_1",
        "customer_external_id": "cus_1",
        "subscription_external_id": "si_1",
        "event_date": JAN,
        "effective_date": FEB,
    }
    with pytest.raises(ValidationError) as excinfo:
        SubscriptionEvent.model_validate({**base, "event_type": "subscription_start"})
    assert "plan_external_id" in error_text(excinfo)
    cancel = SubscriptionEvent.model_validate({**base, "event_type": "subscription_cancellation_scheduled"})
    assert cancel.plan_external_id is None


def test_bundle_refuses_a_line_whose_plan_it_does_not_carry() -> None:
    with pytest.raises(ValidationError) as excinfo:
        bundle(plans=[])
    assert "price_1" in error_text(excinfo)


def test_bundle_refuses_duplicate_external_ids() -> None:
    with pytest.raises(ValidationError) as excinfo:
        bundle(invoices=[invoice(), invoice()])
    assert "duplicate invoice external_id: in_1" in error_text(excinfo)
    payment = Transaction(external_id="inpay_1", type="payment", result="successful", date=FEB, amount_in_cents=1)
    with pytest.raises(ValidationError) as excinfo:
        bundle(invoices=[invoice(transactions=[payment, payment])])
    assert "transaction external_id: inpay_1" in error_text(excinfo)


def test_bundle_cannot_both_keep_and_remove_an_invoice() -> None:
    with pytest.raises(ValidationError) as excinfo:
        bundle(removed_invoice_external_ids=["in_1"])
    assert "in_1" in error_text(excinfo)


def test_bundle_round_trips_byte_for_byte() -> None:
    original = bundle()
    assert CustomerBundle.model_validate_json(original.model_dump_json()).model_dump_json() == (
        original.model_dump_json()
    )


def test_stripe_snapshot_ignores_fields_stripe_adds_but_needs_ids() -> None:
    snapshot = CustomerSnapshot.model_validate(
        {
            "api_version": "2026-10-28.endive",
            "customer": {"id": "cus_1", "object": "customer", "a_field_from_2030": {"x": 1}},
            "invoices": [{"id": "in_1", "object": "invoice"}],
            "brand_new_list": [],
        }
    )
    assert snapshot.customer_id == "cus_1" and snapshot.customer["a_field_from_2030"] == {"x": 1}
    with pytest.raises(ValidationError) as excinfo:
        CustomerSnapshot.model_validate(
            {"api_version": STRIPE_API_VERSION, "customer": {"id": "cus_1"}, "invoices": [{"object": "invoice"}]}
        )
    assert "invoices.0" in error_text(excinfo) and "without an 'id'" in error_text(excinfo)


def test_envelope_carries_payload_or_claim_check_exactly_once() -> None:
    common = {"customer_external_id": "cus_1", "snapshot_time": JAN, "correlation_id": "run-1"}
    snapshot = {"api_version": STRIPE_API_VERSION, "customer": {"id": "cus_1"}}
    check = ClaimCheck(bucket="b", key="k", sha256="0" * 64, size_bytes=10)
    assert RawMessage.model_validate({**common, "payload": snapshot}).payload is not None
    assert RawMessage.model_validate({**common, "claim_check": check}).claim_check == check
    for both_or_neither in ({}, {"payload": snapshot, "claim_check": check}):
        with pytest.raises(ValidationError, match="exactly one"):
            RawMessage.model_validate({**common, **both_or_neither})


def test_envelope_kind_must_match_queue() -> None:
    raw = RawMessage.model_validate(
        {
            "customer_external_id": "cus_1",
            "snapshot_time": JAN,
            "correlation_id": "run-1",
            "payload": {"api_version": STRIPE_API_VERSION, "customer": {"id": "cus_1"}},
        }
    )
    with pytest.raises(ValidationError, match="kind"):
        UploadMessage.model_validate_json(raw.model_dump_json())


def test_idempotency_key_survives_redelivery_but_changes_with_the_snapshot() -> None:
    message = {
        "customer_external_id": "cus_1",
        "correlation_id": "a",
        "claim_check": {"bucket": "b", "key": "k", "sha256": "0" * 64, "size_bytes": 1},
    }
    first = RawMessage.model_validate({**message, "snapshot_time": JAN})
    again = RawMessage.model_validate({**message, "snapshot_time": JAN, "correlation_id": "b"})
    later = RawMessage.model_validate({**message, "snapshot_time": FEB})
    assert first.idempotency_key() == again.idempotency_key() != later.idempotency_key()


def test_a_customer_only_bundle_carries_the_customer_alone() -> None:
    from tests.unit.upload.bundles import customer_bundle

    whole = customer_bundle("cus_ann", months=2)
    head = CustomerBundle(
        mapping_version=whole.mapping_version,
        snapshot_time=whole.snapshot_time,
        customer=whole.customer,
        customer_only=True,
    )
    assert head.customer_only and head.invoices == []
    with pytest.raises(ValidationError, match="customer_only bundle carries the customer alone, not plans, invoices"):
        CustomerBundle.model_validate({**whole.model_dump(), "customer_only": True})
