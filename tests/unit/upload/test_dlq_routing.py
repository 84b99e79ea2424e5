"""Where a replay sends each kind of message (sinks/chartmogul/dlq.py), decided without a queue."""

import json
from datetime import UTC, datetime

import pytest

from chartmogul_sync.failures import RecordFailure
from chartmogul_sync.queues import BadRecord, Stage
from chartmogul_sync.sinks.chartmogul.dlq import (
    AUDIT,
    EXPORT,
    MessageFilter,
    ReplayTargets,
    describe,
    kind_of_generated_name,
)

TARGETS = ReplayTargets(raw_queue_url="https://sqs/raw", upload_queue_url="https://sqs/upload")


def queued(body: str, receives: int = 1) -> dict:
    return {
        "MessageId": "m-1",
        "Body": body,
        "ReceiptHandle": "r",
        "Attributes": {"ApproximateReceiveCount": str(receives)},
    }


def bad_record(stage: Stage) -> str:
    return BadRecord(
        stage=stage, reason="why", customer_external_id="cus_1", original_body='{"the":"original"}'
    ).model_dump_json()


def test_bad_records_go_back_to_the_input_queue_of_the_stage_that_failed_with_their_original_body():
    assert TARGETS.destination(describe(queued(bad_record(Stage.UPLOAD))))[:2] == (
        "https://sqs/upload",
        '{"the":"original"}',
    )
    assert TARGETS.destination(describe(queued(bad_record(Stage.TRANSFORM))))[:2] == (
        "https://sqs/raw",
        '{"the":"original"}',
    )


def test_an_export_bad_record_whose_event_is_invalid_stays_saying_a_replay_cannot_succeed():
    destination, _, why = TARGETS.destination(describe(queued(bad_record(Stage.EXPORT))))
    assert destination is None
    assert "cannot succeed, the event itself is invalid" in why and "'mode' is missing" in why


def test_an_export_bad_record_names_the_event_to_invoke_the_export_function_with():
    event = '{"mode":"customer","customer_id":"cus_1"}'
    record = BadRecord(stage=Stage.EXPORT, reason="404", customer_external_id="cus_1", original_body=event)

    destination, _, why = TARGETS.destination(describe(queued(record.model_dump_json())))

    assert destination is None
    assert f"invoke the export function asynchronously with {event}" in why


def test_with_an_export_function_an_export_bad_record_is_replayed_by_invoking_it():
    targets = ReplayTargets("https://sqs/raw", "https://sqs/upload", invoke_export=lambda event: None)
    event = '{"mode":"customer","customer_id":"cus_1"}'
    record = BadRecord(stage=Stage.EXPORT, reason="404", customer_external_id="cus_1", original_body=event)

    assert targets.destination(describe(queued(record.model_dump_json())))[:2] == (EXPORT, event)


def lambda_destination_record(event: dict) -> str:
    # The record Lambda sends to an on-failure destination (Lambda developer guide, "Capturing records of
    # asynchronous invocations").
    return json.dumps(
        {
            "version": "1.0",
            "timestamp": "2026-11-24T23:08:25.651Z",
            "requestContext": {
                "requestId": "c2a6f2ae-7dbb-4d22-8782-d0485c9877e2",
                "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:chartmogul-sync-export:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3,
            },
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {"errorMessage": "Stripe is down", "errorType": "APIConnectionError"},
        }
    )


def test_an_export_failed_record_shows_the_lambda_error_and_replays_its_request_by_invoking_the_export():
    message = describe(queued(lambda_destination_record({"mode": "customer", "customer_id": "cus_9"})))

    assert (message.stage, message.customer_external_id, message.kind) == ("export", "cus_9", "export_failure")
    assert message.reason == (
        "export invocation failed (RetriesExhausted after 3 attempt(s)): APIConnectionError: Stripe is down"
    )
    targets = ReplayTargets("https://sqs/raw", "https://sqs/upload", invoke_export=lambda event: None)
    assert targets.destination(message)[:2] == (EXPORT, '{"mode":"customer","customer_id":"cus_9"}')


def test_a_schedule_dead_letter_shows_the_scheduler_error_attributes():
    raw = queued('{"mode":"incremental","scheduled_time":"2026-11-30T10:00:00Z"}')
    raw["MessageAttributes"] = {
        "ERROR_CODE": {"StringValue": "AWS.Scheduler.ResourceNotFound", "DataType": "String"},
        "ERROR_MESSAGE": {"StringValue": "Function not found", "DataType": "String"},
    }
    message = describe(raw)

    assert message.stage == "export" and message.kind == "schedule_failure"
    assert (
        message.reason
        == "the schedule could not invoke the export (AWS.Scheduler.ResourceNotFound): Function not found"
    )
    assert TARGETS.destination(message)[0] is None  # no export function configured: the advice names the event


def test_a_dead_letter_shows_the_last_failure_its_function_recorded():
    failure = RecordFailure(
        message_id="m-1",
        stage=Stage.UPLOAD,
        reason="RetryLater: ChartMogul answered 503",
        error_type="RetryLater",
        receive_count=5,
        failed_at=datetime(2026, 11, 30, 9, 0, tzinfo=UTC),
    )
    bundle = json.dumps({"kind": "customer_bundle", "customer_external_id": "cus_3"})

    message = describe(queued(bundle, receives=6), lambda message_id: failure if message_id == "m-1" else None)

    assert message.reason == (
        "last failure in upload at 2026-11-30 09:00:00Z (receive 5): RetryLater: ChartMogul answered 503"
    )
    assert MessageFilter(reason="503", stage="upload", customer="cus_3").matches(message)
    assert not MessageFilter(reason="401").matches(message)
    assert not MessageFilter(stage="transform").matches(message)
    assert not MessageFilter(customer="cus_4").matches(message)


def test_a_dead_letter_whose_claim_check_is_gone_stays_saying_which_export_recovers_it():
    body = json.dumps(
        {"kind": "customer_bundle", "customer_external_id": "cus_3", "claim_check": {"bucket": "b", "key": "k"}}
    )
    targets = ReplayTargets("https://sqs/raw", "https://sqs/upload", claim_check_exists=lambda bucket, key: False)

    destination, _, why = targets.destination(describe(queued(body)))

    assert destination is None
    assert "s3://b/k is gone" in why and '{"mode": "customer", "customer_id": "cus_3"}' in why


def test_dead_letters_go_back_by_their_kind_and_say_how_often_they_failed():
    snapshot = json.dumps({"kind": "customer_snapshot", "customer_external_id": "cus_2"})
    bundle = json.dumps({"kind": "customer_bundle", "customer_external_id": "cus_3"})
    assert TARGETS.destination(describe(queued(snapshot)))[:2] == ("https://sqs/raw", snapshot)
    dead_bundle = describe(queued(bundle, receives=6))
    assert TARGETS.destination(dead_bundle)[:2] == ("https://sqs/upload", bundle)
    assert dead_bundle.customer_external_id == "cus_3"
    assert "no failure reason recorded for message m-1 (received 6 times" in dead_bundle.reason


def test_a_foreign_message_is_left_in_place():
    destination, _, why = TARGETS.destination(describe(queued("not json at all")))
    assert destination is None and "left in place" in why


def test_a_failed_audit_is_read_as_the_audit_s_and_replayed_only_by_invoking_the_audit_function():
    record = json.loads(lambda_destination_record({"scheduled": "daily"}))
    # An event Lambda dropped unrun (too old): no response at all (Lambda developer guide, "Capturing records").
    record.update(requestContext={**record["requestContext"], "condition": "EventAgeExceeded"})
    del record["responseContext"], record["responsePayload"]

    message = describe(queued(json.dumps(record)), failed_function="audit")

    assert (message.stage, message.kind, message.customer_external_id) == ("audit", "audit_failure", None)
    assert message.reason == (
        "audit invocation failed (EventAgeExceeded after 3 attempt(s)): no error message (a timeout or "
        "out-of-memory leaves none)"
    )
    # Not an export event: never sent to the export function, even with one configured.
    destination, _, why = TARGETS.destination(message)
    assert destination is None
    assert (
        "no audit function configured" in why
        and 'invoke the audit function asynchronously with {"scheduled":"daily"}' in why
    )
    both = ReplayTargets(
        "https://sqs/raw", "https://sqs/upload", invoke_export=lambda e: None, invoke_audit=lambda e: None
    )
    assert both.destination(message)[:2] == (AUDIT, '{"scheduled":"daily"}')


@pytest.mark.parametrize(
    ("queue_name", "kind"),
    [
        ("chartmogul-sync-AuditFailedQueue-1A2B3C4D5E6F", "audit-failed"),  # CloudFormation's
        ("prod-ExportFailedQueue-x9Y8z7", "export-failed"),
        ("prod-exportfailedqueue-x9y8z7", "export-failed"),
        ("chartmogul-sync-local-AuditFailedQueue", "audit-failed"),  # the local runtime's (localdev/aws/resources.py)
        ("prod-StripeEventsDeadLetterQueue-AbC", "stripe-events-dlq"),  # not raw-dlq's or upload-dlq's
        ("prod-RawDeadLetterQueue-AbC", "raw-dlq"),
        ("prod-BadRecordsQueue-AbC", "bad-records"),
        ("AuditFailedQueue", None),  # no stack before it: not a generated name
        ("prod-AuditFailedQueueArchive", None),
        ("prod-RawQueue-AbC", None),  # a work queue is no terminal queue
        ("someone-elses-queue", None),
    ],
)
def test_a_generated_queue_name_says_which_terminal_queue_it_is(queue_name: str, kind: str | None) -> None:
    assert kind_of_generated_name(queue_name) == kind
