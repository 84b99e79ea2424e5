"""A record the upload function fails comes back after a short, growing delay, not the queue's 5,400 s visibility
timeout (failures.py, RedeliveryBackoff), and still reaches the DLQ after maxReceiveCount with its reason.

Powertools' batch processor and SQS (moto) are the real ones; the record handler fails as a transient failure
does (a lease another instance holds)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import process_partial_response
from moto import mock_aws

from chartmogul_sync.failures import FailureLedger, FailureReportingProcessor, QueueVisibility, RedeliveryBackoff
from chartmogul_sync.queues import Stage
from chartmogul_sync.sinks.chartmogul.leases import MAX_LEASE_S, LeaseUnavailable
from localdev.aws.lambda_model import sqs_event_record
from tests.fixtures.state_table import create_state_table

REGION = "us-east-1"
UPLOAD_QUEUE_VISIBILITY_S = 5400  # template.yaml UploadQueue


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str, str, FailureLedger]]:
    for name, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        dlq = sqs.create_queue(QueueName="upload-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.create_queue(
            QueueName="upload",
            Attributes={
                "VisibilityTimeout": str(UPLOAD_QUEUE_VISIBILITY_S),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}),
            },
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        yield sqs, url, arn, FailureLedger(create_state_table("state"))


def fail_once(sqs: Any, url: str, arn: str, ledger: FailureLedger, backoff: RedeliveryBackoff | None) -> str:
    """Receive the queue's message and fail it in the upload function's batch processor; its message id."""
    (message,) = sqs.receive_message(QueueUrl=url, AttributeNames=["All"], MaxNumberOfMessages=1)["Messages"]
    processor = FailureReportingProcessor(
        Stage.UPLOAD, Logger(service="test"), lambda: ledger, backoff=backoff, visibility=lambda: QueueVisibility(sqs)
    )

    def lease_held(record: Any) -> None:
        raise LeaseUnavailable("cus_ann", 20.0)

    response = process_partial_response(
        event={"Records": [sqs_event_record(message, arn, REGION)]}, record_handler=lease_held, processor=processor
    )
    assert response["batchItemFailures"] == [{"itemIdentifier": message["MessageId"]}]
    return str(message["MessageId"])


def received(sqs: Any, url: str, wait_s: int = 0) -> list[dict[str, Any]]:
    answer = sqs.receive_message(QueueUrl=url, AttributeNames=["All"], WaitTimeSeconds=wait_s)
    return list(answer.get("Messages", []))


def test_a_failed_record_comes_back_after_its_backoff_not_the_queue_s_visibility_timeout(queue) -> None:
    sqs, url, arn, ledger = queue
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"customer_external_id": "cus_ann"}))
    message_id = fail_once(sqs, url, arn, ledger, RedeliveryBackoff(first_s=1))
    assert received(sqs, url) == []  # not at once: the delay holds
    (again,) = received(sqs, url, wait_s=5)  # but after a second, not 5,400
    assert again["MessageId"] == message_id and again["Attributes"]["ApproximateReceiveCount"] == "2"
    failure = ledger.last_failure(message_id)
    assert failure is not None and "another upload is applying this customer" in failure.reason


def test_without_a_backoff_a_failed_record_waits_the_queue_s_visibility_timeout(queue) -> None:
    sqs, url, arn, ledger = queue
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    fail_once(sqs, url, arn, ledger, None)
    assert received(sqs, url, wait_s=2) == []


def test_the_backoff_counts_receives_toward_the_dlq_as_sqs_does(queue) -> None:
    sqs, url, arn, ledger = queue
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    dlq = sqs.get_queue_url(QueueName="upload-dlq")["QueueUrl"]
    fail_once(sqs, url, arn, ledger, RedeliveryBackoff(first_s=0))
    fail_once(sqs, url, arn, ledger, RedeliveryBackoff(first_s=0))  # the second receive: maxReceiveCount
    assert received(sqs, url) == []
    assert len(received(sqs, dlq)) == 1


def test_the_default_backoff_outlasts_the_longest_lease_before_the_last_receive() -> None:
    """A record waiting for the lease of an instance that crashed holding it must get it before the DLQ: the
    delays before the fifth receive (maxReceiveCount 5, template.yaml) add up to more than MAX_LEASE_S."""
    backoff = RedeliveryBackoff()
    assert sum(backoff.seconds(n) for n in range(1, 5)) > MAX_LEASE_S
    assert all(backoff.seconds(n) < UPLOAD_QUEUE_VISIBILITY_S for n in range(1, 6))
