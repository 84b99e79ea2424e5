"""The SQS adapter against moto: batching by ten, the S3 claim check for big payloads, and refusal of a tampered
claim check."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chartmogul_sync.models import RawMessage
from chartmogul_sync.queues import (
    CLAIM_CHECK_THRESHOLD_BYTES,
    BadRecord,
    ClaimCheckError,
    MessageSender,
    Stage,
    load_message,
)

BUCKET = "staging"


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        queue_url = sqs.create_queue(QueueName="raw")["QueueUrl"]
        yield {"sqs": sqs, "s3": s3, "queue_url": queue_url}


def snapshot_message(customer_id: str, note: str = "") -> RawMessage:
    return RawMessage.model_validate(
        {
            "customer_external_id": customer_id,
            "snapshot_time": datetime(2025, 1, 1, tzinfo=UTC),
            "correlation_id": "run-1",
            "payload": {"api_version": "2026-10-28.endive", "customer": {"id": customer_id, "description": note}},
        }
    )


def receive_all(sqs: Any, queue_url: str) -> list[str]:
    bodies: list[str] = []
    for _ in range(100):  # bounded: the queue holds at most a few dozen messages here
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    raise AssertionError("queue did not drain")


def test_every_message_arrives_once_in_batches(aws: dict[str, Any]) -> None:
    sender = MessageSender(aws["sqs"], aws["s3"], BUCKET)
    sent = sender.send(aws["queue_url"], (snapshot_message(f"cus_{i}") for i in range(23)))
    assert sent == 23
    received = [RawMessage.model_validate_json(body) for body in receive_all(aws["sqs"], aws["queue_url"])]
    assert sorted(m.customer_external_id for m in received) == sorted(f"cus_{i}" for i in range(23))


def test_large_snapshot_travels_by_claim_check_and_comes_back_whole(aws: dict[str, Any]) -> None:
    big = snapshot_message("cus_big", note="x" * (CLAIM_CHECK_THRESHOLD_BYTES + 10))
    MessageSender(aws["sqs"], aws["s3"], BUCKET).send(aws["queue_url"], [big, snapshot_message("cus_small")])
    bodies = receive_all(aws["sqs"], aws["queue_url"])
    by_customer = {json.loads(body)["customer_external_id"]: body for body in bodies}
    assert len(by_customer["cus_big"]) < 2000  # the queue carried a pointer, not the payload
    restored = load_message(aws["s3"], by_customer["cus_big"], RawMessage)
    assert restored == big
    assert load_message(aws["s3"], by_customer["cus_small"], RawMessage) == snapshot_message("cus_small")


def test_tampered_claim_check_is_refused_with_the_object_named(aws: dict[str, Any]) -> None:
    big = snapshot_message("cus_big", note="y" * (CLAIM_CHECK_THRESHOLD_BYTES + 10))
    MessageSender(aws["sqs"], aws["s3"], BUCKET).send(aws["queue_url"], [big])
    (body,) = receive_all(aws["sqs"], aws["queue_url"])
    key = json.loads(body)["claim_check"]["key"]
    aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=b"{}")
    with pytest.raises(ClaimCheckError, match=key):
        load_message(aws["s3"], body, RawMessage)
    aws["s3"].delete_object(Bucket=BUCKET, Key=key)
    with pytest.raises(ClaimCheckError, match="is gone") as gone:
        load_message(aws["s3"], body, RawMessage)
    # Gone for good: no retry brings it back, the one-customer export does.
    assert gone.value.missing and '{"mode": "customer", "customer_id": "cus_big"}' in str(gone.value)


def test_bad_record_keeps_reason_and_original_body(aws: dict[str, Any]) -> None:
    record = BadRecord(
        stage=Stage.TRANSFORM,
        reason="invoice line has no price",
        object_id="il_123",
        field="pricing.price_details.price",
        original_body='{"customer_external_id": "cus_1"}',
    )
    MessageSender(aws["sqs"], aws["s3"], BUCKET).send_bad_record(aws["queue_url"], record)
    (body,) = receive_all(aws["sqs"], aws["queue_url"])
    assert BadRecord.model_validate_json(body) == record
