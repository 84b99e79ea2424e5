"""An SQS event source mapping with Lambda's semantics, polling moto and calling the handler in-process.

moto's own event source mapping cannot run our code without Docker and ignores partial batch responses
(docs/sources.md#aws-moto), so this does what Lambda's poller does (#aws-sqs-lambda, #aws-local-poller):

- gather up to BatchSize messages, and no more than the invocation payload quota (6 MB) holds; once a batch
  has started, wait up to MaximumBatchingWindowInSeconds to fill it (docs/sources.md#aws-sqs-lambda: Lambda polls
  "until the batching window expires, the invocation payload size quota is reached, or the configured maximum
  batch size is reached"); a message received past the quota starts the next batch;
- call the handler with the Lambda SQS event; a raised exception or a timeout fails the whole batch;
- with ReportBatchItemFailures, delete all but the reported records; an invalid report fails the whole batch
  (Lambda developer guide, "Handling errors for an SQS event source": "Lambda treats a batch as a complete
  failure if ... itemIdentifier is null, empty or names a message that is not in the batch");
- leave failed messages alone: they reappear after the queue's visibility timeout, and SQS itself (moto, which
  honours RedrivePolicy, docs/sources.md#aws-moto) moves a message to the DLQ on the receive after maxReceiveCount;
- a batch received while the function is at its reserved concurrency is throttled (`throttle_once`, called by the
  concurrent drain): the mapping does not account for reserved concurrency and receives it anyway
  (https://repost.aws/knowledge-center/lambda-sqs-scaling), no handler runs, and the messages go back to the queue
  with their receive counted, as failed ones do.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from localdev.aws.functions import ExecutionEnvironment, Invocation, LocalFunction
from localdev.aws.lambda_model import sqs_event_record
from localdev.aws.template import SqsEventSource

SQS_MAX_MESSAGES_PER_RECEIVE = 10
# Lambda's invocation payload quota (synchronous invocations, which an event source mapping makes): 6 MB
# (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
INVOCATION_PAYLOAD_QUOTA_BYTES = 6 * 1024 * 1024
# Between receives while a started batch fills in its window. Lambda's pollers long-poll (a message is received as
# it arrives); a pause of a quarter second delays a batch by at most that in a window of 5 or 10 s, and each
# empty receive costs the harness CPU (botocore and moto): at 0.05 s the upload's waiting instances spent a tenth of
# a 1,000-customer benchmark's CPU on them.
_BATCH_FILL_PAUSE_SECONDS = 0.25


@dataclass(frozen=True)
class PollerOptions:
    wait_for_batching_window: bool = True
    """Lambda waits up to MaximumBatchingWindowInSeconds to fill a batch. Off, a batch is whatever the queue
    holds now (up to BatchSize): tests and the demo turn it off to run fast."""

    concurrent: bool = True
    """Run each SQS-triggered function with as many invocations at once as Lambda would: its event source's
    ScalingConfig.MaximumConcurrency, else its ReservedConcurrentExecutions, else `default_concurrency`. Off,
    one batch at a time (sequential, deterministic runs)."""

    default_concurrency: int = 3
    """Concurrent invocations of a function whose template sets no limit (Lambda would scale far beyond it)."""

    failed_record_visibility_timeout: int | None = None
    """None: a failed record reappears after the queue's visibility timeout, as in Lambda. A number (0 in
    tests) sets the failed records' visibility to that many seconds with ChangeMessageVisibility: a speed-up,
    not Lambda's behaviour. Receive counts, and so redrive to the DLQ, are unaffected."""


@dataclass
class BatchOutcome:
    """One invocation of a function with one batch, and what the poller did with each message."""

    function: str
    queue: str
    message_ids: list[str]
    bodies: dict[str, str]
    receive_counts: dict[str, int]
    failed_ids: list[str]
    deleted_ids: list[str]
    error: str | None = None
    response: Any = field(default=None, repr=False)
    # Wall-clock seconds the handler ran for this batch (the demo's time per stage adds these up).
    duration_s: float = 0.0
    # Lambda throttled the invocation (the function was at its reserved concurrency): no handler ran.
    throttled: bool = False


class SqsEventSourcePoller:
    def __init__(
        self,
        *,
        sqs: Any,
        function: LocalFunction,
        source: SqsEventSource,
        queue_url: str,
        queue_arn: str,
        region: str,
        options: PollerOptions,
    ) -> None:
        self.sqs = sqs
        self.function = function
        self.source = source
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.region = region
        self.options = options
        # Messages received past the payload quota of the batch being gathered: the next batch starts with them.
        self._carried: list[dict[str, Any]] = []
        self._carried_lock = threading.Lock()

    @property
    def has_carried_messages(self) -> bool:
        """Messages received past the last batch's payload quota, waiting to start the next batch."""
        with self._carried_lock:
            return bool(self._carried)

    def poll_once(self, environment: ExecutionEnvironment | None = None) -> BatchOutcome | None:
        """Receive one batch and invoke the function with it; None when the queue gave nothing.

        With an `environment` the batch runs in that warm instance of the function (concurrent drains, where
        the caller has set the process environment); without one, in the function's own.
        """
        messages = self._receive_batch()
        if not messages:
            return None
        event = {"Records": [sqs_event_record(m, self.queue_arn, self.region) for m in messages]}
        started = time.monotonic()
        invocation = environment.invoke(event) if environment is not None else self.function.invoke(event)
        duration_s = time.monotonic() - started
        batch_ids = [m["MessageId"] for m in messages]
        failed, error = self._failed_ids(invocation, batch_ids)
        succeeded = [m for m in messages if m["MessageId"] not in failed]
        self._delete(succeeded)
        if self.options.failed_record_visibility_timeout is not None:
            self._set_visibility(
                [m for m in messages if m["MessageId"] in failed], self.options.failed_record_visibility_timeout
            )
        return self._outcome(
            messages,
            failed_ids=[i for i in batch_ids if i in failed],
            deleted_ids=[m["MessageId"] for m in succeeded],
            error=error,
            response=invocation.response,
            duration_s=duration_s,
        )

    def throttle_once(self) -> BatchOutcome | None:
        """Receive one batch that Lambda cannot invoke the function with (it is at its reserved concurrency):
        every message goes back to the queue, its receive counted towards maxReceiveCount; None when the queue
        gave nothing."""
        messages = self._receive_batch()
        if not messages:
            return None
        if self.options.failed_record_visibility_timeout is not None:
            self._set_visibility(messages, self.options.failed_record_visibility_timeout)
        return self._outcome(
            messages,
            failed_ids=[m["MessageId"] for m in messages],
            deleted_ids=[],
            error="Rate Exceeded: throttled at the function's ReservedConcurrentExecutions",
            throttled=True,
        )

    def _outcome(self, messages: list[dict[str, Any]], **what_happened: Any) -> BatchOutcome:
        return BatchOutcome(
            function=self.function.spec.logical_id,
            queue=self.source.queue,
            message_ids=[m["MessageId"] for m in messages],
            bodies={m["MessageId"]: m["Body"] for m in messages},
            receive_counts={m["MessageId"]: int(m["Attributes"]["ApproximateReceiveCount"]) for m in messages},
            **what_happened,
        )

    # ------------------------------------------------------------------ internals
    def _receive_batch(self) -> list[dict[str, Any]]:
        window = self.source.batching_window_seconds if self.options.wait_for_batching_window else 0
        deadline = time.monotonic() + window
        with self._carried_lock:
            pending, self._carried = self._carried, []
        batch: list[dict[str, Any]] = []
        size = len('{"Records":[]}')
        # Bounded: every pass either fills the batch further or sleeps towards the deadline.
        while len(batch) < self.source.batch_size:
            if pending:
                received, pending = pending, []
            else:
                with _receive_lock(self.queue_url):
                    received = self.sqs.receive_message(
                        QueueUrl=self.queue_url,
                        MaxNumberOfMessages=min(SQS_MAX_MESSAGES_PER_RECEIVE, self.source.batch_size - len(batch)),
                        MessageSystemAttributeNames=["All"],
                        MessageAttributeNames=["All"],
                        WaitTimeSeconds=0,
                    ).get("Messages", [])
            for index, message in enumerate(received):
                record_size = len(json.dumps(sqs_event_record(message, self.queue_arn, self.region))) + 1
                if batch and (
                    size + record_size > INVOCATION_PAYLOAD_QUOTA_BYTES or len(batch) == self.source.batch_size
                ):
                    with self._carried_lock:
                        self._carried.extend(received[index:])
                    return batch
                batch.append(message)
                size += record_size
            remaining = deadline - time.monotonic()
            if window and batch and remaining <= 0:  # a window bounds the wait, however fast messages keep coming
                break
            if not received:
                # An empty queue gives no batch at once; the window only holds a started batch open.
                if not batch or remaining <= 0:
                    break
                time.sleep(min(_BATCH_FILL_PAUSE_SECONDS, remaining))
        return batch

    def _failed_ids(self, invocation: Invocation, batch_ids: list[str]) -> tuple[set[str], str | None]:
        if invocation.timed_out:
            return set(batch_ids), f"Task timed out after {self.function.spec.timeout} seconds"
        if invocation.error is not None:
            return set(batch_ids), f"{type(invocation.error).__name__}: {invocation.error}"
        if not self.source.reports_batch_item_failures:
            return set(), None  # without ReportBatchItemFailures Lambda ignores the response
        return _reported_failures(invocation.response, batch_ids)

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), SQS_MAX_MESSAGES_PER_RECEIVE):
            chunk = messages[start : start + SQS_MAX_MESSAGES_PER_RECEIVE]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            result = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            if result.get("Failed"):
                raise RuntimeError(f"delete_message_batch failed on {self.source.queue}: {result['Failed']}")

    def _set_visibility(self, messages: list[dict[str, Any]], seconds: int) -> None:
        for message in messages:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=seconds
            )


_RECEIVE_LOCKS: dict[str, threading.Lock] = {}
_RECEIVE_LOCKS_GUARD = threading.Lock()


def _receive_lock(queue_url: str) -> threading.Lock:
    """moto's in-process ReceiveMessage checks and marks a message in two steps without a lock
    (moto/sqs/models.py), so two threads could both receive it. SQS hides a received message atomically (apart
    from its documented rare at-least-once duplicates): concurrent pollers of one queue receive one at a time."""
    with _RECEIVE_LOCKS_GUARD:
        return _RECEIVE_LOCKS.setdefault(queue_url, threading.Lock())


def _reported_failures(response: Any, batch_ids: list[str]) -> tuple[set[str], str | None]:
    """Read a partial batch response the way Lambda does."""
    if response is None:
        return set(), None
    if not isinstance(response, dict):
        return set(batch_ids), f"invalid batch response {response!r}"
    items = response.get("batchItemFailures")
    if not items:
        return set(), None  # empty or null list, or an empty response: complete success
    failed: set[str] = set()
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in batch_ids:
            return set(batch_ids), f"invalid batchItemFailures entry {item!r}: whole batch failed"
        failed.add(identifier)
    return failed, None
