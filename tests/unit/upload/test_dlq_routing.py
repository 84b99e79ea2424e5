"""Where a replay sends each kind of message (sinks/chartmogul/dlq.py), decided without a queue."""

import json

from chartmogul_sync.queues import BadRecord, Stage
from chartmogul_sync.sinks.chartmogul.dlq import ReplayTargets, describe

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


def test_an_export_bad_record_stays_with_advice_instead():
    destination, _, why = TARGETS.destination(describe(queued(bad_record(Stage.EXPORT))))
    assert destination is None
    assert "run the export again for cus_1" in why


def test_an_export_bad_record_names_the_event_to_invoke_the_export_function_with():
    event = '{"mode":"customer","customer_id":"cus_1"}'
    record = BadRecord(stage=Stage.EXPORT, reason="404", customer_external_id="cus_1", original_body=event)

    destination, _, why = TARGETS.destination(describe(queued(record.model_dump_json())))

    assert destination is None
    assert f"invoke the export function with the record's original_body {event}" in why


def test_dead_letters_go_back_by_their_kind_and_say_how_often_they_failed():
    snapshot = json.dumps({"kind": "customer_snapshot", "customer_external_id": "cus_2"})
    bundle = json.dumps({"kind": "customer_bundle", "customer_external_id": "cus_3"})
    assert TARGETS.destination(describe(queued(snapshot)))[:2] == ("https://sqs/raw", snapshot)
    dead_bundle = describe(queued(bundle, receives=6))
    assert TARGETS.destination(dead_bundle)[:2] == ("https://sqs/upload", bundle)
    assert dead_bundle.customer_external_id == "cus_3"
    assert "received 6 times" in dead_bundle.reason


def test_a_foreign_message_is_left_in_place():
    destination, _, why = TARGETS.destination(describe(queued("not json at all")))
    assert destination is None and "left in place" in why
