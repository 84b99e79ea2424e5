"""SQS adapter: batched sends with an S3 claim check for large payloads, and the bad-records queue.

Every function sends through here, so batching, the size limit and the bad-record format are decided once.
"""

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from aws_lambda_powertools import Logger
from pydantic import Field
from pydantic_core import from_json

from .models.common import InboundModel, NonEmptyStr, UtcDatetime
from .models.envelope import ClaimCheck, RawMessage, UploadMessage

# SQS takes 10 entries per SendMessageBatch and 1 MiB per message since Aug 2025 (reference
# docs/sources.md#aws-payload-size). The batch as a whole is limited to 1 MiB too, so large bodies go alone.
MAX_BATCH_ENTRIES = 10
SQS_MAX_MESSAGE_BYTES = 1_048_576
# Bodies above this go to S3 and travel as a claim check; headroom for the envelope and message attributes.
CLAIM_CHECK_THRESHOLD_BYTES = 900_000
# Entries SQS reports as failed in a batch (throttling, internal errors) are re-sent this many times at most.
MAX_SEND_ATTEMPTS = 5

Message = TypeVar("Message", RawMessage, UploadMessage)

logger = Logger(child=True)


class QueueSendError(RuntimeError):
    """Some messages could not be sent after every attempt; the caller must not advance its cursor."""


class Stage(StrEnum):
    EXPORT = "export"
    TRANSFORM = "transform"
    UPLOAD = "upload"


class BadRecord(InboundModel):
    """What lands on the bad-records queue: enough to understand the failure, fix the cause and replay it."""

    stage: Stage
    reason: NonEmptyStr
    # The object the reason is about (a Stripe id like in_123, or a ChartMogul external id) and its field.
    object_id: str | None = None
    field: str | None = None
    customer_external_id: str | None = None
    correlation_id: str | None = None
    # ChartMogul's or Stripe's answer, verbatim, when an API refused the record.
    error_body: str | None = None
    # The message as it arrived at the failing stage; replay sends it back to that stage's input queue.
    original_body: str
    failed_at: UtcDatetime = Field(default_factory=lambda: datetime.now(UTC))


class MessageSender:
    """Sends envelopes to a queue in batches of 10, moving oversized payloads to S3 first."""

    def __init__(self, sqs: Any, s3: Any, staging_bucket: str) -> None:
        self._sqs = sqs
        self._s3 = s3
        self._bucket = staging_bucket

    def send(self, queue_url: str, messages: Iterable[RawMessage | UploadMessage]) -> int:
        """Send every message; returns how many were sent. Raises QueueSendError if any could not be."""
        sent = 0
        batch: list[str] = []
        for message in messages:
            batch.append(self._body_for(message))
            if len(batch) == MAX_BATCH_ENTRIES:
                sent += self._send_batch(queue_url, batch)
                batch = []
        if batch:
            sent += self._send_batch(queue_url, batch)
        return sent

    def send_bad_record(self, queue_url: str, record: BadRecord) -> None:
        self._send_batch(queue_url, [record.model_dump_json()])

    def _body_for(self, message: RawMessage | UploadMessage) -> str:
        body = message.model_dump_json(exclude_none=True)
        if len(body.encode()) <= CLAIM_CHECK_THRESHOLD_BYTES or message.payload is None:
            return body
        payload = message.payload.model_dump_json(exclude_none=True).encode()
        digest = hashlib.sha256(payload).hexdigest()
        # Content-addressed key: a re-sent snapshot overwrites itself instead of piling up copies.
        key = f"claim-checks/{message.kind}/{message.customer_external_id}/{digest}.json"
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=payload, ContentType="application/json")
        checked = message.model_copy(
            update={
                "payload": None,
                "claim_check": ClaimCheck(bucket=self._bucket, key=key, sha256=digest, size_bytes=len(payload)),
            }
        )
        return checked.model_dump_json(exclude_none=True)

    def _send_batch(self, queue_url: str, bodies: Sequence[str]) -> int:
        # A batch is limited to 1 MiB in total: split it when the bodies together are larger.
        if len(bodies) > 1 and sum(len(b.encode()) for b in bodies) > SQS_MAX_MESSAGE_BYTES:
            middle = len(bodies) // 2
            return self._send_batch(queue_url, bodies[:middle]) + self._send_batch(queue_url, bodies[middle:])
        pending = {str(index): body for index, body in enumerate(bodies)}
        for _attempt in range(MAX_SEND_ATTEMPTS):
            answer = self._sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": entry_id, "MessageBody": body} for entry_id, body in pending.items()],
            )
            for done in answer.get("Successful", []):
                pending.pop(done["Id"], None)
            if not pending:
                return len(bodies)
            failures = answer.get("Failed", [])
            if any(failure.get("SenderFault") for failure in failures):
                # A sender fault (a malformed entry) will fail the same way every time: no point retrying.
                break
        reasons = "; ".join(f"{f.get('Code')}: {f.get('Message')}" for f in answer.get("Failed", []))
        raise QueueSendError(f"{len(pending)} of {len(bodies)} messages not sent to {queue_url}: {reasons}")


class BadRecords:
    """One stage's way onto the bad-records queue: every record it sets aside is stamped, sent and logged alike."""

    def __init__(self, sender: MessageSender, queue_url: str, stage: Stage) -> None:
        self._sender = sender
        self._queue_url = queue_url
        self._stage = stage

    def send(
        self,
        original_body: str,
        reason: str,
        *,
        object_id: str | None = None,
        field: str | None = None,
        customer_external_id: str | None = None,
        correlation_id: str | None = None,
        error_body: str | None = None,
    ) -> BadRecord:
        """Set one message aside with its reason; returns the record sent."""
        record = BadRecord(
            stage=self._stage,
            reason=reason,
            object_id=object_id,
            field=field,
            # A message that failed validation has no customer to read; its JSON may still name one.
            customer_external_id=customer_external_id or _customer_hint(original_body),
            correlation_id=correlation_id,
            error_body=error_body,
            original_body=original_body,
        )
        self._sender.send_bad_record(self._queue_url, record)
        logger.warning(
            "record sent to the bad-records queue",
            extra={
                "stage": record.stage.value,
                "object_id": record.object_id,
                "field": record.field,
                "reason": record.reason,
                "customer_external_id": record.customer_external_id,
            },
        )
        return record


def load_json(text: str | bytes) -> Any:
    """JSON from a message body or a staged object, nesting bounded.

    pydantic-core's parser refuses documents nested deeper than its recursion limit (200 levels) with a ValueError,
    where `json.loads` would raise RecursionError (not a ValueError) on a deep enough body: every body an outside
    party can shape is parsed here, so no depth of nesting crashes a handler. Stripe's objects nest < 15 levels.
    """
    return from_json(text)


def _customer_hint(body: str) -> str | None:
    """The customer id a message body names, if its JSON still says it."""
    try:
        value = load_json(body).get("customer_external_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def one_customer_export_event(customer_id: str) -> str:
    """The export event that exports one customer again: what recovers a record whose data was lost."""
    return json.dumps({"mode": "customer", "customer_id": customer_id})


class ClaimCheckError(ValueError):
    """A claim check whose object is missing or does not match its checksum.

    `missing`: S3 answered that the object does not exist (NoSuchKey): no retry brings it back, only a new export of
    the customer does. Any other read failure (access, throttling, 5xx) keeps its cause and is transient.
    """

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def resolve_payload_json(s3: Any, message: RawMessage | UploadMessage) -> str | None:
    """The payload JSON a claim check points to (None when the payload travelled inline)."""
    if message.claim_check is None:
        return None
    check = message.claim_check
    try:
        body: bytes = s3.get_object(Bucket=check.bucket, Key=check.key)["Body"].read()
    except Exception as error:  # botocore's NoSuchKey and access errors alike: name the object, keep the cause
        code = getattr(error, "response", {}).get("Error", {}).get("Code")
        if code in ("NoSuchKey", "404"):
            raise ClaimCheckError(
                f"claim check s3://{check.bucket}/{check.key} is gone (S3: {code}): the payload is lost, no retry "
                f"brings it back; export customer {message.customer_external_id} again with the export event "
                f"{one_customer_export_event(message.customer_external_id)}",
                missing=True,
            ) from None
        raise ClaimCheckError(f"claim check s3://{check.bucket}/{check.key} could not be read: {error}") from error
    if hashlib.sha256(body).hexdigest() != check.sha256:
        raise ClaimCheckError(f"claim check s3://{check.bucket}/{check.key} does not match its sha256")
    return body.decode()


def load_message(s3: Any, body: str, model: type[Message]) -> Message:
    """Parse a queue message body and, if it carries a claim check, fetch its payload from S3."""
    message = model.model_validate_json(body)
    payload_json = resolve_payload_json(s3, message)
    if payload_json is None:
        return message
    data = json.loads(message.model_dump_json(exclude_none=True))
    data.pop("claim_check")
    data["payload"] = load_json(payload_json)
    return model.model_validate(data)
