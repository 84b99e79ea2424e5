"""The export function's input: every mode parses, every bad event names its field."""

from datetime import UTC, date, datetime

import pytest

from chartmogul_sync.sources.stripe.invocation import (
    BackfillRequest,
    ContinuationRequest,
    CustomerRequest,
    IncrementalRequest,
    InvalidExportRequest,
    parse_export_request,
)


def test_the_schedule_input_of_template_yaml_names_the_run_after_its_scheduled_time() -> None:
    # What EventBridge Scheduler sends once it has filled in <aws.scheduler.scheduled-time>.
    request = parse_export_request({"mode": "incremental", "scheduled_time": "2026-11-26T06:00:00Z"})

    assert isinstance(request, IncrementalRequest)
    assert request.scheduled_time == datetime(2026, 11, 26, 6, tzinfo=UTC)
    assert request.run_id_for("req-1") == request.run_id_for("req-2") == "incremental-20261126T060000Z"


def test_a_manual_incremental_run_is_named_after_its_invocation() -> None:
    request = parse_export_request({"mode": "incremental"})

    assert request.run_id_for("req-1") == "incremental-req-1"


def test_a_backfill_takes_either_bound_or_none() -> None:
    both = parse_export_request({"mode": "backfill", "from": "2023-01-01", "to": "2024-01-01"})
    only_from = parse_export_request({"mode": "backfill", "from": "2023-01-01"})
    everything = parse_export_request({"mode": "backfill"})

    assert isinstance(both, BackfillRequest) and isinstance(only_from, BackfillRequest)
    assert (both.range.created_from, both.range.created_to) == (date(2023, 1, 1), date(2024, 1, 1))
    assert only_from.range.created_to is None and only_from.range.bounded
    assert isinstance(everything, BackfillRequest) and not everything.range.bounded


def test_a_retried_backfill_invocation_keeps_its_run_and_a_new_one_gets_its_own() -> None:
    request = parse_export_request({"mode": "backfill", "from": "2023-01-01"})

    assert request.run_id_for("req-1") == request.run_id_for("req-1")
    assert request.run_id_for("req-1") != request.run_id_for("req-2")
    named = parse_export_request({"mode": "backfill", "run_id": "history-2023"})
    assert named.run_id_for("req-9") == "history-2023"


def test_one_customer_and_a_continuation_parse() -> None:
    customer = parse_export_request({"mode": "customer", "customer_id": "cus_Nf3kZ0aQ8mP2xY"})
    continuation = parse_export_request({"mode": "continuation", "resume": "backfill", "run_id": "backfill-1"})

    assert isinstance(customer, CustomerRequest) and customer.customer_id == "cus_Nf3kZ0aQ8mP2xY"
    assert isinstance(continuation, ContinuationRequest) and continuation.run_id_for("req-1") == "backfill-1"


def test_a_backfill_uploads_in_bulk_unless_it_asks_for_the_api() -> None:
    default = parse_export_request({"mode": "backfill"})
    api = parse_export_request({"mode": "backfill", "upload_mode": "api"})
    bulk = parse_export_request({"mode": "backfill", "upload_mode": "bulk"})

    assert isinstance(default, BackfillRequest) and default.upload_mode is None
    assert default.effective_upload_mode == "bulk"
    assert isinstance(api, BackfillRequest) and api.effective_upload_mode == "api"
    assert isinstance(bulk, BackfillRequest) and bulk.effective_upload_mode == "bulk"
    with pytest.raises(InvalidExportRequest, match="field 'upload_mode'") as refused:
        parse_export_request({"mode": "backfill", "upload_mode": "csv"})
    assert refused.value.field == "upload_mode"


@pytest.mark.parametrize(
    ("event", "message", "field"),
    [
        ({"mode": "backfill", "from": "2023-13-01"}, "field 'from'", "from"),
        (
            {"mode": "backfill", "from": "2024-01-01", "to": "2023-01-01"},
            "field 'to': must be after 'from' (2024-01-01)",
            "to",
        ),
        ({"mode": "backfill", "form": "2023-01-01"}, "field 'form' is not known", "form"),
        ({"mode": "backfill", "from": "2024-01-01", "to": "2024-01-01"}, "field 'to': must be after", "to"),
        ({"mode": "customer", "customer_id": "in_123"}, "field 'customer_id'", "customer_id"),
        ({"mode": "customer"}, "field 'customer_id': Field required", "customer_id"),
        (
            {"mode": "incremental", "scheduled_time": "<aws.scheduler.scheduled-time>"},
            "field 'scheduled_time'",
            "scheduled_time",
        ),
        ({"mode": "continuation", "resume": "transform", "run_id": "x"}, "field 'resume'", "resume"),
        ({"mode": "replay"}, "field 'mode' must be one of", "mode"),
        ({"customer_id": "cus_1"}, "field 'mode' is missing", "mode"),
        (["backfill"], "must be a JSON object", None),
    ],
)
def test_a_bad_event_is_refused_with_the_field_at_fault(event: object, message: str, field: str | None) -> None:
    with pytest.raises(InvalidExportRequest) as refused:
        parse_export_request(event)

    assert message in str(refused.value)
    assert refused.value.field == field
