"""Test-only handlers for the local runtime: stand-ins for the real functions with known behaviour.

The SQS ones use Powertools' BatchProcessor with its SqsRecordModel, so every event the runtime builds is also
validated against Powertools' model of Lambda's SQS event.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import boto3
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel


class FailOneRecord:
    """Processes a batch record by record and fails every delivery of the record whose body is `failing_body`."""

    def __init__(self, failing_body: str) -> None:
        self.failing_body = failing_body
        self.deliveries: Counter[str] = Counter()
        self.batches: list[list[str]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.batches.append([record["body"] for record in event["Records"]])
        # All records failing (the failing one retried alone) is still a partial response, not an exception.
        processor = BatchProcessor(EventType.SQS, model=SqsRecordModel, raise_on_entire_batch_failure=False)
        return dict(process_partial_response(event, self._record, processor, context))

    def _record(self, record: SqsRecordModel) -> None:
        body = str(record.body)  # SqsRecordModel types body loosely; ours are plain strings
        self.deliveries[body] += 1
        if body == self.failing_body:
            raise ValueError(f"cannot process {body!r}")


class RaiseOnEveryBatch:
    """Raises: Lambda counts the whole batch as failed."""

    def __init__(self) -> None:
        self.deliveries: Counter[str] = Counter()

    def __call__(self, event: dict[str, Any], context: Any) -> None:
        self.deliveries.update(record["body"] for record in event["Records"])
        raise RuntimeError("the whole batch fails")


class ReportUnknownRecord:
    """Returns a batchItemFailures entry naming no record of the batch: Lambda fails the whole batch."""

    def __init__(self) -> None:
        self.deliveries: Counter[str] = Counter()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.deliveries.update(record["body"] for record in event["Records"])
        return {"batchItemFailures": [{"itemIdentifier": "not-a-message-of-this-batch"}]}


class Recorder:
    """Remembers each event, its context, and the environment it ran in."""

    def __init__(self, response: Any = None) -> None:
        self.calls: list[tuple[dict[str, Any], Any, dict[str, str]]] = []
        self.response = response

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.calls.append((event, context, dict(os.environ)))
        return self.response


class ExportSnapshots:
    """Stands in for export: sends one message per customer to the raw queue named by RAW_QUEUE_URL."""

    def __init__(self, customers: list[str]) -> None:
        self.customers = customers

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        sqs = boto3.client("sqs")  # endpoint, region and credentials come from the environment, as in Lambda
        for customer in self.customers:
            sqs.send_message(QueueUrl=os.environ["RAW_QUEUE_URL"], MessageBody=f"{event['mode']}:{customer}")
        return {"exported": len(self.customers)}


class ForwardToUploadQueue:
    """Stands in for transform: forwards each record to UPLOAD_QUEUE_URL."""

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        sqs = boto3.client("sqs")

        def forward(record: SqsRecordModel) -> None:
            sqs.send_message(QueueUrl=os.environ["UPLOAD_QUEUE_URL"], MessageBody=f"bundle:{record.body}")

        processor = BatchProcessor(EventType.SQS, model=SqsRecordModel)
        return dict(process_partial_response(event, forward, processor, context))


class AlwaysRaise:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, event: dict[str, Any], context: Any) -> None:
        self.calls += 1
        raise RuntimeError("export failed")


class CountOverlap:
    """Takes `seconds` per batch and records how many invocations were running at once (thread-safe)."""

    def __init__(self, seconds: float) -> None:
        import threading

        self.seconds = seconds
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.deliveries: Counter[str] = Counter()

    def __call__(self, event: dict[str, Any], context: Any) -> None:
        import time

        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.deliveries.update(record["body"] for record in event["Records"])
        time.sleep(self.seconds)
        with self._lock:
            self.running -= 1
