"""Every record a function fails on is logged with its reason, and the reason is kept for its dead letter.

A record that raises in an SQS-triggered handler is a *transient* failure (bad input never raises: it goes to the
bad-records queue with its reason). SQS redelivers it, and after `maxReceiveCount` receives its redrive policy
moves it to the DLQ, without any reason attached: a DLQ message is only the body. So both SQS consumers (transform
and upload) build their batch processor here, and each failed record is

- logged at WARNING, with the stage, the customer, the reason and the run's correlation id, and its traceback;
- kept as the message's *last failure* in the state table, keyed by the SQS message id, which the redrive keeps:
  SQS *moves* the message to the DLQ, with its id and its enqueue timestamp
  (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html), so
  `cmsync dlq list` shows the reason of every dead letter. The item expires (`expires_at`, the table's TTL
  attribute) after the DLQs' 14-day retention.

A processor given a `RedeliveryBackoff` (the upload function's) also brings each failed record back sooner than
the queue's visibility timeout: see that class.

The Stripe events function reports its failed records itself (a partial batch response built by
sources/stripe/realtime.py, not this processor) and keeps each one's reason in the same ledger, so its dead letters
have reasons too.

The processor is Powertools' own `BatchProcessor` with its documented extension point, `failure_handler`
(https://docs.powertools.aws.dev/lambda/python/latest/utilities/batch/#extending-the-batch-processor), and it is
given the function's Logger, so Powertools writes the WARNING line itself, with our keys appended.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.base import FailureResponse
from aws_lambda_powertools.utilities.batch.exceptions import ExceptionInfo
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import Field

from .config import Settings
from .models.common import InboundModel, NonEmptyStr, UtcDatetime
from .queues import Stage, load_json
from .state import StateTable, key

# The DLQs keep messages 14 days (template.yaml, MessageRetentionPeriod 1209600); a reason must outlive its
# message, with a day to spare. DynamoDB deletes expired items within a few days of `expires_at`
# (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/TTL.html): a reason may outlive its message a
# little, never the other way round.
FAILURE_TTL_S = 15 * 24 * 3600
FAILURE_SK = "last"
# A reason is a sentence for a person, not a dump: long exception texts are cut.
_MAX_REASON_CHARS = 1_000


class RecordFailure(InboundModel):
    """Why one SQS message failed the last time a function received it."""

    message_id: NonEmptyStr
    stage: Stage
    reason: NonEmptyStr
    error_type: str
    customer_external_id: str | None = None
    correlation_id: str | None = None
    receive_count: int | None = None
    failed_at: UtcDatetime = Field(default_factory=lambda: datetime.now(UTC))

    def summary(self) -> str:
        """The reason as `cmsync dlq list` prints it for a dead letter."""
        return (
            f"last failure in {self.stage.value} at {self.failed_at.strftime('%Y-%m-%d %H:%M:%SZ')}"
            f" (receive {self.receive_count or '?'}): {self.reason}"
        )


class FailureLedger:
    """The last failure of each SQS message: pk=`failure#<message id>`, sk=`last` (state.py lists every key)."""

    def __init__(self, state: StateTable, clock: Callable[[], float] = time.time) -> None:
        self._state = state
        self._clock = clock

    @staticmethod
    def partition_key(message_id: str) -> str:
        return key("failure", message_id)

    def record(self, failure: RecordFailure) -> None:
        self._state.put(
            self.partition_key(failure.message_id),
            FAILURE_SK,
            {"failure": failure.model_dump_json(), "expires_at": int(self._clock()) + FAILURE_TTL_S},
        )

    def last_failure(self, message_id: str) -> RecordFailure | None:
        item = self._state.get(self.partition_key(message_id), FAILURE_SK)
        return RecordFailure.model_validate_json(item["failure"]) if item else None


@dataclass(frozen=True)
class RedeliveryBackoff:
    """When a record that failed comes back: `first_s` x 2^(receives - 1) seconds after its failure, at most `max_s`.

    Why: Lambda wants a queue's visibility timeout at 6 x its consumer's timeout
    (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html), 5,400 s for the upload queue, and a
    record the function reports as failed reappears only then. But what fails a record there passes in seconds or
    minutes: a customer lease another instance holds, ChartMogul answering 429 past the function's own retries, the
    time budget running out mid-import. So each failed record's visibility is set to this delay with
    ChangeMessageVisibility (SQS counts the new timeout from the call,
    https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html). Receive
    counts are unchanged, so after maxReceiveCount the record still moves to the DLQ, its reason kept.

    The default, 75 s doubling (75, 150, 300, 600 s: 1,125 s before the fifth receive), outlasts the longest lease
    (`leases.MAX_LEASE_S`, 930 s), so a record waiting for a crashed holder's lease gets it before the DLQ.

        >>> [RedeliveryBackoff().seconds(n) for n in (1, 2, 3, 4, 5)]
        [75, 150, 300, 600, 900]
    """

    first_s: int = 75
    max_s: int = 900

    def seconds(self, receive_count: int | None) -> int:
        doublings: int = max(1, receive_count or 1) - 1
        return min(self.max_s, self.first_s * (1 << doublings))


class QueueVisibility:
    """Sets the visibility of one received message, by its event record (queue ARN and receipt handle)."""

    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs
        self._urls: dict[str, str] = {}

    def set(self, raw_record: dict[str, Any], seconds: int) -> None:
        self._sqs.change_message_visibility(
            QueueUrl=self._url(raw_record["eventSourceARN"]),
            ReceiptHandle=raw_record["receiptHandle"],
            VisibilityTimeout=seconds,
        )

    def _url(self, queue_arn: str) -> str:
        if queue_arn not in self._urls:  # arn:aws:sqs:<region>:<account>:<name>
            _, _, _, _, account, name = queue_arn.split(":", 5)
            self._urls[queue_arn] = self._sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        return self._urls[queue_arn]


def _visibility_of_this_environment() -> QueueVisibility:
    from .config import get_settings

    return _visibility_for(get_settings())


@lru_cache(maxsize=4)
def _visibility_for(settings: Settings) -> QueueVisibility:
    # Per settings, as the ledger: one client and queue-URL cache per local stack in the runtime's one process.
    import boto3

    return QueueVisibility(boto3.client("sqs"))


def _ledger_of_this_environment() -> FailureLedger:
    from .config import get_settings

    return _ledger_for(get_settings())


@lru_cache(maxsize=4)
def _ledger_for(settings: Settings) -> FailureLedger:
    # Per settings (the local runtime runs several stacks in one process, each with its own table).
    import boto3

    return FailureLedger(StateTable(boto3.resource("dynamodb"), settings.state_table))


class FailureReportingProcessor(BatchProcessor):
    """Powertools' SQS batch processor that logs every failed record at WARNING and keeps its reason.

    `raise_on_entire_batch_failure` is off: when every record of a batch fails, each is reported as a batch item
    failure like any other (the same redelivery for SQS) instead of the whole invocation raising, so a batch never
    crashes and no failure goes unreported (Powertools batch docs, "raise_on_entire_batch_failure").
    """

    def __init__(
        self,
        stage: Stage,
        logger: Logger,
        ledger: Callable[[], FailureLedger] = _ledger_of_this_environment,
        *,
        backoff: RedeliveryBackoff | None = None,
        visibility: Callable[[], QueueVisibility] = _visibility_of_this_environment,
    ) -> None:
        # Powertools' Logger is a logging.Logger in all but type (it forwards warning(..., exc_info=...)).
        super().__init__(event_type=EventType.SQS, logger=logger, raise_on_entire_batch_failure=False)  # type: ignore[arg-type]
        self._stage = stage
        self._powertools_logger = logger
        self._ledger = ledger
        self._backoff = backoff
        self._visibility = visibility

    def failure_handler(self, record: Any, exception: ExceptionInfo) -> FailureResponse:
        failure = describe_failure(self._stage, record, exception)
        redelivery = self._shorten_wait(record, failure)
        keys = {
            "stage": failure.stage.value,
            "message_id": failure.message_id,
            "customer_external_id": failure.customer_external_id,
            "correlation_id": failure.correlation_id,
            "reason": failure.reason,
            "receive_count": failure.receive_count,
            "next": f"SQS redelivers it {redelivery}; after maxReceiveCount it waits in the DLQ with this reason",
        }
        self._powertools_logger.append_keys(**keys)
        try:
            response: FailureResponse = super().failure_handler(record, exception)  # logs WARNING + traceback
        finally:
            self._powertools_logger.remove_keys(list(keys))
        try:
            self._ledger().record(failure)
        except Exception as error:  # the state table is unavailable: the WARNING above still says why
            self._powertools_logger.error(
                "could not keep the failure reason for the dead letter",
                extra={"message_id": failure.message_id, "error": f"{type(error).__name__}: {error}"[:300]},
            )
        return response

    def _shorten_wait(self, record: Any, failure: RecordFailure) -> str:
        """Set the record's visibility to the backoff's delay, if there is a backoff; says when SQS redelivers it."""
        if self._backoff is None:
            return "after the queue's visibility timeout"
        seconds = self._backoff.seconds(failure.receive_count)
        try:
            self._visibility().set(getattr(record, "raw_event", None) or {}, seconds)
        except Exception as error:  # the record comes back after the queue's visibility timeout instead
            return f"after the queue's visibility timeout (shortening it failed: {type(error).__name__}: {error})"[:300]
        return f"in {seconds} s"


def describe_failure(stage: Stage, record: Any, exception: ExceptionInfo) -> RecordFailure:
    """The failure of one record, with what its body still says about its customer and run."""
    error = exception[1] or RuntimeError("unknown error")
    raw = getattr(record, "raw_event", None) or {}
    body = record.body if isinstance(record, SQSRecord) else raw.get("body", "")
    hints = _envelope_hints(body or "")
    attributes = raw.get("attributes") or {}
    count = attributes.get("ApproximateReceiveCount")
    reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return RecordFailure(
        message_id=str(raw.get("messageId") or getattr(record, "message_id", None) or "?"),
        stage=stage,
        reason=reason[:_MAX_REASON_CHARS],
        error_type=type(error).__name__,
        customer_external_id=hints.get("customer_external_id"),
        correlation_id=hints.get("correlation_id"),
        receive_count=int(count) if isinstance(count, str) and count.isdigit() else None,
    )


def _envelope_hints(body: str) -> dict[str, str]:
    try:
        parsed = load_json(body)
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {k: v for k in ("customer_external_id", "correlation_id") if isinstance(v := parsed.get(k), str)}


__all__ = [
    "FailureLedger",
    "FailureReportingProcessor",
    "QueueVisibility",
    "RecordFailure",
    "RedeliveryBackoff",
    "describe_failure",
]
