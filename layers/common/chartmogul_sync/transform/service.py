"""The transform stage's work on one raw-queue message: snapshot in, bundle out, bad input set aside.

Three outcomes, and which failures are whose (docs/architecture.md "Failure handling"):
- a bundle is sent to the upload queue (a backfill's customer head, too: docs/architecture.md "Customer heads");
- a message that can never be mapped (malformed envelope, MappingError, a tampered claim check) goes to the
  bad-records queue with the object id, the field and the reason, and counts as handled: retrying cannot help;
- a transient failure (S3 or SQS unavailable) is raised, so SQS redelivers the message and, after
  `maxReceiveCount`, moves it to the raw DLQ.

A customer head that cannot be mapped is logged and dropped (HEAD_DROPPED): its full snapshot follows, fails the
same way and goes to the bad records with its reason, once.
"""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from ..models.bundle import SkippedRecord
from ..models.envelope import RawMessage, UploadMessage
from ..queues import BadRecords, ClaimCheckError, MessageSender, load_message
from .config import MappingConfig, describe_validation_error
from .errors import CustomerExcluded, MappingError
from .mapping import map_snapshot

logger = Logger(child=True)


class Outcome(StrEnum):
    BUNDLED = "bundled"
    BAD_RECORD = "bad_record"
    EXCLUDED = "excluded"
    HEAD_DROPPED = "head_dropped"


@dataclass(frozen=True)
class TransformResult:
    outcome: Outcome
    customer_external_id: str | None = None
    invoices: int = 0
    skipped: list[SkippedRecord] = field(default_factory=list)


@dataclass
class SnapshotTransformer:
    s3: Any
    sender: MessageSender
    upload_queue_url: str
    bad_records: BadRecords
    config: MappingConfig

    def handle(self, body: str) -> TransformResult:
        # Keys of the previous record of the batch must not label this one's logs.
        logger.remove_keys(["correlation_id", "customer_external_id"])
        try:
            message = load_message(self.s3, body, RawMessage)
        except ValidationError as error:
            problems = describe_validation_error(error)
            field_name, _, reason = problems[0].partition(": ")
            bad = self.bad_records.send(body, reason or problems[0], field=field_name)
            return TransformResult(Outcome.BAD_RECORD, bad.customer_external_id)
        except ClaimCheckError as error:
            if error.__cause__ is not None:
                raise  # S3 could not be read: transient, SQS retries (queues.resolve_payload_json keeps the cause)
            bad = self.bad_records.send(body, str(error), field="claim_check")
            return TransformResult(Outcome.BAD_RECORD, bad.customer_external_id)

        assert message.payload is not None  # load_message resolved the claim check
        customer_id = message.customer_external_id
        logger.append_keys(correlation_id=message.correlation_id, customer_external_id=customer_id)
        try:
            bundle = map_snapshot(message.payload, self.config, snapshot_time=message.snapshot_time)
        except CustomerExcluded as excluded:
            logger.info("customer skipped", extra={"reason": excluded.reason})
            return TransformResult(Outcome.EXCLUDED, customer_id)
        except Exception as error:
            if not message.payload.customer_only:
                return self._refused(body, message, error)
            logger.warning(
                "customer head not mapped: its full snapshot will report why",
                extra={"error": f"{type(error).__name__}: {error}"},
            )
            return TransformResult(Outcome.HEAD_DROPPED, customer_id)

        for record in bundle.skipped:
            # Nothing is dropped silently: every skipped Stripe object is logged with its reason.
            logger.info("stripe object skipped", extra={"object_id": record.source_object_id, "reason": record.reason})
        upload = UploadMessage(
            source=message.source,
            customer_external_id=customer_id,
            snapshot_time=message.snapshot_time,
            correlation_id=message.correlation_id,
            # A backfill asks for bulk upload; the request travels with the customer through every stage.
            upload_mode=message.upload_mode,
            payload=bundle,
        )
        self.sender.send(self.upload_queue_url, [upload])
        logger.info(
            "bundle sent",
            extra={"invoices": len(bundle.invoices), "plans": len(bundle.plans), "skipped": len(bundle.skipped)},
        )
        return TransformResult(Outcome.BUNDLED, customer_id, len(bundle.invoices), list(bundle.skipped))

    def _refused(self, body: str, message: RawMessage, error: Exception) -> TransformResult:
        """A snapshot that can never be mapped goes to the bad records, with the object, the field and why."""
        customer_id = message.customer_external_id
        if isinstance(error, MappingError):
            self.bad_records.send(
                body,
                error.reason,
                object_id=error.object_id,
                field=error.field,
                customer_external_id=customer_id,
                correlation_id=message.correlation_id,
            )
            return TransformResult(Outcome.BAD_RECORD, customer_id)
        # The mapping is pure: whatever it raised, a retry would raise again.
        logger.exception("mapping failed unexpectedly")
        self.bad_records.send(
            body,
            f"unexpected mapping failure ({type(error).__name__}: {error}); please report it with this record",
            object_id=customer_id,
            customer_external_id=customer_id,
            correlation_id=message.correlation_id,
        )
        return TransformResult(Outcome.BAD_RECORD, customer_id)
