"""Look into the bad-records queue and the DLQs, and replay their messages after a fix.

Listing reads without deleting: messages are received with a short visibility timeout and made visible again at
once. Replaying moves each message back to the queue of the stage that failed on it (a bad record's
`original_body` to its stage's input queue; a dead letter to the queue it died on) and deletes it only after the
send succeeded, so a crash in between leaves a duplicate, never a loss; the stages are idempotent, so the
duplicate is harmless (docs/architecture.md "Failure handling").

Receive → send → delete works everywhere, moto included; the cloud's `StartMessageMoveTask` does not exist in moto
and knows nothing of bad records (docs/sources.md#aws-dlq-redrive).
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from chartmogul_sync.config import Settings
from chartmogul_sync.models.envelope import MessageKind
from chartmogul_sync.queues import BadRecord, Stage

# Receives per run are bounded: at most this many empty-handed or repeated receives in a row end a run.
_MAX_IDLE_RECEIVES = 2
# Long enough that one run never receives the same message twice, short enough that an interrupted run's
# messages come back soon.
_LISTING_VISIBILITY_S = 30
_REPLAY_VISIBILITY_S = 60

QUEUE_NAMES = ("bad-records", "raw-dlq", "upload-dlq")


class QueueNotFound(ValueError):
    pass


class LiveQueueRefused(QueueNotFound):
    """Listing or replaying a queue a function consumes would count as receives and could dead-letter it."""


def resolve_terminal_queue(name_or_url: str, settings: Settings, sqs: Any) -> str:
    """Like `resolve_queue`, but only for a queue nothing consumes: bad-records, a DLQ.

    Every listing receives the messages it shows; on a work queue with a redrive policy that counts towards
    `maxReceiveCount`, so a few listings would move a healthy message to the DLQ.
    """
    url = resolve_queue(name_or_url, settings, sqs)
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"]).get("Attributes", {})
    if "RedrivePolicy" in attributes:
        raise LiveQueueRefused(
            f"{name_or_url} is a work queue a function consumes (it has a dead-letter queue): listing it would count "
            f"as receives and could dead-letter healthy messages; give {', '.join(QUEUE_NAMES)} instead"
        )
    return url


def resolve_queue(name_or_url: str, settings: Settings, sqs: Any) -> str:
    """A queue URL from a template name (`bad-records`, `raw-dlq`, `upload-dlq`, and the work queues `raw`,
    `upload`), a queue name or a URL."""
    if name_or_url.startswith(("http://", "https://")):
        return name_or_url
    configured = {
        "bad-records": ("BAD_RECORDS_QUEUE_URL", settings.bad_records_queue_url),
        "raw": ("RAW_QUEUE_URL", settings.raw_queue_url),
        "upload": ("UPLOAD_QUEUE_URL", settings.upload_queue_url),
    }
    if name_or_url in configured:
        variable, url = configured[name_or_url]
        if not url:
            raise QueueNotFound(f"{variable} is not set: pass the queue URL instead of {name_or_url!r}")
        return url
    if name_or_url in ("raw-dlq", "upload-dlq"):
        source = resolve_queue(name_or_url.removesuffix("-dlq"), settings, sqs)
        return dead_letter_queue_of(sqs, source)
    try:
        return str(sqs.get_queue_url(QueueName=name_or_url)["QueueUrl"])
    except Exception as error:  # botocore's QueueDoesNotExist and the like: say what can be given instead
        raise QueueNotFound(
            f"no queue {name_or_url!r}: give one of {', '.join(QUEUE_NAMES)}, a queue name or a queue URL"
        ) from error


def dead_letter_queue_of(sqs: Any, source_url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=source_url, AttributeNames=["RedrivePolicy"]).get("Attributes", {})
    if "RedrivePolicy" not in attributes:
        raise QueueNotFound(f"{source_url} has no dead-letter queue (no RedrivePolicy)")
    arn = json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"]
    _, _, _, _, account, name = arn.split(":", 5)
    return str(sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])


@dataclass(frozen=True)
class QueuedMessage:
    """One message of a bad-records queue or DLQ, as a person needs to see it."""

    message_id: str
    receive_count: int
    body: str
    bad_record: BadRecord | None  # None: a dead letter, moved by a redrive policy, with no reason recorded
    customer_external_id: str | None
    kind: str | None  # customer_snapshot / customer_bundle for dead letters

    @property
    def reason(self) -> str:
        if self.bad_record is not None:
            return self.bad_record.reason
        return (
            "kept failing with transient errors until the redrive policy moved it here "
            f"(received {self.receive_count} times, listings included; the function's logs have each error)"
        )


def describe(message: dict[str, Any]) -> QueuedMessage:
    body = message["Body"]
    receive_count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
    try:
        record = BadRecord.model_validate_json(body)
        return QueuedMessage(message["MessageId"], receive_count, body, record, record.customer_external_id, None)
    except ValidationError:
        pass
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    fields = parsed if isinstance(parsed, dict) else {}
    customer = fields.get("customer_external_id")
    kind = fields.get("kind")
    return QueuedMessage(
        message["MessageId"],
        receive_count,
        body,
        None,
        customer if isinstance(customer, str) else None,
        kind if isinstance(kind, str) else None,
    )


def _receive(sqs: Any, queue_url: str, wanted: int, visibility_s: int, wait_s: int) -> Iterator[dict[str, Any]]:
    """Messages from the queue, each at most once per call, until `wanted` or the queue stops giving new ones."""
    seen: set[str] = set()
    idle = 0
    while len(seen) < wanted and idle < _MAX_IDLE_RECEIVES:
        answer = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, wanted - len(seen)),
            VisibilityTimeout=visibility_s,
            WaitTimeSeconds=wait_s,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        fresh = [m for m in answer.get("Messages", []) if m["MessageId"] not in seen]
        idle = 0 if fresh else idle + 1
        for message in fresh:
            seen.add(message["MessageId"])
            yield message


def list_messages(sqs: Any, queue_url: str, max_messages: int = 100, wait_s: int = 0) -> list[QueuedMessage]:
    """Up to `max_messages` messages of the queue, left in it (visible again when this returns)."""
    received = list(_receive(sqs, queue_url, max_messages, _LISTING_VISIBILITY_S, wait_s))
    _make_visible(sqs, queue_url, received)
    return [describe(m) for m in received]


def _make_visible(sqs: Any, queue_url: str, messages: list[dict[str, Any]]) -> None:
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        sqs.change_message_visibility_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(chunk)
            ],
        )


@dataclass(frozen=True)
class ReplayTargets:
    """The input queue of each stage a message can be replayed to."""

    raw_queue_url: str
    upload_queue_url: str

    @classmethod
    def from_settings(cls, settings: Settings) -> "ReplayTargets":
        return cls(raw_queue_url=settings.raw_queue_url, upload_queue_url=settings.upload_queue_url)

    def destination(self, message: QueuedMessage) -> tuple[str | None, str, str]:
        """(queue URL or None, body to send, why / why not)."""
        if message.bad_record is not None:
            stage = message.bad_record.stage
            if stage is Stage.TRANSFORM:
                return self.raw_queue_url or None, message.bad_record.original_body, "to the transform (raw queue)"
            if stage is Stage.UPLOAD:
                return self.upload_queue_url or None, message.bad_record.original_body, "to the upload queue"
            # No queue feeds the export function: its records are replayed by invoking it with their original
            # body (for a customer Stripe refused, the one-customer event), which the advice spells out.
            customer = message.customer_external_id or "the customer"
            advice = (
                f"an export failure: run the export again for {customer} instead, once the cause is fixed: invoke "
                f"the export function with the record's original_body {message.bad_record.original_body} "
                '(README "Operations"); the record is left in place'
            )
            return None, "", advice
        if message.kind == MessageKind.CUSTOMER_SNAPSHOT:
            return self.raw_queue_url or None, message.body, "to the transform (raw queue)"
        if message.kind == MessageKind.CUSTOMER_BUNDLE:
            return self.upload_queue_url or None, message.body, "to the upload queue"
        return None, "", "not a message of ours (neither a bad record nor an envelope): left in place"


@dataclass
class ReplayReport:
    replayed: list[tuple[QueuedMessage, str]] = field(default_factory=list)  # (message, destination URL)
    left: list[tuple[QueuedMessage, str]] = field(default_factory=list)  # (message, why it stays)


def replay(
    sqs: Any, queue_url: str, targets: ReplayTargets, max_messages: int = 1_000, wait_s: int = 0
) -> ReplayReport:
    """Move up to `max_messages` messages back to their stage's input queue; send first, delete after."""
    report = ReplayReport()
    kept: list[dict[str, Any]] = []
    for raw in _receive(sqs, queue_url, max_messages, _REPLAY_VISIBILITY_S, wait_s):
        message = describe(raw)
        destination, body, why = targets.destination(message)
        if destination is None:
            report.left.append((message, why if "left" in why or "instead" in why else f"no queue configured {why}"))
            kept.append(raw)
            continue
        sqs.send_message(QueueUrl=destination, MessageBody=body)
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=raw["ReceiptHandle"])
        report.replayed.append((message, destination))
    _make_visible(sqs, queue_url, kept)
    return report
